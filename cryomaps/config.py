"""Hydra configs: where they live and how commands compose them.

The configs are the top-level ``configs/`` folder of the source tree; it is shipped inside the
wheel as ``cryomaps/configs`` (a symbolic link in the source tree), so an installed package finds
them too. Commands use Hydra's compose API: ``key=value`` overrides as on any Hydra command line,
without Hydra changing the working directory.
"""

from __future__ import annotations

import math
from pathlib import Path

from cryomaps.errors import InputError


def config_dir() -> Path:
    """The folder holding the packaged Hydra configs."""
    return Path(__file__).resolve().parent / "configs"


def compose_config(config_name: str, overrides: list[str] | None = None):
    """Compose ``configs/<config_name>.yaml`` with Hydra ``overrides``; returns a DictConfig.

    Raises:
        InputError: an override names an unknown key or config option (Hydra's message, one line).
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        message = " ".join(str(error).split())
        raise InputError(None, f"invalid configuration override(s) {overrides}: {message}") from None


def to_plain(config) -> dict:
    """A DictConfig as plain Python containers (resolved), e.g. for checkpoint hyperparameters."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(config, resolve=True)


def check_integer_setting(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` of the config setting ``name`` (e.g. ``data.patch_size``) when it is an integer in
    [``low``, ``high``] (``high=None``: no upper bound); else an InputError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        raise InputError(None, f"{name} must be an integer {bounds}, got {value!r}")
    return value


def check_positive_number(name: str, value, unit: str = "") -> float:
    """``value`` of the setting ``name`` as a float when it is a finite number > 0; else an
    InputError naming the setting (``unit``, e.g. "Å", is named in the message)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(None, f"{name} must be a positive number{f' of {unit}' if unit else ''}, got {value!r}")
    return float(value)
