"""Float64 references for finite-resolution maps, independent of the fast renderer.

They serve the tests and ``scripts/bench_finite_resolution.py`` as oracles; both are slow.

- :func:`exact_finite_resolution_map`: structure factors of the continuous Peng form factors,
  ``F(s) = sum_atoms occ * sum_i a_i exp(-(b_i + B) s² / 4) exp(-2 pi i s.x)``, summed directly on
  the reciprocal lattice of a padded box for ``|s| <= 1/d``, then one inverse FFT and a crop. No
  sampling of Gaussians, no windows, no fitted terms. The box is periodic with the given margin,
  and the cut sphere is sampled at the lattice's spacing ``1/L``, so the result converges to the
  continuous map as the margin grows.
- :func:`continuum_finite_resolution_values`: the continuous map itself at chosen points, the sum
  over all atoms of the 1-D image ``rho_d(r)`` (Gauss-Legendre quadrature over ``s``), with no box.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cryomaps.io.grid import Grid
from cryomaps.render.finite_resolution import band_nodes, box_frequencies, inside_band
from cryomaps.render.form_factors import peng_coefficients

_TERMS_PER_CHUNK = 256
_KERNEL_VALUES_PER_CHUNK = 1 << 24


def _peng_terms(atomic_numbers, b_factors, occupancies):
    """Flattened per-term weights (5N,) and B-parameters (5N,) float64, and the atom of each term."""
    a, b = peng_coefficients(torch.as_tensor(atomic_numbers).long(), dtype=torch.float64)
    weights = torch.as_tensor(occupancies, dtype=torch.float64)[:, None] * a
    b_params = b + torch.as_tensor(b_factors, dtype=torch.float64)[:, None]
    atom = torch.arange(a.shape[0]).repeat_interleave(a.shape[1])
    return weights.reshape(-1), b_params.reshape(-1), atom


def exact_finite_resolution_map(
    coords, atomic_numbers, b_factors, occupancies, grid: Grid, resolution: float, margin: float
) -> torch.Tensor:
    """The map (nx, ny, nz) float64 of atoms whose form factors are cut at ``|s| = 1/d``.

    Args:
        coords: (N, 3) positions (Å); atomic_numbers, b_factors (Å²), occupancies: (N,).
        grid: output grid (x, y, z); the box is the grid plus ``margin`` Å on every side (at the
            grid's spacing), and should hold all atoms with room for their ripples.
        resolution: d (Å).
        margin: padding (Å) of the periodic box.
    """
    spacing = grid.voxel_size
    pad = np.ceil(margin / spacing).astype(int)
    shape = tuple(int(n) for n in np.asarray(grid.shape) + 2 * pad)
    positions = torch.as_tensor(np.asarray(coords, dtype=np.float64) - (grid.origin - pad * spacing))
    weights, b_params, atom = _peng_terms(atomic_numbers, b_factors, occupancies)
    axes = box_frequencies(shape, spacing)
    band = inside_band(axes, resolution)
    kept = [torch.nonzero(band.any(dim=others)).squeeze(1) for others in ((1, 2), (0, 2), (0, 1))]
    frequencies = [s[index] for s, index in zip(axes, kept)]
    factors = torch.zeros(tuple(len(s) for s in frequencies), dtype=torch.complex128)
    for start in range(0, len(weights), _TERMS_PER_CHUNK):
        terms = slice(start, start + _TERMS_PER_CHUNK)
        x = positions[atom[terms]]
        # exp(-B s²/4) exp(-2 pi i s.x) factorises over the three axes
        per_axis = [
            torch.exp(-b_params[terms, None] * s**2 / 4.0) * torch.exp(-2j * math.pi * x[:, axis, None] * s)
            for axis, s in enumerate(frequencies)
        ]
        yz = (per_axis[1][:, :, None] * per_axis[2][:, None, :]).reshape(len(x), -1)
        factors += ((per_axis[0] * weights[terms, None]).T @ yz).reshape(factors.shape)
    factors *= band[kept[0][:, None, None], kept[1][:, None], kept[2]]
    spectrum = torch.zeros((shape[0], shape[1], shape[2] // 2 + 1), dtype=torch.complex128)
    spectrum[kept[0][:, None, None], kept[1][:, None], kept[2]] = factors
    density = torch.fft.irfftn(spectrum, s=shape) / float(np.prod(spacing))
    return density[pad[0] : pad[0] + grid.shape[0], pad[1] : pad[1] + grid.shape[1], pad[2] : pad[2] + grid.shape[2]]


def continuum_finite_resolution_values(
    points, coords, atomic_numbers, b_factors, occupancies, resolution: float
) -> np.ndarray:
    """Values (M,) float64 of the continuous finite-resolution map at ``points`` (M, 3) Å.

    ``rho(p) = sum_atoms integral_0^{1/d} 4 pi s² sinc(2 |p - x| s) f_atom(s) ds``, by
    Gauss-Legendre quadrature with enough nodes for the largest point-atom distance.
    """
    points, coords = np.asarray(points, dtype=np.float64), np.asarray(coords, dtype=np.float64)
    both = np.concatenate([points, coords])
    span = np.linalg.norm(both.max(axis=0) - both.min(axis=0))  # the largest point-atom distance, at most
    s, ds = band_nodes(resolution, int(4 * span / resolution) + 64)
    s_t, ds_t = torch.as_tensor(s), torch.as_tensor(ds)
    weights, b_params, atom = _peng_terms(atomic_numbers, b_factors, occupancies)
    form_factors = torch.zeros(int(atom.max()) + 1, len(s), dtype=torch.float64)
    form_factors.index_add_(0, atom, weights[:, None] * torch.exp(-b_params[:, None] * s_t**2 / 4.0))
    form_factors *= 4.0 * math.pi * s_t**2 * ds_t  # (N, Q)
    points_t = torch.as_tensor(np.asarray(points, dtype=np.float64))
    coords_t = torch.as_tensor(np.asarray(coords, dtype=np.float64))
    values = torch.zeros(len(points_t), dtype=torch.float64)
    chunk = max(1, _KERNEL_VALUES_PER_CHUNK // form_factors.numel())
    for start in range(0, len(points_t), chunk):
        distance = torch.cdist(points_t[start : start + chunk], coords_t)  # (P, N)
        kernel = torch.sinc(2.0 * distance[:, :, None] * s_t)  # (P, N, Q)
        values[start : start + chunk] = torch.einsum("pnq,nq->p", kernel, form_factors)
    return values.numpy()
