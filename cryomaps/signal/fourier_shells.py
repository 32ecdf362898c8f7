"""Fourier shells: the spherical shell of spatial frequency of every rfftn coefficient of a box, sums
over shells, the Fourier shell correlation (FSC) per shell and the resolution where it crosses a
threshold. One convention for every FSC in cryomaps: ``evaluate``'s map-to-map FSC
(:mod:`cryomaps.metrics.fsc`), the windowed half-map local FSC (:mod:`cryomaps.signal.local_fsc`) and
the expected FSC behind the synthetic labels (:mod:`cryomaps.data.synthetic`).

**Shells.** Frequencies are physical (1/Å): along axis ``a`` of ``n_a`` voxels of ``h_a`` Å the
samples are spaced ``1/(n_a h_a)`` (``torch.fft.fftfreq``, ``rfftfreq`` on the last axis), so boxes
that are not cubic and voxels that are not isotropic still give spherical shells. The shell width
is the coarsest spacing, ``Δs = max_a 1/(n_a h_a)``, and coefficient ``s`` lies in shell
``round(|s| / Δs)`` (half to even): shell ``k`` is centred on ``k Δs``, shell 0 is the zero
frequency. The last shell is ``floor(min_a 1/(2 h_a) / Δs)`` (to within 1e-6 of a shell), the last one
at or below the Nyquist frequency of the most coarsely sampled axis; the corner coefficients beyond
it belong to no shell. Sums over the half spectrum count each coefficient twice, for its Hermitian
mirror, except on the last axis's zero and Nyquist planes, so they equal sums over the whole sphere.

**Crossing rule** (:func:`crossing_resolution`, the only one in cryomaps). Over the shells above
zero frequency, the curve crosses ``threshold`` between the first shell below it and the shell before,
at the frequency interpolated linearly between the two; the resolution is the reciprocal, clamped to
``[finest, coarsest]`` Å. A curve that never falls below the threshold gives ``finest`` (the crossing
lies at or beyond the last shell); a curve already below at the first shell gives ``coarsest``
(the crossing lies at or before it). ``finest`` and ``coarsest`` default to the resolutions of the
last and first shells; the local FSC passes the Nyquist resolution and the window size.

**The CryoRes spectral head** bins by its own, older rule (:func:`nyquist_fraction_shell_index`:
``floor``, shells as fractions of the Nyquist frequency in cycles per voxel) and keeps it, because
networks with a spectral head were trained on those features.

Arrays are indexed (x, y, z); lengths in Å, frequencies in 1/Å.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SHELL_EDGE_TOLERANCE = 1e-6
"""Fraction of a shell by which the Nyquist frequency may fall short of the last shell's centre."""


def voxel_size_per_axis(voxel_size) -> np.ndarray:
    """Voxel size (Å, one number or three) as a float64 (3,) array."""
    return np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,)).copy()


def frequency_radius(shape, voxel_size=1.0, device=None) -> torch.Tensor:
    """|s| (1/Å; cycles per voxel for ``voxel_size`` 1) of every rfftn coefficient of a box ``shape``
    (n_x, n_y, n_z) of voxel size ``voxel_size`` (Å, one number or three): float64 (n_x, n_y, n_z//2 + 1)."""
    voxel = voxel_size_per_axis(voxel_size)
    axes = [torch.fft.fftfreq(n, d=float(h), dtype=torch.float64, device=device) for n, h in zip(shape[:2], voxel[:2])]
    axes.append(torch.fft.rfftfreq(shape[2], d=float(voxel[2]), dtype=torch.float64, device=device))
    fx, fy, fz = torch.meshgrid(*axes, indexing="ij")
    return torch.sqrt(fx * fx + fy * fy + fz * fz)


