"""Train the bundled struc2map generator (cryomaps/weights/struc2map_small.pt) on CPU.

The small U-Net++ generator trained on the shared example pairs (``data_manifests/example_pairs.csv``;
pairs marked ``val`` are held out), then copied into the package. Each stage is a plain
``cryomaps train`` or ``cryomaps finetune`` configuration (every setting is an override listed below
and printed):

1. ``unconditioned`` (the shipped weights): the generator without conditioning, targets at their
   own resolution (:func:`unconditioned_overrides`).
2. ``conditioned`` (``--conditioned``; trained and evaluated, not shipped: README "Generate"):
   ``cryomaps finetune ckpt=<stage-1 weights> model.generator.resolution_conditioning=true ...``, the
   same generator with FiLM added (the FiLM maps start at zero, so it starts as the stage-1
   generator), trained with targets at their own
   resolution d₀ and, with probability 0.5 per volume load, low-pass filtered to R ~ U(d₀, 14 Å)
   with a Gaussian of σ = 0.225·√(R² − d₀²), conditioning value R (:func:`conditioned_overrides`;
   :mod:`cryomaps.data.patches`).

Run from the repository root with the shared data in place::

    python scripts/train_bundled_generator.py                                   # stage 1 (shipped)
    python scripts/train_bundled_generator.py --conditioned --init WEIGHTS.pt   # stage 2 from stage-1 weights
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryomaps.io.weights import BUNDLED_WEIGHTS
from cryomaps.workflows.generation import UNCONDITIONED_OUTPUT_RESOLUTION

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "cryomaps" / "weights" / BUNDLED_WEIGHTS["generator"]  # the tracked file, also when not installed editable
SEED = 0


def common_overrides(run_dir: str, curated_dir: str) -> list[str]:
    """Settings both stages share."""
    return [
        "task=struc2map",
        "model=s2m_small",
        f"run_dir={run_dir}",
        f"data.manifest={REPO / 'data_manifests' / 'example_pairs.csv'}",
        f"data.curated_dir={curated_dir}",
        "data.batch_size=8",
        "data.val_samples_per_volume=16",
        "task.learning_rate=3e-4",
        "task.scheduler_patience=8",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "checkpoint.every_n_train_steps=100",
        f"seed={SEED}",
    ]


def unconditioned_overrides(run_dir: str, curated_dir: str, epochs: int = 30) -> list[str]:
    """Stage 1: 16 batches of 8 patches per epoch, validation every epoch."""
    return common_overrides(run_dir, curated_dir) + [
        "data.samples_per_volume=32",
        "data.queue_length=128",
        f"trainer.max_epochs={epochs}",
    ]


def conditioned_overrides(run_dir: str, curated_dir: str, epochs: int = 72) -> list[str]:
    """Stage 2: 8 patches per volume load (more resolutions drawn), 4 batches per epoch,
    validation every 4 epochs (so the plateau patience counts the same number of steps as stage 1)."""
    return common_overrides(run_dir, curated_dir) + [
        "model.generator.resolution_conditioning=true",
        f"task.output_resolution={UNCONDITIONED_OUTPUT_RESOLUTION}",
        "+data.resolution_augmentation={probability:0.5,max_resolution:14.0}",
        "data.samples_per_volume=8",
        "data.queue_length=64",
        f"trainer.max_epochs={epochs}",
        "+trainer.check_val_every_n_epoch=4",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=72, help="stage-2 epochs (4 batches each)")
    parser.add_argument("--stage1-epochs", type=int, default=30)
    parser.add_argument("--run-dir", default="outputs/bundled_generator")
    parser.add_argument("--conditioned", action="store_true", help="also run stage 2 and ship its weights")
    parser.add_argument("--init", type=Path, help="stage-1 generator weights: skip stage 1 (with --conditioned)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run (of the last stage run)")
    parser.add_argument("--no-install", action="store_true", help="train only: leave cryomaps/weights as it is")
    args = parser.parse_args()
    if args.init is not None and not args.conditioned:
        raise SystemExit("--init only skips stage 1 of a --conditioned run")
    from cryomaps.cli import main as cli_main

    run_dir = Path(args.run_dir)
    curated = str(run_dir / "curated")
    trained, init = run_dir / "unconditioned", args.init
    if init is None:
        stage1 = unconditioned_overrides(str(trained), curated, args.stage1_epochs)
        stage1 += ["resume=true"] if args.resume and not args.conditioned else []
        print("stage 1: cryomaps train " + " ".join(stage1))
        if cli_main(["train", *stage1]) != 0:
            return 1
        init = trained / "generator.pt"
    if args.conditioned:
        trained = run_dir / "conditioned"
        stage2 = [f"ckpt={init}", *conditioned_overrides(str(trained), curated, args.epochs)]
        stage2 += ["resume=true"] if args.resume else []
        print("stage 2: cryomaps finetune " + " ".join(stage2))
        if cli_main(["finetune", *stage2]) != 0:
            return 1

    if args.no_install:
        print(f"trained {trained}/generator.pt (not installed: --no-install)")
        return 0
    from cryomaps.io.atomic import write_bytes_atomically

    BUNDLED.parent.mkdir(exist_ok=True)
    write_bytes_atomically(BUNDLED, (trained / "generator.pt").read_bytes())
    print(f"copied {trained}/generator.pt to {BUNDLED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
