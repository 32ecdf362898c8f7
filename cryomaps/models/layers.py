"""Small helpers shared by the networks: input-shape checks and resampling to a skip's grid.

Spatial tensors are (B, C, X, Y, Z), indexed (x, y, z) as everywhere in cryomaps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    """Trilinear upsampling (corners aligned) of (B, C, x, y, z) to the spatial size of ``reference``."""
    return F.interpolate(volume, size=reference.shape[-3:], mode="trilinear", align_corners=True)