def half_spectrum_multiplicity(n_z: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """(n_z//2 + 1,) weights of the rfftn planes along the last axis: 2 (the plane and its Hermitian
    mirror), 1 for the zero plane and, for even ``n_z``, the Nyquist plane."""
    multiplicity = torch.full((n_z // 2 + 1,), 2.0, dtype=dtype, device=device)
    multiplicity[0] = 1.0
    if n_z % 2 == 0:
        multiplicity[-1] = 1.0
    return multiplicity


@dataclass(frozen=True)
class FourierShells:
    """Shell assignment of the rfftn coefficients of one box (module docstring).

    Attributes:
        index: (n_x, n_y, n_z//2 + 1) int64 shell of every coefficient; ``n_shells`` for those
            beyond the last shell.
        multiplicity: (n_z//2 + 1,) float64 :func:`half_spectrum_multiplicity`, broadcast over the
            last axis.
        width: shell width Δs (1/Å).
        n_shells: number of shells, zero frequency included (shells 0 … n_shells − 1).
    """

    index: torch.Tensor
    multiplicity: torch.Tensor
    width: float
    n_shells: int

    @property
    def frequency(self) -> np.ndarray:
        """(n_shells,) float64 shell centres ``k Δs`` (1/Å); shell 0 is zero frequency."""
        return np.arange(self.n_shells) * self.width


def fourier_shells(shape, voxel_size=1.0, device=None) -> FourierShells:
    """The :class:`FourierShells` of a box ``shape`` (n_x, n_y, n_z) of voxel size (Å, one number or three)."""
    voxel = voxel_size_per_axis(voxel_size)
    width = max(1.0 / (n * h) for n, h in zip(shape, voxel))
    nyquist = min(0.5 / h for h in voxel)
    n_shells = int(math.floor(nyquist / width + SHELL_EDGE_TOLERANCE)) + 1
    index = torch.round(frequency_radius(shape, voxel, device) / width).long().clamp(max=n_shells)
    return FourierShells(index, half_spectrum_multiplicity(shape[2], device=device), width, n_shells)


def shell_sums(values: torch.Tensor, shells: FourierShells) -> torch.Tensor:
    """Full-sphere sums per shell of ``values`` (..., n_x, n_y, n_z//2 + 1) given on the rfftn half
    spectrum (real): (..., n_shells)."""
    weighted = (values * shells.multiplicity.to(values.dtype)).flatten(-3)
    totals = weighted.new_zeros(weighted.shape[:-1] + (shells.n_shells + 1,))
    totals.index_add_(-1, shells.index.flatten(), weighted)
    return totals[..., : shells.n_shells]


def shell_matrix(shells: FourierShells, dtype=torch.float64, device=None) -> torch.Tensor:
    """(n_x n_y (n_z//2 + 1), n_shells) matrix whose row for a coefficient (flat rfftn order) holds its
    multiplicity in its shell's column (a zero row beyond the last shell): ``values.flatten(-3) @
    matrix`` equals :func:`shell_sums`, as one matrix product (fast on GPUs for batches)."""
    index = shells.index.flatten().cpu()
    multiplicity = shells.multiplicity.cpu().expand(shells.index.shape).flatten()
    matrix = torch.zeros(len(index), shells.n_shells + 1, dtype=torch.float64)
    matrix[torch.arange(len(index)), index] = multiplicity
    return matrix[:, : shells.n_shells].to(device=device, dtype=dtype)


def correlation_from_sums(cross: torch.Tensor, power1: torch.Tensor, power2: torch.Tensor) -> torch.Tensor:
    """FSC per shell from the shell sums of ``Re F1 F2*``, ``|F1|²`` and ``|F2|²`` (same shapes):
    ``cross / sqrt(power1 power2)``, 0 where a shell has no power."""
    denominator = torch.sqrt(power1 * power2)
    tiny = torch.finfo(denominator.dtype).tiny
    return torch.where(denominator > 0, cross / denominator.clamp(min=tiny), torch.zeros_like(cross))


def shell_correlation(spectrum1: torch.Tensor, spectrum2: torch.Tensor, shells: FourierShells) -> torch.Tensor:
    """FSC per shell (..., n_shells) of two rfftn spectra (..., n_x, n_y, n_z//2 + 1) of one box."""
    cross = shell_sums((spectrum1 * spectrum2.conj()).real, shells)
    power1 = shell_sums(spectrum1.abs().square(), shells)
    power2 = shell_sums(spectrum2.abs().square(), shells)
    return correlation_from_sums(cross, power1, power2)


def crossing_resolution(
    fsc: torch.Tensor, frequency, threshold: float, finest: float | None = None, coarsest: float | None = None
) -> torch.Tensor:
    """Resolution (Å) where each FSC curve first falls below ``threshold`` (the module's crossing rule).

    Args:
        fsc: (..., n) FSC curves over shells of increasing non-zero frequency (zero frequency left out).
        frequency: (n,) the shells' frequencies (1/Å).
        threshold: FSC value defining the resolution.
        finest: Å, the result for curves that never fall below, and the lower clamp; default the
            last shell's resolution ``1 / frequency[-1]``.
        coarsest: Å, the result for curves below at the first shell, and the upper clamp; default
            the first shell's resolution ``1 / frequency[0]``.
    Returns:
        (...) tensor of resolutions (Å), dtype of ``fsc``.
    """
    frequency = torch.as_tensor(np.asarray(frequency), dtype=fsc.dtype, device=fsc.device)
    finest = float(1.0 / frequency[-1]) if finest is None else finest
    coarsest = float(1.0 / frequency[0]) if coarsest is None else coarsest
    below = fsc < threshold
    first = torch.argmax(below.to(torch.uint8), dim=-1, keepdim=True)  # first shell below (0 when none)
    previous = (first - 1).clamp(min=0)
    fsc_before, fsc_after = fsc.gather(-1, previous), fsc.gather(-1, first)
    fraction = ((fsc_before - threshold) / (fsc_before - fsc_after).clamp(min=1e-12)).clamp(0.0, 1.0)
    s_before, s_after = frequency[previous], frequency[first]
    crossing = (s_before + fraction * (s_after - s_before))[..., 0]
    first = first[..., 0]
    resolution = torch.where(first == 0, torch.full_like(crossing, coarsest), 1.0 / crossing)
    resolution = torch.where(below.any(dim=-1), resolution, torch.full_like(crossing, finest))
    return resolution.clamp(min=finest, max=coarsest)


def nyquist_fraction_shell_index(shape, shells: int, device=None) -> torch.Tensor:
    """The CryoRes spectral head's binning: int64 shell ``floor(|f| / f_N · shells)`` of every rfftn
    coefficient (n_x, n_y, n_z//2 + 1) of a box ``shape``, with ``f`` in cycles per voxel and
    ``f_N = 0.5``, so shell ``i`` spans ``[i, i + 1) f_N / shells`` for any box size; ``shells`` and
    above lie beyond Nyquist. Kept apart from :func:`fourier_shells` (round, physical width) because
    trained spectral heads depend on it."""
    return torch.floor(frequency_radius(shape, 1.0, device) / 0.5 * shells).long()
