"""Networks rebuilt from weights files and saved to them (the file format: :mod:`cryomaps.io.weights`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from cryomaps.errors import InputError
from cryomaps.io.weights import read_checkpoint_networks, read_stored_network, write_weights_file
from cryomaps.models.registry import NETWORK_BUILDERS, build_network
from cryomaps.render import DensityModelConfig


@dataclass
class LoadedNetwork:
    """A network rebuilt from a weights file or checkpoint, in eval mode, on the CPU."""

    network: nn.Module
    hyperparameters: dict
    metadata: dict


def generator_input_config(metadata: dict) -> DensityModelConfig:
    """The render options of a generator's inputs: its weights' ``metadata["input"]`` (the plain
    form that curation stored with the training pairs, e.g. ``{"model": "molmap", "resolution":
    2.0, "sampling": "point"}``).

    Raises:
        InputError: the stored options are not valid (one line naming the option).
    """
    return DensityModelConfig.from_dict(metadata["input"], prefix="generator weights metadata input.")


def save_network(
    path: str | os.PathLike, kind: str, network: nn.Module, hyperparameters: dict, metadata: dict | None = None
) -> Path:
    """Write ``network``'s weights, ``hyperparameters`` and ``metadata`` atomically; returns the path."""
    return write_weights_file(path, kind, network.state_dict(), hyperparameters, metadata)


def load_network(path: str | os.PathLike, kind: str) -> LoadedNetwork:
    """Rebuild a network of ``kind`` from a weights file or a task checkpoint.

    Raises:
        InputError: the file is not a weights file or checkpoint, holds another kind of network,
            lacks its hyperparameters, or its tensors do not fit the network they describe.
    """
    stored = read_stored_network(path, kind)
    try:
        network = build_network(kind, **stored.hyperparameters)
        network.load_state_dict(stored.state_dict)
    except (TypeError, ValueError, KeyError, RuntimeError) as error:
        text = " ".join(str(error).split()) or type(error).__name__
        raise InputError(path, f"does not describe a usable {kind} network ({text[:200]})") from None
    return LoadedNetwork(network.eval(), stored.hyperparameters, stored.metadata)


def load_checkpoint_networks(path: str | os.PathLike) -> tuple[dict, dict]:
    """Network hyperparameters and a task-level state_dict from a checkpoint or a weights file
    (:func:`cryomaps.io.weights.read_checkpoint_networks` for the networks cryomaps builds)."""
    return read_checkpoint_networks(path, NETWORK_BUILDERS)
