"""Tiled prediction of volume-to-volume networks over maps of any size.

Two modes:

- ``blend`` (default): overlapping tiles (stride = tile − overlap) whose predictions are averaged
  with a smooth separable weight that falls towards the tile faces (a raised cosine with a small
  floor), so there are no seams. The map is zero-padded at its faces (``face_padding``, by default
  half the overlap, so voxels at the map's faces are not predicted at tile faces alone; 0: tiles
  end at the map's faces, as training patches end inside their maps).
- ``published``: the struc2mapGAN scheme — 32³ tiles every 20 voxels over the zero-padded map,
  keeping only the central 20³ of each and stitching hard (visible seams).

Tiles whose input is empty (max ≤ ``empty_threshold``) are not run: their prediction is taken as 0.
Input volumes are (X, Y, Z) tensors. A network may return several channels per tile (the CryoRes
network: a local resolution and a mask probability); :func:`predict_tiled_channels` blends them all
with the same weights in one pass and returns (C, X, Y, Z); :func:`predict_tiled` is its
one-channel form, returning (X, Y, Z).

Why not TorchIO's ``GridSampler``/``GridAggregator`` (torchio < 2 is a dependency): its
aggregator handles channels, but its smooth mode (``overlap_mode='hann'``) weights each patch with
a Hann window over the whole patch, not a flat tile with raised-cosine ramps only over the overlap,
so every generated map would change; it has no empty-tile skipping (the generator skips the
solvent, most tiles of a padded box), no hard-stitched ``published`` mode matching
struc2mapGAN's 20³ cores, and no bfloat16 autocast switch; and it goes through a
``Subject``/``DataLoader`` per map. The few lines here keep the measured outputs and speed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from cryomaps.devices import resolve_device
from cryomaps.signal.windows import cosine_ramp

PredictFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps a batch of tiles (B, 1, T, T, T) to predictions (B, C, T, T, T)."""

PUBLISHED_TILE, PUBLISHED_CORE = 32, 20


def tile_weight(tile_size: int, overlap: int, floor: float = 1e-3) -> torch.Tensor:
    """Separable blending weight (T, T, T): 1 in the middle, raised-cosine ramps of ``overlap`` voxels at the faces."""
    ramp = torch.ones(tile_size, dtype=torch.float64)
    if overlap > 0:
        steps = torch.arange(overlap, dtype=torch.float64)
        rising = cosine_ramp((steps + 0.5) / overlap)
        ramp[:overlap] = rising
        ramp[-overlap:] = rising.flip(0)
    ramp = ramp.clamp_min(floor)
    return (ramp[:, None, None] * ramp[None, :, None] * ramp[None, None, :]).float()


def tile_starts(length: int, tile_size: int, stride: int) -> list[int]:
    """Start indices of tiles of ``tile_size`` every ``stride`` covering ``length`` (the last one flush with the end)."""
    if length <= tile_size:
        return [0]
    starts = list(range(0, length - tile_size + 1, stride))
    if starts[-1] != length - tile_size:
        starts.append(length - tile_size)
    return starts


def predict_tiled(volume: torch.Tensor, predict: PredictFn, **settings) -> torch.Tensor:
    """:func:`predict_tiled_channels` for a network with one output channel: the stitched (X, Y, Z) float32 map.

    ``settings`` are the keyword arguments of :func:`predict_tiled_channels`.
    """
    return predict_tiled_channels(volume, predict, channels=1, **settings)[0]


