"""Benchmark ``cryomaps curate`` with ``workers=1`` and ``workers=N``; prints a table, writes JSON.

Each run is the whole command in a fresh process on a fresh output folder (no records to reuse),
as a user would start it; the two settings alternate (1, N, 1, N, ...) so that the load of a
shared machine affects both alike, and the table gives medians. CPU time (user + system) counts
the command and every process it started: this script makes itself the child subreaper (Linux
``prctl``), so the fork server of the worker pool, which the command does not wait for, is
reaped here and its CPU time (with its workers') is counted too. A last run repeats the command
on a finished folder: every pair is reused (resume), nothing is curated.

``--copies K`` lists every manifest row K times under new names, for a longer run (the copies are
curated like new pairs and then rejected as redundant).

    python scripts/bench_curate.py [--manifest data_manifests/example_pairs.csv] [--workers 2] [--copies 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import ctypes
import csv
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
ROOT = Path(__file__).resolve().parents[1]


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux); returns whether it worked."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def run_curate(manifest: Path, out: Path, data_root: Path, workers: int) -> dict:
    """Wall and CPU seconds of one ``cryomaps curate`` run, with all its descendant processes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, "-m", "cryomaps.cli", "curate", str(manifest), "--out", str(out), f"data_root={data_root}", f"workers={workers}"]
    started = time.perf_counter()
    finished = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    reap_orphans()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if finished.returncode not in (0, 1):
        raise SystemExit(f"cryomaps curate failed ({finished.returncode}): {finished.stderr.strip()}")
    return {
        "wall_s": wall,
        "user_s": after.ru_utime - before.ru_utime,
        "system_s": after.ru_stime - before.ru_stime,
        "summary": finished.stdout.strip().splitlines()[-1],
    }


def reap_orphans() -> None:
    """Wait for adopted descendants (the pool's fork server exits once the command has ended)."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def copied_manifest(manifest: Path, copies: int, path: Path) -> Path:
    """``manifest`` with each row listed ``copies`` times (``name`` suffixed ``_copyK`` after the first)."""
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows, columns = list(reader), reader.fieldnames
    repeated = [{**row, "name": row["name"] + (f"_copy{k}" if k else "")} for k in range(copies) for row in rows]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(repeated)
    return path


def main() -> int:
    from cryomaps.data_root import find_data_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=ROOT / "data_manifests" / "example_pairs.csv")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 4], help="manifest sizes to run (each row K times)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="bench_results/curate.json")
    args = parser.parse_args()
    data_root = find_data_root()
    if data_root is None:
        print("shared data not found (set CRYOMAPS_DATA_ROOT): nothing to benchmark", file=sys.stderr)
        return 2
    counted = become_subreaper()
    if not counted:
        print("note: cannot become child subreaper; the CPU time of worker processes is not counted")
    cases = []
    with tempfile.TemporaryDirectory() as scratch:
        for copies in args.copies:
            manifest = copied_manifest(args.manifest, copies, Path(scratch) / f"manifest_x{copies}.csv")
            runs = {1: [], args.workers: []}
            for repeat in range(args.repeats):
                for workers in runs:
                    runs[workers].append(run_curate(manifest, Path(scratch) / f"out_{copies}_{workers}_{repeat}", data_root, workers))
            resume = run_curate(manifest, Path(scratch) / f"out_{copies}_{args.workers}_0", data_root, args.workers)
            cases.append({"copies": copies, "pairs": copies * _count_rows(args.manifest), "runs": {str(w): r for w, r in runs.items()}, "resume": resume})
    print_table(cases, args.workers)
    load = os.getloadavg()[0]
    print(f"CPU threads: {os.cpu_count()}, load average at the end: {load:.2f}; descendants' CPU counted: {counted}")
    from cryomaps.io.atomic import write_json_atomically

    output = Path(args.json)
    payload = {"cases": cases, "workers": args.workers, "repeats": args.repeats, "cpu_count": os.cpu_count(), "load_average": load}
    write_json_atomically(output, payload, indent=2)
    print(f"wrote {output}")
    return 0


def _count_rows(manifest: Path) -> int:
    with open(manifest, newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def print_table(cases: list[dict], workers: int) -> None:
    """Medians per case: wall and CPU for workers=1 and workers=N, speed-up, and the resume run."""
    print(f"{'pairs':>5} {'w=1 wall s':>10} {'w=1 cpu s':>9} {f'w={workers} wall s':>10} {f'w={workers} cpu s':>9} {'speed-up':>8} {'resume wall s':>13}")
    for case in cases:
        serial, parallel = case["runs"]["1"], case["runs"][str(workers)]
        wall_1, wall_n = (statistics.median(r["wall_s"] for r in runs) for runs in (serial, parallel))
        cpu_1, cpu_n = (statistics.median(r["user_s"] + r["system_s"] for r in runs) for runs in (serial, parallel))
        case["median"] = {"wall_1_s": wall_1, "wall_n_s": wall_n, "cpu_1_s": cpu_1, "cpu_n_s": cpu_n, "speed_up": wall_1 / wall_n}
        print(
            f"{case['pairs']:>5} {wall_1:>10.2f} {cpu_1:>9.2f} {wall_n:>10.2f} {cpu_n:>9.2f} "
            f"{wall_1 / wall_n:>8.2f} {case['resume']['wall_s']:>13.2f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
