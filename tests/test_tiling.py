"""Tiled prediction: exact stitching, empty-tile skipping, and no seams when blending."""

from __future__ import annotations

import pytest
import torch

from cryomaps.inference.tiling import cpu_has_native_bfloat16, predict_tiled, seam_ratio, tile_boundary_planes, tile_starts


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
