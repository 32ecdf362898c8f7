"""Fourier shell correlation (FSC) between two maps on one grid, and its resolution crossings.

Frequencies are physical (1/Å): along axis i the Fourier samples are spaced 1/(nᵢ·hᵢ) for nᵢ
voxels of hᵢ Å, so boxes that are not cubic and voxels that are not isotropic still give
spherical shells. Shell k holds the coefficients with round(|s| / Δs) = k, where the shell width Δs
is the coarsest of the axes' spacings; shells run from k = 1 up to the Nyquist frequency of the
most coarsely sampled axis, min 1/(2hᵢ). The DC term (k = 0) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryomaps.metrics.volumes import align_to_reference, voxel_size_of, volume_array


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
        """Resolution (Å) where the curve first falls below ``threshold``.

        The crossing frequency is interpolated linearly between the last shell at or above the
        threshold and the first shell below it. A curve that never falls below gives the
        resolution of the last shell (the crossing is at or beyond it); one already below at the
        first shell gives the resolution of the first shell.
        """
        below = np.flatnonzero(self.correlations < threshold)
        if below.size == 0:
            return float(1.0 / self.frequencies[-1])
        first = below[0]
        if first == 0:
            return float(1.0 / self.frequencies[0])
        fsc_high, fsc_low = self.correlations[first - 1], self.correlations[first]
        s_before, s_after = self.frequencies[first - 1], self.frequencies[first]
        crossing = s_before + (fsc_high - threshold) / (fsc_high - fsc_low) * (s_after - s_before)
        return float(1.0 / crossing)


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
    voxel_size = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    shell_index, shell_width, n_shells = _shell_indices(a.shape, voxel_size)
    weights = _half_spectrum_weights(a.shape[2])
    transform_a, transform_b = np.fft.rfftn(a), np.fft.rfftn(b)

    def shell_sums(values: np.ndarray) -> np.ndarray:
        return np.bincount(shell_index.ravel(), (values * weights).ravel(), minlength=n_shells + 1)

    cross = shell_sums(np.real(transform_a * np.conj(transform_b)))
    power_a = shell_sums(np.abs(transform_a) ** 2)
    power_b = shell_sums(np.abs(transform_b) ** 2)
    counts = shell_sums(np.ones(shell_index.shape))
    shells = slice(1, n_shells + 1)
    denominator = np.sqrt(power_a[shells] * power_b[shells])
    correlations = np.divide(cross[shells], denominator, out=np.zeros(n_shells), where=denominator > 0)
    frequencies = np.arange(1, n_shells + 1) * shell_width
    return FSCCurve(frequencies, correlations, counts[shells].round().astype(np.int64))


def _shell_indices(shape, voxel_size: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Shell index of every rfftn coefficient, the shell width (1/Å) and the number of shells.

    Coefficients beyond the last shell get index ``n_shells + 1`` and are ignored by the caller.
    """
    nx, ny, nz = shape
    shell_width = float(np.max(1.0 / (np.asarray(shape) * voxel_size)))
    n_shells = int(np.floor(np.min(0.5 / voxel_size) / shell_width + 1e-9))
    sx = np.fft.fftfreq(nx, voxel_size[0])[:, None, None]
    sy = np.fft.fftfreq(ny, voxel_size[1])[None, :, None]
    sz = np.fft.rfftfreq(nz, voxel_size[2])[None, None, :]
    radius = np.sqrt(sx**2 + sy**2 + sz**2)
    index = np.rint(radius / shell_width).astype(np.int64)
    return np.minimum(index, n_shells + 1), shell_width, n_shells


def _half_spectrum_weights(nz: int) -> np.ndarray:
    """Weights (1, 1, nz//2+1) that make sums over an rfftn half spectrum equal full-sphere sums.

    Every z-frequency plane except 0 (and nz/2 for even nz) stands for itself and its conjugate.
    """
    weights = np.full(nz // 2 + 1, 2.0)
    weights[0] = 1.0
    if nz % 2 == 0:
        weights[-1] = 1.0
    return weights[None, None, :]


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
