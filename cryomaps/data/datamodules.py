"""Lightning DataModules that serve training patches (sampling and augmentation: :mod:`.patches`).

Batches are dicts of float32 tensors of shape (B, 1, P, P, P), P = ``patch_size`` voxels, axes
(x, y, z):

- :class:`PairedPatchDataModule` (struc2map): ``{"input", "target", "mask"}`` from curated pairs
  (``cryomaps curate``), plus ``"resolution"`` (B,) Å, the target's resolution, when resolution
  augmentation is on; the manifest's ``split`` column decides train / val (``test`` pairs are not
  served).
- :class:`SingleMapPatchDataModule` (local resolution): ``{"map", "locres", "mask"}`` from volumes
  given by a provider (see :data:`VolumeSource`).

Training patches are random, centred on mask voxels, augmented, and reproducible from ``seed``
(plus the process rank under DDP). Validation patches are drawn once, without augmentation, with
``seed``: the same patches every epoch and every run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from cryomaps.config import check_integer_setting, compose_config
from cryomaps.data.curate import CurationOptions, curate_entries
from cryomaps.data.curated import INDEX_NAME, read_curated_index, read_curated_pair
from cryomaps.data.manifest import read_manifest
from cryomaps.data.patches import (
    AugmentationOptions,
    PatchOptions,
    ResolutionAugmentationOptions,
    SeededPatchQueue,
    build_augmentation,
    fixed_patches,
    make_subject,
)
from cryomaps.errors import InputError
from cryomaps.io import read_map

PAIR_KEYS = ("input", "target", "mask")
LOCRES_KEYS = ("map", "locres", "mask")

PUBLISHED_AUGMENTATION = MappingProxyType({})
"""The defaults of :class:`AugmentationOptions`: published input-only augmentation + joint symmetries."""
SYMMETRIES_ONLY = MappingProxyType({"intensity_keys": ()})
"""Joint axis permutations and flips only."""

VolumeSource = Sequence[Mapping] | Callable[[], Sequence[Mapping]]
"""Volumes for :class:`SingleMapPatchDataModule`: a sequence of mappings, or a callable returning one.

Each mapping holds ``"map"``, ``"locres"`` (Å) and ``"mask"``, each an (x, y, z) array or the path
of an MRC map; optional ``"voxel_size"`` (Å, one number or three) and ``"origin"`` (Å, (3,)) apply
to arrays and default to the geometry of the ``"map"`` file, else to 1 Å and (0, 0, 0).
"""


class _PatchDataModule(L.LightningDataModule):
    """Shared machinery: subjects per split, a seeded training queue and fixed validation patches."""

    keys: tuple[str, ...] = ()

    def __init__(
        self,
        patch_size: int = 32,
        samples_per_volume: int = 16,
        queue_length: int = 256,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        val_samples_per_volume: int = 16,
        augmentation: Mapping | None = None,
    ):
        super().__init__()
        self.patch_options = PatchOptions(patch_size, samples_per_volume, queue_length, num_workers, seed)
        check_integer_setting("data.batch_size", batch_size, 1)
        check_integer_setting("data.val_samples_per_volume", val_samples_per_volume, 1)
        self.batch_size = batch_size
        self.val_samples_per_volume = val_samples_per_volume
        self.augmentation = None if augmentation is None else _options(AugmentationOptions, augmentation)
        self.resolution_augmentation: ResolutionAugmentationOptions | None = None
        self.train_subjects: list = []
        self.val_patches: list[dict] = []

    def load_subjects(self, split: str) -> list:
        """TorchIO subjects of one split (``"train"`` or ``"val"``)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self.train_subjects = self.load_subjects("train")
        if not self.train_subjects:
            raise InputError(None, "no training volumes (check the split column or the volume provider)")
        size = self.patch_options.patch_size
        self.val_patches = fixed_patches(
            self.load_subjects("val"), self.keys, size, self.val_samples_per_volume, self.patch_options.seed
        )

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        options = replace(self.patch_options, seed=self.patch_options.seed + rank)
        transform = build_augmentation(self.augmentation, self.resolution_augmentation)
        queue = SeededPatchQueue(self.train_subjects, self.keys, options, transform)
        return ResumablePatchLoader(queue, self.batch_size, current_epoch=self._current_epoch)

    def _current_epoch(self) -> int:
        """The trainer's epoch (0 when the DataModule is used on its own)."""
        return self.trainer.current_epoch if self.trainer is not None else 0

    def val_dataloader(self) -> DataLoader:
        generator = _own_generator(self.patch_options.seed)
        return DataLoader(self.val_patches, batch_size=self.batch_size, shuffle=False, num_workers=0, generator=generator)


