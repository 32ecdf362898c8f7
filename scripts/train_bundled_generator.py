"""Train the bundled struc2map generator (cryomaps/weights/struc2map_small.pt) on CPU.

Reproduces the shipped weights: the small U-Net++ generator trained on the shared example pairs
(``data_manifests/example_pairs.csv``; pairs marked ``val`` are held out), then copied into the
package. Run from the repository root with the shared data in place::

    python scripts/train_bundled_generator.py [--epochs 60] [--run-dir outputs/bundled_generator]

Every setting is a ``cryomaps train`` override listed below, so the same run is also::

    cryomaps train <the overrides printed by this script>
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryomaps.io.weights import BUNDLED_WEIGHTS

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "cryomaps" / "weights" / BUNDLED_WEIGHTS["generator"]  # the tracked file, also when not installed editable


def overrides(run_dir: str, epochs: int) -> list[str]:
    """The ``cryomaps train`` overrides of the bundled generator's training run."""
    return [
        "task=struc2map",
        "model=s2m_small",
        f"run_dir={run_dir}",
        f"data.manifest={REPO / 'data_manifests' / 'example_pairs.csv'}",
        "data.batch_size=8",
        "data.samples_per_volume=32",
        "data.queue_length=128",
        "data.val_samples_per_volume=16",
        "task.learning_rate=3e-4",
        "task.scheduler_patience=8",
        f"trainer.max_epochs={epochs}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "checkpoint.every_n_train_steps=100",
        "seed=0",
    ]


def main() -> int:
    from cryomaps.cli import main as cli_main

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--run-dir", default="outputs/bundled_generator")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args()
    settings = overrides(args.run_dir, args.epochs) + (["resume=true"] if args.resume else [])
    print("cryomaps train " + " ".join(settings))
    status = cli_main(["train", *settings])
    if status == 0:
        from cryomaps.io.atomic import write_bytes_atomically

        BUNDLED.parent.mkdir(exist_ok=True)
        write_bytes_atomically(BUNDLED, (Path(args.run_dir) / "generator.pt").read_bytes())
        print(f"copied {args.run_dir}/generator.pt to {BUNDLED}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
