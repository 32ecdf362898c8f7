"""CryoRes single-map inference: one network call per batch of tiles per pass, one preparation per map."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryomaps.data.locres_input import InputPreparation, prepare_map
from cryomaps.inference import locres_network
from cryomaps.inference.tiling import tile_starts
from cryomaps.io import DensityMap, Grid


class CountingNetwork(torch.nn.Module):
    """Wraps a network and records the batch size of every call."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.stride = network.stride
        self.batch_sizes: list[int] = []

    def forward(self, tiles: torch.Tensor):
        self.batch_sizes.append(len(tiles))
        return self.network(tiles)


def blob_map(shape=(44, 38, 30)) -> DensityMap:
    """A Gaussian blob (σ 3 Å) plus an offset of 2 on a 1.1 Å grid."""
    grid = Grid(shape, 1.1, (0.0, 0.0, 0.0))
    distance2 = ((grid.voxel_centres() - np.array([20.0, 18.0, 15.0])) ** 2).sum(axis=1)
    return DensityMap.from_grid((2.0 + np.exp(-distance2 / 18.0)).reshape(shape).astype(np.float32), grid)


def tile_count(shape, tile_size: int, overlap: int) -> int:
    """Tiles of the blended tiler over a volume of ``shape``: padded by overlap // 2 on each side, at least one tile long."""
    margin = overlap // 2
    return math.prod(len(tile_starts(max(n + 2 * margin, tile_size), tile_size, tile_size - overlap)) for n in shape)


@pytest.mark.parametrize("flip_average, passes", [(False, 1), (True, 2)])
def test_the_network_runs_once_per_tile_per_pass(bundled_cryores, flip_average, passes):
    density = blob_map()
    preparation = InputPreparation.from_metadata(bundled_cryores.metadata)
    shape = prepare_map(density, preparation, bundled_cryores.network.stride).volume.shape
    tiles = tile_count(shape, preparation.tile_size, preparation.tile_size // 2)
    network = CountingNetwork(bundled_cryores.network)
    batch_size = 3
    locres_network.predict_local_resolution(density, network, bundled_cryores.metadata, flip_average=flip_average,
                                            batch_size=batch_size, device="cpu")
    assert sum(network.batch_sizes) == passes * tiles
    assert len(network.batch_sizes) == passes * math.ceil(tiles / batch_size)


def test_flip_averaging_prepares_the_map_once(bundled_cryores, monkeypatch):
    prepared_maps = []

    def counting_prepare_map(*args, **kwargs):
        prepared_maps.append(args[0])
        return prepare_map(*args, **kwargs)

    monkeypatch.setattr(locres_network, "prepare_map", counting_prepare_map)
    density = blob_map()
    locres_network.predict_local_resolution(density, bundled_cryores.network, bundled_cryores.metadata, flip_average=True, device="cpu")
    assert prepared_maps == [density]
