"""End-to-end benchmark of ``cryomaps simulate`` against a gemmi script on the phiX174 capsid.

Both are whole processes, timed from start to exit (Python start-up and imports included):

- ``cryomaps simulate CAPSID -o OUT.mrc --model peng --voxel-size 1 --padding 10 --device cpu``;
- the gemmi script (:data:`GEMMI_SCRIPT`): ``gemmi.read_structure``, the same box (bounding box +
  10 Å, 1 Å voxels), ``DensityCalculatorE`` with the same Peng/c4322 potential, the atoms' B, no
  blur and the same 1e-5 cutoff, then ``Ccp4Map.write_ccp4_map``.

The runs are interleaved (cryomaps, gemmi, gemmi, cryomaps, ...) after one warm-up run each, so
that load on a shared machine affects both alike; the table shows medians. Memory is each
process's peak resident set size (``ru_maxrss`` from ``os.wait4``; for cryomaps the larger of the
command and the child that parses the structure), and CPU is user + system time. After timing, the two maps are
read back and compared (same grid; correlation and relative L2 difference), so the comparison is
between programs that computed the same thing.

    python scripts/bench_simulate.py [--structure PATH] [--repeats 5] [--json bench_results/simulate.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CAPSID = "1rb8_assembly1_38700res.cif.gz"
VOXEL_SIZE = 1.0
PADDING = 10.0
MEMORY_LIMIT_MIB = 1024

GEMMI_SCRIPT = """
import sys
import gemmi
import numpy as np

path, output, voxel, padding = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
structure = gemmi.read_structure(path)
model = structure[0]
box = model.calculate_box() if hasattr(model, "calculate_box") else structure.calculate_box()
low = np.array(box.minimum.tolist()) - padding
high = np.array(box.maximum.tolist()) + padding
shape = (np.floor((high - low) / voxel) + 1).astype(int)
model.transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(*(-low))))
calculator = gemmi.DensityCalculatorE()
calculator.d_min = 0
calculator.blur = 0
calculator.cutoff = 1e-5
calculator.grid.set_unit_cell(gemmi.UnitCell(*(shape * voxel), 90, 90, 90))
calculator.grid.spacegroup = gemmi.SpaceGroup("P 1")
calculator.grid.set_size(*(int(n) for n in shape))
calculator.put_model_density_on_grid(model)
ccp4 = gemmi.Ccp4Map()
ccp4.grid = calculator.grid
ccp4.update_ccp4_header()
for word, value in zip((50, 51, 52), low):
    ccp4.set_header_float(word, float(value))
ccp4.write_ccp4_map(output)
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structure", default=None, help=f"model file (default: <data root>/structures/{CAPSID})")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each program (default 5)")
    parser.add_argument("--json", default="bench_results/simulate.json", help="where to write the results")
    return parser.parse_args(argv)


def default_structure() -> Path:
    from cryomaps.data_root import find_data_root

    root = find_data_root()
    if root is None:
        sys.exit("shared data not found: set CRYOMAPS_DATA_ROOT or place it at ../shared/data")
    return root / "structures" / CAPSID


def commands(structure: Path, folder: Path) -> dict[str, list[str]]:
    """The two programs' command lines, writing into ``folder``."""
    cryomaps = [sys.executable, "-m", "cryomaps.cli", "simulate", str(structure), "-o", str(folder / "cryomaps.mrc"),
                "--model", "peng", "--voxel-size", str(VOXEL_SIZE), "--padding", str(PADDING), "--device", "cpu"]
    gemmi = [sys.executable, "-c", GEMMI_SCRIPT, str(structure), str(folder / "gemmi.map"), str(VOXEL_SIZE), str(PADDING)]
    return {"cryomaps simulate": cryomaps, "gemmi script": gemmi}


