"""Triton kernels of the ``cryomaps::radial_shells`` op (CUDA; CPU tensors under ``TRITON_INTERPRET=1``).

Same quantity and neighbourhoods as the torch implementation in :mod:`cryomaps.render.shell_ops`,
whose docstring gives the formulas. Grids are (nx, ny, nz) tensors indexed (x, y, z), addressed flat
in C order. Each atom owns a box of ``box_shape`` voxels starting at
``ceil((centre - origin - cutoff) / voxel_size)`` per axis; voxels outside the grid or farther than
``cutoff`` Å from the atom are skipped.

- Forward: a scatter. Program (atom, block) evaluates ``BLOCK`` voxels of the atom's box for all its
  terms at once (a (BLOCK, K) tile) and adds their sum into the map with atomic adds.
- Backward: a gather. Program (atom) walks its box, reads the incoming gradient and accumulates the
  gradients of its centre, weights and B-parameters; no atomics.

Importing this module needs Triton; :mod:`cryomaps.render.shell_ops` imports it only when present.
The kernels compute in the dtype of the inputs, with float32 constants: in float64 they agree with
the torch implementation to about 1e-6 relative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

BLOCK_VOXELS = 128
"""Voxels per program and loop step."""

PI = tl.constexpr(math.pi)
FOUR_PI_SQUARED = tl.constexpr(4.0 * math.pi**2)
SMALL_U = tl.constexpr(0.1)
"""Below this ``u``, ``g(u)`` and ``m(u)`` are summed from their Taylor series (``exp`` cancels)."""
KAPPA_SERIES_LIMIT = tl.constexpr(1.0)
"""Below this ``u``, ``kappa(u)`` is summed from its Taylor series."""


@triton.jit
def _shell_geometry(centres_ptr, atom, voxel, box_x, box_y, box_z, nx, ny, nz, hx, hy, hz, ox, oy, oz, cutoff):
    """Flat map index, validity, offsets (Å) and distance (Å) of ``voxel`` (BLOCK,) in an atom's box."""
    in_box = voxel < box_x * box_y * box_z
    box_i = voxel // (box_y * box_z)
    box_j = (voxel // box_z) % box_y
    box_k = voxel % box_z
    centre_x = tl.load(centres_ptr + atom * 3)
    centre_y = tl.load(centres_ptr + atom * 3 + 1)
    centre_z = tl.load(centres_ptr + atom * 3 + 2)
    index_x = tl.ceil((centre_x - ox - cutoff) / hx).to(tl.int64) + box_i
    index_y = tl.ceil((centre_y - oy - cutoff) / hy).to(tl.int64) + box_j
    index_z = tl.ceil((centre_z - oz - cutoff) / hz).to(tl.int64) + box_k
    offset_x = ox + index_x * hx - centre_x
    offset_y = oy + index_y * hy - centre_y
    offset_z = oz + index_z * hz - centre_z
    squared_distance = offset_x * offset_x + offset_y * offset_y + offset_z * offset_z
    valid = in_box & (squared_distance <= cutoff * cutoff)
    valid = valid & (index_x >= 0) & (index_x < nx) & (index_y >= 0) & (index_y < ny)
    valid = valid & (index_z >= 0) & (index_z < nz)
    flat = (index_x * ny + index_y) * nz + index_z
    return flat, valid, offset_x, offset_y, offset_z, tl.sqrt(squared_distance)


@triton.jit
def _one_minus_exp_ratio(u):
    """``g(u) = (1 - exp(-u)) / u``, ``g(0) = 1``."""
    series = 1.0 - u * (0.5 - u * (1.0 / 6.0 - u * (1.0 / 24.0 - u / 120.0)))
    safe = tl.maximum(u, SMALL_U)
    return tl.where(u < SMALL_U, series, (1.0 - tl.exp(-safe)) / safe)


@triton.jit
def _bernoulli_ratio(u):
    """``m(u) = u / (exp(u) - 1)``, ``m(0) = 1``."""
    series = 1.0 - u * (0.5 - u * (1.0 / 12.0 - u * u / 720.0))
    safe = tl.maximum(u, SMALL_U)
    decay = tl.exp(-safe)
    return tl.where(u < SMALL_U, series, safe * decay / (1.0 - decay))


@triton.jit
def _kappa(u):
    """``kappa(u) = (u + 2 m(u) - 2) / u²``, ``kappa(0) = 1/6``."""
    u2 = u * u
    series = 1.0 / 6.0 - u2 * (1.0 / 360.0 - u2 * (1.0 / 15120.0 - u2 * (1.0 / 604800.0 - u2 / 23950080.0)))
    safe = tl.maximum(u, KAPPA_SERIES_LIMIT)
    closed_form = (safe + 2.0 * _bernoulli_ratio(safe) - 2.0) / (safe * safe)
    return tl.where(u < KAPPA_SERIES_LIMIT, series, closed_form)


@triton.jit
def _shell_value(distance, radius, b_param):
    """``Omega(r; R, B)`` (Å⁻³), broadcasting."""
    a = FOUR_PI_SQUARED / b_param
    u = 4.0 * a * radius * distance
    scale = a / PI
    gap = distance - radius
    return scale * tl.sqrt(scale) * tl.exp(-a * gap * gap) * _one_minus_exp_ratio(u)


@triton.jit
def _radial_shells_forward_kernel(
    map_ptr, centres_ptr, weights_ptr, radii_ptr, b_params_ptr,
    n_terms, box_x, box_y, box_z, nx, ny, nz, hx, hy, hz, ox, oy, oz, cutoff,
    TERMS: tl.constexpr, BLOCK: tl.constexpr,
):
    atom = tl.program_id(0)
    voxel = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    flat, valid, _, _, _, distance = _shell_geometry(
        centres_ptr, atom, voxel, box_x, box_y, box_z, nx, ny, nz, hx, hy, hz, ox, oy, oz, cutoff
    )
    term = tl.arange(0, TERMS)
    term_mask = term < n_terms
    weight = tl.load(weights_ptr + atom * n_terms + term, mask=term_mask, other=0.0)
    radius = tl.load(radii_ptr + atom * n_terms + term, mask=term_mask, other=0.0)
    b_param = tl.load(b_params_ptr + atom * n_terms + term, mask=term_mask, other=1.0)
    values = _shell_value(distance[:, None], radius[None, :], b_param[None, :])
    density = tl.sum(values * weight[None, :], axis=1)
    tl.atomic_add(map_ptr + flat, density, mask=valid)


@triton.jit
def _radial_shells_backward_kernel(
    grad_map_ptr, centres_ptr, weights_ptr, radii_ptr, b_params_ptr,
    grad_centres_ptr, grad_weights_ptr, grad_b_params_ptr,
    n_terms, box_x, box_y, box_z, nx, ny, nz, hx, hy, hz, ox, oy, oz, cutoff,
    TERMS: tl.constexpr, BLOCK: tl.constexpr,
):
    atom = tl.program_id(0)
    dtype = centres_ptr.dtype.element_ty
    term = tl.arange(0, TERMS)
    term_mask = term < n_terms
    weight = tl.load(weights_ptr + atom * n_terms + term, mask=term_mask, other=0.0)
    radius = tl.load(radii_ptr + atom * n_terms + term, mask=term_mask, other=0.0)
    b_param = tl.load(b_params_ptr + atom * n_terms + term, mask=term_mask, other=1.0)
    a = FOUR_PI_SQUARED / b_param
    sum_values = tl.zeros([TERMS], dtype=dtype)
    sum_d_b = tl.zeros([TERMS], dtype=dtype)
    sum_x = tl.zeros([BLOCK], dtype=dtype)
    sum_y = tl.zeros([BLOCK], dtype=dtype)
    sum_z = tl.zeros([BLOCK], dtype=dtype)
    for start in range(0, box_x * box_y * box_z, BLOCK):
        voxel = start + tl.arange(0, BLOCK)
        flat, valid, offset_x, offset_y, offset_z, distance = _shell_geometry(
            centres_ptr, atom, voxel, box_x, box_y, box_z, nx, ny, nz, hx, hy, hz, ox, oy, oz, cutoff
        )
        incoming = tl.load(grad_map_ptr + flat, mask=valid, other=0.0)
        r = distance[:, None]
        u = 4.0 * a[None, :] * radius[None, :] * r
        values = _shell_value(r, radius[None, :], b_param[None, :])
        gap = r - radius[None, :]
        d_b = values / b_param[None, :] * (a[None, :] * gap * gap - 0.5 - _bernoulli_ratio(u))
        ar = a[None, :] * radius[None, :]
        centre_factor = values * (2.0 * a[None, :] - 8.0 * ar * ar * _kappa(u))
        sum_values += tl.sum(incoming[:, None] * values, axis=0)
        sum_d_b += tl.sum(incoming[:, None] * d_b, axis=0)
        radial = incoming * tl.sum(centre_factor * weight[None, :], axis=1)
        sum_x += radial * offset_x
        sum_y += radial * offset_y
        sum_z += radial * offset_z
    tl.store(grad_weights_ptr + atom * n_terms + term, sum_values, mask=term_mask)
    tl.store(grad_b_params_ptr + atom * n_terms + term, weight * sum_d_b, mask=term_mask)
    tl.store(grad_centres_ptr + atom * 3, tl.sum(sum_x, axis=0))
    tl.store(grad_centres_ptr + atom * 3 + 1, tl.sum(sum_y, axis=0))
    tl.store(grad_centres_ptr + atom * 3 + 2, tl.sum(sum_z, axis=0))


def _geometry_arguments(shape, voxel_size, origin, cutoff) -> list:
    """Scalar kernel arguments after ``n_terms``: box shape, grid shape, voxel size, origin, cutoff."""
    from cryomaps.render.shell_ops import neighbourhood_box_shape  # shell_ops imports this module

    return [*neighbourhood_box_shape(cutoff, voxel_size), *shape, *voxel_size, *origin, cutoff]


def radial_shells_forward(
    centres: torch.Tensor,
    weights: torch.Tensor,
    radii: torch.Tensor,
    b_params: torch.Tensor,
    shape: Sequence[int],
    voxel_size: Sequence[float],
    origin: Sequence[float],
    cutoff: float,
) -> torch.Tensor:
    """Triton forward of ``cryomaps::radial_shells``; arguments and result as in
    :func:`cryomaps.render.shell_ops.radial_shells` (contiguous (N, 3) and (N, K) tensors)."""
    density = centres.new_zeros(tuple(shape))
    n_atoms, n_terms = weights.shape
    if n_atoms == 0 or n_terms == 0:
        return density
    geometry = _geometry_arguments(shape, voxel_size, origin, cutoff)
    box_voxels = math.prod(geometry[:3])
    launch = (n_atoms, triton.cdiv(box_voxels, BLOCK_VOXELS))
    _radial_shells_forward_kernel[launch](
        density, centres, weights, radii, b_params, n_terms, *geometry,
        TERMS=triton.next_power_of_2(n_terms), BLOCK=BLOCK_VOXELS,
    )
    return density


def radial_shells_backward(
    grad_map: torch.Tensor,
    centres: torch.Tensor,
    weights: torch.Tensor,
    radii: torch.Tensor,
    b_params: torch.Tensor,
    shape: Sequence[int],
    voxel_size: Sequence[float],
    origin: Sequence[float],
    cutoff: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton backward of ``cryomaps::radial_shells``; see
    :func:`cryomaps.render.shell_ops.radial_shells_backward`."""
    grad_centres = torch.zeros_like(centres)
    grad_weights = torch.zeros_like(weights)
    grad_b_params = torch.zeros_like(b_params)
    n_atoms, n_terms = weights.shape
    if n_atoms == 0 or n_terms == 0:
        return grad_centres, grad_weights, grad_b_params
    _radial_shells_backward_kernel[(n_atoms,)](
        grad_map.contiguous(), centres, weights, radii, b_params,
        grad_centres, grad_weights, grad_b_params,
        n_terms, *_geometry_arguments(shape, voxel_size, origin, cutoff),
        TERMS=triton.next_power_of_2(n_terms), BLOCK=BLOCK_VOXELS,
    )
    return grad_centres, grad_weights, grad_b_params
