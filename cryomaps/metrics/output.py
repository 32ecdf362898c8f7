"""Atomic writing of metric outputs (JSON tables, PNG figures): temporary file, then rename."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from cryomaps.errors import InputError


def write_bytes_atomically(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` through a temporary file in the same folder; returns the path."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(path, f"output folder {path.parent} does not exist")
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.remove(temp_name)
        raise
    return path


def write_json_atomically(path: str | os.PathLike, content: dict) -> Path:
    """Write ``content`` as indented JSON; NaN and infinite floats become ``null``."""
    text = json.dumps(_finite_or_none(content), indent=2, allow_nan=False) + "\n"
    return write_bytes_atomically(path, text.encode("utf-8"))


def _finite_or_none(value):
    """``value`` with every non-finite float (at any depth of dicts and lists) replaced by None."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
