"""Map generation: atomic model → simulated input (as in training) → generator → experimental-like map.

The input is made by the same function, with the same options, that curation used for the
training pairs (:func:`cryomaps.render.network_input`: rendered, min-max scaled to [0, 1]); the
options travel inside the generator's weights file (``metadata["input"]``, read by
:func:`cryomaps.models.weights.generator_input_config`), together with the voxel size it was
trained at. The output overlays the model: it is written on the grid it was predicted on, or
resampled onto a reference map's grid (``like``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cryomaps.devices import resolve_device
from cryomaps.errors import InputError
from cryomaps.inference.tiling import predict_tiled
from cryomaps.io import DensityMap, Grid, Structure, resample_map
from cryomaps.io.grid import nyquist_resolution
from cryomaps.models.weights import generator_input_config
from cryomaps.render import network_input, render_structure_array
from cryomaps.signal.resolution import ResolutionEstimateError, spectral_resolution


@dataclass
class TilingOptions:
    """How the map is cut into tiles (see :func:`cryomaps.inference.tiling.predict_tiled`).

    Defaults measured on the held-out pairs EMD-3488 and EMD-21457 (``cryomaps evaluate ...
    split=val``; README "Generate"): 48³ tiles overlapping by 16 voxels put 3.8-4.4x the map's
    voxels through the network (empty tiles skipped; 1RB8, 5FUU) instead of 5.6-6.0x for 32³ / 16,
    and move SSIM, Pearson and both correlations by at most 0.007; smaller overlaps (32/8, 40/12,
    48/12), 40³ or 64³ tiles moved SSIM or the correlation about the mean on EMD-3488 by 0.01-0.02.
    bfloat16 on CPUs that compute it natively moves them by less than 0.0005 and is 1.5-2x faster.
    No zero padding at the map's faces (``face_padding=0``: tiles end at the faces, as training
    patches end inside their maps) instead of half the overlap: 27 tiles instead of 64 on
    EMD-3488's box; SSIM, Pearson and corr. about zero move by at most 0.006, corr. about mean
    rises by 0.021 on EMD-3488 and falls by 0.0004 on EMD-21457.
    Filtered to coarser resolutions, the map depends more on where the tiles fall (each tile's
    InstanceNorms see only that tile): on EMD-3488 at 8 Å the correlation about the mean spans
    0.566-0.644 over shifts of the 48/16 tile grid and 0.615-0.644 with 32/16 tiles
    (``scripts/probe_generator_resolution.py``, README "A map at any resolution").
    """

    tile_size: int = 48
    overlap: int = 16
    mode: str = "blend"
    batch_size: int = 8
    device: str | None = None
    progress: bool = False
    cpu_bfloat16: bool = True
    face_padding: int = 0


def prediction_grid(structure: Structure, voxel_size: float, padding: float, like: DensityMap | None) -> Grid:
    """The grid the generator runs on (Å): around the model plus ``padding``, or covering ``like``'s box."""
    if like is None:
        return Grid.around(structure.coords, voxel_size=voxel_size, padding=padding)
    return like.grid.resampled_isotropic(voxel_size)


def generate_map(
    structure: Structure,
    generator: torch.nn.Module,
    metadata: dict,
    padding: float = 8.0,
    like: DensityMap | None = None,
    resolution: float | None = None,
    tiling: TilingOptions | None = None,
) -> DensityMap:
    """An experimental-like map of ``structure``.

    Args:
        structure: the model.
        generator: the trained U-Net++ (eval mode).
        metadata: the weights file's metadata: ``input`` render options and ``voxel_size`` (Å).
        padding: Å of empty space around the model's bounding box (ignored with ``like``).
        like: put the result on this map's grid (values resampled trilinearly).
        resolution: target resolution (Å) for a resolution-conditioned generator.
        tiling: tile size, overlap, blending mode, batch size, device.
    Returns:
        The generated map, on ``like``'s grid or on a grid of ``metadata["voxel_size"]`` Å around the model.
    """
    tiling = tiling or TilingOptions()
    grid = prediction_grid(structure, float(metadata["voxel_size"]), padding, like)
    simulated = network_input(structure, grid, generator_input_config(metadata))
    condition = _resolution_condition(generator, resolution)
    device = resolve_device(tiling.device)
    generator = generator.to(device).eval()

    def predict(tiles: torch.Tensor) -> torch.Tensor:
        if condition is None:
            return generator(tiles)
        return generator(tiles, condition.to(tiles.device).expand(len(tiles)))

    generated = predict_tiled(
        torch.from_numpy(simulated), predict, tile_size=tiling.tile_size, overlap=tiling.overlap,
        mode=tiling.mode, batch_size=tiling.batch_size, device=device, cpu_bfloat16=tiling.cpu_bfloat16,
        progress=tiling.progress, face_padding=tiling.face_padding,
    )
    result = DensityMap.from_grid(generated.numpy(), grid)
    return result if like is None else resample_map(result, like.grid)


def _resolution_condition(generator: torch.nn.Module, resolution: float | None) -> torch.Tensor | None:
    if not generator.resolution_conditioned:
        return None
    if resolution is None:
        raise InputError(None, "this generator is conditioned on resolution: give --resolution")
    return torch.tensor([float(resolution)])


DEFAULT_RESOLUTION = 3.0
"""Å assumed for a resolution-conditioned generator given neither a resolution nor a ``like`` map."""


def assumed_resolution(structure: Structure, like: DensityMap | None) -> tuple[float, str]:
    """The resolution (Å) to condition a generator on when none is given, and how it was chosen.

    With ``like``: :func:`estimated_resolution` of that map; without it, or when the map follows
    the model too little to fit a falloff, :data:`DEFAULT_RESOLUTION`.
    """
    if like is None:
        return DEFAULT_RESOLUTION, "the default; give --resolution to choose"
    try:
        estimate = estimated_resolution(like, structure)
    except ResolutionEstimateError as reason:
        return DEFAULT_RESOLUTION, f"the default: no estimate from the --like map ({reason})"
    return estimate, "estimated from the --like map by its Fourier falloff against the model's molmap"


def estimated_resolution(density_map: DensityMap, structure: Structure) -> float:
    """Å: the FSC-free spectral estimate of ``density_map``'s resolution
    (:func:`cryomaps.signal.resolution.spectral_resolution`: the map's Fourier falloff against the
    model's molmap at twice the map's voxel size).

    Raises:
        ResolutionEstimateError: the map follows the model too little to fit a falloff.
    """
    sharp = nyquist_resolution(density_map.voxel_size)
    model = render_structure_array(structure, density_map.grid, model="molmap", resolution=sharp)
    return spectral_resolution(density_map.data, model, density_map.voxel_size, sharp)
