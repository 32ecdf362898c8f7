"""Train the bundled struc2map generator (cryomaps/weights/struc2map_small.pt) on CPU.

The small U-Net++ generator trained on the shared example pairs (``data_manifests/example_pairs.csv``;
pairs marked ``val`` are held out), then installed into the package. Each training stage is a plain
``cryomaps train`` or ``cryomaps finetune`` configuration (every setting is an override listed below
and printed):

1. ``unconditioned`` (the shipped network): the generator without conditioning, targets at their
   own resolution (:func:`unconditioned_overrides`).
2. Its output resolution d_g is measured: the median FSC-free resolution estimate of its output on
   the training pairs (:func:`cryomaps.workflows.generation.measured_output_resolution`), rounded to
   0.1 Å, and stored in the installed weights' metadata (``output_resolution``): ``cryomaps generate
   --resolution R`` low-pass filters the output from d_g to R.
3. ``conditioned`` (``--conditioned``; trained and evaluated, not shipped: README "Generate"):
   ``cryomaps finetune ckpt=<stage-1 weights> model.generator.resolution_conditioning=true ...``, the
   same generator with FiLM added (the FiLM maps start at zero), trained with targets at their own
   resolution d₀ and, with probability 0.5 per volume load, low-pass filtered to R ~ U(d₀, 14 Å)
   with a Gaussian of σ = 0.225·√(R² − d₀²), conditioning value R (:func:`conditioned_overrides`;
   :mod:`cryomaps.data.patches`). Its output is read as a map at d_g and filtered the same way to R
   before the loss (``task.output_resolution=d_g``), as ``cryomaps generate`` filters it, so it
   starts as the stage-1 generator with that output low-pass. ``--film-only`` keeps the stage-1
   weights frozen.

Run from the repository root with the shared data in place::

    python scripts/train_bundled_generator.py                          # stage 1, measure d_g, install
    python scripts/train_bundled_generator.py --init WEIGHTS.pt        # measure d_g of trained weights, install
    python scripts/train_bundled_generator.py --conditioned [--init WEIGHTS.pt] [--no-install]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryomaps.io.weights import BUNDLED_WEIGHTS

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "data_manifests" / "example_pairs.csv"
BUNDLED = REPO / "cryomaps" / "weights" / BUNDLED_WEIGHTS["generator"]  # the tracked file, also when not installed editable
SEED = 0


def common_overrides(run_dir: str, curated_dir: str) -> list[str]:
    """Settings both stages share."""
    return [
        "task=struc2map",
        "model=s2m_small",
        f"run_dir={run_dir}",
        f"data.manifest={MANIFEST}",
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


def conditioned_overrides(
    run_dir: str, curated_dir: str, output_resolution: float, frozen: list[str], epochs: int = 160
) -> list[str]:
    """Stage 2: 8 patches per volume load (more resolutions drawn), 4 batches per epoch,
    validation every 4 epochs (so the plateau patience counts the same number of steps as stage 1);
    ``output_resolution``: d_g (Å); ``frozen``: parameter names kept as stage 1 left them."""
    return common_overrides(run_dir, curated_dir) + [
        f"freeze=[{','.join(frozen)}]",
        "model.generator.resolution_conditioning=true",
        f"task.output_resolution={output_resolution}",
        "+data.resolution_augmentation={probability:0.5,max_resolution:14.0}",
        "data.samples_per_volume=8",
        "data.queue_length=64",
        f"trainer.max_epochs={epochs}",
        "+trainer.check_val_every_n_epoch=4",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=160, help="stage-2 epochs (4 batches each)")
    parser.add_argument("--stage1-epochs", type=int, default=30)
    parser.add_argument("--run-dir", default="outputs/bundled_generator")
    parser.add_argument("--conditioned", action="store_true", help="also run stage 2 and ship its weights")
    parser.add_argument("--init", type=Path, help="stage-1 generator weights: skip stage 1")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run (of the last stage run)")
    parser.add_argument("--no-install", action="store_true", help="train only: leave cryomaps/weights as it is")
    parser.add_argument("--film-only", action="store_true", help="stage 2 trains the FiLM layers only")
    args = parser.parse_args()
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
    trained, output_resolution = init, stage1_output_resolution(init)
    if args.conditioned:
        trained = run_dir / "conditioned" / "generator.pt"
        frozen = stage1_parameters(init) if args.film_only else []
        stage2 = [f"ckpt={init}", *conditioned_overrides(str(trained.parent), curated, output_resolution, frozen, args.epochs)]
        stage2 += ["resume=true"] if args.resume else []
        print("stage 2: cryomaps finetune " + " ".join(stage2))
        if cli_main(["finetune", *stage2]) != 0:
            return 1

    if args.no_install:
        print(f"trained {trained} (not installed: --no-install)")
        return 0
    install(trained, output_resolution)
    return 0


def install(weights: Path, output_resolution: float) -> None:
    """Write ``weights`` as the bundled generator, its metadata recording ``output_resolution`` (Å)
    unless it records one already (a generator trained through the filter)."""
    from cryomaps.io.weights import read_stored_network, write_weights_file

    stored = read_stored_network(weights, "generator")
    metadata = {"output_resolution": output_resolution, **stored.metadata}
    BUNDLED.parent.mkdir(exist_ok=True)
    write_weights_file(BUNDLED, "generator", stored.state_dict, stored.hyperparameters, metadata)
    print(f"installed {weights} as {BUNDLED} (output resolution {metadata['output_resolution']} Å)")


def stage1_parameters(weights: Path) -> list[str]:
    """The task-level names of the stage-1 generator's parameters (frozen by ``--film-only``)."""
    from cryomaps.models.weights import load_network

    return [f"generator.{name}" for name, _ in load_network(weights, "generator").network.named_parameters()]


def stage1_output_resolution(weights: Path) -> float:
    """d_g (Å, 0.1 Å steps): the stage-1 generator's output resolution measured on the training pairs."""
    from cryomaps.data.manifest import filter_split, read_manifest
    from cryomaps.data_root import find_data_root
    from cryomaps.models.weights import load_network
    from cryomaps.workflows.generation import measured_output_resolution

    pairs = filter_split(read_manifest(MANIFEST, data_root=find_data_root()), "train")
    measured = measured_output_resolution(load_network(weights, "generator"), pairs)
    print(f"stage-1 output resolution on the {len(pairs)} training pairs: {measured:.2f} Å")
    return round(measured, 1)


if __name__ == "__main__":
    raise SystemExit(main())
