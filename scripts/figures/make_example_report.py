"""Regenerate ``scripts/figures/example_report/``, the evaluation report shown in the README.

Runs ``cryomaps evaluate`` with the bundled generator and the three baselines on every pair of
``data_manifests/example_pairs.csv`` (the shared data must be in place), then keeps only the files
the README shows: summary.csv, metrics.csv, boxplots.png and the central slices and FSC curves of
the two held-out pairs. Run from anywhere::

    python scripts/figures/make_example_report.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from cryomaps import cli
from cryomaps.io.atomic import write_bytes_atomically

REPO = Path(__file__).resolve().parents[2]
DESTINATION = REPO / "scripts" / "figures" / "example_report"
METHODS = "[generator,molmap_2A,molmap_reported,peng]"
HELD_OUT = ("EMD-3488_hemoglobin", "EMD-21457_spike_NTD_segment")
KEPT = ["summary.csv", "metrics.csv", "boxplots.png"] + [
    f"{kind}_{pair}.png" for pair in HELD_OUT for kind in ("slices", "fsc")
]


def main() -> int:
    """Make the full report in a scratch folder and copy the kept files; returns the exit status."""
    with tempfile.TemporaryDirectory() as scratch:
        manifest = REPO / "data_manifests" / "example_pairs.csv"
        status = cli.main(["evaluate", f"manifest={manifest}", f"out={scratch}", f"methods={METHODS}"])
        if status != 0:
            return status
        DESTINATION.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            write_bytes_atomically(DESTINATION / name, (Path(scratch) / name).read_bytes())
    print(f"kept {', '.join(KEPT)} in {DESTINATION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
