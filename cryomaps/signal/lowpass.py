"""Gaussian low-pass filters that take a map from its own resolution to a coarser one.

Resolution ↔ Gaussian follows the molmap convention (σ = 0.225·d, :data:`MOLMAP_SIGMA_FACTOR`):
a map at resolution d₀ is read as the true density blurred by a Gaussian of σ₀ = 0.225·d₀, and
Gaussians compose by adding variances, so the map at a coarser resolution R is the d₀ map blurred
by a Gaussian of

    σ = 0.225·√(R² − d₀²)   (Å),

which brings the total blur to σ = 0.225·R, exactly the blur of molmap at R. This one filter makes
the coarser training targets of a resolution-conditioned generator (:mod:`cryomaps.data.patches`)
and the coarser reference maps of ``cryomaps evaluate target_resolution=R``.

The filter is applied in Fourier space, transfer function exp(−2π²σ²|s|²) with |s| in 1/Å (per-axis
voxel sizes honoured), on the volume zero-padded by 4σ per side so that nothing wraps around the
box: the map is taken as zero outside its box, which is exact for masked targets.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cryomaps.io import DensityMap
from cryomaps.render import MOLMAP_SIGMA_FACTOR
from cryomaps.signal.fourier_shells import voxel_size_per_axis

PADDING_SIGMAS = 4.0
"""Zero padding per side, in units of σ, before the FFT (the Gaussian is < 4e-4 of its peak there)."""


def degradation_sigma(native_resolution: float, target_resolution: float, sigma_factor: float = MOLMAP_SIGMA_FACTOR) -> float:
    """σ (Å) of the Gaussian that takes a map at ``native_resolution`` to ``target_resolution`` (Å).

    Raises:
        ValueError: a resolution is not positive or the target is finer than the native resolution.
    """
    if not native_resolution > 0 or not target_resolution > 0:
        raise ValueError(f"resolutions must be positive, got {native_resolution} and {target_resolution} Å")
    if target_resolution < native_resolution:
        raise ValueError(f"cannot sharpen: target {target_resolution} Å is finer than the native {native_resolution} Å")
    return sigma_factor * math.sqrt(target_resolution**2 - native_resolution**2)


def gaussian_low_pass(volume: torch.Tensor, voxel_size, sigma: float, edge: str = "zero") -> torch.Tensor:
    """``volume`` (x, y, z) blurred by an isotropic Gaussian of ``sigma`` Å (same shape and dtype;
    differentiable).

    Args:
        volume: (nx, ny, nz) tensor (or array), indexed (x, y, z).
        voxel_size: Å, one number or three (x, y, z).
        sigma: standard deviation of the Gaussian, Å; 0 returns a copy.
        edge: what lies outside the box: ``"zero"`` (a whole, masked map) or ``"replicate"`` (the
            edge values continued: a patch cut from a larger map).
    """
    volume = torch.as_tensor(volume)
    if sigma < 0:
        raise ValueError(f"sigma must be ≥ 0, got {sigma} Å")
    if edge not in ("zero", "replicate"):
        raise ValueError(f"edge must be 'zero' or 'replicate', got {edge!r}")
    if sigma == 0:
        return volume.clone()
    spacing = voxel_size_per_axis(voxel_size)
    pads = [int(math.ceil(PADDING_SIGMAS * sigma / h)) for h in spacing]
    widths = [pad for pad in reversed(pads) for _ in range(2)]
    if edge == "zero":
        padded = torch.nn.functional.pad(volume, widths)
    else:  # replicate padding takes a (batch, channel, x, y, z) tensor
        padded = torch.nn.functional.pad(volume[None, None], widths, mode="replicate")[0, 0]
    real_dtype = torch.float64 if volume.dtype == torch.float64 else torch.float32
    transfer = _gaussian_transfer(padded.shape, spacing, sigma, real_dtype, volume.device)
    blurred = torch.fft.irfftn(torch.fft.rfftn(padded.to(real_dtype)) * transfer, s=padded.shape)
    core = tuple(slice(pad, pad + length) for pad, length in zip(pads, volume.shape))
    return blurred[core].to(volume.dtype).contiguous()


def _gaussian_transfer(shape, spacing: np.ndarray, sigma: float, dtype: torch.dtype, device) -> torch.Tensor:
    """exp(−2π²σ²|s|²) on the rfftn half spectrum of ``shape`` (|s| in 1/Å), separable per axis."""
    transfer = torch.ones((), dtype=dtype, device=device)
    for axis, (length, h) in enumerate(zip(shape, spacing)):
        frequency = torch.fft.rfftfreq(length, d=h) if axis == 2 else torch.fft.fftfreq(length, d=h)
        profile = torch.exp(-2.0 * (math.pi * sigma * frequency.to(torch.float64)) ** 2).to(dtype=dtype, device=device)
        view = [1, 1, 1]
        view[axis] = -1
        transfer = transfer * profile.view(view)
    return transfer


def low_pass_to_resolution(
    volume, voxel_size, native_resolution: float, target_resolution: float, edge: str = "zero"
) -> torch.Tensor:
    """``volume`` (x, y, z) at ``native_resolution`` blurred to ``target_resolution`` (Å): see the
    module docstring (``edge``: :func:`gaussian_low_pass`)."""
    return gaussian_low_pass(volume, voxel_size, degradation_sigma(native_resolution, target_resolution), edge)


def low_pass_patches(patches: torch.Tensor, voxel_size, native_resolution: float, resolutions: torch.Tensor) -> torch.Tensor:
    """Each patch of ``patches`` (B, 1, x, y, z) taken from ``native_resolution`` to its own entry of
    ``resolutions`` (B,) Å; a patch whose resolution is not coarser is left as it is. Patches are
    cut from larger maps, so their edges are continued (``edge="replicate"``); differentiable."""
    filtered = [
        low_pass_to_resolution(patch[0], voxel_size, native_resolution, float(resolution), edge="replicate")[None]
        if float(resolution) > native_resolution else patch
        for patch, resolution in zip(patches, resolutions)
    ]
    return torch.stack(filtered)


def filtered_map(density_map: DensityMap, native_resolution: float, target_resolution: float) -> DensityMap:
    """``density_map`` low-pass filtered from ``native_resolution`` to ``target_resolution`` (Å), float32."""
    data = low_pass_to_resolution(
        density_map.data.astype(np.float64), density_map.voxel_size, native_resolution, target_resolution
    )
    return DensityMap(data.numpy().astype(np.float32), density_map.voxel_size, density_map.origin)
