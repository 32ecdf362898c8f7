"""Train the bundled CryoRes network (cryomaps/weights/cryores_small.pt) on CPU, in two stages.

The 3-level small CryoRes network (``model=cryores_bundled``) is trained on synthetic maps with
known local resolution (:func:`cryomaps.data.synthetic.synthetic_training_volumes`): randomly
rotated helix bundles of random size, the example peptide and real models from the shared data,
radial or two-region resolution fields at 2.5–8 Å, a range of noise levels, each map rendered at a
random voxel size of 0.7–1.5 Å and resampled to the network's 1 Å. Validation volumes use other
seeds; 5fuu_2494res (the unseen structure of ``scripts/bench_locres_network.py``) is never used.

1. ``--stage scratch``: from random weights on 60 maps (seeds 0–59; helix bundles, the peptide,
   2va0A_99res, 1rb8_645res, 3j6r_2868res), AdamW at 2e-3 with a per-step cosine decay over 120
   epochs of 60 steps (8 patches of 32³): about 70 min on 2 cores.
2. ``--stage finetune``: ``cryomaps finetune`` from the first stage's weights on 240 new maps
   (seeds 3000–3239, the same kinds plus 5fjj_5631res), AdamW at 1e-3 with a cosine decay over 30
   epochs of 240 steps: about 75 min.

Each stage writes its run folder; ``--stage finetune`` then copies its weights into the package
(the shipped file). ``--minutes`` only guards the wall time. Run from the repository root with
the shared data in place::

    python scripts/train_bundled_cryores.py --stage scratch   [--run-dir outputs/bundled_cryores]
    python scripts/train_bundled_cryores.py --stage finetune  [--from outputs/bundled_cryores/cryores.pt]

Every setting is a ``cryomaps train`` / ``cryomaps finetune`` override listed below, so each stage is
also the command the script prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

from cryomaps.io.weights import BUNDLED_WEIGHTS

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "cryomaps" / "weights" / BUNDLED_WEIGHTS["cryores"]  # the tracked file, also when not installed editable
SCRATCH_STRUCTURES = ["helix_bundle", "helix_bundle", "example_peptide", "2va0A_99res.pdb.gz", "1rb8_645res.pdb", "3j6r_2868res.pdb"]


class Stage(NamedTuple):
    """One training stage: the ``cryomaps`` command, its default run folder, the synthetic maps
    (count, first seed, structures taken in turn) and the optimisation (learning rate, epochs)."""

    command: str
    run_dir: str
    maps: int
    first_seed: int
    structures: list[str]
    learning_rate: float
    epochs: int


STAGES = {
    "scratch": Stage("train", "outputs/bundled_cryores", 60, 0, SCRATCH_STRUCTURES, 2e-3, 120),
    "finetune": Stage("finetune", "outputs/bundled_cryores_finetune", 240, 3000, [*SCRATCH_STRUCTURES, "5fjj_5631res.cif"], 1e-3, 30),
}


def overrides(stage: str, run_dir: str, minutes: float, start_from: str) -> list[str]:
    """The ``cryomaps train`` (scratch) or ``cryomaps finetune`` overrides of one training stage."""
    settings = STAGES[stage]
    hours, remainder = divmod(int(round(minutes * 60)), 3600)
    arguments = [
        "task=cryores",
        "model=cryores_bundled",
        f"run_dir={run_dir}",
        f"data.train_volumes.count={settings.maps}",
        f"data.train_volumes.seed={settings.first_seed}",
        f"data.train_volumes.structures=[{','.join(settings.structures)}]",
        "data.train_volumes.voxel_size_range=[0.7,1.5]",
        "data.val_volumes.count=6",
        "data.patch_size=32",
        "data.batch_size=8",
        "data.samples_per_volume=8",
        "data.queue_length=160",
        "data.val_samples_per_volume=8",
        f"task.learning_rate={settings.learning_rate:g}",
        "task.lr_schedule=cosine",
        f"trainer.max_epochs={settings.epochs}",
        f"+trainer.max_time=00:{hours:02d}:{remainder // 60:02d}:{remainder % 60:02d}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=5",
        "checkpoint.every_n_train_steps=50",
        "seed=0",
    ]
    return arguments + ([f"ckpt={start_from}"] if stage == "finetune" else [])


def main() -> int:
    from cryomaps.cli import main as cli_main

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=tuple(STAGES), required=True)
    parser.add_argument("--run-dir", default=None, help="run folder (default: the stage's, see STAGES)")
    parser.add_argument("--from", dest="start_from", default=f"{STAGES['scratch'].run_dir}/cryores.pt",
                        help="weights the finetune stage starts from (the scratch stage's)")
    parser.add_argument("--minutes", type=float, default=100.0, help="wall-time limit of the training loop (a safeguard)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args()
    command = STAGES[args.stage].command
    run_dir = args.run_dir or STAGES[args.stage].run_dir
    settings = overrides(args.stage, run_dir, args.minutes, args.start_from) + (["resume=true"] if args.resume else [])
    print(f"cryomaps {command} " + " ".join(settings))
    status = cli_main([command, *settings])
    if status == 0 and args.stage == "finetune":
        from cryomaps.io.atomic import write_bytes_atomically

        BUNDLED.parent.mkdir(exist_ok=True)
        write_bytes_atomically(BUNDLED, (Path(run_dir) / "cryores.pt").read_bytes())
        print(f"copied {run_dir}/cryores.pt to {BUNDLED}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
