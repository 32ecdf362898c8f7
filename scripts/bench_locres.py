"""Benchmark the classical local-resolution estimator against RELION on synthetic half maps.

Cases (synthetic half maps with a known local-resolution field, :mod:`cryomaps.data.synthetic`):

- ``bundle``: 8 x 3 helix bundle, 89 x 39 x 61 voxels at 1 Å, x below the median at 3 Å, above at 6 Å;
- ``1rb8``: 1RB8 (645 residues, shared data) on a 102 x 122 x 120 grid at 1 Å, 3 Å at the centre
  rising to 6 Å at the edge (radial field);
- ``5fuu``: 5FUU (2,494 residues, shared data), 137 x 152 x 140 voxels at 1 Å, two regions 3 / 6 Å.

Each case is analysed by ``cryomaps locres --half1 --half2 --mask`` and by ``relion_postprocess
--locres`` (25 Å sampling, its defaults otherwise; RELION uses a mask only for a histogram, so it
gets none), each as a fresh process, as a user runs them. The repeats of the two (and of
``--before``, an older cryomaps source tree, when given) are interleaved so that a busy machine
slows all alike; reported are the median wall time and the median user + system CPU time of the
process (``resource.getrusage`` of children, less sensitive to other load). Accuracy: RMSE (Å) and
Pearson correlation against the truth inside the molecular mask, and the median estimate per true
value for the two-region cases. A ``--large`` run also times ``cryomaps locres`` on a 220³ map.

Prints a table and writes JSON (``--json``, default bench_results/locres.json).

    .venv/bin/python scripts/bench_locres.py [--cases bundle 1rb8 5fuu] [--repeats 5] [--before SRC] [--large]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_timing import run_timed

CASES = ("bundle", "1rb8", "5fuu")
LARGE_STRUCTURE = "structures/1rb8_assembly1_38700res.cif.gz"
LARGE_SHAPE = (220, 220, 220)
LARGE_VOXEL = 1.2


def synthetic_case(name: str):
    """The half maps of case ``name`` (see the module docstring); None when the shared data are absent."""
    from cryomaps.data.synthetic import helix_bundle, radial_resolution, synthesize_half_maps, two_region_resolution
    from cryomaps.data_root import find_data_root
    from cryomaps.io import Grid, read_structure

    if name == "bundle":
        bundle = helix_bundle(n_x=8, n_y=3, n_residues=30)
        return synthesize_half_maps(bundle, two_region_resolution(bundle.coords, 3.0, 6.0), voxel_size=1.0, seed=0)
    root = find_data_root()
    if root is None:
        return None
    if name == "1rb8":
        structure = read_structure(root / "structures/1rb8_645res.pdb", remove_waters=True, remove_hydrogens=True)
        shape = np.array([102, 122, 120])
        grid = Grid(tuple(shape), 1.0, structure.coords.mean(axis=0) - shape / 2)
        return synthesize_half_maps(structure, radial_resolution(structure.coords, 3.0, 6.0), grid=grid, seed=0)
    structure = read_structure(root / "structures/5fuu_2494res.pdb", remove_waters=True, remove_hydrogens=True)
    return synthesize_half_maps(structure, two_region_resolution(structure.coords, 3.0, 6.0), voxel_size=1.0, seed=0)


def cryomaps_command(paths: dict, output: Path, device: str) -> list[str]:
    return [sys.executable, "-m", "cryomaps.cli", "locres", "--half1", str(paths["half1"]), "--half2",
            str(paths["half2"]), "--mask", str(paths["mask"]), "-o", str(output), "--device", device]


def relion_command(executable: str, paths: dict, folder: Path, voxel_size: float) -> list[str]:
    return [executable, "--i", str(paths["half1"]), "--i2", str(paths["half2"]), "--o", str(folder / "relion"),
            "--angpix", str(voxel_size), "--locres", "--locres_sampling", "25", "--adhoc_bfac", "0"]


def accuracy(locres: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict:
    """RMSE (Å), Pearson r and per-true-value medians of ``locres`` inside ``mask``."""
    values = np.unique(truth[mask])
    medians = {f"{v:g}": float(np.median(locres[mask & np.isclose(truth, v)])) for v in values} if len(values) <= 4 else {}
    return {"rmse": float(np.sqrt(np.mean((locres[mask] - truth[mask]) ** 2))),
            "correlation_with_truth": float(np.corrcoef(locres[mask], truth[mask])[0, 1]), "median": medians}


def bench_case(name: str, repeats: int, device: str, before: Path | None) -> dict:
    """Interleaved repeats of every method on one case; medians and accuracy."""
    from cryomaps.data.synthetic import write_synthetic
    from cryomaps.io import read_map

    pair = synthetic_case(name)
    if pair is None:
        return {"skipped": "shared data not found"}
    mask, truth = pair.mask.data > 0.5, pair.true_locres.data
    voxel = float(pair.grid.voxel_size[0])
    result = {"grid": list(pair.grid.shape), "voxel_size": voxel, "mask_fraction": float(mask.mean())}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        paths = write_synthetic(pair, folder, prefix=name)
        methods = {"cryomaps": (cryomaps_command(paths, folder / "ours.mrc", device), None, folder / "ours.mrc")}
        if before is not None:
            env = {**os.environ, "PYTHONPATH": str(before)}
            methods["cryomaps (before)"] = (cryomaps_command(paths, folder / "before.mrc", device), env, folder / "before.mrc")
        relion = shutil.which("relion_postprocess")
        if relion is None:
            result["relion"] = {"skipped": "relion_postprocess not found on PATH"}
        else:
            methods["relion"] = (relion_command(relion, paths, folder, voxel), None, folder / "relion_locres.mrc")
        timings = {method: {"wall": [], "cpu": []} for method in methods}
        for _ in range(repeats):
            for method, (command, env, output) in methods.items():
                wall, cpu, completed = run_timed(command, env)
                if completed.returncode != 0 or not output.is_file():
                    raise RuntimeError(f"{method} failed: {completed.stdout[-1500:]} {completed.stderr[-1500:]}")
                timings[method]["wall"].append(wall)
                timings[method]["cpu"].append(cpu)
        for method, (_, _, output) in methods.items():
            result[method] = {"wall_s": statistics.median(timings[method]["wall"]),
                              "cpu_s": statistics.median(timings[method]["cpu"]), "walls": timings[method]["wall"],
                              **accuracy(read_map(output).data, truth, mask)}
    return result


def time_large_map(device: str) -> dict:
    """``cryomaps locres`` on a 220³ synthetic map at 1.2 Å (with its molecular mask), one run."""
    from cryomaps.data.synthetic import synthesize_half_maps, two_region_resolution, write_synthetic
    from cryomaps.data_root import find_data_root
    from cryomaps.io import Grid, read_structure

    root = find_data_root()
    if root is None:
        return {"skipped": "shared data not found"}
    structure = read_structure(root / LARGE_STRUCTURE)
    extent = np.asarray(LARGE_SHAPE) * LARGE_VOXEL
    grid = Grid(LARGE_SHAPE, LARGE_VOXEL, structure.coords.mean(axis=0) - extent / 2)
    pair = synthesize_half_maps(structure, two_region_resolution(structure.coords, 3.0, 6.0), grid=grid, seed=0)
    with tempfile.TemporaryDirectory() as name:
        paths = write_synthetic(pair, Path(name), prefix="large")
        wall, cpu, completed = run_timed(cryomaps_command(paths, Path(name) / "large_locres.mrc", device))
    if completed.returncode != 0:
        raise RuntimeError(f"cryomaps locres failed: {completed.stderr.strip()}")
    return {"structure": LARGE_STRUCTURE, "grid": list(LARGE_SHAPE), "voxel_size": LARGE_VOXEL,
            "mask_fraction": float((pair.mask.data > 0.5).mean()), "wall_s": wall, "cpu_s": cpu, "device": device}


def print_table(results: dict) -> None:
    print(f"\n{'case':<8} {'grid':<13} {'method':<18} {'wall s':>7} {'CPU s':>7} {'RMSE Å':>7} {'r':>6}  medians per true value")
    for name, case in results["cases"].items():
        if "skipped" in case:
            print(f"{name:<8} skipped: {case['skipped']}")
            continue
        grid = "x".join(str(n) for n in case["grid"])
        for method, row in case.items():
            if not isinstance(row, dict):
                continue
            if "skipped" in row:
                print(f"{name:<8} {grid:<13} {method:<18} skipped: {row['skipped']}")
                continue
            medians = ", ".join(f"{k} Å: {v:.2f}" for k, v in row["median"].items())
            print(f"{name:<8} {grid:<13} {method:<18} {row['wall_s']:>7.2f} {row['cpu_s']:>7.2f} {row['rmse']:>7.3f} "
                  f"{row['correlation_with_truth']:>6.3f}  {medians}")
        if isinstance(case.get("relion"), dict) and "wall_s" in case["relion"]:
            ours, relion = case["cryomaps"], case["relion"]
            print(f"{'':<8} RELION / cryomaps: wall {relion['wall_s'] / ours['wall_s']:.2f}x, CPU {relion['cpu_s'] / ours['cpu_s']:.2f}x")
    large = results.get("large")
    if large and "skipped" not in large:
        print(f"cryomaps locres on {large['grid']} at {large['voxel_size']} Å ({large['device']}, mask "
              f"{100 * large['mask_fraction']:.0f} % of voxels): {large['wall_s']:.1f} s wall, {large['cpu_s']:.1f} s CPU")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each method (5)")
    parser.add_argument("--before", type=Path, help="an older cryomaps source tree to time side by side")
    parser.add_argument("--json", default="bench_results/locres.json", help="where to write the results")
    parser.add_argument("--device", default="cpu", help="device for cryomaps locres (cpu)")
    parser.add_argument("--large", action="store_true", help="also time a 220³ map (one run)")
    args = parser.parse_args()
    results = {"repeats": args.repeats, "cpu_count": os.cpu_count(),
               "cases": {name: bench_case(name, args.repeats, args.device, args.before) for name in args.cases}}
    if args.large:
        results["large"] = time_large_map(args.device)
    print_table(results)
    from cryomaps.io.atomic import write_json_atomically

    path = Path(args.json)
    write_json_atomically(path, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
