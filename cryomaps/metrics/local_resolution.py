"""Scores for local-resolution maps (values in Å)."""

from __future__ import annotations

import numpy as np

from cryomaps.metrics.volumes import volume_array


def local_resolution_rmse(pred, ref, mask=None) -> float:
    """Root-mean-square difference (Å) between two local-resolution maps of one shape (x, y, z).

    Args:
        pred, ref: local-resolution maps in Å (DensityMaps, arrays or tensors).
        mask: optional (x, y, z) array; voxels with a value above 0.5 (or True) are scored.
            Default: every voxel.

    Returns:
        The RMSE in Å, NaN when the mask is empty.
    """
    pred_values, ref_values = volume_array(pred), volume_array(ref)
    if pred_values.shape != ref_values.shape:
        raise ValueError(f"local-resolution maps differ in shape: {pred_values.shape} vs {ref_values.shape}")
    inside = np.ones(ref_values.shape, dtype=bool) if mask is None else np.asarray(mask) > 0.5
    if not inside.any():
        return float("nan")
    difference = pred_values[inside] - ref_values[inside]
    return float(np.sqrt(np.mean(difference**2)))
