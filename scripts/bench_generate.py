"""Benchmark ``cryomaps generate`` (bundled generator) on shared structures; prints a table, writes JSON.

Each case runs the whole command in a fresh process (read model, render the input, tiled
generator, write the map), as a user would, and reports the median wall time over ``--repeats``
runs plus the time spent inside the generator alone (from an in-process run).

    python scripts/bench_generate.py [--structures 1rb8_645res.pdb 5fuu_2494res.pdb] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_STRUCTURES = ("1rb8_645res.pdb", "5fuu_2494res.pdb")


def time_command(model: Path, output: Path, extra: list[str]) -> float:
    """Wall seconds of one ``cryomaps generate`` run in a fresh Python process."""
    command = [sys.executable, "-m", "cryomaps.cli", "generate", str(model), "-o", str(output), *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def generator_seconds(model: Path) -> dict:
    """Seconds spent rendering the input and running the tiled generator, measured in-process."""
    import torch

    from cryomaps.data.curate import RenderOptions, min_max, render_input
    from cryomaps.inference.generate import TilingOptions, prediction_grid
    from cryomaps.io.weights import bundled_weights_path
    from cryomaps.inference.tiling import predict_tiled
    from cryomaps.io import read_structure
    from cryomaps.io.weights import load_network

    loaded = load_network(bundled_weights_path("generator"), "generator")
    structure = read_structure(model, remove_waters=True, remove_hydrogens=True)
    grid = prediction_grid(structure, float(loaded.metadata["voxel_size"]), 8.0, None)
    started = time.perf_counter()
    simulated = min_max(render_input(structure, grid, RenderOptions(**loaded.metadata["input"])))
    rendered = time.perf_counter()
    tiling = TilingOptions()
    predict_tiled(torch.from_numpy(simulated), loaded.network, tiling.tile_size, tiling.overlap, tiling.mode, tiling.batch_size)
    finished = time.perf_counter()
    return {"atoms": structure.n_atoms, "voxels": grid.n_voxels, "render_s": rendered - started, "generator_s": finished - rendered}


def main() -> int:
    from cryomaps.data_root import find_data_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", nargs="+", default=list(DEFAULT_STRUCTURES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="bench_results/generate.json")
    args = parser.parse_args()
    root = find_data_root()
    if root is None:
        print("shared data not found (set CRYOMAPS_DATA_ROOT)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.structures:
            model = root / "structures" / name
            walls = [time_command(model, Path(scratch) / "out.mrc", []) for _ in range(args.repeats)]
            row = {"structure": name, **generator_seconds(model), "command_median_s": statistics.median(walls), "command_s": walls}
            rows.append(row)
    header = f"{'structure':<22} {'atoms':>7} {'voxels':>9} {'render s':>9} {'generator s':>12} {'command s (median)':>19}"
    print(header)
    for row in rows:
        print(
            f"{row['structure']:<22} {row['atoms']:>7} {row['voxels']:>9} {row['render_s']:>9.2f} "
            f"{row['generator_s']:>12.2f} {row['command_median_s']:>19.2f}"
        )
    load = os.getloadavg()[0]
    print(f"CPU threads: {os.cpu_count()}, load average before the last case: {load:.2f}")
    from cryomaps.io.atomic import write_json_atomically

    output = Path(args.json)
    write_json_atomically(output, {"rows": rows, "cpu_count": os.cpu_count(), "load_average": load}, indent=2)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
