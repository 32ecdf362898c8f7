"""Atomic writing of metric outputs (JSON tables, PNG figures): temporary file, then rename."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from cryomaps.io.atomic import write_text_atomically


def write_json_atomically(path: str | os.PathLike, content: dict) -> Path:
    """Write ``content`` as indented JSON; NaN and infinite floats become ``null``."""
    text = json.dumps(_finite_or_none(content), indent=2, allow_nan=False) + "\n"
    return write_text_atomically(path, text)


def _finite_or_none(value):
    """``value`` with every non-finite float (at any depth of dicts and lists) replaced by None."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
