"""1-D profiles of a normalised Gaussian on a grid axis, point-sampled or voxel-averaged.

A normalised isotropic 3-D Gaussian of per-axis variance ``v`` (Å²) is the product of three 1-D
profiles, one per axis. For an offset ``d`` = voxel-centre coordinate - atom coordinate (Å) along an
axis of voxel size ``h`` (Å):

- ``"point"``: the value at the voxel centre, ``p(d) = exp(-d²/(2v)) / sqrt(2 pi v)``;
- ``"average"``: the exact mean over the voxel,
  ``p(d) = (1/h) * ½ [erf((d + h/2)/sqrt(2v)) - erf((d - h/2)/sqrt(2v))]``.

Both integrate (sum times ``h``) to 1 over a fine enough window, so a term of weight ``w`` puts a
total of ``w`` into the map (sum of voxel values times voxel volume).
"""

from __future__ import annotations

import math

import torch

SAMPLING_MODES = ("point", "average")

NEGLIGIBLE_EXPONENT = 30.0
"""Profile values below exp(-30) ≈ 1e-13 of their peak are set to exactly 0: negligible, and it
keeps products of profiles out of the subnormal float range, which is 10x slower on CPUs."""

OUTSIDE_OFFSET = 1.0e4
"""An offset (Å) so far from any atom that every profile and derivative there is exactly 0; used to
blank voxels outside an atom's window without a separate mask."""


def normal_pdf(t: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """1-D normal density of variance ``variance`` (Å²) at ``t`` (Å); exactly 0 where the exponent
    is below ``-NEGLIGIBLE_EXPONENT`` (beyond 7.7 standard deviations)."""
    exponent = (t * t) * (-0.5 / variance)
    log_norm = -0.5 * torch.log(2.0 * math.pi * variance)
    return torch.exp(torch.where(exponent > -NEGLIGIBLE_EXPONENT, exponent + log_norm, -math.inf))


def gaussian_profiles(
    offset: torch.Tensor, variance: torch.Tensor, voxel, sampling: str, derivatives: bool
) -> torch.Tensor:
    """Profile values, and optionally their derivatives, at ``offset`` (Å) for ``variance`` (Å²).

    ``offset``, ``variance`` and ``voxel`` (the voxel size along the axis, Å; a number or a tensor)
    broadcast to a common shape ``S``. Returns the profile (shape ``S``), or with ``derivatives`` a
    stack of shape ``S[:-1] + (3,) + S[-1:]``: profile, derivative with respect to the atom
    coordinate (Å⁻²), derivative with respect to the variance (Å⁻³). All are exactly 0 at
    :data:`OUTSIDE_OFFSET`.
    """
    if sampling == "point":
        value = normal_pdf(offset, variance)
        if not derivatives:
            return value
        inverse = 1.0 / variance  # reciprocals of the (small) variance tensor: no big divisions
        d_centre = value * (offset * inverse)
        d_variance = value * ((offset * offset) * inverse - 1.0) * (0.5 * inverse)
    elif sampling == "average":
        upper, lower = offset + 0.5 * voxel, offset - 0.5 * voxel
        scale = torch.sqrt(2.0 * variance)
        value = (torch.erf(upper / scale) - torch.erf(lower / scale)) / (2.0 * voxel)
        if not derivatives:
            return value
        pdf_upper, pdf_lower = normal_pdf(upper, variance), normal_pdf(lower, variance)
        d_centre = (pdf_lower - pdf_upper) * (1.0 / voxel)
        d_variance = (lower * pdf_lower - upper * pdf_upper) * (0.5 / (voxel * variance))
    else:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    return torch.stack(torch.broadcast_tensors(value, d_centre, d_variance), dim=-2)
