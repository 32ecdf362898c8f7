"""1-D profiles of a normalised Gaussian on a grid axis, point-sampled or voxel-averaged.

A normalised isotropic 3-D Gaussian of per-axis variance ``v`` (Å²) is the product of three 1-D
profiles, one per axis. For an offset ``d`` = voxel-centre coordinate - atom coordinate (Å) along an
axis of voxel size ``h`` (Å):

- ``"point"``: the value at the voxel centre, ``p(d) = exp(-d²/(2v)) / sqrt(2 pi v)``;
- ``"average"``: the exact mean over the voxel,
  ``p(d) = (1/h) * ½ [erf((d + h/2)/sqrt(2v)) - erf((d - h/2)/sqrt(2v))]``.

Both integrate (sum times ``h``) to 1 over a fine enough window, so a term of weight ``w`` puts a
total of ``w`` into the map (sum of voxel values times voxel volume).

Speed: these functions are elementwise and run on large broadcast tensors, so they avoid the slow
cases of the CPU kernels: ``exp`` is only ever called on exponents in ``[-30, 0]`` (``exp`` of
``-inf`` or of exponents that underflow takes a slow path, 5-10x slower per element), and the
cut-off is applied with ``threshold_`` (``torch.where`` with a scalar and products with boolean
masks are several times slower than plain arithmetic).
"""

from __future__ import annotations

import math

import torch

SAMPLING_MODES = ("point", "average")

NEGLIGIBLE_EXPONENT = 30.0
"""Profile values below exp(-30) ≈ 1e-13 of their peak are set to exactly 0: negligible, and it
keeps products of profiles out of the subnormal float range, which is 10x slower on CPUs."""

_NEGLIGIBLE_VALUE = math.exp(-NEGLIGIBLE_EXPONENT)

OUTSIDE_OFFSET = 1.0e4
"""An offset (Å) so far from any atom that every profile and derivative there is exactly 0; used to
blank voxels outside an atom's window without a separate mask."""


def normal_pdf(t: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """1-D normal density of variance ``variance`` (Å²) at ``t`` (Å); exactly 0 where the exponent
    is at or below ``-NEGLIGIBLE_EXPONENT`` (beyond 7.7 standard deviations)."""
    exponent = (t * t) * (-0.5 / variance)
    value = exponent.clamp_(min=-NEGLIGIBLE_EXPONENT).exp_()
    value = torch.nn.functional.threshold_(value, _NEGLIGIBLE_VALUE, 0.0)  # 0 at and beyond the cut
    return value.mul_(torch.rsqrt((2.0 * math.pi) * variance))


def gaussian_profiles(offset: torch.Tensor, variance: torch.Tensor, voxel, sampling: str, derivatives: bool):
    """Profile values, and optionally their derivatives, at ``offset`` (Å) for ``variance`` (Å²).

    ``offset``, ``variance`` and ``voxel`` (the voxel size along the axis, Å; a number or a tensor)
    broadcast to a common shape ``S``. Returns the profile (shape ``S``), or with ``derivatives`` a
    tensor of shape ``(3,) + S`` stacking the profile, its derivative with respect to the atom
    coordinate (Å⁻²) and with respect to the variance (Å⁻³). All are exactly 0 at
    :data:`OUTSIDE_OFFSET`.
    """
    if sampling == "point":
        value = normal_pdf(offset, variance)
        if not derivatives:
            return value
        stack = value.new_empty((3, *value.shape))
        stack[0] = value
        inverse = 1.0 / variance  # reciprocals of the (small) variance tensor: no big divisions
        scaled = offset * inverse
        torch.mul(value, scaled, out=stack[1])
        torch.mul(scaled, offset, out=stack[2]).sub_(1.0).mul_(value).mul_(0.5 * inverse)
        return stack
    if sampling == "average":
        upper, lower = offset + 0.5 * voxel, offset - 0.5 * voxel
        scale = torch.rsqrt(2.0 * variance)
        value = (torch.erf(upper * scale) - torch.erf(lower * scale)) * (0.5 / voxel)
        if not derivatives:
            return value
        pdf_upper, pdf_lower = normal_pdf(upper, variance), normal_pdf(lower, variance)
        d_centre = (pdf_lower - pdf_upper) * (1.0 / voxel)
        d_variance = (lower * pdf_lower - upper * pdf_upper) * (0.5 / (voxel * variance))
        return torch.stack(torch.broadcast_tensors(value, d_centre, d_variance))
    raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
