"""struc2map generator: a 3-D U-Net++ (nested U-Net, Zhou et al. 2018) with residual blocks.

Layout (reconstructed to give exactly 10,289,333 parameters at the published size: in/out
1 channel, channels [32, 64, 128, 256]):

* Residual block ``ResidualBlock(c_in, c_out)``::

      h   = PReLU₁(InstanceNorm(Conv3³(x)))          c_in  → c_out
      h   = InstanceNorm(Conv3³(h))                  c_out → c_out
      out = PReLU₂(h + shortcut(x))

  Convs have biases; InstanceNorm3d is not affine (no parameters); each PReLU has a single
  learnable slope. The shortcut is the identity when c_in == c_out, otherwise a 3³ conv (with bias)
  followed by a non-affine InstanceNorm.
* Nodes X^{i,j} (level i = 0..L−1 from fine to coarse, column j): X^{0,0} = block(input);
  X^{i,0} = block(MaxPool₂(X^{i−1,0})); for j ≥ 1,
  X^{i,j} = block(concat[X^{i,0}, …, X^{i,j−1}, Up(X^{i+1,j−1})]) with c_i·j + c_{i+1} input
  channels and c_i output channels. Up = trilinear ×2, corners aligned.
* Output: a 1×1×1 conv (with bias, no activation) on X^{0,L−1}. No deep-supervision heads.

Parameter count at the published size: block convs (weights and biases) 10,289,280, twenty PReLU
slopes (two per block, ten blocks) 20, output conv 32 + 1 → 10,289,333. Variants with affine norms,
per-channel PReLUs, 1×1 shortcuts, bias-free convs or deep-supervision heads all miss the count.
The count cannot tell where the second PReLU sits or whether the shortcut has its (parameter-free)
norm; both follow the authors' released code.

Optional FiLM conditioning on the target resolution (off by default, so the published count
holds): a small MLP embeds log(resolution / Å); every block maps the embedding to a per-channel
scale γ and shift β and modulates its pre-activation sum as (1 + γ)·(h + shortcut) + β. The
per-block maps start at zero, so a conditioned generator starts as the unconditioned one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cryomaps.models.layers import check_spatial_shape, upsample_like

PUBLISHED_GENERATOR_CHANNELS = (32, 64, 128, 256)
DEFAULT_EMBEDDING_FEATURES = 32


class ResidualBlock(nn.Module):
    """Two 3³ conv + InstanceNorm + PReLU layers with a residual shortcut; see the module docstring.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        condition_features: size of the resolution embedding for FiLM, or ``None`` for no FiLM.
    """

    def __init__(self, in_channels: int, out_channels: int, condition_features: int | None = None):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm1 = nn.InstanceNorm3d(out_channels)
        self.prelu1 = nn.PReLU()
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = nn.InstanceNorm3d(out_channels)
        self.prelu2 = nn.PReLU()
        self.shortcut = _shortcut(in_channels, out_channels)
        self.film = None if condition_features is None else _zero_linear(condition_features, 2 * out_channels)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C_in, X, Y, Z) [+ embedding (B, E) when FiLM is on] → (B, C_out, X, Y, Z)."""
        first, shortcut = self._first_layer_and_shortcut(x)
        h = self.norm2(self.conv2(self.prelu1(first))) + shortcut
        if self.film is not None:
            h = _modulate(h, self.film(condition))
        return self.prelu2(h)

    def _first_layer_and_shortcut(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``norm1(conv1(x))`` and ``shortcut(x)``, each (B, C_out, X, Y, Z).

        A conv shortcut reads the same input as ``conv1`` with the same kernel size and padding, and
        both norms are plain (non-affine) InstanceNorms, so one conv with the two weight sets stacked
        (2·C_out output channels) and one InstanceNorm compute both: the same numbers in about 60 %
        of the time on CPU (fewer passes over ``x``, wider convs for the small networks).
        """
        if isinstance(self.shortcut, nn.Identity):
            return self.norm1(self.conv1(x)), x
        shortcut_conv = self.shortcut[0]
        weight = torch.cat([self.conv1.weight, shortcut_conv.weight])
        bias = torch.cat([self.conv1.bias, shortcut_conv.bias])
        both = F.instance_norm(F.conv3d(x, weight, bias, padding=1), eps=self.norm1.eps)
        return both.split(self.conv1.out_channels, dim=1)


def _shortcut(in_channels: int, out_channels: int) -> nn.Module:
    if in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.InstanceNorm3d(out_channels),
    )


def _zero_linear(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _modulate(volume: torch.Tensor, scale_shift: torch.Tensor) -> torch.Tensor:
    """FiLM: (B, C, X, Y, Z) with (B, 2C) = [γ, β] → (1 + γ)·volume + β, per channel."""
    scale, shift = scale_shift[:, :, None, None, None].chunk(2, dim=1)
    return volume * (1 + scale) + shift


class ResolutionEmbedding(nn.Module):
    """Embeds a target resolution in Å, (B,), as (B, features): MLP on log(resolution / 1 Å)."""

    def __init__(self, features: int = DEFAULT_EMBEDDING_FEATURES):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(1, features), nn.SiLU(), nn.Linear(features, features), nn.SiLU()
        )

    def forward(self, resolution: torch.Tensor) -> torch.Tensor:
        if resolution.dim() != 1 or bool((resolution <= 0).any()):
            raise ValueError("resolution must be a (B,) tensor of positive values in Å")
        return self.mlp(torch.log(resolution)[:, None])


class UNetPlusPlus3d(nn.Module):
    """3-D U-Net++ generator with residual blocks (struc2mapGAN); see the module docstring.

    Args:
        in_channels: channels of the input map (1: the simulated map).
        out_channels: channels of the output map (1: the experimental-like map).
        channels: widths per level, fine to coarse; its length is the depth. The published size is
            [32, 64, 128, 256]; [8, 16, 32] is a small CPU-trainable size.
        resolution_conditioning: add FiLM conditioning on the target resolution; ``forward`` then
            requires ``resolution``.
        embedding_features: size of the resolution embedding (used only with conditioning).

    Attributes:
        stride: 2^(depth − 1); every spatial size of the input must be a multiple of it, and at
            least one larger than it (InstanceNorm needs more than one voxel at the coarsest level).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = PUBLISHED_GENERATOR_CHANNELS,
        resolution_conditioning: bool = False,
        embedding_features: int = DEFAULT_EMBEDDING_FEATURES,
    ):
        super().__init__()
        channels = [int(width) for width in channels]
        if len(channels) < 2:
            raise ValueError("the U-Net++ needs at least two levels (channels of length ≥ 2)")
        self.depth = len(channels)
        self.stride = 2 ** (self.depth - 1)
        self.embedding = ResolutionEmbedding(embedding_features) if resolution_conditioning else None
        condition_features = embedding_features if resolution_conditioning else None
        self.nodes = nn.ModuleDict()
        for level, column in _node_order(self.depth):
            node_in = _node_in_channels(level, column, in_channels, channels)
            node = ResidualBlock(node_in, channels[level], condition_features)
            self.nodes[_node_name(level, column)] = node
        self.pool = nn.MaxPool3d(kernel_size=2)
        self.head = nn.Conv3d(channels[0], out_channels, kernel_size=1)

    @property
    def resolution_conditioned(self) -> bool:
        """Whether the network takes a target resolution (FiLM conditioning on)."""
        return self.embedding is not None

    def forward(self, x: torch.Tensor, resolution: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C_in, X, Y, Z) [+ resolution (B,) in Å when conditioned] → (B, C_out, X, Y, Z)."""
        check_spatial_shape(x, self.stride)
        condition = self._condition(resolution)
        features: dict[tuple[int, int], torch.Tensor] = {}
        for level, column in _node_order(self.depth):
            node_input = self._node_input(features, level, column, x)
            features[level, column] = self.nodes[_node_name(level, column)](node_input, condition)
        return self.head(features[0, self.depth - 1])

    def _condition(self, resolution: torch.Tensor | None) -> torch.Tensor | None:
        if self.embedding is None:
            if resolution is not None:
                raise ValueError("resolution given, but the generator has no resolution_conditioning")
            return None
        if resolution is None:
            raise ValueError("this generator is conditioned on resolution: pass resolution (B,) in Å")
        return self.embedding(resolution)

    def _node_input(self, features: dict, level: int, column: int, x: torch.Tensor) -> torch.Tensor:
        """Input of X^{level,column}: the map, a pooled coarser node, or the nested concatenation."""
        if column == 0:
            return x if level == 0 else self.pool(features[level - 1, 0])
        same_level = [features[level, previous] for previous in range(column)]
        below = upsample_like(features[level + 1, column - 1], features[level, 0])
        return torch.cat([*same_level, below], dim=1)


def _node_order(depth: int) -> list[tuple[int, int]]:
    """(level, column) of every node, column by column, so that each node's inputs come first."""
    return [(level, column) for column in range(depth) for level in range(depth - column)]


def _node_name(level: int, column: int) -> str:
    return f"x{level}_{column}"


def _node_in_channels(level: int, column: int, in_channels: int, channels: list[int]) -> int:
    if column == 0:
        return in_channels if level == 0 else channels[level - 1]
    return channels[level] * column + channels[level + 1]
