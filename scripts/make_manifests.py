"""Regenerate the shipped manifests in ``data_manifests/`` from the shared data.

    python scripts/make_manifests.py [--data-root DIR]

Writes ``struc2mapgan_train.csv`` and ``struc2mapgan_val.csv`` from
``DATA_ROOT/reference/struc2mapgan_{train,val}_pairs.csv`` (published ID lists), and
``example_pairs.csv`` from ``DATA_ROOT/pairs/pairs.csv`` with paths relative to the data root and
the SHA-256 of each file. ``template.csv`` is hand-written and left alone.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

from cryomaps.data.manifest import sha256_of
from cryomaps.data.manifest import ManifestEntry, default_data_root, write_manifest

MANIFEST_DIR = Path(__file__).resolve().parents[1] / "data_manifests"
# Example pairs held out for validation; all other example pairs are training pairs.
EXAMPLE_VAL_PAIRS = ("EMD-3488_hemoglobin", "EMD-21457_spike_NTD_segment")


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV file as dictionaries."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def struc2mapgan_entries(reference_csv: Path, split: str) -> list[ManifestEntry]:
    """Entries of a published struc2mapGAN list (columns EMID, PDBID, Resolution)."""
    return [
        ManifestEntry(
            emdb_id=f"EMD-{row['EMID'].strip()}",
            pdb_id=row["PDBID"].strip().lower(),
            reported_resolution_A=float(row["Resolution"]),
            resolution_certain=True,
            split=split,
        )
        for row in read_csv(reference_csv)
    ]


def example_entry(row: dict, pairs_dir: Path) -> ManifestEntry:
    """Entry of one row of ``pairs/pairs.csv``; unverified or unknown IDs are explained in notes."""
    emdb_match = re.match(r"EMD-\d{4,}", row["emdb_id"])
    pdb_id = row["pdb_id"].strip().lower()
    notes = []
    if emdb_match.group(0) != row["emdb_id"].strip():
        notes.append(f"emdb_id given as '{row['emdb_id']}'")
    if not re.fullmatch(r"[0-9][a-z0-9]{3}", pdb_id):
        notes.append(f"pdb_id given as '{row['pdb_id']}'")
        pdb_id = None
    map_path = pairs_dir / row["map_file"]
    model_path = pairs_dir / row["model_file"]
    resolution = row["reported_resolution_A"].strip()
    return ManifestEntry(
        emdb_id=emdb_match.group(0),
        pdb_id=pdb_id,
        reported_resolution_A=float(resolution) if resolution else None,
        resolution_certain=row["resolution_certain"].strip() == "yes",
        split="val" if row["name"] in EXAMPLE_VAL_PAIRS else "train",
        map_path=map_path,
        model_path=model_path,
        map_sha256=sha256_of(map_path),
        model_sha256=sha256_of(model_path),
        name=row["name"],
        notes="; ".join(notes),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None, help="shared data folder")
    args = parser.parse_args()
    root = (args.data_root or default_data_root()).resolve()
    for split in ("train", "val"):
        entries = struc2mapgan_entries(root / "reference" / f"struc2mapgan_{split}_pairs.csv", split)
        write_manifest(entries, MANIFEST_DIR / f"struc2mapgan_{split}.csv")
    pairs_dir = root / "pairs"
    examples = [example_entry(row, pairs_dir) for row in read_csv(pairs_dir / "pairs.csv")]
    write_manifest(examples, MANIFEST_DIR / "example_pairs.csv", paths_relative_to=root)
    print(f"wrote manifests to {MANIFEST_DIR}")


if __name__ == "__main__":
    main()
