"""Fourier shell correlation (FSC) between two maps on one grid, and its resolution crossings.

Shells and the crossing rule are those of :mod:`cryomaps.signal.fourier_shells` (physical
frequencies in 1/Å, shell k holds round(|s| / Δs) = k with Δs the coarsest axis spacing, shells up
to the Nyquist frequency of the most coarsely sampled axis). The curve holds shells k = 1 … N; the
DC term (k = 0) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryomaps.metrics.volumes import align_to_reference, voxel_size_of, volume_array
from cryomaps.signal.fourier_shells import crossing_resolution, fourier_shells, shell_correlation, shell_sums


@dataclass(frozen=True)
class FSCCurve:
    """An FSC curve.

    Attributes:
        frequencies: (n_shells,) shell centres, 1/Å, increasing.
        correlations: (n_shells,) FSC per shell (0 where a map has no power in the shell).
        n_coefficients: (n_shells,) Fourier coefficients per shell (whole sphere).
    """

    frequencies: np.ndarray
    correlations: np.ndarray
    n_coefficients: np.ndarray

    @property
    def resolutions(self) -> np.ndarray:
        """(n_shells,) shell centres as resolutions, Å."""
        return 1.0 / self.frequencies

    def resolution_at(self, threshold: float) -> float:
        """Resolution (Å) where the curve first falls below ``threshold``
        (:func:`cryomaps.signal.fourier_shells.crossing_resolution`): interpolated linearly in
        frequency between the last shell at or above the threshold and the first one below it; a
        curve that never falls below gives the resolution of the last shell, one already below at the
        first shell gives the resolution of the first shell.
        """
        return float(crossing_resolution(torch.from_numpy(self.correlations), self.frequencies, threshold))


def fourier_shell_correlation(first, second, voxel_size=None) -> FSCCurve:
    """FSC between two maps on the same grid.

    Args:
        first, second: maps of one shape (x, y, z): DensityMaps, arrays or tensors.
        voxel_size: Å, 1 or 3 numbers; default: ``first``'s voxel size when it is a DensityMap,
            else 1 Å.

    Returns:
        The :class:`FSCCurve`.
    """
    a, b = volume_array(first), volume_array(second)
    if a.shape != b.shape:
        raise ValueError(f"FSC needs maps on one grid, got shapes {a.shape} and {b.shape}")
    if voxel_size is None:
        voxel_size = voxel_size_of(first)
    shells = fourier_shells(a.shape, voxel_size)
    transform_a, transform_b = torch.fft.rfftn(torch.tensor(a)), torch.fft.rfftn(torch.tensor(b))  # copies: inputs may be read-only
    correlations = shell_correlation(transform_a, transform_b, shells)[1:].numpy()
    counts = shell_sums(torch.ones(transform_a.shape, dtype=torch.float64), shells)[1:].numpy()
    frequencies = shells.frequency[1:]
    return FSCCurve(frequencies, correlations, counts.round().astype(np.int64))


def map_model_fsc(density_map, model_map, mask=None) -> FSCCurve:
    """FSC of a map against a map rendered from its atomic model, optionally inside a (soft) mask.

    Args:
        density_map: the map (DensityMap, or array with ``model_map`` on one grid).
        model_map: the model-rendered map; resampled onto ``density_map``'s grid if it differs.
        mask: optional (x, y, z) weights on ``density_map``'s grid (e.g.
            :func:`cryomaps.metrics.soft_atom_mask`) multiplied into both maps.
    """
    values = volume_array(density_map)
    model_values = volume_array(align_to_reference(model_map, density_map))
    if mask is not None:
        weights = volume_array(mask)
        values, model_values = values * weights, model_values * weights
    return fourier_shell_correlation(values, model_values, voxel_size_of(density_map))
