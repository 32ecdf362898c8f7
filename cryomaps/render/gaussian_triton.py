"""Triton implementation of the sum of isotropic normalised Gaussians (``cryomaps::gaussian_sum``).

Same quantity, windows and profiles as :mod:`cryomaps.render.gaussian_torch` (see its docstring):

- forward: one program per atom scatters its window into the grid with atomic adds, ``BLOCK``
  voxels at a time, all K terms of the atom at once (a (BLOCK, TERMS) tile);
- backward: one program per atom gathers the incoming gradient over its window and reduces it to
  the atom's own gradients, so no atomics are needed.

Triton is optional: :mod:`cryomaps.render.ops` imports this module only where triton is installed
(without it :data:`AVAILABLE` is False and no kernel is defined), else CUDA tensors use the torch
implementation. On CPU tensors the kernels run under ``TRITON_INTERPRET=1`` (Triton's interpreter,
:func:`cryomaps.render.ops.triton_kernels_on_cpu`), which is how the tests check them on machines
without a GPU.
"""

from __future__ import annotations

import torch

from cryomaps.render.profiles import NEGLIGIBLE_EXPONENT

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is absent
    triton = None

AVAILABLE = triton is not None

BLOCK_VOXELS = 128
"""Voxels of an atom's window handled per step of a program."""

