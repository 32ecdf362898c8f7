"""Manifests: CSV lists of EMDB map / PDB model pairs (schema in ``data_manifests/README.md``).

:func:`read_manifest` turns a manifest into a list of :class:`ManifestEntry` with validated IDs and
resolved paths, raising :class:`~cryomaps.errors.InputError` naming the file, the line and the
problem for the first bad row. :func:`write_manifest` writes entries back in the same schema.
"""

from __future__ import annotations

import csv
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


def read_manifest(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> list[ManifestEntry]:
    """Read and validate a manifest.

    Args:
        path: the CSV file.
        data_root: folder that relative ``map_path``/``model_path`` values are resolved against;
            defaults to :func:`default_data_root`.

    Returns:
        The entries in file order; paths are absolute.

    Raises:
        InputError: the file is missing, a column is missing or unknown, or a row is invalid
            (the message names the line and the problem).
    """
    path = Path(path)
    root = Path(data_root).expanduser().resolve() if data_root is not None else default_data_root()
    if not path.is_file():
        raise InputError(path, "manifest not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        _check_columns(path, reader.fieldnames)
        entries = [_parse_row(path, reader.line_num, row, root) for row in reader]
    _check_unique(path, entries)
    return entries


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


def _check_columns(path: Path, fieldnames: list[str] | None) -> None:
    """Reject an empty file, missing required columns and unknown (likely misspelt) columns."""
    if not fieldnames:
        raise InputError(path, "empty manifest (expected a header line)")
    missing = [column for column in REQUIRED_COLUMNS if column not in fieldnames]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)} in the header line")
    unknown = [column for column in fieldnames if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise InputError(
            path, f"unknown column(s) {', '.join(map(repr, unknown))} (known: {', '.join(COLUMNS)})"
        )


def _parse_row(path: Path, line: int, row: dict, root: Path) -> ManifestEntry:
    """Validate one CSV row; any problem is raised as an InputError naming ``line``."""
    if None in row:
        raise InputError(path, f"line {line}: more fields than columns in the header")
    values = {key: (value or "").strip() for key, value in row.items()}

    def fail(problem: str) -> InputError:
        return InputError(path, f"line {line}: {problem}")

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
        map_path=_resolve_path(values.get("map_path", ""), root),
        model_path=_resolve_path(values.get("model_path", ""), root),
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


def _resolve_path(text: str, root: Path) -> Path | None:
    """Absolute path of a manifest path field (relative ones are relative to the data root)."""
    if not text:
        return None
    path = Path(text).expanduser()
    return path if path.is_absolute() else root / path


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
