"""Download the EMDB maps and PDB models of a manifest: cached, checksummed, resumable, parallel.

For each manifest entry the map and the model are obtained as follows:

- a ``map_path``/``model_path`` given in the manifest is a local file: it is used as it is
  (checked against ``map_sha256``/``model_sha256`` when given), never downloaded;
- otherwise the file is downloaded from a URL built from a template (``str.format`` fields:
  ``{emdb_id}`` ``EMD-0136``, ``{emdb_number}`` ``0136`` for maps; ``{pdb_id}`` ``6h3n``,
  ``{pdb_id_upper}`` ``6H3N``, ``{pdb_mid}`` ``h3`` (2nd and 3rd characters) for models) into
  ``OUT/maps/emd_<number><suffixes>`` or ``OUT/models/<pdb_id><suffixes>``, the suffixes
  (``.map.gz``, ``.cif.gz``) being those of the URL's file name.

A download goes to ``<file>.part`` and is renamed only once verified: size against
Content-Length, SHA-256 against the manifest when it gives one, else gzip integrity for ``.gz``.
An interrupted ``.part`` is resumed with an HTTP Range request (restarted from zero when the
server ignores the range). Failed attempts are retried with exponential back-off; HTTP errors
other than 408, 429 and 5xx are not retried. A file already present is skipped when its SHA-256
matches the manifest or the record ``OUT/checksums.json`` written by earlier runs.

Outputs in ``OUT``: ``manifest.csv`` (the entries whose files are all present, with absolute
paths and SHA-256 filled in), ``fetch_report.csv`` (one row per entry, with its errors) and
``checksums.json``.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from cryomaps import __version__
from cryomaps.data.manifest import ManifestEntry, sha256_of, write_manifest
from cryomaps.errors import InputError
from cryomaps.io.atomic import write_csv_atomically, write_text_atomically

DEFAULT_EMDB_URL = "https://files.wwpdb.org/pub/emdb/structures/{emdb_id}/map/emd_{emdb_number}.map.gz"
DEFAULT_PDB_URL = "https://files.wwpdb.org/pub/pdb/data/structures/divided/mmCIF/{pdb_mid}/{pdb_id}.cif.gz"
EMDB_URL_FIELDS = ("emdb_id", "emdb_number")
PDB_URL_FIELDS = ("pdb_id", "pdb_id_upper", "pdb_mid")

MANIFEST_NAME = "manifest.csv"
REPORT_NAME = "fetch_report.csv"
RECORD_NAME = "checksums.json"
PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 20
RETRIED_HTTP_CODES = (408, 429)
REPORT_COLUMNS = (
    "name", "emdb_id", "pdb_id", "status", "map_status", "model_status",
    "map_path", "model_path", "error", "retried",
)


class TransientFetchError(Exception):
    """A failed attempt worth retrying (dropped connection, server error, corrupt download)."""


class PermanentFetchError(Exception):
    """A failure that retrying cannot fix (HTTP 404, local file missing)."""


class FetchCancelled(Exception):
    """The fetch was interrupted (Ctrl-C) while this file was in progress."""


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch.

    Attributes:
        emdb_url: URL template of maps (fields ``emdb_id``, ``emdb_number``).
        pdb_url: URL template of models (fields ``pdb_id``, ``pdb_id_upper``, ``pdb_mid``).
        workers: parallel transfers.
        retries: further attempts after a failed one.
        backoff_s: delay before the first retry; doubled for each next one.
        timeout_s: socket timeout of one request.
        progress: show a progress bar.
    """

    emdb_url: str = DEFAULT_EMDB_URL
    pdb_url: str = DEFAULT_PDB_URL
    workers: int = 4
    retries: int = 3
    backoff_s: float = 1.0
    timeout_s: float = 60.0
    progress: bool = True

    def __post_init__(self):
        _check_template(self.emdb_url, EMDB_URL_FIELDS, "EMDB URL template")
        _check_template(self.pdb_url, PDB_URL_FIELDS, "PDB URL template")
        if self.workers < 1:
            raise InputError(None, f"workers must be at least 1, not {self.workers}")
        if self.retries < 0:
            raise InputError(None, f"retries must be 0 or more, not {self.retries}")
        if self.backoff_s < 0 or self.timeout_s <= 0:
            raise InputError(None, "back-off must be >= 0 s and timeout > 0 s")


