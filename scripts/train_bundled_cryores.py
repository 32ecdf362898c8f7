"""Train the bundled CryoRes network (cryomaps/weights/cryores_small.pt) on CPU.

Reproduces the shipped weights: the 3-level small CryoRes network (``model=cryores_bundled``)
trained on 60 synthetic maps with known local resolution
(:func:`cryomaps.data.synthetic.synthetic_training_volumes`): randomly rotated helix bundles of
random size, the example peptide and three real models from the shared data (2va0A_99res,
1rb8_645res, 3j6r_2868res), radial or two-region resolution fields at 2.5–8 Å, a range of noise
levels, each rendered at a random voxel size of 0.7–1.5 Å and resampled to the network's 1 Å.
Validation volumes use other seeds. AdamW at 2e-3 with a per-step cosine decay over ``--epochs``
epochs of 60 steps (8 patches of 32³); ``--minutes`` only guards the wall time. The exported
weights are then copied into the package. Run from the repository root with the shared data in
place::

    python scripts/train_bundled_cryores.py [--epochs 120] [--run-dir outputs/bundled_cryores]

Every setting is a ``cryomaps train`` override listed below, so the same run is also::

    cryomaps train <the overrides printed by this script>
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryomaps.io.weights import BUNDLED_WEIGHTS

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "cryomaps" / "weights" / BUNDLED_WEIGHTS["cryores"]  # the tracked file, also when not installed editable
STRUCTURES = "[helix_bundle,helix_bundle,example_peptide,2va0A_99res.pdb.gz,1rb8_645res.pdb,3j6r_2868res.pdb]"


def overrides(run_dir: str, epochs: int, minutes: float) -> list[str]:
    """The ``cryomaps train`` overrides of the bundled CryoRes training run."""
    hours, remainder = divmod(int(round(minutes * 60)), 3600)
    return [
        "task=cryores",
        "model=cryores_bundled",
        f"run_dir={run_dir}",
        "data.train_volumes.count=60",
        f"data.train_volumes.structures={STRUCTURES}",
        "data.train_volumes.voxel_size_range=[0.7,1.5]",
        "data.val_volumes.count=6",
        "data.patch_size=32",
        "data.batch_size=8",
        "data.samples_per_volume=8",
        "data.queue_length=160",
        "data.val_samples_per_volume=8",
        "task.learning_rate=2e-3",
        "task.lr_schedule=cosine",
        f"trainer.max_epochs={epochs}",
        f"+trainer.max_time=00:{hours:02d}:{remainder // 60:02d}:{remainder % 60:02d}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=5",
        "checkpoint.every_n_train_steps=50",
        "seed=0",
    ]


def main() -> int:
    from cryomaps.cli import main as cli_main

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=120, help="epochs of 60 steps; the cosine schedule spans them")
    parser.add_argument("--minutes", type=float, default=100.0, help="wall-time limit of the training loop (a safeguard)")
    parser.add_argument("--run-dir", default="outputs/bundled_cryores")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args()
    settings = overrides(args.run_dir, args.epochs, args.minutes) + (["resume=true"] if args.resume else [])
    print("cryomaps train " + " ".join(settings))
    status = cli_main(["train", *settings])
    if status == 0:
        from cryomaps.io.atomic import write_bytes_atomically

        BUNDLED.parent.mkdir(exist_ok=True)
        write_bytes_atomically(BUNDLED, (Path(args.run_dir) / "cryores.pt").read_bytes())
        print(f"copied {args.run_dir}/cryores.pt to {BUNDLED}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