def predict_tiled_channels(
    volume: torch.Tensor,
    predict: PredictFn,
    channels: int,
    tile_size: int = 32,
    overlap: int = 16,
    mode: str = "blend",
    batch_size: int = 8,
    empty_threshold: float = 0.0,
    device: str | torch.device | None = None,
    mixed_precision: bool = True,
    cpu_bfloat16: bool = False,
    progress: bool = False,
    face_padding: int | None = None,
) -> torch.Tensor:
    """Run ``predict`` over ``volume`` (X, Y, Z) tile by tile; returns the stitched (C, X, Y, Z) float32 map.

    Every output channel of a tile is blended with the same weight, in one pass over the tiles.

    Args:
        volume: the input map.
        predict: network call on batches of tiles (on ``device``).
        channels: C, the number of channels ``predict`` returns.
        tile_size: edge of the cubic tiles (voxels); must suit the network's stride.
        overlap: voxels shared by neighbouring tiles in ``blend`` mode (stride = tile − overlap).
        mode: ``blend`` or ``published`` (32³ tiles, 20³ kept cores, hard stitching).
        batch_size: tiles per network call.
        empty_threshold: tiles whose input never exceeds this are skipped (prediction 0).
        device: where the network runs (default: CUDA when available).
        mixed_precision: bfloat16 autocast on CUDA.
        cpu_bfloat16: bfloat16 autocast on CPU too, where the CPU computes in bfloat16 natively
            (:func:`cpu_has_native_bfloat16`); about 1.5x faster for the small generator. Off by
            default: a network's outputs move by the bfloat16 rounding, which each caller checks.
        progress: show a progress bar.
        face_padding: ``blend`` mode: voxels of zero padding at the map's faces (``None``: ``overlap // 2``).
    """
    device = resolve_device(device)
    if mode == "blend":
        if not 0 <= overlap < tile_size:
            raise ValueError(f"overlap must be in [0, tile_size), got {overlap}")
        margin, core, stride = _face_margin(overlap, face_padding), None, tile_size - overlap
    elif mode == "published":
        tile_size, margin, core, stride = PUBLISHED_TILE, (PUBLISHED_TILE - PUBLISHED_CORE) // 2, PUBLISHED_CORE, PUBLISHED_CORE
    else:
        raise ValueError(f"unknown tiling mode {mode!r}; choose blend or published")
    if device.type == "cuda":
        autocast = mixed_precision
    else:
        autocast = device.type == "cpu" and cpu_bfloat16 and cpu_has_native_bfloat16()
    padded = _pad_for_tiles(volume.float(), margin, tile_size, stride)
    starts = list(itertools.product(*(tile_starts(n, tile_size, stride) for n in padded.shape)))
    weight = tile_weight(tile_size, overlap) if core is None else _core_weight(tile_size, core)
    total = padded.new_zeros((channels, *padded.shape))
    weight_sum = torch.zeros_like(padded)
    for batch_starts in _batches(_non_empty(padded, starts, tile_size, empty_threshold, weight, weight_sum), batch_size, progress):
        tiles = torch.stack([_crop(padded, start, tile_size) for start in batch_starts])[:, None]
        predictions = _run(predict, tiles, device, autocast).float().cpu()
        if predictions.shape[1] != channels:
            raise ValueError(f"predict returned {predictions.shape[1]} channels, expected {channels}")
        for start, prediction in zip(batch_starts, predictions):
            _crop(total, start, tile_size).add_(prediction * weight)
            _crop(weight_sum, start, tile_size).add_(weight)
    stitched = total / weight_sum.clamp_min(1e-12)
    nx, ny, nz = volume.shape
    return stitched[:, margin : margin + nx, margin : margin + ny, margin : margin + nz].contiguous()


def _face_margin(overlap: int, face_padding: int | None) -> int:
    """Voxels of zero padding at the map's faces in ``blend`` mode."""
    if face_padding is None:
        return overlap // 2
    if face_padding < 0:
        raise ValueError(f"face_padding must be ≥ 0, got {face_padding}")
    return face_padding


def _core_weight(tile_size: int, core: int) -> torch.Tensor:
    """Weight 1 on the central ``core``³ of a tile and 0 elsewhere (hard stitching)."""
    weight = torch.zeros((tile_size,) * 3)
    low = (tile_size - core) // 2
    weight[low : low + core, low : low + core, low : low + core] = 1.0
    return weight


def _pad_for_tiles(volume: torch.Tensor, margin: int, tile_size: int, stride: int) -> torch.Tensor:
    """Zero-pad by ``margin`` on each side, and at the end so every axis is at least one tile long."""
    padding = []
    for length in reversed(volume.shape):  # F.pad takes the last axis first
        end = max(tile_size - (length + 2 * margin), 0)
        padding += [margin, margin + end]
    return torch.nn.functional.pad(volume, padding)