if AVAILABLE:
    _NEGLIGIBLE_EXPONENT = tl.constexpr(NEGLIGIBLE_EXPONENT)

    @triton.jit
    def _window(centre, radius, origin, voxel, n):
        """First grid index and width (clipped to the grid) of an atom's window along one axis."""
        fractional = (centre - origin) / voxel
        half_width = radius / voxel
        first = tl.maximum(tl.ceil(fractional - half_width).to(tl.int64), 0)
        last = tl.minimum(tl.floor(fractional + half_width).to(tl.int64), n - 1)
        return first, tl.maximum(last - first + 1, 0)

    @triton.jit
    def _normal_pdf(t, variance):
        exponent = 0.5 * t * t / variance
        value = tl.exp(-tl.minimum(exponent, _NEGLIGIBLE_EXPONENT)) / tl.sqrt(6.283185307179586 * variance)
        return tl.where(exponent > _NEGLIGIBLE_EXPONENT, 0.0, value)

    @triton.jit
    def _profile(offset, variance, voxel, AVERAGE: tl.constexpr):
        """(profile, d/d centre, d/d variance) of 1-D normalised Gaussians, as in
        :func:`cryomaps.render.profiles.gaussian_profiles`."""
        if AVERAGE:
            upper = offset + 0.5 * voxel
            lower = offset - 0.5 * voxel
            scale = tl.sqrt(2.0 * variance)
            value = (tl.math.erf(upper / scale) - tl.math.erf(lower / scale)) / (2.0 * voxel)
            pdf_upper = _normal_pdf(upper, variance)
            pdf_lower = _normal_pdf(lower, variance)
            d_centre = (pdf_lower - pdf_upper) / voxel
            d_variance = (lower * pdf_lower - upper * pdf_upper) / (2.0 * voxel * variance)
        else:
            value = _normal_pdf(offset, variance)
            d_centre = value * offset / variance
            d_variance = value * (offset * offset / variance - 1.0) / (2.0 * variance)
        return value, d_centre, d_variance

    @triton.jit
    def _atom_setup(centres_ptr, radii_ptr, geometry_ptr, atom, nx, ny, nz):
        """The grid's origin and voxel size, the atom's centre, and its window (first index and
        width along x, y, z)."""
        ox, oy, oz = tl.load(geometry_ptr), tl.load(geometry_ptr + 1), tl.load(geometry_ptr + 2)
        hx, hy, hz = tl.load(geometry_ptr + 3), tl.load(geometry_ptr + 4), tl.load(geometry_ptr + 5)
        cx = tl.load(centres_ptr + atom * 3)
        cy = tl.load(centres_ptr + atom * 3 + 1)
        cz = tl.load(centres_ptr + atom * 3 + 2)
        radius = tl.load(radii_ptr + atom)
        x0, wx = _window(cx, radius, ox, hx, nx)
        y0, wy = _window(cy, radius, oy, hy, ny)
        z0, wz = _window(cz, radius, oz, hz, nz)
        return ox, oy, oz, hx, hy, hz, cx, cy, cz, x0, wx, y0, wy, z0, wz

    @triton.jit
    def _atom_terms(weights_ptr, variances_ptr, atom, n_terms, TERMS: tl.constexpr):
        """The atom's term indices and their mask (TERMS,), weights (TERMS,) and variances (1, TERMS)."""
        term = tl.arange(0, TERMS)
        term_mask = term < n_terms
        weights = tl.load(weights_ptr + atom * n_terms + term, mask=term_mask, other=0.0)
        variances = tl.load(variances_ptr + atom * n_terms + term, mask=term_mask, other=1.0)[None, :]
        return term, term_mask, weights, variances

    @triton.jit
    def _window_voxels(start, n_window, x0, y0, z0, wy, wz, BLOCK: tl.constexpr):
        """Whether window voxels ``start .. start + BLOCK`` lie in the window, and their grid
        indices along x, y and z (each (BLOCK,))."""
        voxel = start + tl.arange(0, BLOCK)
        return voxel < n_window, x0 + voxel // (wy * wz), y0 + (voxel // wz) % wy, z0 + voxel % wz

    @triton.jit
    def _forward_kernel(
        grid_ptr, centres_ptr, weights_ptr, variances_ptr, radii_ptr, batch_ptr, geometry_ptr,
        nx, ny, nz, n_terms,
        AVERAGE: tl.constexpr, TERMS: tl.constexpr, BLOCK: tl.constexpr,
    ):
        atom = tl.program_id(0)
        ox, oy, oz, hx, hy, hz, cx, cy, cz, x0, wx, y0, wy, z0, wz = _atom_setup(
            centres_ptr, radii_ptr, geometry_ptr, atom, nx, ny, nz
        )
        _, _, weight_terms, variance = _atom_terms(weights_ptr, variances_ptr, atom, n_terms, TERMS)
        weight = weight_terms[None, :]
        base = tl.load(batch_ptr + atom) * nx
        for start in range(0, wx * wy * wz, BLOCK):
            in_window, ix, iy, iz = _window_voxels(start, wx * wy * wz, x0, y0, z0, wy, wz, BLOCK)
            px, _, _ = _profile((ox + ix * hx - cx)[:, None], variance, hx, AVERAGE)
            py, _, _ = _profile((oy + iy * hy - cy)[:, None], variance, hy, AVERAGE)
            pz, _, _ = _profile((oz + iz * hz - cz)[:, None], variance, hz, AVERAGE)
            value = tl.sum(weight * px * py * pz, axis=1)
            flat = ((base + ix) * ny + iy) * nz + iz
            tl.atomic_add(grid_ptr + flat, value, mask=in_window)

    @triton.jit
    def _backward_kernel(
        grad_grid_ptr, centres_ptr, weights_ptr, variances_ptr, radii_ptr, batch_ptr, geometry_ptr,
        grad_centres_ptr, grad_weights_ptr, grad_variances_ptr,
        nx, ny, nz, n_terms,
        AVERAGE: tl.constexpr, TERMS: tl.constexpr, BLOCK: tl.constexpr,
    ):
        atom = tl.program_id(0)
        term, term_mask, weight_terms, variance = _atom_terms(weights_ptr, variances_ptr, atom, n_terms, TERMS)
        ox, oy, oz, hx, hy, hz, cx, cy, cz, x0, wx, y0, wy, z0, wz = _atom_setup(
            centres_ptr, radii_ptr, geometry_ptr, atom, nx, ny, nz
        )
        sum_weight = tl.zeros((BLOCK, TERMS), dtype=variance.dtype)
        sum_variance = tl.zeros((BLOCK, TERMS), dtype=variance.dtype)
        sum_x = tl.zeros((BLOCK, TERMS), dtype=variance.dtype)
        sum_y = tl.zeros((BLOCK, TERMS), dtype=variance.dtype)
        sum_z = tl.zeros((BLOCK, TERMS), dtype=variance.dtype)
        weight = weight_terms[None, :]
        base = tl.load(batch_ptr + atom) * nx
        for start in range(0, wx * wy * wz, BLOCK):
            in_window, ix, iy, iz = _window_voxels(start, wx * wy * wz, x0, y0, z0, wy, wz, BLOCK)
            grad = tl.load(grad_grid_ptr + ((base + ix) * ny + iy) * nz + iz, mask=in_window, other=0.0)[:, None]
            px, dcx, dvx = _profile((ox + ix * hx - cx)[:, None], variance, hx, AVERAGE)
            py, dcy, dvy = _profile((oy + iy * hy - cy)[:, None], variance, hy, AVERAGE)
            pz, dcz, dvz = _profile((oz + iz * hz - cz)[:, None], variance, hz, AVERAGE)
            sum_weight += grad * px * py * pz
            sum_variance += grad * (dvx * py * pz + px * dvy * pz + px * py * dvz)
            sum_x += grad * dcx * py * pz
            sum_y += grad * px * dcy * pz
            sum_z += grad * px * py * dcz
        tl.store(grad_weights_ptr + atom * n_terms + term, tl.sum(sum_weight, axis=0), mask=term_mask)
        tl.store(grad_variances_ptr + atom * n_terms + term, tl.sum(sum_variance, axis=0) * weight_terms, mask=term_mask)
        tl.store(grad_centres_ptr + atom * 3, tl.sum(tl.sum(sum_x * weight, axis=1), axis=0))
        tl.store(grad_centres_ptr + atom * 3 + 1, tl.sum(tl.sum(sum_y * weight, axis=1), axis=0))
        tl.store(grad_centres_ptr + atom * 3 + 2, tl.sum(tl.sum(sum_z * weight, axis=1), axis=0))


