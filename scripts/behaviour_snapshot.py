"""Behaviour snapshot: run a fixed set of cryomaps commands and compare their outputs between two trees.

A refactor that must not change behaviour is checked by running this script on the tree before and
after it and comparing the two output folders::

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before python scripts/behaviour_snapshot.py run /tmp/snap_before --inputs /tmp/snap_inputs
    python scripts/behaviour_snapshot.py run /tmp/snap_after --inputs /tmp/snap_inputs
    python scripts/behaviour_snapshot.py compare /tmp/snap_before /tmp/snap_after

``run`` uses whichever ``cryomaps`` the interpreter imports (``PYTHONPATH`` picks the tree). The
synthetic half maps are written once into ``--inputs`` and reused, so both trees read identical inputs.
``compare`` reports, per output file, the largest absolute difference relative to the largest absolute
value of the first tree's file (maps: voxels; CSV/JSON: every number, strings such as paths left out) and
exits 1 when one exceeds ``--tolerance`` (1e-6) or a file is missing.

Commands (shared data of ``../shared/data``): simulate molmap / Peng blur / Peng finite of 5NI1 on
EMD-3488's grid; generate 6VYB-NTD like EMD-21457; locres single map (network, with and without flip averaging) on EMD-21457 and half-map
locres on a synthetic helix-bundle pair; evaluate one pair and a two-pair manifest report; curate the
example manifest.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("CRYOMAPS_DATA_ROOT", REPO.parent / "shared" / "data"))


def make_inputs(folder: Path) -> dict[str, Path]:
    """Synthetic half maps and a two-pair manifest, written once (reused by every later run)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: folder / f"synthetic_{key}.mrc" for key in ("half1", "half2", "mask")}
    paths["manifest"] = folder / "two_pairs.csv"
    if not paths["half1"].exists():
        from cryomaps.data.synthetic import helix_bundle, synthesize_half_maps, two_region_resolution, write_synthetic

        bundle = helix_bundle()
        pair = synthesize_half_maps(bundle, two_region_resolution(bundle.coords, 3.0, 6.0), voxel_size=1.0, seed=0)
        write_synthetic(pair, folder)
    if not paths["manifest"].exists():
        rows = list(csv.DictReader(open(REPO / "data_manifests" / "example_pairs.csv")))
        keep = [row for row in rows if row["name"].startswith(("EMD-21457", "EMD-2566"))]
        with open(paths["manifest"], "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(keep)
    return paths


def commands(out: Path, inputs: dict[str, Path]) -> list[list[str]]:
    pairs = data_root() / "pairs"
    model_3488 = str(pairs / "EMD-3488_hemoglobin" / "5ni1.cif")
    map_3488 = str(pairs / "EMD-3488_hemoglobin" / "emd_3488.mrc")
    model_21457 = str(pairs / "EMD-21457_spike_NTD_segment" / "6vyb_Ndom.pdb")
    map_21457 = str(pairs / "EMD-21457_spike_NTD_segment" / "emd_21457_seg.mrc")
    like = ["--like", map_3488, "--device", "cpu"]
    return [
        ["simulate", model_3488, "-o", str(out / "molmap.mrc"), "--model", "molmap", "--resolution", "3.2", *like],
        ["simulate", model_3488, "-o", str(out / "peng_blur.mrc"), "--resolution", "3.2", *like],
        ["simulate", model_3488, "-o", str(out / "peng_finite.mrc"), "--resolution", "3.2",
         "--resolution-mode", "finite", *like],
        ["generate", model_21457, "-o", str(out / "generated.mrc"), "--like", map_21457, "--device", "cpu"],
        ["locres", map_21457, "-o", str(out / "locres_network.mrc"), "--mask-out", str(out / "locres_mask.mrc"),
         "--device", "cpu"],
        ["locres", map_21457, "-o", str(out / "locres_network_one_pass.mrc"), "--no-flip-average", "--device", "cpu"],
        ["locres", "--half1", str(inputs["half1"]), "--half2", str(inputs["half2"]), "--mask", str(inputs["mask"]),
         "-o", str(out / "locres_halves.mrc"), "--device", "cpu"],
        ["evaluate", "--pred", str(out / "generated.mrc"), "--ref", map_21457, "--model", model_21457,
         "--json", str(out / "evaluate_pair.json")],
        ["evaluate", f"manifest={inputs['manifest']}", f"out={out / 'evaluate_report'}",
         f"data_root={data_root()}", "methods=[generator,molmap_reported,peng]", "tiling.device=cpu"],
        ["curate", "--out", str(out / "curated"), str(REPO / "data_manifests" / "example_pairs.csv"),
         f"data_root={data_root()}"],
    ]


def run(out: Path, inputs_folder: Path) -> None:
    inputs = make_inputs(inputs_folder)
    out.mkdir(parents=True, exist_ok=True)
    import cryomaps

    print(f"cryomaps from {Path(cryomaps.__file__).parent}")
    for arguments in commands(out, inputs):
        print("cryomaps", " ".join(arguments), flush=True)
        subprocess.run([sys.executable, "-m", "cryomaps.cli", *arguments], check=True, stdout=subprocess.DEVNULL)


def numbers_of(path: Path) -> np.ndarray:
    """The numbers a file holds, in order (maps: voxels; models: x, y, z, B; text: every number)."""
    suffix = path.name.lower()
    if suffix.endswith((".mrc", ".map", ".mrc.gz")):
        import mrcfile

        with mrcfile.open(path, permissive=True) as handle:
            return np.asarray(handle.data, dtype=np.float64).ravel()
    if suffix.endswith(".npz"):
        with np.load(path) as archive:
            return np.concatenate([_numbers_of_array(archive[key]) for key in sorted(archive)])
    if suffix.endswith((".png", ".ckpt", ".pt")):
        return np.zeros(0)
    if suffix.endswith(".json"):
        return np.array(_json_numbers(_drop_timings(json.loads(path.read_text()))), dtype=np.float64)
    with open(path, newline="") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    return np.array([float(cell) for cell in cells if _is_number(cell)], dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _json_numbers(value) -> list[float]:
    """The numbers of a JSON value in key order (strings such as paths are not numbers)."""
    if isinstance(value, dict):
        return [number for key in sorted(value) for number in _json_numbers(value[key])]
    if isinstance(value, list):
        return [number for item in value for number in _json_numbers(item)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


def _numbers_of_array(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind in "US":
        return np.array(_json_numbers(json.loads(str(array))), dtype=np.float64)
    return np.asarray(array, dtype=np.float64).ravel()


def _drop_timings(value):
    """JSON without wall-clock fields (``seconds``, ``time``, ``*_s``), which differ between any two runs."""
    if isinstance(value, dict):
        return {key: _drop_timings(item) for key, item in value.items()
                if not (key in ("seconds", "time", "elapsed") or key.endswith("_s") or "version" in key)}
    if isinstance(value, list):
        return [_drop_timings(item) for item in value]
    return value


def compare(first: Path, second: Path, tolerance: float) -> int:
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    worst, failures = 0.0, 0
    for relative in files:
        if (second / relative).suffix == ".png":
            continue
        if not (second / relative).exists():
            print(f"{relative}: missing in {second}")
            failures += 1
            continue
        a, b = numbers_of(first / relative), numbers_of(second / relative)
        if a.shape != b.shape:
            print(f"{relative}: {a.size} numbers against {b.size}")
            failures += 1
            continue
        finite = np.isfinite(a)
        scale = max(float(np.abs(a[finite]).max(initial=0.0)), 1e-30)
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        with np.errstate(invalid="ignore"):
            difference = np.where(same, 0.0, np.abs(np.where(finite, a, np.inf) - b))
        relative_difference = float(difference.max(initial=0.0)) / scale
        worst = max(worst, relative_difference)
        flag = "" if relative_difference <= tolerance else "  <-- above tolerance"
        failures += bool(flag)
        print(f"{str(relative):60s} {a.size:10d} numbers  max|Δ|/max|a| = {relative_difference:.2e}{flag}")
    print(f"{len(files)} files, worst {worst:.2e}, {failures} above {tolerance:g} or missing")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="run the command set into OUT")
    run_parser.add_argument("out", type=Path)
    run_parser.add_argument("--inputs", type=Path, required=True, help="folder for the shared synthetic inputs")
    compare_parser = sub.add_parser("compare", help="compare two output folders")
    compare_parser.add_argument("first", type=Path)
    compare_parser.add_argument("second", type=Path)
    compare_parser.add_argument("--tolerance", type=float, default=1e-6)
    arguments = parser.parse_args()
    if arguments.action == "run":
        run(arguments.out, arguments.inputs)
    else:
        sys.exit(compare(arguments.first, arguments.second, arguments.tolerance))


if __name__ == "__main__":
    main()
