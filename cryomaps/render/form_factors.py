"""Atomic form factors of the density models, as tensors.

The electron scattering factors are the 5-Gaussian fits of Peng et al. (1996), tabulated in the
International Tables for Crystallography vol. C, table 4.3.2.2. They are read from gemmi at runtime
(``gemmi.Element(z).c4322``), never copied into cryomaps. With those coefficients the real-space
electron potential of one atom at distance ``r`` (Å) is::

    rho(r) = occ * sum_i a_i * (4 pi / (b_i + B))**1.5 * exp(-4 pi**2 r**2 / (b_i + B))

i.e. a sum of normalised isotropic Gaussians (:func:`gaussian_density`) of weight ``occ * a_i`` and
per-axis variance ``(b_i + B) / (8 pi**2)`` Å² (:func:`peng_gaussian_terms`), where ``B`` is the atomic
displacement (B-factor, Å²). Its Fourier transform at spatial frequency ``s`` (1/Å) is the form
factor ``f(s) = sum_i a_i exp(-(b_i + B) s**2 / 4)`` (:func:`peng_form_factor` for ``B = 0``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from cryomaps.errors import InputError

PENG_TERMS = 5
"""Number of Gaussians per element in the Peng / ITC 4.3.2.2 fit."""

MAX_PENG_ATOMIC_NUMBER = 98
"""Heaviest element (Cf) that table 4.3.2.2 covers."""

EIGHT_PI_SQUARED = 8.0 * math.pi**2
"""Factor between a B-factor and a Gaussian variance: variance (Å²) = B (Å²) / (8 pi²)."""


def b_factor_to_variance(b_factor):
    """Per-axis Gaussian variance (Å²) of a B-factor (Å²): ``B / (8 pi²)``."""
    return b_factor / EIGHT_PI_SQUARED


def variance_to_b_factor(variance):
    """B-factor (Å²) of a per-axis Gaussian variance (Å²): ``8 pi² variance``."""
    return variance * EIGHT_PI_SQUARED


@functools.lru_cache(maxsize=1)
def _peng_table() -> tuple[np.ndarray, np.ndarray]:
    """Rows ``z = 0..98`` of the c4322 ``a`` and ``b`` coefficients; row 0 is NaN (no element)."""
    import gemmi

    a = np.full((MAX_PENG_ATOMIC_NUMBER + 1, PENG_TERMS), np.nan)
    b = np.full((MAX_PENG_ATOMIC_NUMBER + 1, PENG_TERMS), np.nan)
    for z in range(1, MAX_PENG_ATOMIC_NUMBER + 1):
        coefficients = gemmi.Element(z).c4322
        a[z] = coefficients.a
        b[z] = coefficients.b
    return a, b


def check_atomic_numbers(atomic_numbers: torch.Tensor, max_atomic_number: int) -> None:
    """Raise :class:`InputError` unless every atomic number lies in ``1..max_atomic_number``."""
    if atomic_numbers.numel() == 0:
        return
    low, high = int(atomic_numbers.min()), int(atomic_numbers.max())
    if low < 1 or high > max_atomic_number:
        bad = sorted({int(z) for z in atomic_numbers.reshape(-1).tolist() if not 1 <= z <= max_atomic_number})
        raise InputError(
            None, f"atomic numbers {bad[:10]} are outside 1..{max_atomic_number} (unknown element?)"
        )


def peng_coefficients(
    atomic_numbers: torch.Tensor, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Peng / ITC 4.3.2.2 electron scattering coefficients of each atom.

    Args:
        atomic_numbers: integer tensor of any shape ``S`` (values 1..98).
        dtype: floating dtype of the result.

    Returns:
        ``(a, b)``, each of shape ``S + (5,)`` on the device of ``atomic_numbers``: ``a`` are the
        Gaussian amplitudes (Å, the integral of each term's potential in cryomaps' units) and ``b``
        the Gaussian widths (Å², B-factor-like: term variance = ``(b + B) / (8 pi²)``).

    Raises:
        InputError: an atomic number is outside 1..98.
    """
    atomic_numbers = torch.as_tensor(atomic_numbers)
    check_atomic_numbers(atomic_numbers, MAX_PENG_ATOMIC_NUMBER)
    a_table, b_table = _peng_table()
    index = atomic_numbers.long()
    a = torch.as_tensor(a_table, dtype=dtype, device=index.device)[index]
    b = torch.as_tensor(b_table, dtype=dtype, device=index.device)[index]
    return a, b


def peng_gaussian_terms(atomic_numbers: torch.Tensor, b_factors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The real-space Peng Gaussians of each atom (module docstring), occupancy left out.

    Args:
        atomic_numbers: integer tensor of shape ``S`` (values 1..98).
        b_factors: floating tensor (Å²) broadcastable to ``S``; sets the dtype and device.

    Returns:
        ``(a, variances)``, each ``S + (5,)``: the weights ``a_i`` (Å) and the per-axis variances
        ``(b_i + B) / (8 pi²)`` (Å²) of the terms ``a_i G(r; variance_i)``.
    """
    a, b = peng_coefficients(atomic_numbers.to(b_factors.device), dtype=b_factors.dtype)
    return a, b_factor_to_variance(b + b_factors[..., None])


def gaussian_density(squared_distance: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Normalised isotropic 3-D Gaussian ``(2 pi v)**-1.5 exp(-r² / (2 v))`` (Å⁻³) at squared distance
    ``r²`` (Å²) for per-axis variance ``v`` (Å²); tensors broadcast together."""
    return (2.0 * math.pi * variance) ** -1.5 * torch.exp(-squared_distance / (2.0 * variance))


def peng_form_factor(atomic_numbers, frequency) -> np.ndarray:
    """Peng / ITC 4.3.2.2 electron form factor ``sum_i a_i exp(-b_i s² / 4)`` (Å) of each atom at
    spatial frequency ``s`` (1/Å).

    Args:
        atomic_numbers: integers (values 1..98), array-like of shape ``S`` (a scalar for one element).
        frequency: 1/Å, array-like broadcastable against ``S``.

    Returns:
        float64 array of the broadcast shape of ``S`` and ``frequency``.
    """
    a, b = (t.numpy() for t in peng_coefficients(torch.as_tensor(np.asarray(atomic_numbers))))
    s = np.asarray(frequency, dtype=np.float64)[..., None]
    return np.sum(a * np.exp(-b * s**2 / 4.0), axis=-1)
