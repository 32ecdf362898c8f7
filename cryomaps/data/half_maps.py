"""Local-resolution training volumes labelled by the classical local FSC of two half maps.

For users' own data (fine-tuning the CryoRes network on their half maps) and for synthetic half
maps labelled as an experimentalist would label them. Each volume is
``{"map", "locres", "mask", "voxel_size", "origin"}`` as
:class:`cryomaps.data.datamodules.SingleMapPatchDataModule` takes it, prepared exactly as
``cryomaps locres MAP`` prepares a single map (:func:`cryomaps.data.locres_input.prepare_training_volume`):

- ``map``: the average of the two half maps (the map a user would give the network);
- ``locres``: windowed local FSC of the half maps (:func:`cryomaps.signal.local_fsc.local_resolution`,
  ``window`` Å, FSC ``threshold``) inside the mask;
- ``mask``: the given mask (> 0.5 inside), or, without one, :func:`cryomaps.metrics.masks.threshold_mask` of the average
  (Otsu threshold of the map smoothed by 3 Å).

**Half-map manifest** (CSV, one row per pair): ``half1``, ``half2`` (map files), optional ``mask``
(may be empty), optional ``split`` (``train`` when absent or empty; ``train`` or ``val``) and
``name``; UTF-8, read as every cryomaps table (:func:`cryomaps.data.manifest.read_csv_rows`). ``~`` is
expanded and relative paths are relative to the manifest's folder.

Arrays are indexed (x, y, z); lengths in Å.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cryomaps.data.locres_input import InputPreparation, prepare_training_volume
from cryomaps.data.manifest import read_csv_rows, resolve_listed_path
from cryomaps.errors import InputError
from cryomaps.io import DensityMap, read_map
from cryomaps.metrics.masks import threshold_mask
from cryomaps.signal.local_fsc import check_same_grid, local_resolution

MANIFEST_COLUMNS = ("half1", "half2")
SPLITS = ("train", "val")


def labelled_half_maps(
    half1: DensityMap, half2: DensityMap, mask: np.ndarray | None = None, window: float = 25.0, threshold: float = 0.143
) -> dict:
    """An unprepared volume ``{"map", "locres", "mask", "voxel_size", "origin"}`` on the half maps'
    grid: their average, their local FSC (``window`` Å, FSC ``threshold``) inside ``mask`` (x, y, z,
    > 0.5 inside; default :func:`cryomaps.metrics.masks.threshold_mask` of the average), and the mask."""
    grid = check_same_grid(half1, half2)
    full = DensityMap.from_grid((half1.data + half2.data) / 2, grid)
    inside = threshold_mask(full) if mask is None else np.asarray(mask) > 0.5
    locres = local_resolution(half1, half2, inside, window=window, threshold=threshold)
    return {"map": full.data, "locres": locres.data, "mask": inside.astype(np.float32),
            "voxel_size": grid.voxel_size, "origin": grid.origin}


def half_map_volume(
    half1: DensityMap,
    half2: DensityMap,
    mask: np.ndarray | None = None,
    preparation: Mapping | None = None,
    window: float = 25.0,
    threshold: float = 0.143,
) -> dict:
    """One prepared training volume from two half maps (module docstring): :func:`labelled_half_maps`
    prepared with ``preparation`` (the network's input-preparation metadata; defaults when None)."""
    settings = InputPreparation() if preparation is None else InputPreparation.from_metadata(preparation)
    return prepare_training_volume(labelled_half_maps(half1, half2, mask, window, threshold), settings)


def half_map_volumes(
    manifest: str | os.PathLike,
    split: str = "train",
    preparation: Mapping | None = None,
    window: float = 25.0,
    threshold: float = 0.143,
) -> list[dict]:
    """A volume provider for :class:`cryomaps.data.datamodules.SingleMapPatchDataModule`: the prepared
    volumes (:func:`half_map_volume`) of the half-map manifest's rows of ``split``."""
    volumes = []
    for row in read_half_map_manifest(manifest):
        if row["split"] != split:
            continue
        mask = read_map(row["mask"]) if row["mask"] else None
        half1, half2 = read_map(row["half1"]), read_map(row["half2"])
        if mask is not None and mask.data.shape != half1.data.shape:
            raise InputError(row["mask"], f"mask shape {mask.data.shape} differs from the half maps' {half1.data.shape}")
        volumes.append(half_map_volume(half1, half2, None if mask is None else mask.data, preparation, window, threshold))
    return volumes


def read_half_map_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows ``{"name", "half1", "half2", "mask", "split"}`` of a half-map manifest, paths resolved
    (``mask`` is None when not given), read by :func:`cryomaps.data.manifest.read_csv_rows`.

    Raises:
        InputError: missing or unreadable file, missing columns, no rows, or a row with an empty path
            or an unknown split.
    """
    path = Path(path)
    _, rows = read_csv_rows(path, "half-map manifest", MANIFEST_COLUMNS)
    if not rows:
        raise InputError(path, "half-map manifest has no rows")
    return [_manifest_row(path, line, row) for line, row in rows]


def _manifest_row(path: Path, line: int, row: Mapping) -> dict:
    def resolved(column: str) -> Path | None:
        return resolve_listed_path((row.get(column) or "").strip(), path.parent)

    split = (row.get("split") or "").strip() or "train"
    if split not in SPLITS:
        raise InputError(path, f"line {line}: split {split!r} is not one of {', '.join(SPLITS)}")
    halves = [resolved(column) for column in MANIFEST_COLUMNS]
    if None in halves:
        raise InputError(path, f"line {line}: half1 and half2 must both be given")
    name = (row.get("name") or "").strip() or halves[0].stem
    return {"name": name, "half1": halves[0], "half2": halves[1], "mask": resolved("mask"), "split": split}
