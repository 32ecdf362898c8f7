"""Inference-speed forms of the U-Net++ layers compute the same numbers: the fused first conv + shortcut, separable upsampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cryomaps.models.layers import upsample_like
from cryomaps.models.unetpp import ResidualBlock


def unfused_reference(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's definition written out layer by layer (module docstring of cryomaps.models.unetpp)."""
    h = block.prelu1(F.instance_norm(F.conv3d(x, block.conv1.weight, block.conv1.bias, padding=1), eps=1e-5))
    h = F.instance_norm(F.conv3d(h, block.conv2.weight, block.conv2.bias, padding=1), eps=1e-5)
    if isinstance(block.shortcut, torch.nn.Identity):
        shortcut = x
    else:
        conv = block.shortcut[0]
        shortcut = F.instance_norm(F.conv3d(x, conv.weight, conv.bias, padding=1), eps=1e-5)
    return block.prelu2(h + shortcut)


@pytest.mark.parametrize("in_channels, out_channels", [(3, 5), (4, 4)])
def test_fused_block_matches_the_layer_by_layer_definition_in_float64(in_channels, out_channels):
    torch.manual_seed(0)
    block = ResidualBlock(in_channels, out_channels).double()
    for parameter in block.parameters():
        parameter.data.normal_(0.0, 0.3)
    x = torch.randn(2, in_channels, 8, 12, 4, dtype=torch.float64, requires_grad=True)
    fused = block(x)
    expected = unfused_reference(block, x)
    torch.testing.assert_close(fused, expected, rtol=1e-12, atol=1e-12)
    gradients = torch.autograd.grad(fused.square().sum(), [x, *block.parameters()])
    expected_gradients = torch.autograd.grad(expected.square().sum(), [x, *block.parameters()])
    for got, want in zip(gradients, expected_gradients):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("size, target", [((3, 5, 2), (6, 10, 4)), ((1, 4, 7), (2, 7, 7))])
def test_separable_upsampling_is_trilinear_interpolation_with_aligned_corners(size, target):
    volume = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    reference = torch.zeros(1, 1, *target)
    expected = F.interpolate(volume, size=target, mode="trilinear", align_corners=True)
    torch.testing.assert_close(upsample_like(volume, reference), expected, rtol=1e-12, atol=1e-12)
