"""The struc2mapGAN evaluation metrics (Zhang, Condon & Dao Duc 2024), reproduced exactly.

Preprocessing for SSIM and Pearson correlation (the order of the authors' evaluation code), applied
to each map separately:

1. threshold = 90th percentile (NumPy's default linear interpolation) of the map's *non-zero*
   voxel values — negative values count, exact zeros (masked background) do not;
2. voxels strictly below the threshold are set to 0 (voxels equal to it are kept);
3. the whole box is min-max scaled to [0, 1]: (v − min) / (max − min).

SSIM is then scikit-image's ``structural_similarity`` with its defaults (7-voxel uniform window,
sample covariance) and ``data_range=1`` (the authors pass max − min of the second scaled map,
which is 1). Pearson correlation is taken over all voxels of the box. We compute in float64; the
authors' float32 arrays give the same values to about 1e-6.

The "ChimeraX" correlations reproduce ``measure correlation #ref inMap #other``: over the voxels of
the reference map above its initial contour level (ChimeraX opens a map at the level that leaves
1 % of the voxels above it), the other map is interpolated trilinearly at those voxel centres in
world coordinates (0 outside its box), and the correlation about zero Σab/√(Σa²Σb²) and about the
mean (means over those points subtracted) are reported. ChimeraX finds its level from a
histogram; here it is exact (see :func:`contour_level_enclosing`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryomaps.io import sample_map
from cryomaps.metrics.correlation import correlation_about_mean, correlation_about_zero
from cryomaps.metrics.volumes import align_to_reference, as_density_map, grid_of, volume_array

PUBLISHED_PERCENTILE = 90.0
CHIMERAX_ENCLOSED_FRACTION = 0.01


def struc2mapgan_preprocess(volume, percentile: float = PUBLISHED_PERCENTILE) -> np.ndarray:
    """Keep the voxels at or above the ``percentile`` of the non-zero values, then min-max to [0, 1].

    Args:
        volume: map (DensityMap, array or tensor, (x, y, z)).
        percentile: of the non-zero voxel values, in percent.

    Returns:
        float64 array of the same shape. A map with no non-zero voxel, or one that is constant
        after thresholding, becomes all zeros.
    """
    values = volume_array(volume).copy()
    nonzero = values[values != 0]
    if nonzero.size == 0:
        return np.zeros_like(values)
    values[values < np.percentile(nonzero, percentile)] = 0.0
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def struc2mapgan_ssim(pred, ref) -> float:
    """Published SSIM of two maps on one grid (see module docstring); each axis needs ≥ 7 voxels."""
    from skimage.metrics import structural_similarity

    pred_scaled, ref_scaled = _preprocessed_pair(pred, ref)
    return float(structural_similarity(pred_scaled, ref_scaled, data_range=1.0))


def struc2mapgan_pearson(pred, ref) -> float:
    """Published Pearson correlation over all voxels of the preprocessed maps (NaN if constant)."""
    pred_scaled, ref_scaled = _preprocessed_pair(pred, ref)
    return correlation_about_mean(pred_scaled, ref_scaled)


def _preprocessed_pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    """Both maps on ``ref``'s grid, each passed through :func:`struc2mapgan_preprocess`."""
    return struc2mapgan_preprocess(align_to_reference(pred, ref)), struc2mapgan_preprocess(ref)


def contour_level_enclosing(volume, fraction: float = CHIMERAX_ENCLOSED_FRACTION) -> float:
    """The level with k = max(1, round(fraction · n_voxels)) voxels strictly above it.

    The level is the (k+1)-th largest voxel value, so exactly k voxels exceed it when values are
    distinct (ties at the level make it fewer).

    Args:
        volume: map (DensityMap, array or tensor, (x, y, z)).
        fraction: share of the box's voxels to enclose, in (0, 1).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    values = volume_array(volume).ravel()
    n_above = min(max(1, round(fraction * values.size)), values.size - 1)
    position = values.size - n_above - 1
    return float(np.partition(values, position)[position])


@dataclass(frozen=True)
class ChimeraXCorrelation:
    """Result of :func:`chimerax_correlation`.

    Attributes:
        about_zero: Σab / √(Σa² Σb²).
        about_mean: the same after subtracting the means over the points.
        contour_level: the reference level used (map units).
        n_points: reference voxels above the level.
    """

    about_zero: float
    about_mean: float
    contour_level: float
    n_points: int


def chimerax_correlation(ref, other, fraction: float = CHIMERAX_ENCLOSED_FRACTION) -> ChimeraXCorrelation:
    """ChimeraX ``measure correlation ref inMap other`` at the contour enclosing ``fraction`` of the box.

    Args:
        ref: map whose voxels above the level are the sample points (DensityMap, or array on
            ``other``'s grid).
        other: map interpolated trilinearly at those voxel centres (world coordinates, Å; 0 outside
            its box); may lie on any grid when both are DensityMaps.
        fraction: share of the reference box above the contour level.
    """
    ref_map = as_density_map(ref, grid_of(other))
    other_map = as_density_map(other, ref_map.grid)
    level = contour_level_enclosing(ref_map, fraction)
    ref_values = volume_array(ref_map)
    above = np.argwhere(ref_values > level)
    points = ref_map.grid.index_to_world(above)
    other_values = sample_map(other_map, points, fill_value=0.0)
    ref_selected = ref_values[tuple(above.T)]
    return ChimeraXCorrelation(
        about_zero=correlation_about_zero(ref_selected, other_values),
        about_mean=correlation_about_mean(ref_selected, other_values),
        contour_level=level,
        n_points=len(above),
    )
