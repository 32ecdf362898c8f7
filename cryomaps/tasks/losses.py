"""Losses and batch statistics shared by the training tasks."""

from __future__ import annotations

import torch


def batch_pearson(first: torch.Tensor, second: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation per sample of two (B, ...) tensors over all other dimensions → (B,)."""
    first = first.flatten(1).float()
    second = second.flatten(1).float()
    first = first - first.mean(dim=1, keepdim=True)
    second = second - second.mean(dim=1, keepdim=True)
    covariance = (first * second).sum(dim=1)
    return covariance / (first.norm(dim=1) * second.norm(dim=1) + eps)
