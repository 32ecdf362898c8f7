"""Benchmark the classical local-resolution estimator against RELION and time it on a large map.

1. A synthetic half-map pair (helix bundle, x below the median at 3 Å, above at 6 Å; see
   cryomaps.data.synthetic) is analysed by ``cryomaps locres`` (our local FSC) and by
   ``relion_postprocess --locres``. Reported: runtime of each, median estimate per region vs the
   truth, and the Pearson correlation of the two local-resolution maps inside the mask.
2. ``cryomaps locres`` (the command, files in and out) is timed on a 220³ synthetic map at 1.2 Å
   rendered from the phiX174 capsid in the shared data (skipped when the data are absent).

Prints a table and writes JSON (``--json``, default bench_results/locres.json).

    .venv/bin/python scripts/bench_locres.py [--json PATH] [--skip-large] [--device cpu]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LARGE_STRUCTURE = "structures/1rb8_assembly1_38700res.cif.gz"
LARGE_SHAPE = (220, 220, 220)
LARGE_VOXEL = 1.2


def run_ours(paths: dict, output: Path, device: str) -> float:
    """Run ``cryomaps locres`` on the pair as a user would; returns wall seconds."""
    command = [sys.executable, "-m", "cryomaps.cli", "locres", "--half1", str(paths["half1"]),
               "--half2", str(paths["half2"]), "--mask", str(paths["mask"]), "-o", str(output), "--device", device]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"cryomaps locres failed: {completed.stderr.strip()}")
    print("  " + completed.stdout.strip())
    return seconds


def run_relion(paths: dict, folder: Path, voxel_size: float) -> tuple[Path, float] | None:
    """Run ``relion_postprocess --locres`` (25 Å sampling, its defaults otherwise); None if absent."""
    executable = shutil.which("relion_postprocess")
    if executable is None:
        return None
    command = [executable, "--i", str(paths["half1"]), "--i2", str(paths["half2"]), "--o", str(folder / "relion"),
               "--angpix", str(voxel_size), "--locres", "--locres_sampling", "25", "--adhoc_bfac", "0",
               "--mask", str(paths["mask"])]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    output = folder / "relion_locres.mrc"
    if completed.returncode != 0 or not output.is_file():
        raise RuntimeError(f"relion_postprocess failed: {completed.stdout[-2000:]} {completed.stderr[-2000:]}")
    return output, seconds


def region_medians(locres: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict:
    """Median of ``locres`` over the mask voxels of each true resolution value (Å)."""
    return {f"{value:g}": float(np.median(locres[mask & np.isclose(truth, value)])) for value in np.unique(truth[mask])}


def compare_with_relion(device: str) -> dict:
    """Part 1: our estimator and RELION on the same synthetic two-region pair."""
    from cryomaps.data.synthetic import helix_bundle, synthesize_half_maps, two_region_resolution, write_synthetic
    from cryomaps.io import read_map

    bundle = helix_bundle(n_x=8, n_y=3, n_residues=30)
    pair = synthesize_half_maps(bundle, two_region_resolution(bundle.coords, 3.0, 6.0), voxel_size=1.0, seed=0)
    mask = pair.mask.data > 0.5
    truth = pair.true_locres.data
    result = {"grid": list(pair.grid.shape), "voxel_size": 1.0, "truth_median": region_medians(truth, truth, mask)}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        paths = write_synthetic(pair, folder, prefix="pair")
        ours = folder / "ours_locres.mrc"
        seconds = run_ours(paths, ours, device)
        ours_map = read_map(ours).data
        result["cryomaps"] = {"seconds": seconds, "median": region_medians(ours_map, truth, mask),
                              "correlation_with_truth": float(np.corrcoef(ours_map[mask], truth[mask])[0, 1])}
        relion = run_relion(paths, folder, 1.0)
        if relion is None:
            result["relion"] = "relion_postprocess not found"
            return result
        relion_map = read_map(relion[0]).data
        result["relion"] = {"seconds": relion[1], "median": region_medians(relion_map, truth, mask),
                            "correlation_with_truth": float(np.corrcoef(relion_map[mask], truth[mask])[0, 1])}
        result["correlation_in_mask"] = float(np.corrcoef(ours_map[mask], relion_map[mask])[0, 1])
    return result


def time_large_map(device: str) -> dict:
    """Part 2: ``cryomaps locres`` on a 220³ synthetic map at 1.2 Å (with its molecular mask)."""
    from cryomaps.data.synthetic import synthesize_half_maps, two_region_resolution, write_synthetic
    from cryomaps.data_root import find_data_root
    from cryomaps.io import Grid, read_structure

    root = find_data_root()
    if root is None:
        return {"skipped": "shared data not found"}
    structure = read_structure(root / LARGE_STRUCTURE)
    extent = np.asarray(LARGE_SHAPE) * LARGE_VOXEL
    grid = Grid(LARGE_SHAPE, LARGE_VOXEL, structure.coords.mean(axis=0) - extent / 2)
    start = time.perf_counter()
    pair = synthesize_half_maps(structure, two_region_resolution(structure.coords, 3.0, 6.0), grid=grid, seed=0)
    synthesis_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as name:
        paths = write_synthetic(pair, Path(name), prefix="large")
        seconds = run_ours(paths, Path(name) / "large_locres.mrc", device)
    return {"structure": LARGE_STRUCTURE, "atoms": structure.n_atoms, "grid": list(LARGE_SHAPE),
            "voxel_size": LARGE_VOXEL, "mask_fraction": float((pair.mask.data > 0.5).mean()),
            "synthesis_seconds": synthesis_seconds, "cryomaps_seconds": seconds, "device": device}


def print_table(results: dict) -> None:
    comparison = results["comparison"]
    print(f"\nTwo-region synthetic pair {comparison['grid']} at {comparison['voxel_size']} Å (truth 3 / 6 Å)")
    print(f"{'method':<10} {'seconds':>8} {'median 3 Å region':>18} {'median 6 Å region':>18} {'r vs truth':>10}")
    for name in ("cryomaps", "relion"):
        row = comparison[name]
        if isinstance(row, str):
            print(f"{name:<10} {row}")
            continue
        print(f"{name:<10} {row['seconds']:>8.1f} {row['median']['3']:>18.2f} {row['median']['6']:>18.2f} "
              f"{row['correlation_with_truth']:>10.3f}")
    if "correlation_in_mask" in comparison:
        print(f"correlation cryomaps vs RELION inside the mask: {comparison['correlation_in_mask']:.3f}")
    large = results["large"]
    if "skipped" in large:
        print(f"220³ timing skipped: {large['skipped']}")
    else:
        print(f"cryomaps locres on {large['grid']} at {large['voxel_size']} Å ({large['device']}, mask "
              f"{100 * large['mask_fraction']:.0f} % of voxels): {large['cryomaps_seconds']:.1f} s "
              f"(synthesis {large['synthesis_seconds']:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="bench_results/locres.json", help="where to write the results")
    parser.add_argument("--device", default="cpu", help="device for cryomaps locres (cpu)")
    parser.add_argument("--skip-large", action="store_true", help="skip the 220³ timing")
    args = parser.parse_args()
    results = {"comparison": compare_with_relion(args.device)}
    results["large"] = {"skipped": "--skip-large"} if args.skip_large else time_large_map(args.device)
    print_table(results)
    from cryomaps.io.atomic import write_json_atomically

    path = Path(args.json)
    write_json_atomically(path, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