def timed_run(command: list[str]) -> tuple[float, float, float]:
    """Run ``command``; returns (wall seconds, peak resident MiB, CPU seconds user + system). Exits on failure."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} ... failed ({process.returncode}): {stderr.strip()[-500:]}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def agreement(folder: Path) -> dict:
    """Correlation and relative L2 difference of the two written maps (same grid expected)."""
    import numpy as np

    from cryomaps.io import read_map

    ours, theirs = read_map(folder / "cryomaps.mrc"), read_map(folder / "gemmi.map")
    same_grid = ours.data.shape == theirs.data.shape and np.allclose(ours.origin, theirs.origin, atol=1e-3)
    if not same_grid:
        return {"same_grid": False, "shapes": [ours.data.shape, theirs.data.shape]}
    a, b = ours.data.astype(np.float64).ravel(), theirs.data.astype(np.float64).ravel()
    return {
        "same_grid": True,
        "shape": list(ours.data.shape),
        "correlation": float(np.corrcoef(a, b)[0, 1]),
        "relative_l2": float(np.linalg.norm(a - b) / np.linalg.norm(b)),
    }


def main(argv=None) -> int:
    from cryomaps.io.atomic import write_json_atomically

    args = parse_args(argv)
    structure = Path(args.structure) if args.structure else default_structure()
    try:
        import gemmi  # noqa: F401  (the peer)
    except ImportError:
        print("gemmi is not installed: the peer is skipped and nothing is compared")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_simulate_") as temporary:
        folder = Path(temporary)
        programs = commands(structure, folder)
        for command in programs.values():  # warm-up: file cache, compiled bytecode
            timed_run(command)
        samples = {name: [] for name in programs}
        order = list(programs)
        load_at_start = os.getloadavg()[0]
        for repeat in range(args.repeats):
            for name in order if repeat % 2 == 0 else order[::-1]:
                samples[name].append(timed_run(programs[name]))
        compared = agreement(folder)
    results = {
        name: {
            "times_s": [seconds for seconds, _, _ in runs],
            "median_s": statistics.median(seconds for seconds, _, _ in runs),
            "median_cpu_s": statistics.median(cpu for _, _, cpu in runs),
            "peak_memory_mib": max(memory for _, memory, _ in runs),
        }
        for name, runs in samples.items()
    }
    speedup = results["gemmi script"]["median_s"] / results["cryomaps simulate"]["median_s"]
    print_table(structure, results, speedup, compared)
    report = {
        "structure": structure.name,
        "settings": {"model": "peng", "voxel_size_A": VOXEL_SIZE, "padding_A": PADDING, "device": "cpu",
                     "repeats": args.repeats, "interleaved": True, "timing": "whole process, start to exit"},
        "results": results,
        "speedup_vs_gemmi": speedup,
        "agreement": compared,
        "load_average_at_start": load_at_start,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    write_json_atomically(args.json, report)
    print(f"results written to {args.json}")
    return 0


def print_table(structure: Path, results: dict, speedup: float, compared: dict) -> None:
    print(f"{structure.name}: peng, {VOXEL_SIZE:g} Å voxels, box = bounding box + {PADDING:g} Å")
    print("| program | median wall (s) | runs (s) | median CPU (s) | peak memory (MiB) |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        runs = ", ".join(f"{seconds:.2f}" for seconds in result["times_s"])
        flag = "" if result["peak_memory_mib"] <= MEMORY_LIMIT_MIB else f" (over {MEMORY_LIMIT_MIB})"
        print(f"| {name} | {result['median_s']:.2f} | {runs} | {result['median_cpu_s']:.2f} | "
              f"{result['peak_memory_mib']:.0f}{flag} |")
    print(f"cryomaps simulate is {speedup:.2f}x as fast as the gemmi script (wall time; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    if compared.get("same_grid"):
        print(f"maps: grid {tuple(compared['shape'])}, correlation {compared['correlation']:.8f}, "
              f"relative L2 {compared['relative_l2']:.2e}")
    else:
        print(f"maps on different grids: {compared}")


if __name__ == "__main__":
    sys.exit(main())
