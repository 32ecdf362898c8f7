"""struc2mapGAN discriminator: four 3³ convs, global average pooling and a small MLP → one logit.

Layout (reconstructed to give exactly 1,190,812 parameters at the published size: 1 input
channel, channels [32, 64, 128, 256], hidden features [100, 25])::

    Conv3³(1→32)    + InstanceNorm + PReLU
    Conv3³(32→64)   + InstanceNorm + PReLU
    Conv3³(64→128)  + InstanceNorm + PReLU
    Conv3³(128→256)                              (no norm, no activation)
    global average pool → Linear(256→100) + ReLU → Linear(100→25) + ReLU → Linear(25→1)

Convs and linears have biases; InstanceNorm3d is not affine; one PReLU module with a single
slope is shared by the three activated convs. Count: convs 1,162,560 + linears 28,251 + the
shared slope 1 = 1,190,812 (any per-layer or per-channel PReLU, affine norm or bias-free conv
misses the count). Which layers are normalised and activated cannot be read from the count; it
follows the authors' released code.

``strided=True`` gives the same parameters with stride-2 convs: each conv halves the grid, so a
32³ patch costs far fewer operations; logits differ from the published variant. InstanceNorm needs
more than one voxel, so the strided variant needs inputs of more than 8 voxels along some axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

PUBLISHED_DISCRIMINATOR_CHANNELS = (32, 64, 128, 256)
PUBLISHED_DISCRIMINATOR_HIDDEN = (100, 25)


class Discriminator3d(nn.Module):
    """Patch discriminator of struc2mapGAN; see the module docstring.

    Args:
        in_channels: channels of the map (1).
        channels: widths of the convolutions; the last one is not normalised or activated.
        hidden_features: widths of the hidden linear layers after pooling.
        strided: use stride-2 convolutions (cheaper; same parameter count).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = PUBLISHED_DISCRIMINATOR_CHANNELS,
        hidden_features: Sequence[int] = PUBLISHED_DISCRIMINATOR_HIDDEN,
        strided: bool = False,
    ):
        super().__init__()
        widths = [in_channels, *(int(width) for width in channels)]
        conv_stride = 2 if strided else 1
        self.convs = nn.ModuleList(
            nn.Conv3d(c_in, c_out, kernel_size=3, stride=conv_stride, padding=1)
            for c_in, c_out in zip(widths[:-1], widths[1:])
        )
        self.norms = nn.ModuleList(nn.InstanceNorm3d(width) for width in widths[1:-1])
        self.activation = nn.PReLU()
        self.classifier = _mlp([widths[-1], *(int(width) for width in hidden_features), 1])

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, Z) → logits (B, 1) that the map is real."""
        features = volume
        for conv, norm in zip(self.convs[:-1], self.norms):
            features = self.activation(norm(conv(features)))
        features = self.convs[-1](features)
        return self.classifier(features.mean(dim=(2, 3, 4)))


def _mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers through ``widths`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
        if index > 0:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(w_in, w_out))
    return nn.Sequential(*layers)
