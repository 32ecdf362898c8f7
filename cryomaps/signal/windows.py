"""The raised cosine: one smooth 0 → 1 edge from which every soft window, mask edge and taper is built.

:func:`cosine_ramp` rises from 0 at ``phase <= 0`` to 1 at ``phase >= 1`` as ``½(1 − cos(π·phase))``
(value and slope continuous at both ends); a falling edge is ``cosine_ramp(1 − phase)``.
:func:`raised_cosine` is the radial form used by soft spherical windows and masks.
"""

from __future__ import annotations

import math

import torch


def cosine_ramp(phase: torch.Tensor) -> torch.Tensor:
    """Raised-cosine ramp of ``phase`` (any shape, dimensionless): 0 for ``phase <= 0``, 1 for
    ``phase >= 1``, ``0.5 - 0.5 cos(π phase)`` in between (0.5 at ``phase = 0.5``)."""
    return 0.5 - 0.5 * torch.cos(math.pi * phase.clamp(0.0, 1.0))


def raised_cosine(distance: torch.Tensor, radius: float, soft_edge: float) -> torch.Tensor:
    """Soft ball profile of ``distance`` (Å, any shape): 1 for ``distance <= radius - soft_edge/2``,
    0 beyond ``radius + soft_edge/2``, a falling :func:`cosine_ramp` in between (0.5 at ``radius``).
    ``soft_edge <= 0`` gives the hard ball ``distance <= radius``."""
    if soft_edge <= 0:
        return (distance <= radius).to(distance.dtype)
    return cosine_ramp((radius + soft_edge / 2 - distance) / soft_edge)
