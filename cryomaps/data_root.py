"""Where cryomaps looks for the shared example data (real map-model pairs and structures).

The folder is named by the ``CRYOMAPS_DATA_ROOT`` environment variable, else ``../shared/data``
relative to the current directory or to the source checkout. Nothing from it is ever copied into
the package.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CRYOMAPS_DATA_ROOT"


def candidate_data_roots() -> list[Path]:
    """Folders that may hold the shared data, in the order they are tried."""
    candidates = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]).expanduser())
    candidates.append(Path.cwd() / ".." / "shared" / "data")
    candidates.append(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    return candidates


def find_data_root() -> Path | None:
    """The first existing data root (resolved), or ``None`` when there is none."""
    for candidate in candidate_data_roots():
        if (candidate / "pairs" / "pairs.csv").is_file() or (candidate / "structures").is_dir():
            return candidate.resolve()
    return None
