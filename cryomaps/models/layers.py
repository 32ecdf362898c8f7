"""Small helpers shared by the networks: input-shape checks and resampling to a skip's grid.

Spatial tensors are (B, C, X, Y, Z), indexed (x, y, z) as everywhere in cryomaps.
"""

from __future__ import annotations

import functools

import torch

from cryomaps.signal.interpolation import linear_interpolation_matrix


def check_spatial_shape(volume: torch.Tensor, stride: int) -> None:
    """Raise ``ValueError`` unless ``volume`` is (B, C, X, Y, Z) with X, Y, Z multiples of ``stride``.

    A network with ``stride`` = 2^(levels − 1) halves the grid ``levels − 1`` times; sizes that are
    multiples of it pool and upsample back to exactly the input grid.
    """
    if volume.dim() != 5:
        raise ValueError(f"expected a (B, C, X, Y, Z) tensor, got shape {tuple(volume.shape)}")
    spatial = tuple(volume.shape[-3:])
    if any(size % stride != 0 or size == 0 for size in spatial):
        raise ValueError(f"spatial size {spatial} must be positive multiples of the network stride {stride}")


def upsample_like(volume: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Trilinear upsampling (corners aligned) of (B, C, x, y, z) to the spatial size of ``reference``.

    Trilinear interpolation is separable: one matrix product per axis gives the same values as
    ``F.interpolate(mode="trilinear", align_corners=True)`` (to float rounding), 2x faster on CPU
    in float32 and 9x in bfloat16, where ``F.interpolate`` has no fast kernel.
    """
    batch, channels, n_x, n_y, n_z = volume.shape
    out_x, out_y, out_z = reference.shape[-3:]
    along_x, along_y, along_z = (
        _interpolation_matrix(n, out, volume.dtype, volume.device) for n, out in ((n_x, out_x), (n_y, out_y), (n_z, out_z))
    )
    result = volume @ along_z.T  # (B, C, x, y, out_z)
    result = along_y @ result  # (out_y, y) @ (B, C, x, y, out_z)
    result = along_x @ result.reshape(batch, channels, n_x, out_y * out_z)
    return result.reshape(batch, channels, out_x, out_y, out_z)


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(length: int, out_length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(out_length, length) weights of 1-D linear interpolation with the end points aligned (cached:
    every forward of a network upsamples the same sizes)."""
    scale = (length - 1) / (out_length - 1) if out_length > 1 else 0.0
    with torch.inference_mode(False):  # a normal tensor: the cached matrix serves training too
        return linear_interpolation_matrix(torch.arange(out_length, dtype=torch.float64) * scale, length, dtype, device)