@dataclass(frozen=True)
class FileJob:
    """One file to obtain: downloaded from ``url``, or a local file when ``url`` is ``None``."""

    kind: str
    path: Path
    url: str | None
    expected_sha256: str | None


@dataclass
class FileOutcome:
    """What happened to one file.

    Attributes:
        status: ``downloaded``, ``cached`` (already present and verified), ``local`` (a local
            manifest path, verified) or ``failed``.
        path: the file, or ``None`` when there was nothing to fetch.
        sha256: hex digest of the file when it is present.
        error: why it failed (empty unless failed).
        retried: messages of the attempts that failed before the last one.
    """

    status: str
    path: Path | None
    sha256: str | None = None
    error: str = ""
    retried: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass
class EntryOutcome:
    """The map and model outcomes of one manifest entry."""

    entry: ManifestEntry
    map: FileOutcome
    model: FileOutcome

    @property
    def ok(self) -> bool:
        return self.map.ok and self.model.ok

    def errors(self) -> str:
        """``map: ...; model: ...`` for the files that failed."""
        return "; ".join(f"{kind}: {o.error}" for kind, o in self._files() if not o.ok)

    def retried(self) -> str:
        """``map attempt 1: ...`` for every retried attempt."""
        return "; ".join(f"{kind} {message}" for kind, o in self._files() for message in o.retried)

    def _files(self) -> tuple:
        """(kind, outcome) of the map and the model."""
        return (("map", self.map), ("model", self.model))


