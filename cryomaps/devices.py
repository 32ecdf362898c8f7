"""The torch device a computation runs on when the user names none."""

from __future__ import annotations

import torch


def resolve_device(requested: str | torch.device | None = None) -> torch.device:
    """``requested`` as a :class:`torch.device` ("cpu", "cuda", "cuda:1", ...); None: CUDA when available, else CPU."""
    if requested is not None:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
