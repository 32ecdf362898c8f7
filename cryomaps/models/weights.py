"""Weights files: one network's plain ``state_dict`` with the hyperparameters that rebuild it.

A weights file is ``torch.save`` of a dict holding only plain Python and tensors, so it loads with
``torch.load(..., weights_only=True)``::

    {"format": "cryomaps-weights-1", "kind": "generator" | "discriminator" | "cryores",
     "hyperparameters": {...}, "metadata": {...}, "state_dict": {...}}

``hyperparameters`` rebuild the network; ``metadata`` says how its inputs must be prepared (e.g.
for the generator ``"input"``, the render options of its training inputs as
:meth:`cryomaps.render.DensityModelConfig.to_dict` writes them, and ``"voxel_size"`` in Å; see
:func:`generator_input_config`). Lightning
checkpoints (``.ckpt``) of cryomaps tasks are read too: their ``hyper_parameters`` hold the
networks' hyperparameters under the same kind names, and the metadata under ``metadata``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cryomaps.errors import InputError
from cryomaps.io.atomic import atomic_output
from cryomaps.models.registry import NETWORK_BUILDERS, build_network
from cryomaps.render import DensityModelConfig

WEIGHTS_FORMAT = "cryomaps-weights-1"
BUNDLED_WEIGHTS = {"generator": "struc2map_small.pt", "cryores": "cryores_small.pt"}
"""Weights files shipped in the package (``cryomaps/weights/``), by network kind; README: how each was trained."""


def bundled_weights_path(kind: str) -> Path:
    """Path of the bundled weights of a network ``kind`` ("generator" or "cryores")."""
    from importlib.resources import files

    return Path(str(files("cryomaps") / "weights" / BUNDLED_WEIGHTS[kind]))


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
    path = Path(path)
    payload = {
        "format": WEIGHTS_FORMAT,
        "kind": kind,
        "hyperparameters": dict(hyperparameters),
        "metadata": dict(metadata or {}),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in network.state_dict().items()},
    }
    with atomic_output(path) as temporary:
        torch.save(payload, temporary)
    return path


def _load(path: str | os.PathLike) -> dict:
    """The dict stored in a weights or checkpoint file (anything else is an :class:`InputError`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "is a folder, not a weights file" if path.is_dir() else "no such weights or checkpoint file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file, not a weights/checkpoint file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or corrupt files
        text = str(error).strip() or type(error).__name__
        raise InputError(path, f"not a loadable weights/checkpoint file ({text.splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise InputError(path, f"holds a {type(content).__name__}, not a cryomaps weights file or checkpoint")
    return content


def load_network(path: str | os.PathLike, kind: str) -> LoadedNetwork:
    """Rebuild a network of ``kind`` from a weights file or a task checkpoint.

    Raises:
        InputError: the file is not a weights file or checkpoint, holds another kind of network,
            lacks its hyperparameters, or its tensors do not fit the network they describe.
    """
    content = _load(path)
    if content.get("format") == WEIGHTS_FORMAT:
        if content.get("kind") != kind:
            raise InputError(path, f"holds a {content.get('kind')} network, not a {kind}")
        hyperparameters, state_dict = content.get("hyperparameters"), content.get("state_dict")
        metadata = content.get("metadata", {})
    else:
        stored = content.get("hyper_parameters")
        stored = stored if isinstance(stored, dict) else {}
        metadata = stored.get("metadata", {})
        hyperparameters = stored.get(kind)
        if hyperparameters is None or not isinstance(content.get("state_dict"), dict):
            raise InputError(path, f"is not a cryomaps weights file or a checkpoint with a {kind} network")
        prefix = f"{kind}."
        state_dict = {k[len(prefix):]: v for k, v in content["state_dict"].items() if k.startswith(prefix)}
    if not isinstance(hyperparameters, dict) or not isinstance(state_dict, dict) or not isinstance(metadata, dict):
        raise InputError(path, f"lacks the hyperparameters, metadata or weights of its {kind} network")
    try:
        network = build_network(kind, **hyperparameters)
        network.load_state_dict(state_dict)
    except (TypeError, ValueError, KeyError, RuntimeError) as error:
        text = " ".join(str(error).split()) or type(error).__name__
        raise InputError(path, f"does not describe a usable {kind} network ({text[:200]})") from None
    return LoadedNetwork(network.eval(), dict(hyperparameters), dict(metadata))


def load_checkpoint_networks(path: str | os.PathLike) -> tuple[dict, dict]:
    """Network hyperparameters and a task-level state_dict from a checkpoint or a weights file.

    Returns:
        (hyperparameters by network kind, state_dict with keys prefixed by the kind), ready for
        ``task.load_state_dict(state_dict, strict=False)``.
    """
    content = _load(path)
    if content.get("format") == WEIGHTS_FORMAT:
        kind = content["kind"]
        state_dict = {f"{kind}.{name}": tensor for name, tensor in content["state_dict"].items()}
        return {kind: content["hyperparameters"]}, state_dict
    if "state_dict" not in content:
        raise InputError(path, "is not a cryomaps weights file or Lightning checkpoint")
    stored = content.get("hyper_parameters", {})
    networks = {kind: stored[kind] for kind in NETWORK_BUILDERS if kind in stored}
    return networks, content["state_dict"]
