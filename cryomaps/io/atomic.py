"""Atomic file output: write to a temporary file in the destination folder, then rename.

A reader never sees a half-written file, and a failed write leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryomaps.errors import InputError


def _read_umask() -> int:
    """The process umask (read once at import: changing it briefly is unsafe once threads run)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` when the block ends without error.

    Raises:
        InputError: the destination folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(path, f"output folder {path.parent} does not exist")
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temp_name)
        os.chmod(temp_name, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.remove(temp_name)


def write_bytes_atomically(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically; returns the path."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(payload)
    return Path(path)


def write_csv_atomically(path: str | os.PathLike, columns, rows) -> Path:
    """Write ``rows`` (dicts keyed by ``columns``) as a CSV file with a header, atomically."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomically(path, text.getvalue())


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: str | os.PathLike, data, indent: int = 1) -> Path:
    """Write ``data`` as JSON (plain Python containers) to ``path`` atomically, creating its folder."""
    import json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(path, json.dumps(data, indent=indent) + "\n")
