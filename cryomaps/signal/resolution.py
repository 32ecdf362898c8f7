"""An FSC-free estimate of a map's resolution from its Fourier falloff against a model map.

A map at resolution R is read, in the molmap convention of :mod:`cryomaps.signal.lowpass`, as the
true density blurred by a Gaussian of σ = 0.225·R. Given a sharp rendering of the fitted model
(molmap at resolution r₀, σ₀ = 0.225·r₀) on the map's grid, the per-shell least-squares scale of
the map on the model,

    g(s) = Re Σ F_map(k)·F_model(k)* / Σ |F_model(k)|²      (sums over the shell |k| ≈ s, 1/Å),

behaves as c·exp(−2π²(σ² − σ₀²)s²): noise and density the model does not explain average out of
the cross spectrum. A straight-line fit of log g against s² over the shells from 1/20 Å⁻¹ up to the
first shell where g falls below 10 % of its low-frequency value gives σ² − σ₀², hence R. Because a
Gaussian low-pass multiplies g by exactly exp(−2π²σ_f²s²), a map filtered from d₀ to R
(:func:`cryomaps.signal.low_pass_to_resolution`) moves the estimate by the same σ_f² that defines R.
"""

from __future__ import annotations

import math

import numpy as np

from cryomaps.render import MOLMAP_SIGMA_FACTOR
from cryomaps.signal.fourier_shells import fourier_shells, voxel_size_per_axis

LOWEST_FITTED_FREQUENCY = 1.0 / 20.0
"""1/Å: shells below it (overall shape, solvent, box) are left out of the fit."""
FALLOFF_FLOOR = 0.1
"""The fit stops at the first shell where g(s) is below this fraction of its largest low-frequency value."""
MIN_FITTED_SHELLS = 3


class ResolutionEstimateError(ValueError):
    """The map and the model share too little signal to fit a falloff."""


def spectral_resolution(density: np.ndarray, model_density: np.ndarray, voxel_size, model_resolution: float) -> float:
    """Resolution (Å, molmap convention) of ``density`` from its falloff against ``model_density``.

    Args:
        density: (nx, ny, nz) map, indexed (x, y, z).
        model_density: (nx, ny, nz) molmap rendering of the model fitted in it, on the same grid.
        voxel_size: Å, one number or three.
        model_resolution: Å, the resolution ``model_density`` was rendered at (r₀; best ≈ 2 voxels).

    Raises:
        ResolutionEstimateError: fewer than 3 shells to fit, or a falloff that does not decrease.
    """
    spacing = voxel_size_per_axis(voxel_size)
    frequency, gain = _shell_gain(np.asarray(density, np.float64), np.asarray(model_density, np.float64), spacing)
    reference = gain[: max(3, int(np.searchsorted(frequency, LOWEST_FITTED_FREQUENCY)) + 1)].max()
    below = np.flatnonzero(gain < FALLOFF_FLOOR * reference)
    end = below[0] if below.size else len(gain)
    fitted = slice(int(np.searchsorted(frequency, LOWEST_FITTED_FREQUENCY)), end)
    s2, log_gain = frequency[fitted] ** 2, np.log(gain[fitted])
    if len(s2) < MIN_FITTED_SHELLS:
        raise ResolutionEstimateError(f"only {len(s2)} Fourier shells where the map follows the model (need {MIN_FITTED_SHELLS})")
    slope = np.polyfit(s2, log_gain, 1)[0]
    extra_variance = max(-slope / (2 * math.pi**2), 0.0)
    return math.sqrt(extra_variance + (MOLMAP_SIGMA_FACTOR * model_resolution) ** 2) / MOLMAP_SIGMA_FACTOR


def _shell_gain(density: np.ndarray, model_density: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shell frequencies (1/Å, from the first non-zero shell to Nyquist) and g(s) for each.

    Shells are those of :func:`cryomaps.signal.fourier_shells.fourier_shells`; the sums run over the
    rfftn half spectrum as it is (each coefficient once, without the Hermitian multiplicity), the
    sums this estimator was calibrated with: with the multiplicity the estimates move by up to 9 %
    (2.28 -> 2.49 Å on EMD-20026).
    """
    shape = density.shape
    if model_density.shape != shape:
        raise ValueError(f"map {shape} and model map {model_density.shape} differ in shape")
    shells = fourier_shells(shape, spacing)
    index = shells.index.numpy().ravel()
    map_transform, model_transform = np.fft.rfftn(density), np.fft.rfftn(model_density)
    n_bins = shells.n_shells + 1  # the last bin holds the coefficients beyond the last shell
    cross = np.bincount(index, (map_transform * model_transform.conj()).real.ravel(), minlength=n_bins)[1 : shells.n_shells]
    power = np.bincount(index, (np.abs(model_transform) ** 2).ravel(), minlength=n_bins)[1 : shells.n_shells]
    frequency = shells.frequency[1:]
    keep = power > 1e-12 * power.max()
    return frequency[keep], np.where(cross[keep] > 0, cross[keep], 1e-300) / power[keep]
