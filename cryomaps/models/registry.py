"""Factories that build the networks from plain-Python hyperparameters.

Every argument is an int, float, bool, str, None or a list/tuple of those, so a LightningModule can
store them with ``save_hyperparameters`` and the checkpoint loads with
``torch.load(..., weights_only=True)``. Sizes are presets that explicit arguments override.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cryomaps.models.cryores import CryoResNet
from cryomaps.models.discriminator import Discriminator3d
from cryomaps.models.unetpp import UNetPlusPlus3d

GENERATOR_PRESETS: dict[str, dict[str, Any]] = {
    "published": {"channels": [32, 64, 128, 256]},  # 10,289,333 parameters
    "small": {"channels": [8, 16, 32]},  # CPU-trainable on 32³ patches
}
DISCRIMINATOR_PRESETS: dict[str, dict[str, Any]] = {
    "published": {"channels": [32, 64, 128, 256], "hidden_features": [100, 25], "strided": False},
    "strided": {"channels": [32, 64, 128, 256], "hidden_features": [100, 25], "strided": True},
    "small": {"channels": [8, 16, 32, 64], "hidden_features": [32, 8], "strided": True},
}
CRYORES_PRESETS: dict[str, dict[str, Any]] = {
    "default": {"base_width": 16, "levels": 3},
    "small": {"base_width": 8, "levels": 2},
}
_PLAIN_SCALARS = (bool, int, float, str, type(None))


def build_generator(preset: str = "published", **hyperparameters: Any) -> UNetPlusPlus3d:
    """U-Net++ generator from a preset ("published" or "small") and overrides (see UNetPlusPlus3d)."""
    return UNetPlusPlus3d(**_resolve(GENERATOR_PRESETS, preset, hyperparameters))


def build_discriminator(preset: str = "published", **hyperparameters: Any) -> Discriminator3d:
    """Discriminator from a preset ("published", "strided" or "small") and overrides."""
    return Discriminator3d(**_resolve(DISCRIMINATOR_PRESETS, preset, hyperparameters))


def build_cryores(preset: str = "default", **hyperparameters: Any) -> CryoResNet:
    """CryoRes network from a preset ("default" or "small") and overrides (see CryoResNet)."""
    return CryoResNet(**_resolve(CRYORES_PRESETS, preset, hyperparameters))


NETWORK_BUILDERS = {
    "generator": build_generator,
    "discriminator": build_discriminator,
    "cryores": build_cryores,
}


def build_network(kind: str, **hyperparameters: Any) -> nn.Module:
    """Build a network by kind ("generator", "discriminator" or "cryores") and hyperparameters."""
    if kind not in NETWORK_BUILDERS:
        raise ValueError(f"unknown network kind {kind!r}; choose one of {sorted(NETWORK_BUILDERS)}")
    return NETWORK_BUILDERS[kind](**hyperparameters)


def _resolve(presets: dict[str, dict[str, Any]], preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's hyperparameters updated with ``overrides``, after checking they are plain Python."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
    for name, value in overrides.items():
        if not _is_plain(value):
            raise TypeError(
                f"hyperparameter {name!r} must be plain Python (int, float, str, list…), got {type(value)}"
            )
    return {**presets[preset], **overrides}


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, _PLAIN_SCALARS) for item in value)
    return isinstance(value, _PLAIN_SCALARS)
