"""Tiled prediction: exact stitching of one or several channels, empty-tile skipping, and no seams when blending."""

from __future__ import annotations

import pytest
import torch

from cryomaps.inference.tiling import (
    cpu_has_native_bfloat16,
    predict_tiled,
    predict_tiled_channels,
    seam_ratio,
    tile_boundary_planes,
    tile_starts,
)


def smooth_volume(shape, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((1, 1, *shape), generator=generator)
    return torch.nn.functional.avg_pool3d(noise, 5, stride=1, padding=2)[0, 0] + 0.1


@pytest.mark.parametrize("mode", ["blend", "published"])
@pytest.mark.parametrize("shape", [(37, 50, 23), (20, 20, 20), (70, 33, 41)])
def test_identity_network_is_reproduced_exactly(mode, shape):
    volume = smooth_volume(shape)
    out = predict_tiled(volume, lambda tiles: tiles, tile_size=32, overlap=12, mode=mode, batch_size=5)
    assert out.shape == volume.shape
    torch.testing.assert_close(out, volume, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("face_padding", [0, 3, None])
def test_face_padding_changes_the_tiles_not_the_identity(face_padding):
    """Tiles end at the map's faces (0), or the map is padded by 3 or by half the overlap (None): an
    identity network is reproduced either way."""
    volume = smooth_volume((70, 33, 41))
    out = predict_tiled(volume, lambda tiles: tiles, tile_size=32, overlap=12, batch_size=5, face_padding=face_padding)
    torch.testing.assert_close(out, volume, rtol=1e-5, atol=1e-6)


def test_tile_faces_follow_the_face_padding():
    """By hand, 70 voxels, 32³ tiles every 20: unpadded, tiles start at 0, 20, 38 (flush) and end at
    32, 52, 70; padded by 6, at −6, 14, 34, 44 and end at 26, 46, 66, 76."""
    assert tile_boundary_planes(70, 32, 12, "blend", face_padding=0) == [20, 32, 38, 52]
    assert tile_boundary_planes(70, 32, 12, "blend") == [14, 26, 34, 44, 46, 66]


def test_tile_starts_cover_the_axis():
    for length in (1, 31, 32, 33, 100):
        starts = tile_starts(length, 32, 20)
        covered = torch.zeros(max(length, 32), dtype=torch.bool)
        for start in starts:
            covered[start : start + 32] = True
        assert covered[:length].all() and starts[-1] + 32 >= length


def test_empty_tiles_are_skipped_and_give_zero():
    volume = torch.zeros(96, 40, 40)
    volume[5:20, 5:20, 5:20] = 1.0
    calls = []

    def predict(tiles):
        calls.append(len(tiles))
        return tiles * 2.0

    out = predict_tiled(volume, predict, tile_size=32, overlap=8, batch_size=64)
    assert sum(calls) < len(tile_starts(96 + 8, 32, 24)) * len(tile_starts(48, 32, 24)) ** 2
    torch.testing.assert_close(out, volume * 2.0)


def per_voxel_channels(volume: torch.Tensor) -> torch.Tensor:
    """Three per-voxel functions of a (..., 1, X, Y, Z) volume as three channels (..., 3, X, Y, Z)."""
    return torch.cat([2.0 * volume + 1.0, volume**2 - 0.5 * volume, -volume], dim=-4)


@pytest.mark.parametrize("mode", ["blend", "published"])
@pytest.mark.parametrize("shape", [(37, 50, 23), (20, 20, 20)])
def test_each_channel_of_a_per_voxel_network_is_the_function_of_the_whole_map(mode, shape):
    """Oracle: a per-voxel map gives the same value in every tile, so blending (a weighted mean with
    weights that sum to one) must return it, channel by channel."""
    volume = smooth_volume(shape, seed=3)
    out = predict_tiled_channels(volume, per_voxel_channels, channels=3, tile_size=32, overlap=12, mode=mode, batch_size=5)
    expected = per_voxel_channels(volume[None])
    assert out.shape == (3, *shape)
    for channel in range(3):
        torch.testing.assert_close(out[channel], expected[channel], rtol=1e-5, atol=1e-6)


def test_blending_weights_are_a_partition_of_unity():
    """A network that answers 1 everywhere (including on the zero padding and on near-empty tiles) gives exactly 1."""
    volume = smooth_volume((45, 30, 61), seed=4)
    out = predict_tiled_channels(volume, lambda tiles: torch.ones_like(tiles).expand(-1, 2, -1, -1, -1), channels=2,
                                 tile_size=24, overlap=10, empty_threshold=-float("inf"))
    torch.testing.assert_close(out, torch.ones(2, 45, 30, 61), rtol=1e-6, atol=0.0)


def test_a_convolution_is_stitched_exactly_from_the_kept_cores():
    """Oracle: a 3³ convolution (two output channels) of the whole zero-padded map. In ``published``
    mode each kept 20³ core lies 6 voxels inside its 32³ tile, beyond the kernel's reach of its faces."""
    torch.manual_seed(1)
    convolution = torch.nn.Conv3d(1, 2, 3, padding=1).eval()
    volume = smooth_volume((45, 38, 27), seed=5)
    with torch.no_grad():
        expected = convolution(volume[None, None])[0]
    out = predict_tiled_channels(volume, convolution, channels=2, mode="published", batch_size=7, device="cpu")
    for channel in range(2):
        torch.testing.assert_close(out[channel], expected[channel], rtol=1e-5, atol=1e-6)


def test_channels_blended_together_equal_each_channel_blended_alone():
    """Two channels of an edge-sensitive network in one pass are bit for bit the one-channel tilings of each."""
    volume = smooth_volume((40, 36, 30), seed=6)
    network = edge_sensitive_network()

    def two_channels(tiles):
        prediction = network(tiles)
        return torch.cat([prediction, prediction.square()], dim=1)

    settings = {"tile_size": 16, "overlap": 8, "batch_size": 8, "device": "cpu"}
    together = predict_tiled_channels(volume, two_channels, channels=2, **settings)
    assert torch.equal(together[0], predict_tiled(volume, network, **settings))
    assert torch.equal(together[1], predict_tiled(volume, lambda tiles: network(tiles).square(), **settings))


def test_a_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match="2 channels, expected 1"):
        predict_tiled(smooth_volume((20, 20, 20)), lambda tiles: tiles.expand(-1, 2, -1, -1, -1), tile_size=16, overlap=4)


def edge_sensitive_network() -> torch.nn.Module:
    """The small U-Net++ generator (random weights): zero padding and a wide receptive field make
    its outputs near tile faces differ from those in the interior."""
    from cryomaps.models import build_generator

    torch.manual_seed(0)
    return build_generator("small").eval()


def test_blending_leaves_no_seams_where_hard_stitching_does():
    volume = smooth_volume((48, 48, 48), seed=1)
    network = edge_sensitive_network()
    ratios = {}
    for mode in ("blend", "published"):
        out = predict_tiled(volume, network, tile_size=32, overlap=16, mode=mode, batch_size=16)
        ratios[mode] = seam_ratio(out, tile_boundary_planes(48, 32, 16, mode))
    assert ratios["blend"] < 1.2, ratios
    assert ratios["published"] > 1.5, ratios


@pytest.mark.skipif(not cpu_has_native_bfloat16(), reason="this CPU has no native bfloat16 (AVX512-BF16 / AMX)")
def test_cpu_bfloat16_is_opt_in_and_stays_close_to_float32():
    volume = smooth_volume((14, 12, 18), seed=2)
    network = edge_sensitive_network()
    settings = {"tile_size": 16, "overlap": 8, "batch_size": 4, "device": "cpu"}
    reference = predict_tiled(volume, network, cpu_bfloat16=False, **settings)
    assert torch.equal(predict_tiled(volume, network, **settings), reference)  # off unless asked for
    low = predict_tiled(volume, network, cpu_bfloat16=True, **settings)
    assert low.dtype == torch.float32 and not torch.equal(low, reference)
    scale = float(reference.abs().max())
    assert float((low - reference).abs().max()) < 0.03 * scale
