"""Correlation coefficients between maps, in float64.

Both formulas return NaN when a denominator is zero (a constant or empty set of values), so a
degenerate map shows up as a missing number rather than an error.
"""

from __future__ import annotations

import numpy as np

from cryomaps.metrics.masks import atom_mask
from cryomaps.metrics.volumes import align_to_reference, as_density_map, volume_array


def correlation_about_zero(first, second) -> float:
    """Σab / √(Σa² Σb²) over paired values ``first`` and ``second`` (arrays of one shape)."""
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    denominator = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denominator) if denominator > 0 else float("nan")


def correlation_about_mean(first, second) -> float:
    """Pearson correlation: :func:`correlation_about_zero` after subtracting each set's mean."""
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    if a.size == 0:
        return float("nan")
    return correlation_about_zero(a - a.mean(), b - b.mean())


def masked_correlation(pred, ref, model_coords, radius: float = 3.0) -> float:
    """Pearson correlation of two maps over the voxels within ``radius`` Å of any atom.

    Args:
        pred: map to score (DensityMap, or array/tensor (x, y, z) on ``ref``'s grid); resampled onto
            ``ref``'s grid when the grids differ.
        ref: reference map; its grid defines the mask (a bare array gets 1 Å voxels at origin 0).
        model_coords: (N, 3) atom positions in Å, in the maps' frame.
        radius: mask radius around each atom, Å.

    Returns:
        The correlation about the mean of the raw map values inside the mask (NaN when empty).
    """
    ref_map = as_density_map(ref)
    pred_values = volume_array(align_to_reference(pred, ref))
    mask = atom_mask(model_coords, ref_map.grid, radius)
    return correlation_about_mean(pred_values[mask], volume_array(ref_map)[mask])