def _crop(volume: torch.Tensor, start: tuple[int, int, int], size: int) -> torch.Tensor:
    """The ``size``³ cube at ``start`` of the last three axes of ``volume`` (..., X, Y, Z), as a view."""
    x, y, z = start
    return volume[..., x : x + size, y : y + size, z : z + size]


def _non_empty(padded, starts, tile_size, threshold, weight, weight_sum) -> list:
    """Starts of tiles with signal; empty tiles count in the weights with a prediction of 0."""
    kept = []
    for start in starts:
        if _crop(padded, start, tile_size).max() > threshold:
            kept.append(start)
        else:
            _crop(weight_sum, start, tile_size).add_(weight)
    return kept


def _batches(items: list, batch_size: int, progress: bool):
    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="tiles", unit="batch")
    yield from chunks


def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively on this CPU (AVX512-BF16 or AMX), where
    they are faster than float32; elsewhere bfloat16 is emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@torch.inference_mode()
def _run(predict: PredictFn, tiles: torch.Tensor, device: torch.device, autocast: bool) -> torch.Tensor:
    """``predict`` on ``tiles`` moved to ``device``, under bfloat16 autocast when ``autocast``."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        return predict(tiles.to(device))


def tile_boundary_planes(
    length: int, tile_size: int = 32, overlap: int = 16, mode: str = "blend", face_padding: int | None = None
) -> list[int]:
    """Indices i along one axis of an unpadded map where voxels i−1 and i come from different tiles' edges.

    In ``published`` mode these are the faces of the kept 20³ cores; in ``blend`` mode the planes
    where a tile begins or ends (its faces, shifted by the face padding, as in :func:`predict_tiled_channels`).
    """
    if mode == "published":
        return [i for i in range(PUBLISHED_CORE, length, PUBLISHED_CORE)]
    margin, stride = _face_margin(overlap, face_padding), tile_size - overlap
    padded_length = max(length + 2 * margin, tile_size)
    faces = set()
    for start in tile_starts(padded_length, tile_size, stride):
        faces.update({start - margin, start + tile_size - margin})
    return sorted(i for i in faces if 0 < i < length)


def seam_ratio(volume: torch.Tensor, boundary_planes, mask: torch.Tensor | None = None) -> float:
    """Mean |Δ| between neighbours across tile boundaries divided by the mean |Δ| elsewhere.

    Differences are taken along all three axes between voxels i−1 and i; those with i in the
    boundary planes of that axis are "across a boundary". ``boundary_planes`` is one list of indices
    used on every axis, or three lists (x, y, z), e.g. from :func:`tile_boundary_planes` per axis
    length. ``mask`` (X, Y, Z) bool limits the comparison to voxels of interest (e.g. the molecule),
    where seams matter.
    """
    nested = len(boundary_planes) > 0 and isinstance(boundary_planes[0], (list, tuple))
    per_axis = list(boundary_planes) if nested else [boundary_planes] * 3
    across, elsewhere = [], []
    for axis, planes in enumerate(per_axis):
        difference = volume.diff(dim=axis).abs()
        keep = torch.ones_like(difference, dtype=torch.bool)
        if mask is not None:
            sliced = mask.narrow(axis, 1, mask.shape[axis] - 1) | mask.narrow(axis, 0, mask.shape[axis] - 1)
            keep &= sliced
        is_boundary = torch.zeros(volume.shape[axis] - 1, dtype=torch.bool)
        for plane in planes:
            if 0 < plane < volume.shape[axis]:
                is_boundary[plane - 1] = True
        shape = [1, 1, 1]
        shape[axis] = -1
        is_boundary = is_boundary.view(shape).expand_as(difference)
        across.append(difference[keep & is_boundary])
        elsewhere.append(difference[keep & ~is_boundary])
    return float(torch.cat(across).mean() / torch.cat(elsewhere).mean())
