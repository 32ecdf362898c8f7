"""Masks around atomic models and the overlap of binary masks.

Masks are arrays indexed (x, y, z) on a :class:`cryomaps.io.Grid`; distances are in Å.
"""

from __future__ import annotations

import numpy as np
import torch

from cryomaps.io import DensityMap, Grid
from cryomaps.signal.windows import cosine_ramp

# Atom-voxel pairs examined at once by atom_mask; bounds its memory to a few tens of MB.
_PAIRS_PER_BLOCK = 1 << 19


def atom_mask(coords, grid: Grid, radius: float = 3.0) -> np.ndarray:
    """Voxels whose centre lies within ``radius`` Å of at least one atom.

    Each atom visits only the voxels near it, in blocks of atoms, so memory stays O(grid + block)
    for structures of any size.

    Args:
        coords: (N, 3) atom positions in Å (world frame of ``grid``).
        grid: the sampling; the mask has ``grid.shape`` (x, y, z).
        radius: Å; a voxel centre at exactly ``radius`` is inside.

    Returns:
        Boolean array of shape ``grid.shape``.
    """
    mask = np.zeros(grid.shape, dtype=bool)
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    if len(coords) == 0:
        return mask
    offsets = _ball_offsets(radius, grid.voxel_size)
    atoms_per_block = max(1, _PAIRS_PER_BLOCK // len(offsets))
    for start in range(0, len(coords), atoms_per_block):
        _mark_voxels_near(mask, grid, coords[start : start + atoms_per_block], offsets, radius)
    return mask


def _ball_offsets(radius: float, voxel_size: np.ndarray) -> np.ndarray:
    """(M, 3) integer offsets from an atom's floor voxel that can lie within ``radius`` Å of it.

    The atom sits at a fraction f in [0, 1) of its floor voxel along each axis, so offset o is at
    least max(0, o − 1, −o) voxels away per axis; offsets farther than ``radius`` are dropped.
    """
    reach = np.ceil(radius / voxel_size).astype(np.int64)
    axes = [np.arange(-reach[axis], reach[axis] + 2) for axis in range(3)]
    offsets = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=1)
    nearest = np.maximum(0, np.maximum(offsets - 1, -offsets)) * voxel_size
    return offsets[np.sum(nearest**2, axis=1) <= radius**2]


def _mark_voxels_near(mask: np.ndarray, grid: Grid, coords: np.ndarray, offsets: np.ndarray, radius: float):
    """Set ``mask`` True at voxels within ``radius`` Å of any atom of ``coords`` (K, 3)."""
    continuous = grid.world_to_index(coords)
    voxels = np.floor(continuous).astype(np.int64)[:, None, :] + offsets[None, :, :]
    squared_distance = np.sum(((voxels - continuous[:, None, :]) * grid.voxel_size) ** 2, axis=2)
    keep = (squared_distance <= radius**2) & np.all((voxels >= 0) & (voxels < np.asarray(grid.shape)), axis=2)
    selected = voxels[keep]
    mask[selected[:, 0], selected[:, 1], selected[:, 2]] = True


def soft_atom_mask(coords, grid: Grid, radius: float = 3.0, edge_width: float = 3.0) -> np.ndarray:
    """:func:`atom_mask` with a raised-cosine edge: 1 inside, falling to 0 over ``edge_width`` Å.

    The edge follows the Euclidean distance (Å, anisotropic voxels respected) from each outside
    voxel centre to the nearest inside voxel centre d: weight ½(1 + cos(π d / edge_width)), 0 beyond
    ``edge_width`` (:func:`cryomaps.signal.windows.cosine_ramp` of ``1 − d / edge_width``).

    Returns:
        float64 array of shape ``grid.shape`` with values in [0, 1].
    """
    from scipy.ndimage import distance_transform_edt

    hard = atom_mask(coords, grid, radius)
    if edge_width <= 0 or not hard.any():
        return hard.astype(np.float64)
    distance = distance_transform_edt(~hard, sampling=grid.voxel_size)
    return cosine_ramp(torch.from_numpy(1.0 - distance / edge_width)).numpy()


def mask_iou(pred_mask, ref_mask, threshold: float = 0.5) -> float:
    """Intersection over union of two masks of one shape (x, y, z).

    Values above ``threshold`` count as inside (boolean masks work as they are). Two empty masks
    agree perfectly and give 1.0.
    """
    pred_inside = np.asarray(pred_mask) > threshold
    ref_inside = np.asarray(ref_mask) > threshold
    if pred_inside.shape != ref_inside.shape:
        raise ValueError(f"mask shapes differ: {pred_inside.shape} vs {ref_inside.shape}")
    union = np.count_nonzero(pred_inside | ref_inside)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred_inside & ref_inside) / union


def threshold_mask(density: DensityMap, smoothing: float = 3.0) -> np.ndarray:
    """Molecular mask (x, y, z) bool: the map smoothed by a Gaussian of ``smoothing`` Å (SD), above
    its Otsu threshold (smoothing averages the noise away, leaving molecule and solvent as two modes)."""
    from scipy.ndimage import gaussian_filter
    from skimage.filters import threshold_otsu

    smoothed = gaussian_filter(density.data.astype(np.float64), sigma=smoothing / np.asarray(density.voxel_size))
    return smoothed > threshold_otsu(smoothed)
