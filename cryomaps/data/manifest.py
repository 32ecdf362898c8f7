"""Manifests: CSV lists of EMDB map / PDB model pairs (schema in ``data_manifests/README.md``).

:func:`read_manifest` turns a manifest into a list of :class:`ManifestEntry` with validated IDs and
resolved paths, raising :class:`~cryomaps.errors.InputError` naming the file, the line and the
problem for the first bad row, and checks the SHA-256 of every local file whose digest the
manifest gives (:func:`verify_sha256`). :func:`write_manifest` writes entries back in the same schema.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryomaps.data_root import candidate_data_roots, find_data_root
from cryomaps.errors import InputError
from cryomaps.io.atomic import write_csv_atomically

REQUIRED_COLUMNS = ("emdb_id", "pdb_id", "reported_resolution_A", "resolution_certain", "split")
OPTIONAL_COLUMNS = ("map_path", "model_path", "map_sha256", "model_sha256", "name", "notes")
# Column order used when writing manifests.
COLUMNS = (
    "name", "emdb_id", "pdb_id", "reported_resolution_A", "resolution_certain", "split",
    "map_path", "model_path", "map_sha256", "model_sha256", "notes",
)
SPLITS = ("train", "val", "test")

_EMDB_ID = re.compile(r"^EMD-(\d{4,})$")
_PDB_ID = re.compile(r"^[0-9][a-z0-9]{3}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_YES_NO = {"yes": True, "no": False}
HASH_BLOCK_BYTES = 1 << 20
"""Bytes read at a time when hashing a file."""


@dataclass(frozen=True)
class ManifestEntry:
    """One map-model pair of a manifest.

    Attributes:
        emdb_id: EMDB accession, ``EMD-`` followed by at least four digits (``EMD-0136``).
        pdb_id: four-character PDB ID in lower case, or ``None`` when the model is not in the PDB.
        reported_resolution_A: resolution reported for the map, Å, or ``None`` when unknown.
        resolution_certain: whether ``reported_resolution_A`` is the deposited value.
        split: ``train``, ``val`` or ``test``.
        map_path: absolute path of the local map, or ``None`` when it is to be fetched.
        model_path: absolute path of the local model, or ``None`` when it is to be fetched.
        map_sha256: expected SHA-256 (hex) of the map file, or ``None``.
        model_sha256: expected SHA-256 (hex) of the model file, or ``None``.
        name: a short label; ``EMD-XXXX_pdbid`` when the manifest gives none.
        notes: free text.
        line: line of the manifest the entry was read from (0 for entries made in code).
    """

    emdb_id: str
    pdb_id: str | None
    reported_resolution_A: float | None
    resolution_certain: bool
    split: str
    map_path: Path | None = None
    model_path: Path | None = None
    map_sha256: str | None = None
    model_sha256: str | None = None
    name: str = ""
    notes: str = ""
    line: int = 0

    @property
    def emdb_number(self) -> str:
        """The digits of the EMDB accession, leading zeros kept (``"0136"``)."""
        return self.emdb_id[len("EMD-"):]

    @property
    def label(self) -> str:
        """``name`` when given, else ``EMD-XXXX_pdbid``."""
        return self.name or f"{self.emdb_id}_{self.pdb_id or 'nomodel'}"


def default_data_root() -> Path:
    """The folder that relative manifest paths are resolved against (see :mod:`cryomaps.data_root`)."""
    return find_data_root() or candidate_data_roots()[0].resolve()


def read_manifest(
    path: str | os.PathLike, data_root: str | os.PathLike | None = None, check_sha256: bool = True
) -> list[ManifestEntry]:
    """Read and validate a manifest.

    Args:
        path: the CSV file (UTF-8, with or without a byte-order mark).
        data_root: folder that relative ``map_path``/``model_path`` values are resolved against;
            defaults to :func:`default_data_root`.
        check_sha256: verify the local files against ``map_sha256``/``model_sha256``
            (:func:`verify_sha256`); callers that verify only the entries they use pass ``False``.

    Returns:
        The entries in file order; paths are absolute.

    Raises:
        InputError: the file is missing, unreadable or not UTF-8, lists no pair, a column is missing
            or unknown, a row is invalid (the message names the line and the problem), or a local
            file does not match its SHA-256.
    """
    path = Path(path)
    root = Path(data_root).expanduser().resolve() if data_root is not None else default_data_root()
    header, rows = read_csv_rows(path, "manifest", REQUIRED_COLUMNS)
    _check_known_columns(path, header)
    entries = [_parse_row(path, line, row, root) for line, row in rows]
    if not entries:
        raise InputError(path, "no pairs listed (only a header line)")
    _check_unique(path, entries)
    if check_sha256:
        verify_sha256(entries, path)
    return entries


def verify_sha256(entries: list[ManifestEntry], manifest: str | os.PathLike | None = None) -> None:
    """Check the local map and model files of ``entries`` against the digests their manifest gives.

    Files that the manifest gives no digest for, and files that do not exist (yet), are not checked:
    whoever reads them reports them missing.

    Raises:
        InputError: naming the first mismatching file, both digests and the manifest line.
    """
    for entry in entries:
        problem = sha256_mismatch(entry, manifest)
        if problem is not None:
            raise InputError(*problem)


def sha256_mismatch(entry: ManifestEntry, manifest: str | os.PathLike | None = None) -> tuple[str, str] | None:
    """``(file, problem)`` for the first local file of ``entry`` whose SHA-256 differs from the
    manifest's, else ``None`` (a plain tuple, so that it can come back from a worker process)."""
    source = f"{manifest}, line {entry.line}" if manifest is not None else "the manifest"
    for column, path, expected in (
        ("map_sha256", entry.map_path, entry.map_sha256),
        ("model_sha256", entry.model_path, entry.model_sha256),
    ):
        if expected is None or path is None or not path.is_file():
            continue
        actual = file_sha256(path)
        if actual != expected:
            return str(path), f"SHA-256 is {actual} but {column} in {source} is {expected} (wrong or changed file)"
    return None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, computed once per process for a given size and modification time."""
    status = path.stat()
    return _cached_sha256(str(path), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(Path(path))


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def read_csv_rows(
    path: str | os.PathLike, what: str, required: tuple[str, ...] = ()
) -> tuple[list[str], list[tuple[int, dict]]]:
    """The header and rows of a CSV table that cryomaps reads (manifests, indexes).

    The file is UTF-8, with or without a byte-order mark. Rows are :class:`csv.DictReader` dicts
    (an extra field is keyed ``None``, a missing one has the value ``None``); blank lines are skipped.
    Relative paths in the rows are resolved by the caller with :func:`resolve_listed_path`.

    Args:
        path: the CSV file.
        what: what the file is, for messages (``"manifest"``, ``"curated index"``).
        required: columns the header must have.

    Returns:
        ``(header, rows)``: the column names, and ``(line, row)`` pairs where ``line`` is the
        1-based line of the file on which the row ends.

    Raises:
        InputError: the file is missing, unreadable or not UTF-8 (naming the line), has no header
            line, or lacks a required column.
    """
    path = Path(path)
    reader = csv.DictReader(io.StringIO(_read_text(path, what), newline=""))
    header = reader.fieldnames
    if not header:
        raise InputError(path, f"empty {what} (expected a header line)")
    missing = [column for column in required if column not in header]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)} in the header line")
    return list(header), [(reader.line_num, row) for row in reader]


def resolve_listed_path(text: str, base: Path) -> Path | None:
    """The path a CSV field names: ``None`` when empty, ``~`` expanded, a relative path taken relative
    to ``base``. Each kind of table names its base: the data root for manifests of map-model pairs
    (their files live in the shared data, the manifests in the source tree), the table's own folder
    for tables kept beside the files they list (``curated.csv``)."""
    if not text:
        return None
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _read_text(path: Path, what: str) -> str:
    """The text of a UTF-8 file; one-line errors for a missing, unreadable or non-UTF-8 file."""
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    try:
        payload = path.read_bytes()
    except OSError as error:
        raise InputError(path, f"cannot read the {what} ({error.strerror})") from None
    try:
        return payload.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = payload[: error.start].count(b"\n") + 1
        raise InputError(
            path, f"line {line}: not UTF-8 text (byte 0x{payload[error.start]:02x}); save the {what} as UTF-8"
        ) from None


def filter_split(entries: list[ManifestEntry], split: str) -> list[ManifestEntry]:
    """The entries of one split (``train``, ``val`` or ``test``)."""
    if split not in SPLITS:
        raise InputError(None, f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    return [entry for entry in entries if entry.split == split]


def write_manifest(
    entries: list[ManifestEntry], path: str | os.PathLike, paths_relative_to: str | os.PathLike | None = None
) -> None:
    """Write entries as a manifest, atomically (temporary file, then rename).

    Args:
        entries: the rows to write.
        path: the CSV file to create or replace.
        paths_relative_to: when given, paths inside this folder are written relative to it (use the
            data root for shipped manifests); other paths are written absolute.
    """
    path = Path(path)
    base = Path(paths_relative_to).resolve() if paths_relative_to is not None else None
    write_csv_atomically(path, COLUMNS, [_entry_row(entry, base) for entry in entries])


def _check_known_columns(path: Path, fieldnames: list[str]) -> None:
    """Reject unknown (likely misspelt) columns."""
    unknown = [column for column in fieldnames if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise InputError(
            path, f"unknown column(s) {', '.join(map(repr, unknown))} (known: {', '.join(COLUMNS)})"
        )


def _parse_row(path: Path, line: int, row: dict, root: Path) -> ManifestEntry:
    """Validate one CSV row; any problem is raised as an InputError naming ``line``."""
    def fail(problem: str) -> InputError:
        return InputError(path, f"line {line}: {problem}")

    if None in row:
        raise fail("more fields than columns in the header")
    values = {key: (value or "").strip() for key, value in row.items()}
    if not any(values.values()):
        raise fail("empty row (every field is empty)")
    if None in row.values():
        raise fail(f"fewer fields than columns in the header ({sum(v is not None for v in row.values())} of {len(row)})")

    emdb_id = values["emdb_id"]
    if not _EMDB_ID.match(emdb_id):
        raise fail(f"bad emdb_id {emdb_id!r} (expected EMD- and at least four digits, e.g. EMD-20026)")
    pdb_id = values["pdb_id"].lower() or None
    if pdb_id is not None and not _PDB_ID.match(pdb_id):
        raise fail(f"bad pdb_id {values['pdb_id']!r} (expected four characters, e.g. 3ajo, or empty)")
    resolution = _parse_resolution(values["reported_resolution_A"], fail)
    certain = _YES_NO.get(values["resolution_certain"].lower())
    if certain is None:
        raise fail(f"resolution_certain must be yes or no, not {values['resolution_certain']!r}")
    if certain and resolution is None:
        raise fail("resolution_certain is yes but reported_resolution_A is empty")
    split = values["split"]
    if split not in SPLITS:
        raise fail(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    return ManifestEntry(
        emdb_id=emdb_id,
        pdb_id=pdb_id,
        reported_resolution_A=resolution,
        resolution_certain=certain,
        split=split,
        map_path=resolve_listed_path(values.get("map_path", ""), root),
        model_path=resolve_listed_path(values.get("model_path", ""), root),
        map_sha256=_parse_sha256(values.get("map_sha256", ""), "map_sha256", fail),
        model_sha256=_parse_sha256(values.get("model_sha256", ""), "model_sha256", fail),
        name=values.get("name", ""),
        notes=values.get("notes", ""),
        line=line,
    )


def _parse_resolution(text: str, fail) -> float | None:
    """A positive resolution in Å, or ``None`` for an empty field."""
    if not text:
        return None
    try:
        resolution = float(text)
    except ValueError:
        raise fail(f"reported_resolution_A {text!r} is not a number") from None
    if not 0 < resolution < 100:
        raise fail(f"reported_resolution_A {text!r} is outside (0, 100) Å")
    return resolution


def _parse_sha256(text: str, column: str, fail) -> str | None:
    """A lower-case SHA-256 hex digest, or ``None`` for an empty field."""
    if not text:
        return None
    digest = text.lower()
    if not _SHA256.match(digest):
        raise fail(f"{column} {text!r} is not a SHA-256 hex digest (64 hex characters)")
    return digest


def _check_unique(path: Path, entries: list[ManifestEntry]) -> None:
    """Reject a manifest that lists the same (emdb_id, pdb_id, name) twice."""
    seen: dict[tuple, int] = {}
    for entry in entries:
        key = (entry.emdb_id, entry.pdb_id, entry.name)
        if key in seen:
            raise InputError(path, f"line {entry.line}: duplicate of line {seen[key]} ({entry.label})")
        seen[key] = entry.line


def _entry_row(entry: ManifestEntry, base: Path | None) -> dict:
    """The CSV row of an entry."""
    resolution = entry.reported_resolution_A
    return {
        "name": entry.name,
        "emdb_id": entry.emdb_id,
        "pdb_id": entry.pdb_id or "",
        "reported_resolution_A": "" if resolution is None else f"{resolution:g}",
        "resolution_certain": "yes" if entry.resolution_certain else "no",
        "split": entry.split,
        "map_path": _format_path(entry.map_path, base),
        "model_path": _format_path(entry.model_path, base),
        "map_sha256": entry.map_sha256 or "",
        "model_sha256": entry.model_sha256 or "",
        "notes": entry.notes,
    }


def _format_path(path: Path | None, base: Path | None) -> str:
    """A path as written in a manifest: relative to ``base`` when inside it, else absolute."""
    if path is None:
        return ""
    if base is not None and path.is_relative_to(base):
        return path.relative_to(base).as_posix()
    return str(path)
