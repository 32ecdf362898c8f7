"""Weights files: one network's plain ``state_dict`` with the hyperparameters that rebuild it.

A weights file is ``torch.save`` of a dict holding only plain Python and tensors, so it loads with
``torch.load(..., weights_only=True)``::

    {"format": "cryomaps-weights-1", "kind": "generator" | "discriminator" | "cryores",
     "hyperparameters": {...}, "metadata": {...}, "state_dict": {...}}

``hyperparameters`` rebuild the network (:mod:`cryomaps.models.weights` does that); ``metadata`` says
how its inputs must be prepared (e.g. for the generator ``"input"``, the render options of its
training inputs as :meth:`cryomaps.render.DensityModelConfig.to_dict` writes them, and
``"voxel_size"`` in Å). Lightning checkpoints (``.ckpt``) of cryomaps tasks are read too: their
``hyper_parameters`` hold the networks' hyperparameters under the same kind names, and the metadata
under ``metadata``. This module reads and writes the files; it builds no network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch

from cryomaps.errors import InputError, require_file
from cryomaps.io.atomic import atomic_output

WEIGHTS_FORMAT = "cryomaps-weights-1"
BUNDLED_WEIGHTS = {"generator": "struc2map_small.pt", "cryores": "cryores_small.pt"}
"""Weights files shipped in the package (``cryomaps/weights/``), by network kind; README: how each was trained."""


def bundled_weights_path(kind: str) -> Path:
    """Path of the bundled weights of a network ``kind`` ("generator" or "cryores")."""
    return Path(str(files("cryomaps") / "weights" / BUNDLED_WEIGHTS[kind]))


@dataclass
class StoredNetwork:
    """What a weights file or checkpoint holds for one network: its hyperparameters, the metadata of
    its inputs and its ``state_dict`` (CPU tensors)."""

    hyperparameters: dict
    metadata: dict
    state_dict: dict


def write_weights_file(
    path: str | os.PathLike, kind: str, state_dict: dict, hyperparameters: dict, metadata: dict | None = None
) -> Path:
    """Write one network's ``state_dict``, ``hyperparameters`` and ``metadata`` atomically; returns the path."""
    path = Path(path)
    payload = {
        "format": WEIGHTS_FORMAT,
        "kind": kind,
        "hyperparameters": dict(hyperparameters),
        "metadata": dict(metadata or {}),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in state_dict.items()},
    }
    with atomic_output(path) as temporary:
        torch.save(payload, temporary)
    return path


def _load_failure(error: Exception) -> str:
    """One line saying why ``torch.load(..., weights_only=True)`` failed: the unpickler's own reason
    when torch gives one (its message otherwise leads with advice to load the file unsafely), else
    the first line of the message."""
    text = str(error).strip() or type(error).__name__
    _, found, reason = text.partition("WeightsUnpickler error:")
    reason = reason.strip().splitlines()[0] if found and reason.strip() else ""
    return f"the safe unpickler refused it: {reason}" if reason else text.splitlines()[0]


def read_weights_content(path: str | os.PathLike) -> dict:
    """The dict stored in a weights or checkpoint file (anything else is an :class:`InputError`)."""
    path = require_file(path, "weights file", missing="weights or checkpoint file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file, not a weights/checkpoint file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or corrupt files
        raise InputError(path, f"not a loadable weights/checkpoint file ({_load_failure(error)})") from None
    if not isinstance(content, dict):
        raise InputError(path, f"holds a {type(content).__name__}, not a cryomaps weights file or checkpoint")
    return content


def read_stored_network(path: str | os.PathLike, kind: str) -> StoredNetwork:
    """The network of ``kind`` stored in a weights file or a task checkpoint.

    Raises:
        InputError: the file is not a weights file or checkpoint, holds another kind of network, or
            lacks its hyperparameters, metadata or weights.
    """
    content = read_weights_content(path)
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
    return StoredNetwork(dict(hyperparameters), dict(metadata), state_dict)


def read_checkpoint_networks(path: str | os.PathLike, kinds) -> tuple[dict, dict]:
    """Hyperparameters of the networks of ``kinds`` and a task-level state_dict, from a checkpoint or
    a weights file.

    Returns:
        (hyperparameters by network kind, state_dict with keys prefixed by the kind), ready for
        ``task.load_state_dict(state_dict, strict=False)``.
    """
    content = read_weights_content(path)
    if content.get("format") == WEIGHTS_FORMAT:
        kind = content["kind"]
        state_dict = {f"{kind}.{name}": tensor for name, tensor in content["state_dict"].items()}
        return {kind: content["hyperparameters"]}, state_dict
    if "state_dict" not in content:
        raise InputError(path, "is not a cryomaps weights file or Lightning checkpoint")
    stored = content.get("hyper_parameters", {})
    networks = {kind: stored[kind] for kind in kinds if kind in stored}
    return networks, content["state_dict"]
