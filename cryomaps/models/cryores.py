"""CryoRes network (Dai et al. 2023 method): a 3-D residual U-Net with three heads.

Input: one z-scored map (B, 1, X, Y, Z), X, Y, Z multiples of ``stride``. Heads:

* global resolution: soft-argmax over 10 bins centred at 1, 2, …, 10 Å, from the globally
  average-pooled bottleneck through a small MLP (the published head had ~19 M parameters; this one
  has a few thousand). Returns logits (B, 10) and the expected value (B,) in Å, within [1, 10].
  With ``spectral_shells`` > 0 the MLP also receives the input's radially averaged log power
  spectrum (:func:`log_power_spectrum`, our addition to the published design): a map's FSC
  resolution is where its signal power falls to a fixed multiple of the white-noise floor (for the
  average of two half maps with noise power N each, FSC = 0.143 where the full map's power is
  2N/3, i.e. 4/3 of its own floor N/2), which the spectrum shows directly and pooled convolution
  features only approximate.
* relative local resolution: per-voxel 37-bin distribution over −5…+5 Å (centres −5…−1 step 0.5,
  −0.9…0.9 step 0.1, 1…5 step 0.5). Returns logits (B, 37, X, Y, Z) and the expected value
  (B, 1, X, Y, Z) in Å.
* molecular mask: per-voxel logit (B, 1, X, Y, Z); a voxel is inside where the logit is > 0.

:func:`local_resolution_map` combines them: global + relative inside the mask, a background value
(:data:`cryomaps.signal.local_fsc.BACKGROUND_RESOLUTION`, 100 Å, as in the published code) outside.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from cryomaps.models.layers import check_spatial_shape, upsample_like
from cryomaps.signal.fourier_shells import half_spectrum_multiplicity, nyquist_fraction_shell_index
from cryomaps.signal.local_fsc import BACKGROUND_RESOLUTION
from cryomaps.signal.windows import cosine_ramp

NORM_GROUPS = 8


def global_resolution_bins() -> torch.Tensor:
    """Centres (Å) of the 10 global-resolution bins: 1, 2, …, 10, as a float32 (10,) tensor."""
    return torch.arange(1, 11, dtype=torch.float32)


def relative_resolution_bins() -> torch.Tensor:
    """Centres (Å) of the 37 relative-local-resolution bins, sorted, symmetric about 0.

    −5, −4.5, …, −1 (step 0.5), −0.9, −0.8, …, 0.9 (step 0.1), 1, 1.5, …, 5 (step 0.5);
    a float32 (37,) tensor.
    """
    coarse_negative = [half / 2 for half in range(-10, -1)]
    fine = [tenth / 10 for tenth in range(-9, 10)]
    coarse_positive = [half / 2 for half in range(2, 11)]
    return torch.tensor(coarse_negative + fine + coarse_positive, dtype=torch.float32)


class CryoResOutput(NamedTuple):
    """Outputs of :class:`CryoResNet` for a batch of B maps of size X × Y × Z."""

    global_logits: torch.Tensor
    """(B, 10) logits over :func:`global_resolution_bins`."""
    global_resolution: torch.Tensor
    """(B,) expected global resolution in Å."""
    relative_logits: torch.Tensor
    """(B, 37, X, Y, Z) logits over :func:`relative_resolution_bins`."""
    relative_resolution: torch.Tensor
    """(B, 1, X, Y, Z) expected relative local resolution in Å."""
    mask_logits: torch.Tensor
    """(B, 1, X, Y, Z) molecular-mask logits (inside where > 0)."""


class GroupNormResidualBlock(nn.Module):
    """Conv3³ + GroupNorm + SiLU, Conv3³ + GroupNorm, plus a shortcut (1×1 conv when widths differ), SiLU.

    (B, C_in, X, Y, Z) → (B, C_out, X, Y, Z).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm1 = _group_norm(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm2 = _group_norm(out_channels)
        self.activation = nn.SiLU()
        same_width = in_channels == out_channels
        self.shortcut = nn.Identity() if same_width else nn.Conv3d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.activation(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.activation(h + self.shortcut(x))


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(NORM_GROUPS, channels), channels)


class CryoResNet(nn.Module):
    """Residual U-Net with global-resolution, relative-local-resolution and mask heads.

    Args:
        in_channels: channels of the input map (1).
        base_width: channels of the finest level; level i has base_width · 2^i.
        levels: number of resolution levels (2 or more); ``stride`` = 2^(levels − 1).
        global_hidden: width of the hidden layer of the global-resolution MLP.
        spectral_shells: shells of the log power spectrum given to the global MLP (0: none, as published).

    Attributes:
        stride: every spatial size of the input must be a multiple of it.
    """

    def __init__(
        self, in_channels: int = 1, base_width: int = 16, levels: int = 3, global_hidden: int = 64, spectral_shells: int = 0
    ):
        super().__init__()
        if levels < 2:
            raise ValueError("CryoResNet needs at least two levels")
        widths = [base_width * 2**level for level in range(levels)]
        self.stride = 2 ** (levels - 1)
        self.spectral_shells = spectral_shells
        self.encoder = nn.ModuleList(
            GroupNormResidualBlock(w_in, w_out) for w_in, w_out in zip([in_channels, *widths[:-1]], widths)
        )
        self.decoder = nn.ModuleList(
            GroupNormResidualBlock(fine + coarse, fine) for fine, coarse in zip(widths[:-1], widths[1:])
        )
        self.pool = nn.MaxPool3d(kernel_size=2)
        global_bins, relative_bins = global_resolution_bins(), relative_resolution_bins()
        self.global_head = nn.Sequential(
            nn.Linear(widths[-1] + spectral_shells, global_hidden), nn.SiLU(), nn.Linear(global_hidden, len(global_bins))
        )
        self.relative_head = nn.Conv3d(widths[0], len(relative_bins), kernel_size=1)
        self.mask_head = nn.Conv3d(widths[0], 1, kernel_size=1)
        self.register_buffer("global_bins", global_bins, persistent=False)
        self.register_buffer("relative_bins", relative_bins, persistent=False)

    def forward(self, volume: torch.Tensor) -> CryoResOutput:
        """(B, C, X, Y, Z) map → :class:`CryoResOutput`."""
        check_spatial_shape(volume, self.stride)
        skips = self._encode(volume)
        bottleneck = skips.pop()
        features = self._decode(bottleneck, skips)
        global_features = bottleneck.mean(dim=(2, 3, 4))
        if self.spectral_shells:
            global_features = torch.cat([global_features, log_power_spectrum(volume, self.spectral_shells)], dim=1)
        global_logits = self.global_head(global_features)
        relative_logits = self.relative_head(features)
        return CryoResOutput(
            global_logits=global_logits,
            global_resolution=soft_argmax(global_logits, self.global_bins, dim=1),
            relative_logits=relative_logits,
            relative_resolution=soft_argmax(relative_logits, self.relative_bins, dim=1).unsqueeze(1),
            mask_logits=self.mask_head(features),
        )

    def _encode(self, volume: torch.Tensor) -> list[torch.Tensor]:
        """Features of every level, fine to coarse; the last is the bottleneck."""
        features = [self.encoder[0](volume)]
        for block in self.encoder[1:]:
            features.append(block(self.pool(features[-1])))
        return features

    def _decode(self, bottleneck: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Upsample from the bottleneck, fusing each skip; returns (B, base_width, X, Y, Z)."""
        features = bottleneck
        for level in reversed(range(len(skips))):
            skip = skips[level]
            features = self.decoder[level](torch.cat([skip, upsample_like(features, skip)], dim=1))
        return features


def log_power_spectrum(volume: torch.Tensor, shells: int) -> torch.Tensor:
    """Radially averaged log10 power spectrum (B, shells) of the first channel of ``volume`` (B, C, X, Y, Z).

    Each volume has its mean removed and is tapered by a separable Tukey window (:func:`tukey_taper`,
    so that the box edge does not leak low-frequency power into high shells), then Fourier transformed; shell ``i`` holds
    the mean power at frequencies |f| in [i, i + 1) · f_N / ``shells`` (f in cycles per voxel,
    f_N = 0.5, the Nyquist frequency; :func:`cryomaps.signal.fourier_shells.nyquist_fraction_shell_index`,
    the spectral head's own binning), so shells mean the same frequencies for any box size. Power
    is divided by the sum of the squared taper, so white noise of unit variance gives about 0 in
    every shell but the first, whatever the box size.
    """
    signal = volume[:, 0]
    signal = signal - signal.mean(dim=(1, 2, 3), keepdim=True)
    taper_energy = 1.0
    for axis, length in enumerate(signal.shape[1:], start=1):
        taper = tukey_taper(length, dtype=signal.dtype, device=signal.device)
        shape = [1, 1, 1, 1]
        shape[axis] = length
        signal = signal * taper.reshape(shape)
        taper_energy = taper_energy * taper.square().sum()
    power = torch.fft.rfftn(signal, dim=(1, 2, 3)).abs().square() / taper_energy
    shell_index = nyquist_fraction_shell_index(signal.shape[1:], shells, signal.device).flatten()
    multiplicity = half_spectrum_multiplicity(signal.shape[-1], power.dtype, signal.device).expand(power.shape[1:])
    weighted = (power * multiplicity).flatten(1)
    multiplicity = multiplicity.flatten()
    inside = shell_index < shells
    totals = weighted.new_zeros(weighted.shape[0], shells).index_add_(1, shell_index[inside], weighted[:, inside])
    counts = weighted.new_zeros(shells).index_add_(0, shell_index[inside], multiplicity[inside]).clamp(min=1)
    return torch.log10(totals / counts + 1e-6)


def tukey_taper(length: int, ramp_fraction: float = 0.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """Tukey window (length,): 1 in the middle, raised-cosine ramps over ``ramp_fraction / 2`` of the
    length at each end (0 at the end points). Keeps about twice the energy of a Hann window
    (sum of squares ≈ 0.69·length for the default, 0.375·length for Hann) with the same smooth edges."""
    position = torch.linspace(0.0, 1.0, length, dtype=dtype, device=device)
    edge_distance = torch.minimum(position, 1.0 - position)
    return cosine_ramp(edge_distance / (ramp_fraction / 2))


def soft_argmax(logits: torch.Tensor, bin_centres: torch.Tensor, dim: int) -> torch.Tensor:
    """Expected bin centre under softmax(logits) along ``dim`` (which is removed from the shape)."""
    shape = [1] * logits.dim()
    shape[dim] = -1
    probabilities = torch.softmax(logits, dim=dim)
    return (probabilities * bin_centres.to(logits.dtype).reshape(shape)).sum(dim=dim)


def local_resolution_map(
    output: CryoResOutput, background_resolution: float = BACKGROUND_RESOLUTION
) -> torch.Tensor:
    """Local resolution in Å, (B, 1, X, Y, Z): global + relative inside the mask, background outside."""
    global_resolution = output.global_resolution.reshape(-1, 1, 1, 1, 1)
    inside = output.mask_logits > 0
    local = global_resolution + output.relative_resolution
    return torch.where(inside, local, torch.full_like(local, background_resolution))
