"""Atomic file output: write to a temporary file in the destination folder, then rename.

A reader never sees a half-written file, and a failed write leaves nothing behind. The temporary
file is flushed to disk (fsync) before the rename. Its name, ``.<name>~<hash>.<pid>.<random>.part``,
stays within the 255-byte file-name limit (``<name>`` is cut when long; ``<hash>`` identifies the
full target name) and records the writing process: temporaries of the same target left by a
process that no longer runs (killed by SIGKILL, power loss) are removed on the next write.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
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
    if path.is_dir():
        raise InputError(path, "is a folder, not a file name")
    stem = _temporary_stem(path.name)
    remove_stale_temporaries(path.parent, stem)
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f"{stem}.{os.getpid()}.", suffix=".part", dir=path.parent)
    except OSError as error:
        raise InputError(path, f"cannot write in {path.parent} ({error.strerror})") from None
    os.close(handle)
    try:
        yield Path(temp_name)
        _flush_to_disk(temp_name)
        os.chmod(temp_name, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(temp_name, path)
        _flush_folder(path.parent)
    finally:
        if os.path.exists(temp_name):
            os.remove(temp_name)


def _temporary_stem(name: str) -> str:
    """``.<name>~<hash8>``: the start of every temporary name of target ``name`` (at most 215 bytes)."""
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    short = os.fsencode(name)[:200].decode("utf-8", errors="ignore")
    return f".{short}~{digest}"


def remove_stale_temporaries(folder: Path, stem: str) -> list[Path]:
    """Remove temporaries ``<stem>.<pid>.*.part`` in ``folder`` whose writing process has ended."""
    removed = []
    for candidate in folder.glob(f"{_glob_escape(stem)}.*.part"):
        pid_text = candidate.name[len(stem) + 1 :].split(".", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _glob_escape(text: str) -> str:
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in text)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _flush_to_disk(name: str) -> None:
    with open(name, "rb+") as stream:
        os.fsync(stream.fileno())


def _flush_folder(folder: Path) -> None:
    """fsync the folder so that the rename itself is durable (skipped where folders cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_bytes_atomically(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically; returns the path."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(payload)
    return Path(path)


def write_csv_atomically(path: str | os.PathLike, columns, rows) -> Path:
    """Write ``rows`` (dicts keyed by ``columns``) as a CSV file with a header, atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomically(path, text.getvalue())


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: str | os.PathLike, data, indent: int = 1, non_finite_as_null: bool = False) -> Path:
    """Write ``data`` as JSON (plain Python containers) to ``path`` atomically, creating its folder.

    Args:
        non_finite_as_null: write NaN and infinite floats (at any depth of dicts, lists and tuples)
            as ``null``, giving strict JSON that any tool reads (reports). By default they are
            written as Python's ``NaN`` / ``Infinity``, which ``json.loads`` reads back unchanged
            (records read again by cryomaps).
    """
    if non_finite_as_null:
        text = json.dumps(_finite_or_none(data), indent=indent, allow_nan=False)
    else:
        text = json.dumps(data, indent=indent)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(path, text + "\n")


def _finite_or_none(value):
    """``value`` with every non-finite float (at any depth of dicts and lists) replaced by None."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
