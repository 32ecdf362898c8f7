"""The compact file of one curated map-model pair, and the index of a curated folder.

A curated pair is one compressed NumPy archive (``NAME.npz``, loadable without pickle) holding::

    input        float32 (nx, ny, nz)  simulated map of the model, min-max scaled to [0, 1]
    target       float32 (nx, ny, nz)  experimental map, masked, resampled and normalised
    mask         uint8   (nx, ny, nz)  1 on voxels within the mask radius of an atom (and inside
                                       the experimental map's box), else 0
    voxel_size   float64 (3,)          Å along x, y, z
    origin       float64 (3,)          Å, world position of the centre of voxel (0, 0, 0)
    metadata     str (0-d)             JSON object: ids, resolution, curation settings, scores

Arrays are indexed (x, y, z) (see :mod:`cryomaps.io.grid`); the grid overlays the model.

A curated folder also holds ``curated.csv`` (:data:`INDEX_NAME`), one row per accepted pair with
the columns of :data:`INDEX_COLUMNS`; ``file`` is relative to the folder. ``curation_report.csv``
lists every pair, and ``records/NAME.json`` what curating each pair found, so that a later run
with the same settings reuses it (:mod:`cryomaps.data.curation_store`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryomaps.data.manifest import read_csv_rows, resolve_listed_path
from cryomaps.errors import InputError
from cryomaps.io.atomic import atomic_output
from cryomaps.io.grid import Grid

INDEX_NAME = "curated.csv"
INDEX_COLUMNS = ("name", "emdb_id", "pdb_id", "reported_resolution_A", "split", "file")
_ARRAY_KEYS = ("input", "target", "mask", "voxel_size", "origin", "metadata")


@dataclass
class CuratedPair:
    """A curated training pair on one grid.

    Attributes:
        input: float32 (nx, ny, nz) simulated map in [0, 1].
        target: float32 (nx, ny, nz) normalised experimental map.
        mask: bool (nx, ny, nz) protein voxels.
        grid: the sampling of the three arrays (Å).
        metadata: JSON-serialisable facts (ids, resolution, settings, scores).
    """

    input: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    grid: Grid
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input = np.ascontiguousarray(self.input, dtype=np.float32)
        self.target = np.ascontiguousarray(self.target, dtype=np.float32)
        self.mask = np.ascontiguousarray(self.mask, dtype=bool)
        for name in ("input", "target", "mask"):
            if getattr(self, name).shape != self.grid.shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, grid has {self.grid.shape}")


def write_curated_pair(path: str | os.PathLike, pair: CuratedPair) -> Path:
    """Write ``pair`` as a compressed ``.npz`` atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_output(path) as temporary, open(temporary, "wb") as stream:
        np.savez_compressed(
            stream,
            input=pair.input,
            target=pair.target,
            mask=pair.mask.astype(np.uint8),
            voxel_size=pair.grid.voxel_size,
            origin=pair.grid.origin,
            metadata=np.array(json.dumps(pair.metadata)),
        )
    return path


def read_curated_pair(path: str | os.PathLike) -> CuratedPair:
    """Read a file written by :func:`write_curated_pair`.

    Raises:
        InputError: the file is missing, not a NumPy archive or lacks one of the arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such curated pair file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in _ARRAY_KEYS if key not in archive.files]
            if missing:
                raise InputError(path, f"not a curated pair (missing {', '.join(missing)})")
            arrays = {key: archive[key] for key in _ARRAY_KEYS}
    except (OSError, ValueError) as error:
        raise InputError(path, f"not a readable curated pair ({error})") from None
    grid = Grid(arrays["input"].shape, arrays["voxel_size"], arrays["origin"])
    return CuratedPair(
        input=arrays["input"],
        target=arrays["target"],
        mask=arrays["mask"].astype(bool),
        grid=grid,
        metadata=json.loads(str(arrays["metadata"])),
    )


@dataclass(frozen=True)
class CuratedIndexRow:
    """One accepted pair listed in ``curated.csv``; ``path`` is absolute."""

    name: str
    emdb_id: str
    pdb_id: str
    reported_resolution_A: str
    split: str
    path: Path


def read_curated_index(folder: str | os.PathLike) -> list[CuratedIndexRow]:
    """The accepted pairs of a curated folder, from its ``curated.csv``.

    Raises:
        InputError: the index is missing or lacks a column.
    """
    index_path = Path(folder) / INDEX_NAME
    if not index_path.is_file():
        raise InputError(index_path, "no curated index (run `cryomaps curate` first)")
    _, rows = read_csv_rows(index_path, "curated index", INDEX_COLUMNS)
    return [
        CuratedIndexRow(
            name=row["name"],
            emdb_id=row["emdb_id"],
            pdb_id=row["pdb_id"],
            reported_resolution_A=row["reported_resolution_A"],
            split=row["split"],
            path=resolve_listed_path(row["file"], index_path.parent).resolve(),
        )
        for _, row in rows
    ]
