"""Input preparation of the single-map local-resolution network, shared by training and inference.

The same steps for training volumes (:func:`prepare_training_volume`, used by
:mod:`cryomaps.data.synthetic` and :mod:`cryomaps.data.half_maps`) and for ``cryomaps locres``
(:func:`prepare_map`, used by :mod:`cryomaps.inference.locres_network`, whose docstring lists them):
resample to the network's isotropic voxel size, z-score with the statistics of the published
mean + 3σ box, crop to that box widened to the smoothed Otsu mask, zero-pad to the network's stride.

All arrays are indexed (x, y, z); lengths in Å.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from cryomaps.errors import InputError
from cryomaps.io import DensityMap, Grid, resample_map
from cryomaps.metrics.masks import threshold_mask
from cryomaps.signal.local_fsc import BACKGROUND_RESOLUTION


@dataclass(frozen=True)
class InputPreparation:
    """How a single map becomes network input (module docstring).

    Attributes:
        voxel_size: isotropic voxel size (Å) the network expects.
        threshold_sigmas: voxels above mean + this many SDs define the crop box.
        crop_margin: Å added around that box on every side.
        tile_size: edge (voxels) of the training patches, used as the inference tile.
    """

    voxel_size: float = 1.0
    threshold_sigmas: float = 3.0
    crop_margin: float = 8.0
    tile_size: int = 32

    NORMALISATION = "z-score inside the bounding box of voxels above mean + threshold_sigmas SD, widened by crop_margin"

    @classmethod
    def from_metadata(cls, metadata: Mapping) -> "InputPreparation":
        """Settings from a weights file's metadata (keys of :meth:`to_metadata`)."""
        names = ("voxel_size", "threshold_sigmas", "crop_margin", "tile_size")
        missing = [name for name in names if name not in metadata]
        if missing:
            raise InputError(None, f"network metadata lacks {', '.join(missing)}: not a cryomaps CryoRes weights file?")
        return cls(**{name: metadata[name] for name in names})

    def to_metadata(self) -> dict:
        """Plain-Python metadata stored with the weights: the settings, a readable ``normalisation``
        and the ``background_resolution`` (Å) written outside the mask."""
        return {**asdict(self), "normalisation": self.NORMALISATION, "background_resolution": BACKGROUND_RESOLUTION}


@dataclass
class PreparedInput:
    """A map prepared for the network.

    Attributes:
        volume: (X, Y, Z) float32 z-scored density, X, Y, Z multiples of the stride.
        grid: where ``volume`` lies (isotropic voxel size of the network, origin of the crop).
    """

    volume: np.ndarray
    grid: Grid


def prepare_map(density_map: DensityMap, preparation: InputPreparation, stride: int = 1) -> PreparedInput:
    """Resample, crop, z-score and pad ``density_map`` for the network (module docstring, steps 1–4)."""
    resampled = resample_map(density_map, density_map.grid.resampled_isotropic(preparation.voxel_size))
    margin = int(math.ceil(preparation.crop_margin / preparation.voxel_size))
    box = threshold_box(resampled.data, preparation.threshold_sigmas, margin)
    statistics = resampled.data[box]
    box = widen_to_mask(box, threshold_mask(resampled), margin)
    crop = resampled.data[box]
    scaled = (crop - statistics.mean()) / max(float(statistics.std()), 1e-12)
    padding = [(0, -length % stride) for length in crop.shape]
    volume = np.pad(scaled, padding).astype(np.float32)
    start = np.array([axis.start for axis in box])
    origin = resampled.grid.index_to_world(start[None])[0]
    return PreparedInput(volume, Grid(volume.shape, preparation.voxel_size, origin))


def threshold_box(data: np.ndarray, sigmas: float, margin: int) -> tuple[slice, slice, slice]:
    """Slices of the bounding box of voxels above mean + ``sigmas``·SD, widened by ``margin`` voxels.

    The whole box when no voxel exceeds the threshold.
    """
    box = mask_box(data > data.mean() + sigmas * data.std(), margin)
    return tuple(slice(0, n) for n in data.shape) if box is None else box


def widen_to_mask(box: tuple[slice, slice, slice], mask: np.ndarray, margin: int) -> tuple[slice, slice, slice]:
    """``box`` widened to also hold :func:`mask_box` of ``mask``; ``box`` itself when the mask is empty."""
    extra = mask_box(mask, margin)
    if extra is None:
        return box
    return tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(box, extra))


def mask_box(mask: np.ndarray, margin: int) -> tuple[slice, slice, slice] | None:
    """Slices of the bounding box of the true voxels of ``mask`` (x, y, z bool), widened by ``margin``
    voxels and kept within the array; None when no voxel is true."""
    inside = np.argwhere(mask)
    if len(inside) == 0:
        return None
    low = np.maximum(inside.min(axis=0) - margin, 0)
    high = np.minimum(inside.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def nearest_on_grid(density_map: DensityMap, grid: Grid, fill_value: float) -> np.ndarray:
    """Values of ``density_map`` at the voxel nearest to each voxel centre of ``grid`` (X, Y, Z) float32;
    ``fill_value`` where that voxel lies outside the map (labels: masks and local resolution)."""
    centres = grid.voxel_centres()
    index = np.rint(density_map.grid.world_to_index(centres)).astype(np.int64)
    inside = density_map.grid.has_nearest_voxel(centres)
    values = np.full(len(index), fill_value, dtype=np.float32)
    values[inside] = density_map.data[tuple(index[inside].T)]
    return values.reshape(grid.shape)


def prepare_training_volume(volume: Mapping, preparation: InputPreparation) -> dict:
    """A :data:`cryomaps.data.datamodules.VolumeSource` entry with its ``map`` prepared as at inference.

    ``volume`` holds ``map``, ``locres`` (Å) and ``mask`` arrays (x, y, z) with ``voxel_size`` and
    ``origin``. The labels are carried to the prepared grid by nearest voxel (outside the map:
    mask 0, local resolution 100 Å). Padding to the stride (step 4) is left to the patch sampler,
    which pads every volume itself; it adds only zeros.
    """
    def as_map(key: str) -> DensityMap:
        return DensityMap(volume[key], np.broadcast_to(volume["voxel_size"], (3,)), volume["origin"])

    prepared = prepare_map(as_map("map"), preparation)
    return {
        "map": prepared.volume,
        "locres": nearest_on_grid(as_map("locres"), prepared.grid, BACKGROUND_RESOLUTION),
        "mask": nearest_on_grid(as_map("mask"), prepared.grid, 0.0),
        "voxel_size": prepared.grid.voxel_size,
        "origin": prepared.grid.origin,
    }
