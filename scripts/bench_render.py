"""Benchmark of the density renderer against gemmi's DensityCalculatorE.

Renders the shared structures (``<data root>/structures``, listed in its ``info.json``) with the
Peng potential, point-sampled, at 1 Å on a box = bounding box + 10 Å, with:

- ``cryomaps forward``: :func:`cryomaps.render.render_density` on CPU tensors (the torch implementation);
- ``cryomaps fwd+bwd``: the same plus ``backward()`` of the map's sum to coordinates, B-factors
  and occupancies;
- ``gemmi forward``: ``gemmi.DensityCalculatorE`` with the same c4322 coefficients and B-factors,
  no blur, cutoff 1e-5, on a P1 cell with exactly the same grid points;
- on a CUDA machine, also the Triton kernels, which CUDA tensors use (``triton forward``, ``triton fwd+bwd``).

What the comparison does (also written to the JSON as ``settings.comparison``): both programs
evaluate the same potential (ITC 4.3.2.2 / Peng coefficients, each atom's B, no blur) at the same
voxel centres, in float32, and cut each atom at the same radius: where its density at occupancy 1
falls below 1e-5. gemmi then evaluates the voxels inside the *sphere* of that radius, cryomaps those
inside the *cube* of that half-width (about 1.9x as many voxels, slightly more accurate). Times
include everything each program does per render (cryomaps: input checks, radii, grid allocation;
gemmi: zeroing its grid). Both run on one thread (the CPU renderer's choice, measured in
:mod:`cryomaps.render.gaussian_torch`); each case records the 1-minute load average at its start,
since timings on a shared machine depend on the load.

Each case runs in its own subprocess (one warm-up, then ``--repeats`` timed runs; median reported).
Memory: on CPU, the peak resident set size of that subprocess (``ru_maxrss``), which includes the
interpreter, torch and the structure, and that peak minus the resident size just before the first
render (the memory the rendering itself added); on CUDA, ``torch.cuda.max_memory_allocated``.

    python scripts/bench_render.py [--structures 5fuu 1rb8_assembly] [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

VOXEL_SIZE = 1.0
PADDING = 10.0
CPU_CASES = ("gemmi forward", "cryomaps forward", "cryomaps fwd+bwd")
CUDA_CASES = ("triton forward", "triton fwd+bwd")
COMPARISON = (
    "same Peng/c4322 potential, per-atom B, no blur, float32, point-sampled at the same voxel centres; "
    "each atom cut at the radius where its density (occupancy 1) falls below 1e-5: gemmi evaluates the "
    "voxels inside the sphere of that radius, cryomaps those inside the cube of that half-width "
    "(about 1.9x as many voxels); both on one CPU thread; times include input checks, cutoff radii and "
    "grid allocation"
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", nargs="*", default=None,
                        help="substrings of the structure file names to run (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (default 5)")
    parser.add_argument("--cases", nargs="*", default=None, help="cases to run (default: all available)")
    parser.add_argument("--json", default="bench_results/render.json", help="where to write the results")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def resident_mib() -> float:
    """Current resident set size of this process (MiB), from /proc (Linux)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_resident_mib() -> float:
    """Peak resident set size of this process so far (MiB); ru_maxrss is in KiB on Linux."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gemmi_runner(path: Path, grid):
    """A function that computes gemmi's density of ``path`` on the points of ``grid``."""
    import gemmi
    import numpy as np

    structure = gemmi.read_structure(str(path))
    for cra in structure[0].all():
        position = cra.atom.pos
        cra.atom.pos = gemmi.Position(*(np.array([position.x, position.y, position.z]) - grid.origin))
    calculator = gemmi.DensityCalculatorE()
    calculator.d_min = 0  # the grid is set explicitly below
    calculator.blur = 0
    calculator.cutoff = 1e-5
    calculator.grid.set_unit_cell(gemmi.UnitCell(*grid.extent, 90, 90, 90))
    calculator.grid.spacegroup = gemmi.SpaceGroup("P 1")
    calculator.grid.set_size(*grid.shape)
    return lambda: calculator.put_model_density_on_grid(structure[0])


