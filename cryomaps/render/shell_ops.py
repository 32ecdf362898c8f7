"""Sums of Gaussian-blurred spherical shells on a grid: the ``cryomaps::radial_shells`` custom op.

One term of radius ``R`` (Å) and B-parameter ``B`` (Å²), at distance ``r`` (Å) from its centre, is
a spherical shell of unit mass blurred by a normalised isotropic Gaussian of per-axis variance
``B / (8 pi²)``::

    Omega(r; R, B) = (4 pi B)^(-1/2) / (r R) * [exp(-4 pi² (r - R)² / B) - exp(-4 pi² (r + R)² / B)]

Its integral over space is 1, and at ``R = 0`` it is the normalised Gaussian
``(4 pi / B)^(3/2) exp(-4 pi² r² / B)``. It is evaluated in the equivalent form::

    Omega = (a / pi)^(3/2) * exp(-a (r - R)²) * g(u),   a = 4 pi² / B,  u = 4 a R r,
    g(u) = (1 - exp(-u)) / u                              (g(0) = 1)

which has no 0/0 at ``r = 0`` or ``R = 0`` and no overflow. Derivatives used by the backward::

    dOmega/dB      = Omega / B * (a (r - R)² - 1/2 - m(u)),          m(u) = u / (exp(u) - 1)
    dOmega/dcentre = Omega * (2 a - 8 a² R² kappa(u)) * (p - centre),  kappa(u) = (u + 2 m(u) - 2) / u²

where ``p`` is the voxel centre (Å); ``kappa`` tends to 1/6 at ``u = 0`` and is summed as a series
there. Convolving a term with a Gaussian of B-parameter ``B'`` gives the same term with ``B + B'``.

The op renders, for every voxel centre ``p`` of a grid indexed (x, y, z)::

    map[p] = sum over atoms n, terms k of weights[n, k] * Omega(|p - centres[n]|; radii[n, k], b_params[n, k])

over the voxels within ``cutoff`` Å of each centre (a sphere). The CPU implementation is vectorised
torch over chunks of atoms (temporaries bounded by :data:`PAIRS_PER_CHUNK`); on CUDA tensors it runs
the Triton kernels of :mod:`cryomaps.render.shell_triton` when Triton is installed. The backward is
a gather: each atom reads the incoming gradient over its own neighbourhood. The op samples values
at voxel centres only (no voxel averaging).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cryomaps.io.grid import Grid

try:
    from cryomaps.render import shell_triton
except ImportError:  # Triton is optional: without it CUDA tensors use the torch implementation.
    shell_triton = None

FOUR_PI_SQUARED = 4.0 * math.pi**2

PAIRS_PER_CHUNK = 1 << 20
"""Upper bound on (atoms in a chunk) x (voxels in an atom's box): the size of a chunk's temporaries."""

KAPPA_SERIES_LIMIT = 1.0
"""Below this ``u``, ``kappa(u)`` is summed from its Taylor series (the closed form cancels)."""

KAPPA_SERIES = (1.0 / 6.0, -1.0 / 360.0, 1.0 / 15120.0, -1.0 / 604800.0, 1.0 / 23950080.0)
"""Coefficients of ``kappa(u)`` in powers of ``u²`` (from the Bernoulli series of u / (exp(u) - 1));
the first omitted term is below 1e-8 relative for u < 1."""


def _one_minus_exp_ratio(u: torch.Tensor) -> torch.Tensor:
    """``g(u) = (1 - exp(-u)) / u`` for ``u >= 0``, with ``g(0) = 1``."""
    u = u.clamp(min=torch.finfo(u.dtype).tiny)
    return -torch.expm1(-u) / u


def _bernoulli_ratio(u: torch.Tensor) -> torch.Tensor:
    """``m(u) = u / (exp(u) - 1)`` for ``u >= 0``, with ``m(0) = 1``."""
    u = u.clamp(min=torch.finfo(u.dtype).tiny)
    return u / torch.expm1(u)


def _kappa(u: torch.Tensor) -> torch.Tensor:
    """``kappa(u) = (u + 2 m(u) - 2) / u²`` for ``u >= 0``, with ``kappa(0) = 1/6``."""
    u_squared = u * u
    series = torch.zeros_like(u)
    for coefficient in reversed(KAPPA_SERIES):
        series = series * u_squared + coefficient
    large = u.clamp(min=KAPPA_SERIES_LIMIT)
    closed_form = (large + 2.0 * _bernoulli_ratio(large) - 2.0) / (large * large)
    return torch.where(u < KAPPA_SERIES_LIMIT, series, closed_form)


def shell_profile(distance: torch.Tensor, radius: torch.Tensor, b_param: torch.Tensor) -> torch.Tensor:
    """``Omega(r; R, B)`` (Å⁻³) at ``distance`` r (Å), broadcasting ``radius`` R (Å), ``b_param`` B (Å²)."""
    a = FOUR_PI_SQUARED / b_param
    u = 4.0 * a * radius * distance
    return (a / math.pi) ** 1.5 * torch.exp(-a * (distance - radius) ** 2) * _one_minus_exp_ratio(u)


def shell_profile_derivatives(
    distance: torch.Tensor, radius: torch.Tensor, b_param: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``Omega``, ``dOmega/dB`` and the centre factor ``q`` with ``dOmega/dcentre = q (p - centre)``.

    Arguments broadcast as in :func:`shell_profile`; the three results have the broadcast shape, in
    Å⁻³, Å⁻⁵ and Å⁻⁵.
    """
    a = FOUR_PI_SQUARED / b_param
    u = 4.0 * a * radius * distance
    value = (a / math.pi) ** 1.5 * torch.exp(-a * (distance - radius) ** 2) * _one_minus_exp_ratio(u)
    d_b_param = value / b_param * (a * (distance - radius) ** 2 - 0.5 - _bernoulli_ratio(u))
    centre_factor = value * (2.0 * a - 8.0 * (a * radius) ** 2 * _kappa(u))
    return value, d_b_param, centre_factor


def neighbourhood_box_shape(cutoff: float, voxel_size: Sequence[float]) -> list[int]:
    """Voxels per axis (x, y, z) of a box that holds every voxel centre within ``cutoff`` Å of a point."""
    return [math.floor(2.0 * cutoff / h) + 1 for h in voxel_size]


def _chunk_geometry(centres, shape, voxel_size, origin, cutoff, box_shape):
    """Flat voxel indices, validity and offsets of a chunk of atoms' neighbourhood boxes.

    Args:
        centres: (C, 3) atom centres (Å).

    Returns:
        ``flat_index`` (C, Bx, By, Bz) int64 (0 where invalid), ``valid`` (C, Bx, By, Bz) bool (in
        the grid and within ``cutoff``), ``distance`` (C, Bx, By, Bz) Å and ``offsets``: per axis the
        (C, B_axis) voxel-centre minus atom-centre offsets (Å).
    """
    n_atoms = centres.shape[0]
    flat_index = torch.zeros((n_atoms, 1, 1, 1), dtype=torch.long, device=centres.device)
    inside_grid = torch.ones((n_atoms, 1, 1, 1), dtype=torch.bool, device=centres.device)
    squared_distance = torch.zeros((n_atoms, 1, 1, 1), dtype=centres.dtype, device=centres.device)
    offsets = []
    for axis in range(3):
        first = torch.ceil((centres[:, axis] - origin[axis] - cutoff) / voxel_size[axis]).long()
        index = first[:, None] + torch.arange(box_shape[axis], device=centres.device)
        offset = origin[axis] + index.to(centres.dtype) * voxel_size[axis] - centres[:, axis, None]
        view = [n_atoms, 1, 1, 1]
        view[axis + 1] = box_shape[axis]
        flat_index = flat_index * shape[axis] + index.view(view)
        inside_grid = inside_grid & ((index >= 0) & (index < shape[axis])).view(view)
        squared_distance = squared_distance + (offset * offset).view(view)
        offsets.append(offset)
    valid = inside_grid & (squared_distance <= cutoff * cutoff)
    return torch.where(valid, flat_index, 0), valid, squared_distance.sqrt(), offsets


def _atom_chunks(n_atoms: int, box_shape: Sequence[int]):
    """Slices of atoms whose (atoms x box voxels) temporaries stay within :data:`PAIRS_PER_CHUNK`."""
    step = max(1, PAIRS_PER_CHUNK // math.prod(box_shape))
    for begin in range(0, n_atoms, step):
        yield slice(begin, begin + step)


def _radial_shells_torch(centres, weights, radii, b_params, shape, voxel_size, origin, cutoff):
    """Forward in vectorised torch (any device); see :func:`radial_shells`."""
    box_shape = neighbourhood_box_shape(cutoff, voxel_size)
    flat_map = centres.new_zeros(math.prod(shape))
    for chunk in _atom_chunks(centres.shape[0], box_shape):
        flat_index, valid, distance, _ = _chunk_geometry(
            centres[chunk], shape, voxel_size, origin, cutoff, box_shape
        )
        density = torch.zeros_like(distance)
        for term in range(weights.shape[1]):
            term_values = shell_profile(
                distance, radii[chunk, term, None, None, None], b_params[chunk, term, None, None, None]
            )
            density += weights[chunk, term, None, None, None] * term_values
        flat_map.index_add_(0, flat_index.reshape(-1), torch.where(valid, density, 0.0).reshape(-1))
    return flat_map.view(shape)


def _radial_shells_backward_torch(grad_map, centres, weights, radii, b_params, shape, voxel_size, origin, cutoff):
    """Backward in vectorised torch (any device); see :func:`radial_shells_backward`."""
    box_shape = neighbourhood_box_shape(cutoff, voxel_size)
    flat_grad = grad_map.reshape(-1)
    grad_centres = torch.zeros_like(centres)
    grad_weights = torch.zeros_like(weights)
    grad_b_params = torch.zeros_like(b_params)
    for chunk in _atom_chunks(centres.shape[0], box_shape):
        flat_index, valid, distance, offsets = _chunk_geometry(
            centres[chunk], shape, voxel_size, origin, cutoff, box_shape
        )
        incoming = torch.where(valid, flat_grad[flat_index], 0.0)
        radial = torch.zeros_like(distance)
        for term in range(weights.shape[1]):
            weight = weights[chunk, term, None, None, None]
            value, d_b_param, centre_factor = shell_profile_derivatives(
                distance, radii[chunk, term, None, None, None], b_params[chunk, term, None, None, None]
            )
            grad_weights[chunk, term] = (incoming * value).sum(dim=(1, 2, 3))
            grad_b_params[chunk, term] = weights[chunk, term] * (incoming * d_b_param).sum(dim=(1, 2, 3))
            radial += weight * centre_factor
        radial = incoming * radial
        grad_centres[chunk, 0] = (radial.sum(dim=(2, 3)) * offsets[0]).sum(dim=1)
        grad_centres[chunk, 1] = (radial.sum(dim=(1, 3)) * offsets[1]).sum(dim=1)
        grad_centres[chunk, 2] = (radial.sum(dim=(1, 2)) * offsets[2]).sum(dim=1)
    return grad_centres, grad_weights, grad_b_params


@torch.library.custom_op("cryomaps::radial_shells", mutates_args=())
def radial_shells(
    centres: torch.Tensor,
    weights: torch.Tensor,
    radii: torch.Tensor,
    b_params: torch.Tensor,
    shape: Sequence[int],
    voxel_size: Sequence[float],
    origin: Sequence[float],
    cutoff: float,
) -> torch.Tensor:
    """Point-sampled sum of blurred spherical shells on a grid indexed (x, y, z).

    Args:
        centres: (N, 3) shell centres (Å), contiguous.
        weights: (N, K) term weights (mass of each term, map units x Å³).
        radii: (N, K) shell radii (Å), ``0`` for a plain Gaussian; not differentiable.
        b_params: (N, K) positive B-parameters (Å²) of the blur of each term.
        shape: grid shape (nx, ny, nz).
        voxel_size: voxel edge lengths (Å) along (x, y, z).
        origin: world position (Å) of the centre of voxel (0, 0, 0).
        cutoff: each atom contributes to the voxel centres within ``cutoff`` Å of it.

    Returns:
        (nx, ny, nz) map (Å⁻³ times the weights' units), dtype and device of ``centres``.
    """
    return _radial_shells_torch(centres, weights, radii, b_params, shape, voxel_size, origin, cutoff)


@radial_shells.register_fake
def _(centres, weights, radii, b_params, shape, voxel_size, origin, cutoff):
    return centres.new_empty(tuple(shape))


@torch.library.custom_op("cryomaps::radial_shells_backward", mutates_args=())
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
    """Gradients of ``sum(grad_map * radial_shells(...))`` for centres, weights and B-parameters.

    Args:
        grad_map: (nx, ny, nz) incoming gradient, contiguous.
        Other arguments: as in :func:`radial_shells`.

    Returns:
        ``(grad_centres (N, 3), grad_weights (N, K), grad_b_params (N, K))``.
    """
    return _radial_shells_backward_torch(
        grad_map, centres, weights, radii, b_params, shape, voxel_size, origin, cutoff
    )


@radial_shells_backward.register_fake
def _(grad_map, centres, weights, radii, b_params, shape, voxel_size, origin, cutoff):
    return torch.empty_like(centres), torch.empty_like(weights), torch.empty_like(b_params)


def _setup_context(ctx, inputs, output):
    centres, weights, radii, b_params, shape, voxel_size, origin, cutoff = inputs
    ctx.save_for_backward(centres, weights, radii, b_params)
    ctx.geometry = (shape, voxel_size, origin, cutoff)


def _backward(ctx, grad_map):
    centres, weights, radii, b_params = ctx.saved_tensors
    grad_centres, grad_weights, grad_b_params = radial_shells_backward(
        grad_map.contiguous(), centres, weights, radii, b_params, *ctx.geometry
    )
    return grad_centres, grad_weights, None, grad_b_params, None, None, None, None


radial_shells.register_autograd(_backward, setup_context=_setup_context)

if shell_triton is not None:
    radial_shells.register_kernel("cuda")(shell_triton.radial_shells_forward)
    radial_shells_backward.register_kernel("cuda")(shell_triton.radial_shells_backward)


def render_radial_shells(
    centres: torch.Tensor,
    weights: torch.Tensor,
    radii: torch.Tensor,
    b_params: torch.Tensor,
    grid: Grid,
    cutoff: float,
) -> torch.Tensor:
    """Checked entry point of the ``cryomaps::radial_shells`` op on a :class:`Grid`.

    Args:
        centres: (N, 3) shell centres (Å).
        weights: (N, K) term weights; differentiable.
        radii: (K,) or (N, K) shell radii (Å); not differentiable.
        b_params: (N, K) positive B-parameters (Å²); differentiable.
        grid: the sampling; the result is indexed (x, y, z).
        cutoff: summation radius (Å) around each centre.

    Returns:
        (nx, ny, nz) map, differentiable with respect to centres, weights and B-parameters.
    """
    n_atoms, n_terms = weights.shape
    if centres.shape != (n_atoms, 3) or b_params.shape != (n_atoms, n_terms):
        raise ValueError(
            f"shapes do not match: centres {tuple(centres.shape)}, weights {tuple(weights.shape)}, "
            f"b_params {tuple(b_params.shape)} (expected (N, 3), (N, K), (N, K))"
        )
    radii = radii.to(centres).expand(n_atoms, n_terms).contiguous()
    if b_params.numel() and float(b_params.detach().min()) <= 0.0:
        raise ValueError("B-parameters of shell terms must be positive")
    return radial_shells(
        centres.contiguous(),
        weights.to(centres).contiguous(),
        radii,
        b_params.to(centres).contiguous(),
        list(grid.shape),
        grid.voxel_size.tolist(),
        grid.origin.tolist(),
        float(cutoff),
    )
