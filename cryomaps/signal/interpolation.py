"""Separable linear interpolation as matrices: one (out, in) weight matrix per axis."""

from __future__ import annotations

import torch


def linear_interpolation_matrix(positions: torch.Tensor, length: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(M, length) weights of 1-D linear interpolation of samples 0..length-1 at ``positions``
    (M,) float64, in sample units; positions beyond the last sample take its value."""
    lower = torch.floor(positions).long().clamp(max=length - 1)
    upper = (lower + 1).clamp(max=length - 1)
    fraction = positions - lower
    rows = torch.arange(len(positions))
    matrix = torch.zeros(len(positions), length, dtype=torch.float64)
    matrix.index_put_((rows, lower), 1.0 - fraction, accumulate=True)
    matrix.index_put_((rows, upper), fraction, accumulate=True)
    return matrix.to(device=device, dtype=dtype)
