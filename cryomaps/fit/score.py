"""Scores of a model against a map: the model's map, map sampling, correlations and the real-space target.

Every model map of :mod:`cryomaps.fit` comes from :func:`model_map` (one call into the renderer), so
the density model (``molmap`` or ``peng``, Gaussian blur or finite-resolution images) is chosen in
one place. Maps are tensors indexed (x, y, z) on a :class:`cryomaps.io.Grid`; lengths in Å.
"""

from __future__ import annotations


import numpy as np
import torch

from cryomaps.io.grid import Grid
from cryomaps.render import DensityModelConfig, render_density

def model_map(coords, atomic_numbers, b_factors, occupancies, grid: Grid, config: DensityModelConfig) -> torch.Tensor:
    """The model's map (nx, ny, nz) on ``grid`` (or (B, ...) for batched coords); differentiable."""
    return render_density(coords, atomic_numbers, grid, config, b_factors=b_factors, occupancies=occupancies)


def sample(data: torch.Tensor, grid: Grid, points: torch.Tensor) -> torch.Tensor:
    """Trilinear values (M,) of a map (nx, ny, nz) at world points (M, 3) Å; 0 outside the box.

    Differentiable with respect to ``points`` (and ``data``).
    """
    shape = torch.tensor(grid.shape, dtype=points.dtype)
    index = (points - torch.as_tensor(grid.origin, dtype=points.dtype)) / torch.as_tensor(grid.voxel_size, dtype=points.dtype)
    normalised = 2 * index / (shape - 1).clamp(min=1) - 1
    # grid_sample reads (D, H, W) = (x, y, z) and wants the sampling coordinates as (W, H, D)
    location = normalised.flip(-1).reshape(1, 1, 1, -1, 3).to(data.dtype)
    values = torch.nn.functional.grid_sample(
        data[None, None], location, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return values.reshape(-1)


def pearson(first: torch.Tensor, second: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Correlation about the mean of paired values (optionally weighted); differentiable, 0 if degenerate."""
    if weights is None:
        weights = torch.ones_like(first)
    total = weights.sum()
    a = first - (weights * first).sum() / total
    b = second - (weights * second).sum() / total
    denominator = torch.sqrt((weights * a * a).sum() * (weights * b * b).sum())
    return (weights * a * b).sum() / denominator.clamp(min=torch.finfo(first.dtype).tiny)


def scaled_residual(model_values: torch.Tensor, map_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real-space target ``Σ (k ρ_model + c - ρ_map)² / Σ (ρ_map - mean)²`` with k, c in closed form.

    The scale k and offset c are the least-squares solution for the current model map (solved at
    every evaluation), so the target equals ``1 - r²`` with r the correlation of the two sets of
    values (where r > 0); it is dimensionless and cannot be lowered by flattening the model map,
    unlike a target that scales the experimental map onto the model.

    Returns:
        (target, k, c): scalars; gradients flow through all three.
    """
    model_centred = model_values - model_values.mean()
    map_centred = map_values - map_values.mean()
    variance = (model_centred * model_centred).sum().clamp(min=torch.finfo(model_values.dtype).tiny)
    scale = (model_centred * map_centred).sum() / variance
    offset = map_values.mean() - scale * model_values.mean()
    residual = scale * model_values + offset - map_values
    return (residual * residual).sum() / (map_centred * map_centred).sum(), scale, offset


def box_around(coords: np.ndarray, grid: Grid, margin: float) -> tuple[tuple[slice, slice, slice], Grid]:
    """The sub-box of ``grid`` covering ``coords`` (N, 3) Å plus ``margin`` Å: (slices, sub-grid)."""
    index = grid.world_to_index(coords)
    reach = margin / grid.voxel_size
    low = np.clip(np.floor(index.min(axis=0) - reach), 0, np.asarray(grid.shape) - 1).astype(int)
    high = np.clip(np.ceil(index.max(axis=0) + reach) + 1, low + 1, np.asarray(grid.shape)).astype(int)
    slices = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    return slices, Grid(tuple(high - low), grid.voxel_size, grid.index_to_world(low[None])[0])
