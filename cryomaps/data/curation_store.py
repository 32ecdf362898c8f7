"""Curation at scale: per-pair records (resume), shards of a manifest and a bounded process pool.

A curated folder keeps one JSON record per curated pair, ``OUT/records/NAME.json``, written
atomically right after the pair's ``NAME.npz``. It holds what the report and the cross-pair
redundancy filter need (scores, failed per-pair filters, chain sequences) and a *fingerprint*: the
SHA-256 of the curation settings, the manifest row (ids, resolution, split, paths and expected
digests), the size and modification time of the map and model files and the cryomaps version.
A later run whose fingerprint for a pair matches reuses the record instead of curating the pair
again; any change of settings, row or input file curates it again.

Shards: ``shard=i/n`` takes the manifest rows whose 0-based index ``r`` has ``r mod n == i`` (an
interleaved assignment: a manifest sorted by size spreads evenly over a job array).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from cryomaps import __version__
from cryomaps.data.manifest import ManifestEntry
from cryomaps.errors import CryomapsError, InputError
from cryomaps.io.atomic import write_json_atomically

RECORDS_DIR = "records"
RECORD_VERSION = 1
# Modules the worker processes import once, in the fork server, before forking each worker.
WORKER_PRELOAD = ("cryomaps.data.curate", "cryomaps.render", "cryomaps.metrics")

_SHARD = re.compile(r"^(\d+)/(\d+)$")


@dataclass
class PairRecord:
    """What curating one pair found, without its arrays (lengths in Å, fractions in [0, 1]).

    Attributes:
        fingerprint: see the module docstring.
        reasons: failed per-pair filters (redundancy, a cross-pair filter, is not included).
        sequences: chain sequences compared for redundancy (3-letter names), ``None`` when the
            model could not be read.
        file: ``NAME.npz`` when the pair passed the per-pair filters and its arrays were written.
        map_voxel_size: (3,) voxel size of the experimental map.
        voxel_size: (3,) and ``box_shape`` (3,): the curated grid.
        n_atoms, fraction_inside, correlation, correlation_resolution: as in the report.
    """

    fingerprint: str
    reasons: list[str]
    sequences: list[list[str]] | None = None
    file: str | None = None
    map_voxel_size: list[float] | None = None
    voxel_size: list[float] | None = None
    box_shape: list[int] | None = None
    n_atoms: int | None = None
    fraction_inside: float | None = None
    correlation: float | None = None
    correlation_resolution: float | None = None


def record_path(out_dir: Path, file_stem: str) -> Path:
    return out_dir / RECORDS_DIR / f"{file_stem}.json"


def write_record(out_dir: Path, file_stem: str, record: PairRecord) -> Path:
    """Write ``record`` atomically as ``OUT/records/<file_stem>.json``."""
    return write_json_atomically(record_path(out_dir, file_stem), {"version": RECORD_VERSION, **asdict(record)})


def read_record(out_dir: Path, file_stem: str) -> PairRecord | None:
    """The stored record of a pair, or ``None`` when absent, unreadable or of another version."""
    try:
        stored = json.loads(record_path(out_dir, file_stem).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.pop("version", None) != RECORD_VERSION:
        return None
    if set(stored) != {f.name for f in fields(PairRecord)}:
        return None
    return PairRecord(**stored)


def fingerprint(entry: ManifestEntry, settings: dict) -> str:
    """SHA-256 (hex) identifying the curation of ``entry`` with ``settings`` (plain containers)."""
    row = asdict(entry)
    for ignored in ("line", "notes"):  # moving a row or editing its notes changes nothing curated
        row.pop(ignored)
    identity = {
        "version": __version__,
        "settings": settings,
        "entry": {key: None if value is None else str(value) for key, value in row.items()},
        "map_file": _file_identity(entry.map_path),
        "model_file": _file_identity(entry.model_path),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _file_identity(path: Path | None) -> list[int] | None:
    """[size in bytes, modification time in ns] of a file, ``None`` when absent."""
    if path is None:
        return None
    try:
        status = os.stat(path)
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns]


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the manifest rows ``r`` (0-based) with ``r mod count == index``."""

    index: int
    count: int

    def select(self, entries: list) -> list:
        return entries[self.index :: self.count]

    @property
    def report_suffix(self) -> str:
        """``shard-i-of-n``, as in ``curation_report.shard-i-of-n.csv``."""
        return f"shard-{self.index}-of-{self.count}"


def parse_shard(value) -> Shard | None:
    """``shard=`` as given on the command line: ``None`` (no sharding) or ``"i/n"`` with 0 ≤ i < n.

    Raises:
        InputError: anything else, naming the option and the value.
    """
    if value is None:
        return None
    match = _SHARD.match(str(value).strip())
    if match is None or not int(match[1]) < int(match[2]):
        raise InputError(None, f"shard={value}: expected i/n with 0 <= i < n (e.g. shard=0/4)")
    return Shard(int(match[1]), int(match[2]))


def parse_workers(value) -> int:
    """``workers=``: a whole number of worker processes, at least 1.

    Raises:
        InputError: anything else, naming the option and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(None, f"workers={value}: expected a whole number of processes >= 1")
    return value


def parse_merge(value, shard) -> bool:
    """``merge=``: true or false; true joins every shard, so it excludes ``shard=``.

    Raises:
        InputError: not a boolean, or given together with a shard.
    """
    if not isinstance(value, bool):
        raise InputError(None, f"merge={value}: expected true or false")
    if value and shard is not None:
        raise InputError(None, f"merge=true joins every shard: leave out shard={shard}")
    return value


@contextmanager
def worker_pool(workers: int) -> Iterator[Executor | None]:
    """A pool of ``workers`` processes for :func:`map_in_order`, or ``None`` (in process) for 1.

    The workers fork from a fork server that has imported :data:`WORKER_PRELOAD` once (no
    OpenMP state is inherited from this process) and split the CPU cores this process may use
    (its affinity, e.g. a cluster job's allocation) between them for torch.
    """
    if workers == 1:
        yield None
        return
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // workers)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_set_torch_threads, initargs=(threads,)) as pool:
        yield pool


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def map_in_order(function: Callable, items: Iterable, pool: Executor | None, max_in_flight: int) -> Iterator:
    """``function(item)`` for each item, yielded in the order of ``items``.

    With a pool, at most ``max_in_flight`` items are submitted at a time, so that memory stays
    bounded however long ``items`` is; ``function`` must be picklable (top level, or a
    ``functools.partial`` of one).
    """
    if pool is None:
        yield from map(function, items)
        return
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(_call_reporting_errors, function, item))
        if len(pending) >= max_in_flight:
            yield _result(pending.popleft())
    while pending:
        yield _result(pending.popleft())


def _call_reporting_errors(function: Callable, item):
    """``(None, function(item))``, or ``(message, None)`` for a CryomapsError (whose own
    constructor arguments do not survive pickling back to the parent process)."""
    try:
        return None, function(item)
    except CryomapsError as error:
        return str(error), None


def _result(future: Future):
    """The value of a :func:`_call_reporting_errors` future; worker errors raised here, in one line."""
    try:
        message, value = future.result()
    except BrokenProcessPool:
        raise CryomapsError(
            "a worker process ended abruptly (killed, e.g. for lack of memory); what it had finished is kept: "
            "run the same command again to resume"
        ) from None
    if message is not None:
        raise CryomapsError(message)
    return value
