"""Patch pipeline: affines, foreground sampling, augmentation scope, seeding and the DataModules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryomaps.data.curate import curate_entries
from cryomaps.data.datamodules import PairedPatchDataModule, SingleMapPatchDataModule
from cryomaps.data.patches import (
    AugmentationOptions,
    PatchOptions,
    SeededPatchQueue,
    build_augmentation,
    make_subject,
    volume_affine,
)
from cryomaps.io import Grid

PATCH = 16


def _blob_volumes(seed: int, shape=(40, 36, 30)) -> dict:
    """A hand-made local-resolution volume: a small ellipsoidal 'molecule' off-centre in a big box."""
    rng = np.random.default_rng(seed)
    index = np.indices(shape).astype(float)
    centre = np.array([10.0, 24.0, 12.0])[:, None, None, None]
    mask = (((index - centre) / np.array([6.0, 5.0, 4.0])[:, None, None, None]) ** 2).sum(0) <= 1
    density = np.where(mask, 1.0, 0.0) + 0.05 * rng.normal(size=shape)
    locres = np.where(mask, 3.0 + index[0] / 10.0, 100.0)
    return {"map": density, "locres": locres, "mask": mask, "voxel_size": 1.2, "origin": (5.0, -3.0, 7.5)}


def _locres_module(seed=0, **settings) -> SingleMapPatchDataModule:
    settings = {"patch_size": PATCH, "samples_per_volume": 6, "queue_length": 12, "batch_size": 4, "val_samples_per_volume": 8, **settings}
    module = SingleMapPatchDataModule([_blob_volumes(1), _blob_volumes(2)], [_blob_volumes(3)], seed=seed, **settings)
    module.setup("fit")
    return module


def _batches(module) -> list[dict]:
    return list(module.train_dataloader())


def test_affine_is_voxel_diagonal_with_origin_and_padding_moves_the_origin():
    affine = volume_affine((1.0, 1.5, 2.0), (10.0, -4.0, 3.0))
    np.testing.assert_array_equal(affine, [[1, 0, 0, 10], [0, 1.5, 0, -4], [0, 0, 2, 3], [0, 0, 0, 1]])
    grid = Grid((5, 6, 7), (1.0, 1.5, 2.0), (10.0, -4.0, 3.0))
    subject = make_subject({"map": np.zeros(grid.shape)}, np.ones(grid.shape), grid.voxel_size, grid.origin, patch_size=4)
    pad = 2
    assert subject["map"].spatial_shape == (9, 10, 11)
    padded_index = np.array([3, 4, 5])
    world = subject["map"].affine @ np.append(padded_index, 1.0)
    np.testing.assert_allclose(world[:3], grid.index_to_world(padded_index - pad))


def test_locres_batches_have_the_documented_format_and_come_from_the_molecule():
    module = _locres_module()
    batches = _batches(module)
    assert sum(len(batch["map"]) for batch in batches) == 12
    for batch in batches:
        assert set(batch) == {"map", "locres", "mask"}
        for tensor in batch.values():
            assert tensor.dtype == torch.float32 and tensor.shape[1:] == (1, PATCH, PATCH, PATCH)
    masks = torch.cat([batch["mask"] for batch in batches])
    with_protein = (masks.flatten(1).sum(1) > 0).float().mean()
    assert with_protein >= 0.9
    locres = torch.cat([batch["locres"] for batch in batches])
    assert torch.all(locres[masks > 0] < 100)


def test_same_seed_gives_identical_batches_whatever_else_uses_the_generator():
    first = _batches(_locres_module(seed=7))
    torch.manual_seed(123)
    torch.rand(1000)
    second_module = _locres_module(seed=7)
    state = torch.get_rng_state()
    second = _batches(second_module)
    assert torch.equal(state, torch.get_rng_state())
    for a, b in zip(first, second, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key])
    other = _batches(_locres_module(seed=8))
    assert not all(torch.equal(a["map"], b["map"]) for a, b in zip(first, other))


def test_validation_patches_are_fixed_and_not_augmented():
    module = _locres_module()
    first, second = list(module.val_dataloader()), list(module.val_dataloader())
    assert len(first) == 2
    for a, b in zip(first, second):
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert torch.equal(_locres_module().val_patches[0]["map"], first[0]["map"][0])


def test_intensity_augmentation_touches_only_the_input_and_symmetries_are_joint():
    rng = np.random.default_rng(0)
    volume = rng.random((24, 20, 28)).astype(np.float32)
    mask = np.zeros(volume.shape)
    mask[8:16, 6:14, 10:18] = 1
    subject = make_subject({"input": volume, "target": volume}, mask, 1.0, (0, 0, 0), patch_size=PATCH)
    options = PatchOptions(patch_size=PATCH, samples_per_volume=8, queue_length=8, seed=3)

    joint_only = build_augmentation(AugmentationOptions(intensity_keys=()))
    for patch in SeededPatchQueue([subject], ("input", "target", "mask"), options, joint_only):
        assert torch.equal(patch["input"], patch["target"])

    always = AugmentationOptions(probability=1.0, symmetries=False)
    changed = SeededPatchQueue([subject], ("input", "target", "mask"), options, build_augmentation(always))[0]
    assert not torch.equal(changed["input"], changed["target"])


@pytest.fixture(scope="module")
def curated_two_pairs(example_entries, tmp_path_factory):
    """EMD-6374 (train) and EMD-3488 (val) curated with the defaults."""
    entries = [e for e in example_entries if e.emdb_id in ("EMD-6374", "EMD-3488")]
    out = tmp_path_factory.mktemp("curated_two")
    assert all(result.accepted for result in curate_entries(entries, out))
    return out


def test_paired_datamodule_serves_protein_patches_reproducibly(curated_two_pairs):
    def batches(seed):
        module = PairedPatchDataModule(
            curated_two_pairs, samples_per_volume=8, queue_length=8, batch_size=4, seed=seed, val_samples_per_volume=4
        )
        module.setup("fit")
        return module, list(module.train_dataloader())

    module, first = batches(0)
    _, second = batches(0)
    assert len(first) == 2 and len(module.val_patches) == 4
    for a, b in zip(first, second, strict=True):
        assert set(a) == {"input", "target", "mask"}
        for key in a:
            assert a[key].shape == (4, 1, 32, 32, 32) and a[key].dtype == torch.float32
            assert torch.equal(a[key], b[key])
    masks = torch.cat([batch["mask"] for batch in first])
    assert (masks.flatten(1).sum(1) > 0).float().mean() >= 0.9


def test_data_configs_instantiate_the_datamodules(tmp_path):
    from hydra.utils import instantiate

    from cryomaps.config import compose_config

    config = compose_config("train", ["task=struc2map", f"data.curated_dir={tmp_path}", "seed=5"])
    module = instantiate(config.data, _convert_="all")
    assert isinstance(module, PairedPatchDataModule)
    assert module.patch_options == PatchOptions(32, 16, 256, 0, 5)
    assert module.augmentation == AugmentationOptions()
    locres = compose_config("train", ["task=cryores"]).data
    assert locres._target_.endswith("SingleMapPatchDataModule") and list(locres.augmentation.intensity_keys) == []


@pytest.mark.slow
def test_synthetic_volume_provider_feeds_the_locres_datamodule():
    from cryomaps.data.synthetic import synthetic_training_volumes

    volumes = synthetic_training_volumes(count=1, seed=0)
    module = SingleMapPatchDataModule(volumes, volumes, samples_per_volume=4, queue_length=4, batch_size=2, val_samples_per_volume=2)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["map"].shape == (2, 1, 32, 32, 32)
    assert torch.all(batch["locres"][batch["mask"] > 0] < 100)
