"""Turning the many forms a map arrives in into arrays, and putting two maps on one grid.

Metrics accept a :class:`cryomaps.io.DensityMap`, a NumPy array or a torch tensor. Arrays and
tensors are indexed (x, y, z) and carry no geometry: when one is compared with a
:class:`~cryomaps.io.DensityMap` it is taken to lie on that map's grid, and two bare arrays are
taken to share a grid.
"""

from __future__ import annotations

import numpy as np

from cryomaps.errors import InputError
from cryomaps.io import DensityMap, Grid, resample_map


def volume_array(volume) -> np.ndarray:
    """The values of ``volume`` (DensityMap, array or tensor, (x, y, z)) as a float64 3-D array."""
    if isinstance(volume, DensityMap):
        volume = volume.data
    if hasattr(volume, "detach"):
        volume = volume.detach().cpu().numpy()
    array = np.asarray(volume, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(f"expected a 3-D (x, y, z) volume, got shape {array.shape}")
    return array


def as_density_map(volume, grid: Grid | None = None) -> DensityMap:
    """``volume`` as a DensityMap; a bare array is placed on ``grid`` (default: 1 Å voxels at 0)."""
    if isinstance(volume, DensityMap):
        return volume
    array = volume_array(volume)
    if grid is None:
        return DensityMap(array, np.ones(3), np.zeros(3))
    return DensityMap.from_grid(array, grid)


def grid_of(volume) -> Grid | None:
    """The grid of a DensityMap, or ``None`` for a bare array or tensor."""
    return volume.grid if isinstance(volume, DensityMap) else None


def voxel_size_of(volume) -> np.ndarray:
    """Voxel size (3,) Å of a DensityMap; 1 Å for a bare array or tensor."""
    return volume.voxel_size if isinstance(volume, DensityMap) else np.ones(3)


def grids_match(first: Grid, second: Grid, tolerance: float = 1e-4) -> bool:
    """True when two grids have the same shape and, within ``tolerance`` Å, voxel size and origin."""
    return (
        first.shape == second.shape
        and np.allclose(first.voxel_size, second.voxel_size, rtol=0, atol=tolerance)
        and np.allclose(first.origin, second.origin, rtol=0, atol=tolerance)
    )


def align_to_reference(pred, ref):
    """``pred`` on the grid of ``ref``, resampled trilinearly when the grids differ.

    Values of ``pred`` are interpolated at the voxel centres of ``ref`` (world coordinates, Å);
    centres outside the box spanned by ``pred``'s voxel centres get 0. When either argument is a
    bare array the two are taken to share a grid and must have the same shape.

    Returns:
        ``pred`` itself when the grids already match, else a new DensityMap on ``ref``'s grid.
    """
    pred_grid, ref_grid = grid_of(pred), grid_of(ref)
    if pred_grid is None or ref_grid is None:
        pred_shape, ref_shape = np.shape(volume_array(pred)), np.shape(volume_array(ref))
        if pred_shape != ref_shape:
            raise InputError(
                None,
                f"maps of shapes {pred_shape} and {ref_shape} without geometry cannot be compared: "
                "pass DensityMap objects (voxel size and origin) to resample one onto the other",
            )
        return pred
    if grids_match(pred_grid, ref_grid):
        return pred
    return resample_map(pred, ref_grid)
