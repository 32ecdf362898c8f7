"""Timing of a command as a user runs it, shared by the benchmarks (``scripts/bench_*.py``)."""

from __future__ import annotations

import resource
import subprocess
import tempfile
import time


def run_timed(command: list[str], env: dict | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``command`` in a fresh scratch folder (so that ``python -m`` finds the installed or
    ``PYTHONPATH`` cryomaps, not the current folder's).

    Returns:
        (wall seconds, user + system CPU seconds of the child process, the completed process with
        its captured output).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, completed
