"""Benchmark ``cryomaps generate`` (bundled generator) on shared structures; prints a table, writes JSON.

Each run is the whole command in a fresh process (imports, read the model, render the input, tiled
generator, write the map), as a user runs it. Settings compared on the same structures, their
repeats interleaved so that a busy machine slows all alike:

- ``before``: an older cryomaps source tree (``--before SRC``, e.g. ``git archive`` of an older
  commit) with this tree's default tile size and overlap, and its own face padding; only when given;
- ``32/16``: this tree, old tiling;
- ``48/16``: this tree, the default tiling (48³ tiles, 16 voxels overlap, no face padding).

Reported per row: median wall seconds, median user + system CPU seconds of the process
(``resource.getrusage`` of children: less sensitive to other load than wall time), and the seam
ratio of the written map (mean |Δ| between neighbours across tile faces over the mean |Δ|
elsewhere, inside the molecule: voxels above 10 % of the maximum; 1 = no seam; see
:func:`cryomaps.inference.tiling.seam_ratio`). The peer, struc2mapGAN, cannot run here (GPU code,
no CPU path): its published figure is printed for reference (14 s and 20 s on a GPU for structures
of about these sizes).

    python scripts/bench_generate.py [--structures 1rb8_645res.pdb 5fuu_2494res.pdb] [--repeats 5] [--before SRC]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench_timing import run_timed

DEFAULT_STRUCTURES = ("1rb8_645res.pdb", "5fuu_2494res.pdb")
PUBLISHED_PEER = "struc2mapGAN (published figure, GPU; cannot run here): 14 s and 20 s for structures of these sizes"


def settings(before: Path | None) -> dict:
    """name -> (PYTHONPATH or None, tile size, overlap, face padding: None for half the overlap)."""
    from cryomaps.inference.generate import TilingOptions

    default = TilingOptions()
    tiles = f"{default.tile_size}/{default.overlap}"
    rows = {} if before is None else {f"before {tiles}": (str(before), default.tile_size, default.overlap, None)}
    rows["32/16"] = (None, 32, 16, default.face_padding)
    rows[tiles] = (None, default.tile_size, default.overlap, default.face_padding)
    return rows


def run_command(model: Path, output: Path, python_path: str | None, tile_size: int, overlap: int) -> tuple[float, float]:
    """(wall s, CPU s) of one ``cryomaps generate`` run in a fresh process."""
    command = [sys.executable, "-m", "cryomaps.cli", "generate", str(model), "-o", str(output),
               "--tile-size", str(tile_size), "--overlap", str(overlap)]
    env = None if python_path is None else {**os.environ, "PYTHONPATH": python_path}
    wall, cpu, completed = run_timed(command, env)
    if completed.returncode != 0:
        raise RuntimeError(f"cryomaps generate failed: {completed.stderr.strip()[-2000:]}")
    return wall, cpu


def map_seam_ratio(path: Path, tile_size: int, overlap: int, face_padding: int | None) -> float:
    """Seam ratio of a generated map inside the molecule (voxels above 10 % of the maximum)."""
    import torch

    from cryomaps.inference.tiling import seam_ratio, tile_boundary_planes
    from cryomaps.io import read_map

    volume = torch.from_numpy(read_map(path).data)
    planes = [tile_boundary_planes(n, tile_size, overlap, "blend", face_padding) for n in volume.shape]
    return seam_ratio(volume, planes, mask=volume > 0.1 * volume.max())


def output_path(scratch: Path, setting: str) -> Path:
    return scratch / f"{setting.replace('/', '_').replace(' ', '_')}.mrc"


def bench_structure(model: Path, repeats: int, rows: dict, scratch: Path) -> list[dict]:
    """Interleaved repeats of every setting on one structure; medians and seam ratios."""
    timings = {name: {"wall": [], "cpu": []} for name in rows}
    for _ in range(repeats):
        for name, (python_path, tile_size, overlap, _) in rows.items():
            wall, cpu = run_command(model, output_path(scratch, name), python_path, tile_size, overlap)
            timings[name]["wall"].append(wall)
            timings[name]["cpu"].append(cpu)
    results = []
    for name, (python_path, tile_size, overlap, face_padding) in rows.items():
        output = output_path(scratch, name)
        results.append({
            "structure": model.name, "setting": name, "tile_size": tile_size, "overlap": overlap,
            "source": python_path or "this tree", "wall_median_s": statistics.median(timings[name]["wall"]),
            "cpu_median_s": statistics.median(timings[name]["cpu"]), "walls_s": timings[name]["wall"],
            "cpus_s": timings[name]["cpu"], "face_padding": face_padding,
            "seam_ratio": map_seam_ratio(output, tile_size, overlap, face_padding),
        })
    return results


def main() -> int:
    from cryomaps.data_root import find_data_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", nargs="+", default=list(DEFAULT_STRUCTURES))
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each setting (5)")
    parser.add_argument("--before", type=Path, help="an older cryomaps source tree to time side by side")
    parser.add_argument("--json", default="bench_results/generate.json")
    args = parser.parse_args()
    root = find_data_root()
    if root is None:
        print("shared data not found (set CRYOMAPS_DATA_ROOT)", file=sys.stderr)
        return 2
    rows = settings(args.before)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.structures:
            results += bench_structure(root / "structures" / name, args.repeats, rows, Path(scratch))
    print(f"{'structure':<20} {'setting':<14} {'wall s (median)':>16} {'CPU s (median)':>15} {'seam ratio':>11}")
    for row in results:
        print(f"{row['structure']:<20} {row['setting']:<14} {row['wall_median_s']:>16.2f} {row['cpu_median_s']:>15.2f} "
              f"{row['seam_ratio']:>11.3f}")
    print(PUBLISHED_PEER)
    load = os.getloadavg()[0]
    print(f"CPU threads: {os.cpu_count()}, load average at the end: {load:.2f} ({args.repeats} interleaved repeats)")
    from cryomaps.io.atomic import write_json_atomically

    output = Path(args.json)
    write_json_atomically(output, {"rows": results, "repeats": args.repeats, "cpu_count": os.cpu_count(),
                                   "load_average": load, "peer": PUBLISHED_PEER}, indent=2)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