def _launch_settings(weights: torch.Tensor, sampling: str) -> dict:
    return {
        "AVERAGE": sampling == "average",
        "TERMS": max(1, triton.next_power_of_2(weights.shape[1])),
        "BLOCK": BLOCK_VOXELS,
    }


def _geometry(centres: torch.Tensor, voxel_size, origin) -> torch.Tensor:
    """(6,) tensor ``origin (x, y, z), voxel_size (x, y, z)`` in the dtype of the computation."""
    return torch.tensor([*origin, *voxel_size], dtype=centres.dtype, device=centres.device)


def gaussian_sum_forward(
    centres, weights, variances, radii, batch_index, n_batch, shape, voxel_size, origin, sampling
) -> torch.Tensor:
    """Triton forward; arguments as :func:`cryomaps.render.gaussian_torch.gaussian_sum_forward`."""
    grid = centres.new_zeros(n_batch, *shape)
    if centres.shape[0] > 0:
        _forward_kernel[(centres.shape[0],)](
            grid, centres, weights, variances, radii, batch_index, _geometry(centres, voxel_size, origin),
            *shape, weights.shape[1], **_launch_settings(weights, sampling),
        )
    return grid


def gaussian_sum_backward(
    grad_grid, centres, weights, variances, radii, batch_index, voxel_size, origin, sampling
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton backward; arguments as :func:`cryomaps.render.gaussian_torch.gaussian_sum_backward`."""
    grad_centres = torch.zeros_like(centres)
    grad_weights = torch.zeros_like(weights)
    grad_variances = torch.zeros_like(variances)
    if centres.shape[0] > 0:
        _backward_kernel[(centres.shape[0],)](
            grad_grid.to(centres.dtype).contiguous(), centres, weights, variances, radii, batch_index,
            _geometry(centres, voxel_size, origin), grad_centres, grad_weights, grad_variances,
            *grad_grid.shape[1:], weights.shape[1], **_launch_settings(weights, sampling),
        )
    return grad_centres, grad_weights, grad_variances