def cryomaps_runner(structure, grid, backward: bool, device: str):
    """A function that renders ``structure`` on ``grid`` (and back-propagates when asked)."""
    import torch

    from cryomaps.render import render_density

    tensors = structure.to_tensors(device=device, dtype=torch.float32)

    def run():
        inputs = [tensors[name].clone().requires_grad_(backward) for name in ("coords", "b_factors", "occupancies")]
        density = render_density(inputs[0], tensors["atomic_numbers"], grid, b_factors=inputs[1], occupancies=inputs[2])
        if backward:
            density.sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def run_worker(spec: dict) -> dict:
    """Time one case in this process: load, warm up, then ``repeats`` timed runs."""
    import torch

    from cryomaps.io import Grid, read_structure

    load_at_start = os.getloadavg()[0]

    path = Path(spec["path"])
    structure = read_structure(path)
    grid = Grid.around(structure.coords, voxel_size=VOXEL_SIZE, padding=PADDING)
    case = spec["case"]
    device = "cuda" if case.startswith("triton") else "cpu"
    if case == "gemmi forward":
        runner = gemmi_runner(path, grid)
    else:
        runner = cryomaps_runner(structure, grid, backward=case.endswith("fwd+bwd"), device=device)
    resident_before = resident_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runner()
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        runner()
        times.append(time.perf_counter() - start)
    result = {
        "structure": path.name,
        "case": case,
        "atoms": structure.n_atoms,
        "grid": list(grid.shape),
        "voxels": grid.n_voxels,
        "times_s": times,
        "median_s": statistics.median(times),
        "threads": 1 if device == "cpu" else None,  # gemmi and the CPU renderer run on one thread
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load_at_start,
    }
    if device == "cuda":
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["memory_measure"] = "torch.cuda.max_memory_allocated"
    else:
        result["peak_memory_mib"] = peak_resident_mib()
        result["added_memory_mib"] = result["peak_memory_mib"] - resident_before
        result["memory_measure"] = "ru_maxrss of the case's process; added = peak - VmRSS before rendering"
    return result


def run_case(path: Path, case: str, repeats: int) -> dict:
    spec = json.dumps({"path": str(path), "case": case, "repeats": repeats})
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", spec], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        return {"structure": path.name, "case": case, "error": completed.stderr.strip().splitlines()[-1:]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def structure_paths(names) -> list[Path]:
    from cryomaps.data_root import find_data_root

    root = find_data_root()
    if root is None:
        sys.exit("shared data not found: set CRYOMAPS_DATA_ROOT or place it at ../shared/data")
    entries = json.loads((root / "structures" / "info.json").read_text())
    entries.sort(key=lambda entry: entry["n_atoms"])
    paths = [root / "structures" / entry["file"] for entry in entries]
    if names:
        paths = [p for p in paths if any(name in p.name for name in names)]
    return paths


def print_table(results: list[dict]) -> None:
    medians = {(r["structure"], r["case"]): r["median_s"] for r in results if "median_s" in r}
    header = (
        f"{'structure':32} {'case':17} {'atoms':>7} {'voxels':>10} {'median s':>9} {'atoms/s':>10} "
        f"{'peak MiB':>8} {'added MiB':>9} {'vs gemmi':>8} {'bwd/fwd':>7} {'threads':>7} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        if "error" in r:
            print(f"{r['structure']:32} {r['case']:17} failed: {r['error']}")
            continue
        gemmi_time = medians.get((r["structure"], "gemmi forward"))
        ratio_text = f"{gemmi_time / r['median_s']:.2f}x" if gemmi_time else "-"
        forward_time = medians.get((r["structure"], r["case"].replace("fwd+bwd", "forward")))
        backward_text = f"{r['median_s'] / forward_time:.2f}" if r["case"].endswith("fwd+bwd") and forward_time else "-"
        added = r.get("added_memory_mib")
        print(
            f"{r['structure']:32} {r['case']:17} {r['atoms']:7d} {r['voxels']:10d} {r['median_s']:9.4f} "
            f"{r['atoms'] / r['median_s']:10.0f} {r['peak_memory_mib']:8.0f} "
            f"{'-' if added is None else f'{added:.0f}':>9} {ratio_text:>8} {backward_text:>7} "
            f"{r['threads'] or '-':>7} {r['load_average_at_start']:5.2f}"
        )
    print("vs gemmi = gemmi forward median / this case's median (above 1: faster than gemmi);")
    print("bwd/fwd = fwd+bwd median / forward median; load = 1-minute load average when the case started.")
    print(f"comparison: {COMPARISON}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    import torch

    cases = list(CPU_CASES) + (list(CUDA_CASES) if torch.cuda.is_available() else [])
    if args.cases:
        cases = [case for case in cases if case in args.cases]
    load_at_start = os.getloadavg()
    results = []
    for path in structure_paths(args.structures):
        for case in cases:
            results.append(run_case(path, case, args.repeats))
            print(f"  done: {path.name} / {case}", file=sys.stderr)
    print_table(results)
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
            "torch": torch.__version__,
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "settings": {"voxel_size": VOXEL_SIZE, "padding": PADDING, "repeats": args.repeats,
                     "model": "peng", "sampling": "point", "dtype": "float32", "cutoff_density": 1e-5,
                     "comparison": COMPARISON},
        "results": results,
    }
    from cryomaps.io.atomic import write_json_atomically

    output = Path(args.json)
    write_json_atomically(output, report)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
