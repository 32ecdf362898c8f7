"""Single-map local resolution with a trained CryoRes network (Dai et al. 2023 method).

**Input preparation** (:func:`cryomaps.data.locres_input.prepare_map`), the same for training volumes and for ``cryomaps locres``:

1. resample the map trilinearly to the network's isotropic voxel size (``voxel_size`` Å, 1 Å by
   default) over the same box (:func:`cryomaps.io.resample_map`);
2. z-score with the mean and SD of the bounding box of the voxels above mean +
   ``threshold_sigmas``·SD (3, as published), widened by ``crop_margin`` Å on every side (kept
   within the box): statistics that do not depend on how much solvent the box holds;
3. crop to that box, widened further to the bounding box (plus ``crop_margin``) of the molecular
   mask of :func:`cryomaps.metrics.masks.threshold_mask` (Otsu threshold of the map smoothed by
   3 Å). A sharp region can dominate the 3σ threshold so much that a weak, low-resolution domain
   (a flexible 6 Å region next to a 3 Å core) falls outside that box; the smoothed mask keeps it in
   view, with the same normalisation;
4. zero-pad (0 = the mean of step 2) at the high end of each axis to a multiple of the network's stride.

The settings travel with the weights as plain metadata (:meth:`InputPreparation.to_metadata`),
together with ``tile_size``, the edge of the training patches.

**Prediction** (:func:`predict_local_resolution`). The network was trained on ``tile_size``³
patches whose global-resolution label is the median local resolution inside the patch's mask, so
its global head answers "the typical resolution of this patch" and global + relative is a complete
local-resolution estimate for that patch. The prepared map is therefore always cut into tiles of
the training size (:func:`cryomaps.inference.tiling.predict_tiled_channels`, blended, overlapping
by half a tile); each tile's global + relative resolution is blended, which gives the global
resolution of the map per region without a separate whole-map pass. The mask probability is
blended in the same pass (one network call per batch of tiles gives both heads, blended as two
channels). Flip averaging predicts the prepared tensor a second time inverted through its centre
and flips that prediction back before averaging (the map is prepared once). The reported global
resolution is the median of the local resolution inside the predicted mask. Both maps are
resampled back onto the input map's grid; estimates finer than the input's Nyquist limit (twice
its voxel size) are raised to it; outside the mask the local resolution is
:data:`cryomaps.signal.local_fsc.BACKGROUND_RESOLUTION` (100 Å, as the classical mode).

Training volumes (:func:`cryomaps.data.synthetic.synthetic_training_volumes`) pass through the
same preparation (:func:`cryomaps.data.locres_input.prepare_training_volume`).

All arrays are indexed (x, y, z); lengths in Å.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from cryomaps.data.locres_input import InputPreparation, prepare_map
from cryomaps.devices import resolve_device
from cryomaps.inference.tiling import predict_tiled_channels
from cryomaps.io import DensityMap, resample_map
from cryomaps.io.grid import nyquist_resolution
from cryomaps.signal.local_fsc import BACKGROUND_RESOLUTION


# ---------------------------------------------------------------------------------------------
# Prediction


@dataclass
class NetworkLocalResolution:
    """Result of :func:`predict_local_resolution`, on the input map's grid.

    Attributes:
        locres: local resolution (Å) inside the mask, ``background`` outside.
        mask: predicted molecular mask (1 inside, 0 outside).
        estimate: global + relative resolution (Å) at every voxel, before masking (for scoring
            against a known mask).
        median: median local resolution (Å) inside the mask (NaN when the mask is empty).
        seconds: wall time of the prediction.
    """

    locres: DensityMap
    mask: DensityMap
    estimate: DensityMap
    median: float
    seconds: float


def predict_local_resolution(
    density_map: DensityMap,
    network: torch.nn.Module,
    metadata: Mapping,
    *,
    overlap: int | None = None,
    flip_average: bool = True,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    background: float = BACKGROUND_RESOLUTION,
) -> NetworkLocalResolution:
    """Local-resolution map and molecular mask of one map with a trained CryoRes network.

    Args:
        density_map: the map (any voxel size; data indexed (x, y, z)).
        network: a :class:`cryomaps.models.CryoResNet` in eval mode.
        metadata: its weights file's metadata (:meth:`InputPreparation.to_metadata`).
        overlap: voxels shared by neighbouring tiles (default: half a tile, so that every voxel
            blends up to eight tiles' estimates and tile seams vanish; a quarter of a tile is about
            three times faster at the same accuracy on synthetic maps, with visible seams).
        flip_average: also predict the prepared map inverted through its centre (flipped along x,
            y and z), flip that prediction back and average the two (test-time augmentation; the
            network is not exactly equivariant to it). Twice the network time; on the 12
            synthetic validation maps of ``scripts/bench_locres_network.py`` it lowered the RMSE
            of a model with the spectral global head from 1.045 to 1.028 Å (9 of 12 maps better;
            measured when the inverted map was prepared again, whose crop is padded on the other
            side and resampled with another sub-voxel offset; inverting the prepared tensor
            instead moved the bundled model's RMSE by −0.09 to +0.03 Å on 7 held-out test maps,
            mean 0.668 → 0.658 Å).
        batch_size: tiles per network call.
        device: torch device (default: CUDA when available, else CPU).
        background: value (Å) written outside the predicted mask.

    Estimates finer than the input map's Nyquist limit (twice its voxel size, the floor of the
    half-map estimator too) are raised to it: the network works on a 1 Å grid and, on a map
    sampled more coarsely than its training maps (0.7–1.5 Å), can report detail the map cannot hold.
    """
    started = time.perf_counter()
    device = resolve_device(device)
    preparation = InputPreparation.from_metadata(metadata)
    prepared = prepare_map(density_map, preparation, network.stride)
    overlap = preparation.tile_size // 2 if overlap is None else overlap
    settings = {"tile_size": preparation.tile_size, "overlap": overlap, "batch_size": batch_size, "device": device}
    volume = torch.from_numpy(prepared.volume)
    heads = _tiled_heads(network.to(device), volume, **settings)
    if flip_average:
        heads = (heads + _tiled_heads(network, volume.flip(0, 1, 2), **settings).flip(1, 2, 3)) / 2
    target = density_map.grid
    probability = resample_map(DensityMap.from_grid(heads[1].numpy(), prepared.grid), target).data
    local = resample_map(DensityMap.from_grid(heads[0].numpy(), prepared.grid), target, fill_value=background).data
    local = np.maximum(local, np.float32(nyquist_resolution(density_map.voxel_size)))
    inside = probability > 0.5
    locres = np.where(inside, local, np.float32(background)).astype(np.float32)
    median = float(np.median(locres[inside])) if inside.any() else float("nan")
    return NetworkLocalResolution(
        locres=DensityMap.from_grid(locres, target),
        mask=DensityMap.from_grid(inside.astype(np.float32), target),
        estimate=DensityMap.from_grid(local.astype(np.float32), target),
        median=median,
        seconds=time.perf_counter() - started,
    )


def _tiled_heads(network, volume: torch.Tensor, *, tile_size: int, overlap: int, batch_size: int, device) -> torch.Tensor:
    """Blended (2, X, Y, Z) heads of ``network`` over the prepared ``volume`` (X, Y, Z), one network
    call per batch of tiles: channel 0 global + relative resolution (Å, every voxel), channel 1 mask
    probability."""
    if tile_size % network.stride:
        raise ValueError(f"tile size {tile_size} is not a multiple of the network stride {network.stride}")

    def heads(tiles: torch.Tensor) -> torch.Tensor:
        output = network(tiles)
        local = output.global_resolution.view(-1, 1, 1, 1, 1) + output.relative_resolution
        return torch.cat([local, torch.sigmoid(output.mask_logits)], dim=1)

    return predict_tiled_channels(volume, heads, channels=2, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
                                  device=device, empty_threshold=-math.inf, mixed_precision=False)