class ResumablePatchLoader(DataLoader):
    """Training loader over a :class:`SeededPatchQueue` that a checkpoint can resume mid-epoch.

    Each epoch restarts the queue from (seed, epoch), the epoch number coming from the trainer.
    ``state_dict`` records the epoch and how many batches of it were yielded; Lightning stores that
    in its checkpoints and hands it back through ``load_state_dict`` on resume, and the resumed
    epoch then replays (draws and drops) the batches already trained on, so training continues on
    the same patch stream.
    """

    def __init__(self, queue: SeededPatchQueue, batch_size: int, current_epoch: Callable[[], int]):
        generator = _own_generator(queue.options.seed)  # leaves torch's global generator untouched
        super().__init__(queue, batch_size=batch_size, shuffle=False, num_workers=0, generator=generator)
        self._current_epoch = current_epoch
        self._epoch, self._yielded = 0, 0
        self._resume: dict | None = None

    def __iter__(self):
        self._epoch = self._current_epoch()
        skip = self._resume["batches"] if self._resume and self._resume["epoch"] == self._epoch else 0
        self._resume = None
        self.dataset.start_epoch(self._epoch)
        batches = super().__iter__()
        for _ in range(skip):
            next(batches)
        self._yielded = skip
        for batch in batches:
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict) -> None:
        self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}


class PairedPatchDataModule(_PatchDataModule):
    """struc2map patches ``{"input", "target", "mask"}`` (B, 1, P, P, P) from a curated folder.

    Args:
        curated_dir: output folder of ``cryomaps curate`` (``curated.csv`` + ``NAME.npz``).
        manifest: when given and ``curated_dir`` has no ``curated.csv`` yet, this manifest is
            curated into ``curated_dir`` first (in ``prepare_data``, once per node).
        curation: overrides of the curation settings, dotted keys of ``configs/curate.yaml``
            (e.g. ``{"filters.min_correlation": 0.6}``).
        patch_size, samples_per_volume, queue_length, num_workers, seed: see
            :class:`cryomaps.data.patches.PatchOptions`.
        batch_size: patches per batch.
        val_samples_per_volume: fixed validation patches per validation pair.
        augmentation: keys of :class:`cryomaps.data.patches.AugmentationOptions` (the published
            input-only augmentation plus joint symmetries by default); ``None`` for none.
        resolution_augmentation: keys of
            :class:`cryomaps.data.patches.ResolutionAugmentationOptions` (targets low-pass filtered
            to random coarser resolutions, for a resolution-conditioned generator; batches then carry
            ``"resolution"``, and ``{"probability": 0}`` serves it without filtering); ``None``: off.

    The resolution of a pair's target (:func:`native_resolution`) is the manifest's reported
    resolution, else the resolution curation compared the map with (``correlation_resolution_A``:
    ``filters.correlation_fallback_resolution``, 4 Å by default, when none is reported).
    """

    keys = PAIR_KEYS

    def __init__(
        self,
        curated_dir: str | os.PathLike,
        manifest: str | os.PathLike | None = None,
        curation: Mapping | None = None,
        augmentation: Mapping | None = PUBLISHED_AUGMENTATION,
        resolution_augmentation: Mapping | None = None,
        **patch_settings,
    ):
        super().__init__(augmentation=augmentation, **patch_settings)
        if resolution_augmentation is not None:
            self.resolution_augmentation = _options(ResolutionAugmentationOptions, resolution_augmentation)
        self.curated_dir = Path(curated_dir)
        self.manifest = manifest
        self.curation = dict(curation or {})

    def prepare_data(self) -> None:
        """Curate ``manifest`` into ``curated_dir`` unless it already holds a curated index."""
        if self.manifest is None or (self.curated_dir / INDEX_NAME).is_file():
            return
        overrides = [f"{key}={value}" for key, value in self.curation.items()]
        config = compose_config("curate", overrides)
        entries = read_manifest(self.manifest, data_root=config.data_root)
        curate_entries(entries, self.curated_dir, CurationOptions.from_config(config))

    def input_metadata(self) -> dict:
        """How the curated inputs were made: ``input`` render options, ``voxel_size`` (Å) and the
        target ``normalisation``, from the first curated pair (all pairs of a folder share them)."""
        rows = read_curated_index(self.curated_dir)
        if not rows:
            raise InputError(self.curated_dir, "no curated pairs")
        curation = read_curated_pair(rows[0].path).metadata["curation"]
        metadata = {"input": curation["render"], "voxel_size": curation["voxel_size"], "normalisation": curation["normalisation"]}
        if self.resolution_augmentation is not None:
            metadata["resolution_augmentation"] = {
                "probability": self.resolution_augmentation.probability,
                "max_resolution": self.resolution_augmentation.max_resolution,
            }
        return metadata

    def load_subjects(self, split: str) -> list:
        subjects = []
        for row in read_curated_index(self.curated_dir):
            if row.split != split:
                continue
            pair = read_curated_pair(row.path)
            images = {"input": pair.input, "target": pair.target}
            subjects.append(
                make_subject(
                    images, pair.mask, pair.grid.voxel_size, pair.grid.origin, self.patch_options.patch_size, row.name,
                    resolution=None if self.resolution_augmentation is None else native_resolution(row, pair),
                )
            )
        return subjects