@dataclass
class FetchSummary:
    """Result of :func:`fetch_manifest`: per-entry outcomes and the files written in ``out_dir``."""

    outcomes: list[EntryOutcome]
    out_dir: Path

    @property
    def failed(self) -> list[EntryOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST_NAME

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_NAME

    def lines(self) -> list[str]:
        """A human-readable summary: counts, one line per failed entry, the output files."""
        files = [o for outcome in self.outcomes for o in (outcome.map, outcome.model)]
        counts = {status: sum(o.status == status for o in files) for status in ("downloaded", "cached", "local")}
        n_ok = len(self.outcomes) - len(self.failed)
        lines = [
            f"fetched {len(self.outcomes)} entries into {self.out_dir}: {n_ok} ok, {len(self.failed)} failed "
            f"(files: {counts['downloaded']} downloaded, {counts['cached']} from cache, {counts['local']} local)"
        ]
        lines += [f"FAILED {o.entry.label}: {o.errors()}" for o in self.failed]
        lines.append(f"report: {self.report_path}; manifest of the {n_ok} complete entries: {self.manifest_path}")
        return lines


def fetch_manifest(
    entries: list[ManifestEntry], out_dir: str | os.PathLike, options: FetchOptions | None = None
) -> FetchSummary:
    """Obtain the map and model of every entry (see the module docstring) and write the outputs.

    A failure of one entry never stops the others; it is reported in the summary and in
    ``OUT/fetch_report.csv``.
    """
    options = options or FetchOptions()
    out_dir = Path(out_dir).expanduser().resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(out_dir, f"cannot create the output folder ({error.strerror})") from None
    plans = [(_map_job(entry, out_dir, options), _model_job(entry, out_dir, options)) for entry in entries]
    jobs = {job.path: job for plan in plans for job in plan if isinstance(job, FileJob)}
    done = _run_jobs(list(jobs.values()), out_dir, options)
    outcomes = [
        EntryOutcome(entry, _outcome_of(map_job, done), _outcome_of(model_job, done))
        for entry, (map_job, model_job) in zip(entries, plans)
    ]
    summary = FetchSummary(outcomes, out_dir)
    write_manifest([_fetched_entry(o) for o in outcomes if o.ok], summary.manifest_path)
    _write_report(outcomes, summary.report_path)
    return summary


def url_fields(entry: ManifestEntry) -> dict:
    """Template fields of an entry: EMDB fields always, PDB fields when it has a PDB ID."""
    fields = {"emdb_id": entry.emdb_id, "emdb_number": entry.emdb_number}
    if entry.pdb_id:
        fields.update(pdb_id=entry.pdb_id, pdb_id_upper=entry.pdb_id.upper(), pdb_mid=entry.pdb_id[1:3])
    return fields


def _check_template(template: str, allowed: tuple, what: str) -> None:
    """Reject a template with unknown fields or a scheme urllib should not be asked to open."""
    sample = url_fields(ManifestEntry("EMD-0001", "1abc", None, False, "train"))
    try:
        url = template.format(**{key: sample[key] for key in allowed})
    except KeyError as error:
        known = ", ".join(allowed)
        raise InputError(None, f"{what} {template!r}: unknown field {{{error.args[0]}}} (use {known})") from None
    except (ValueError, IndexError) as error:
        raise InputError(None, f"{what} {template!r}: not a format string ({error})") from None
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise InputError(None, f"{what} {template!r}: expected an http://, https:// or file:// URL")


def _map_job(entry: ManifestEntry, out_dir: Path, options: FetchOptions) -> FileJob:
    """The map of an entry: its local map_path, or a download by EMDB ID."""
    if entry.map_path is not None:
        return FileJob("map", entry.map_path, None, entry.map_sha256)
    url = options.emdb_url.format(**url_fields(entry))
    return FileJob("map", out_dir / "maps" / f"emd_{entry.emdb_number}{_url_suffixes(url)}", url, entry.map_sha256)


def _model_job(entry: ManifestEntry, out_dir: Path, options: FetchOptions) -> FileJob | FileOutcome:
    """The model of an entry: its local model_path, a download by PDB ID, or a failure without either."""
    if entry.model_path is not None:
        return FileJob("model", entry.model_path, None, entry.model_sha256)
    if entry.pdb_id is None:
        return FileOutcome("failed", None, error="no pdb_id to download and no model_path")
    url = options.pdb_url.format(**url_fields(entry))
    return FileJob("model", out_dir / "models" / f"{entry.pdb_id}{_url_suffixes(url)}", url, entry.model_sha256)


def _url_suffixes(url: str) -> str:
    """File-name suffixes of a URL (``.map.gz`` for ``.../emd_0136.map.gz``)."""
    return "".join(PurePosixPath(urllib.parse.urlsplit(url).path).suffixes)


def _outcome_of(job: FileJob | FileOutcome, done: dict) -> FileOutcome:
    """The outcome of a planned job (a plan that is already an outcome is returned as is)."""
    return done[job.path] if isinstance(job, FileJob) else job


def _run_jobs(jobs: list[FileJob], out_dir: Path, options: FetchOptions) -> dict:
    """Run the jobs in a thread pool; returns {path: FileOutcome}. Updates the checksum record as files finish."""
    record_path = out_dir / RECORD_NAME
    record = _load_record(record_path)
    stop = threading.Event()
    done = {}
    with ThreadPoolExecutor(max_workers=options.workers) as pool, tqdm(
        total=len(jobs), unit="file", desc="fetch", disable=not options.progress
    ) as bar:
        futures = {
            pool.submit(_obtain_file, job, _recorded_sha256(record, job, out_dir), options, stop): job
            for job in jobs
        }
        try:
            for future in as_completed(futures):
                job = futures[future]
                done[job.path] = outcome = future.result()
                if job.url is not None and outcome.ok:
                    record[_record_key(job.path, out_dir)] = {"sha256": outcome.sha256, "url": job.url}
                    _save_record(record, record_path)
                bar.update(1)
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return done


def _record_key(path: Path, out_dir: Path) -> str:
    """Key of a file in the checksum record: its path relative to the output folder."""
    return path.relative_to(out_dir).as_posix() if path.is_relative_to(out_dir) else str(path)


def _recorded_sha256(record: dict, job: FileJob, out_dir: Path) -> str | None:
    """SHA-256 of a file as recorded by an earlier run, or ``None``."""
    entry = record.get(_record_key(job.path, out_dir))
    return entry.get("sha256") if isinstance(entry, dict) else None


def _load_record(path: Path) -> dict:
    """The checksum record of earlier runs; an unreadable record counts as empty (it is only a cache)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _save_record(record: dict, path: Path) -> None:
    """Write the checksum record atomically."""
    write_text_atomically(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def _obtain_file(
    job: FileJob, recorded_sha256: str | None, options: FetchOptions, stop: threading.Event
) -> FileOutcome:
    """Check a local file, or reuse / download a remote one with retries."""
    if job.url is None:
        return _check_local(job)
    expected = job.expected_sha256 or recorded_sha256
    if expected and job.path.is_file() and sha256_of(job.path) == expected:
        return FileOutcome("cached", job.path, expected)
    return _download_with_retries(job, options, stop)


def _check_local(job: FileJob) -> FileOutcome:
    """A file named by the manifest: it must exist and match its SHA-256 when one is given."""
    if not job.path.is_file():
        return FileOutcome("failed", job.path, error=f"local {job.kind}_path {job.path} does not exist")
    digest = sha256_of(job.path)
    if job.expected_sha256 and digest != job.expected_sha256:
        return FileOutcome("failed", job.path, error=f"{job.path}: {_sha_mismatch(digest, job.expected_sha256)}")
    return FileOutcome("local", job.path, digest)


def _download_with_retries(job: FileJob, options: FetchOptions, stop: threading.Event) -> FileOutcome:
    """Download ``job.url`` to ``job.path`` through a verified ``.part`` file, retrying transient failures."""
    job.path.parent.mkdir(parents=True, exist_ok=True)
    part = job.path.with_name(job.path.name + PART_SUFFIX)
    failures = []
    last_error = ""
    attempts = options.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            _download(job.url, part, options.timeout_s, stop)
            digest = _verify(part, job)
            os.replace(part, job.path)
            return FileOutcome("downloaded", job.path, digest, retried=failures)
        except PermanentFetchError as error:
            return FileOutcome("failed", job.path, error=str(error), retried=failures)
        except FetchCancelled:
            return FileOutcome("failed", job.path, error="cancelled", retried=failures)
        except (TransientFetchError, OSError, http.client.HTTPException) as error:
            last_error = _describe(error)
            failures.append(f"attempt {attempt}: {last_error}")
        if attempt < attempts and stop.wait(options.backoff_s * 2 ** (attempt - 1)):
            return FileOutcome("failed", job.path, error="cancelled", retried=failures)
    error = f"{last_error} (after {attempts} attempts, {job.url})"
    return FileOutcome("failed", job.path, error=error, retried=failures[:-1])


def _describe(error: Exception) -> str:
    """One-line description of a failed attempt."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return f"cannot open the URL ({error.reason})"
    return str(error) or type(error).__name__


def _download(url: str, part: Path, timeout_s: float, stop: threading.Event) -> None:
    """One attempt: fetch ``url`` into ``part``, resuming from its current size with a Range request.

    Raises:
        TransientFetchError: short body (``part`` kept for resuming) or an unusable resume (``part`` removed).
        PermanentFetchError: an HTTP error that retrying cannot fix.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"cryomaps/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as error:
        raise _http_failure(error, url, offset, part) from None
    with response:
        start, total = _response_extent(response, offset)
        if start != offset and start != 0:
            part.unlink()
            raise TransientFetchError(f"server resumed from byte {start}, not {offset}; restarting")
        with open(part, "ab" if start else "wb") as handle:
            _copy(response, handle, stop)
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            part.unlink()
        raise TransientFetchError(f"connection closed after {size} of {total} bytes")


def _http_failure(error: urllib.error.HTTPError, url: str, offset: int, part: Path) -> Exception:
    """The exception to raise for an HTTP error status."""
    if error.code == 416 and offset:
        part.unlink()
        return TransientFetchError("server refused to resume (HTTP 416); restarting")
    if error.code in RETRIED_HTTP_CODES or error.code >= 500:
        return TransientFetchError(f"HTTP {error.code} {error.reason}")
    return PermanentFetchError(f"HTTP {error.code} {error.reason} ({url})")


def _response_extent(response, offset: int) -> tuple[int, int | None]:
    """(first byte of the body, total file size or None) of a response.

    A 206 answer starts where its Content-Range says; any other answer is the whole file (a server
    that ignores Range), so the download restarts from zero.
    """
    if offset and getattr(response, "status", None) == 206:
        unit, _, extent = (response.headers.get("Content-Range") or "").partition(" ")
        span, _, total = extent.partition("/")
        first = span.partition("-")[0]
        if unit != "bytes" or not first.isdigit():
            raise TransientFetchError(f"unreadable Content-Range {response.headers.get('Content-Range')!r}")
        return int(first), int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _copy(response, handle, stop: threading.Event) -> None:
    """Copy a response body to a file in chunks, stopping early when ``stop`` is set."""
    while chunk := response.read(CHUNK_BYTES):
        handle.write(chunk)
        if stop.is_set():
            raise FetchCancelled()


def _verify(part: Path, job: FileJob) -> str:
    """SHA-256 of a complete download, checked against the manifest, else gzip integrity for ``.gz``.

    A corrupt file is removed (so the next attempt starts from zero) and TransientFetchError raised.
    """
    digest = sha256_of(part)
    if job.expected_sha256:
        if digest != job.expected_sha256:
            part.unlink()
            raise TransientFetchError(_sha_mismatch(digest, job.expected_sha256))
    elif job.path.suffix == ".gz":
        try:
            with gzip.open(part, "rb") as stream:
                while stream.read(CHUNK_BYTES):
                    pass
        except (OSError, EOFError, zlib.error) as error:
            part.unlink()
            raise TransientFetchError(f"corrupt gzip data ({error})") from None
    return digest


def _sha_mismatch(actual: str, expected: str) -> str:
    """Message for a SHA-256 that differs from the manifest."""
    return f"sha256 mismatch (file {actual[:16]}..., manifest {expected[:16]}...)"


def _fetched_entry(outcome: EntryOutcome) -> ManifestEntry:
    """The manifest entry of a complete outcome, with local paths and SHA-256 filled in."""
    return replace(
        outcome.entry,
        map_path=outcome.map.path,
        model_path=outcome.model.path,
        map_sha256=outcome.map.sha256,
        model_sha256=outcome.model.sha256,
        name=outcome.entry.label,
    )


def _write_report(outcomes: list[EntryOutcome], path: Path) -> None:
    """Write ``fetch_report.csv`` atomically: one row per entry with its status and errors."""
    write_csv_atomically(path, REPORT_COLUMNS, [
            {
                "name": outcome.entry.label,
                "emdb_id": outcome.entry.emdb_id,
                "pdb_id": outcome.entry.pdb_id or "",
                "status": "ok" if outcome.ok else "failed",
                "map_status": outcome.map.status,
                "model_status": outcome.model.status,
                "map_path": outcome.map.path or "",
                "model_path": outcome.model.path or "",
                "error": outcome.errors(),
                "retried": outcome.retried(),
            }
            for outcome in outcomes
    ])