def native_resolution(row, pair) -> float:
    """Resolution (Å) of a curated pair's target: the reported one, else curation's correlation resolution.

    Raises:
        InputError: the pair has neither (curated by an older cryomaps).
    """
    if row.reported_resolution_A not in ("", None):
        return float(row.reported_resolution_A)
    correlation = pair.metadata.get("correlation_resolution_A")
    if correlation is None:
        raise InputError(row.path, "no reported or correlation resolution for the target (curate it again)")
    return float(correlation)


class SingleMapPatchDataModule(_PatchDataModule):
    """Local-resolution patches ``{"map", "locres", "mask"}`` (B, 1, P, P, P) from given volumes.

    Args:
        train_volumes, val_volumes: see :data:`VolumeSource` (``val_volumes`` may be empty).
        augmentation: keys of :class:`cryomaps.data.patches.AugmentationOptions`; by default only
            the joint symmetries, since blur, noise or anisotropy would change the true local
            resolution. ``None`` for none.
        other arguments: as for :class:`PairedPatchDataModule`.
    """

    keys = LOCRES_KEYS

    def __init__(
        self,
        train_volumes: VolumeSource,
        val_volumes: VolumeSource = (),
        augmentation: Mapping | None = SYMMETRIES_ONLY,
        **patch_settings,
    ):
        super().__init__(augmentation=augmentation, **patch_settings)
        self.volume_sources = {"train": train_volumes, "val": val_volumes}

    def load_subjects(self, split: str) -> list:
        source = self.volume_sources[split]
        volumes = source() if callable(source) else source
        return [self._subject(volume, f"{split}_{index}") for index, volume in enumerate(volumes)]

    def _subject(self, volume: Mapping, name: str):
        arrays, voxel_size, origin = load_volume(volume, LOCRES_KEYS)
        mask = arrays.pop("mask")
        return make_subject(arrays, mask, voxel_size, origin, self.patch_options.patch_size, name)


def load_volume(volume: Mapping, keys: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Arrays (x, y, z) of ``keys`` from a :data:`VolumeSource` mapping, with voxel size and origin (Å).

    Raises:
        InputError: a key is missing, a file is unreadable, or the shapes differ.
    """
    missing = [key for key in keys if key not in volume]
    if missing:
        raise InputError(None, f"volume lacks {', '.join(missing)} (has {', '.join(map(str, volume))})")
    geometry = {"voxel_size": np.ones(3), "origin": np.zeros(3)}
    arrays = {}
    for key in keys:
        value = volume[key]
        if isinstance(value, (str, os.PathLike)):
            density = read_map(value)
            value = density.data
            if key == keys[0]:
                geometry = {"voxel_size": density.voxel_size, "origin": density.origin}
        arrays[key] = np.asarray(value, dtype=np.float32)
    shapes = {key: array.shape for key, array in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise InputError(None, f"volume arrays differ in shape: {shapes}")
    voxel_size = np.broadcast_to(np.asarray(volume.get("voxel_size", geometry["voxel_size"]), dtype=np.float64), (3,))
    origin = np.asarray(volume.get("origin", geometry["origin"]), dtype=np.float64)
    return arrays, voxel_size, origin


def _own_generator(seed: int) -> torch.Generator:
    """A generator for a DataLoader's own draws, which would otherwise consume torch's global one."""
    return torch.Generator().manual_seed(seed)


def _options(options_type, settings: Mapping):
    """An ``options_type`` dataclass from plain config values (lists become tuples)."""
    return options_type(**{key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()})
