"""Local-resolution labels from half maps (cryomaps.data.half_maps): users' half maps and synthetic ones,
and fine-tuning the CryoRes network on them from the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryomaps.cli import main as cli_main
from cryomaps.data.half_maps import half_map_volume, read_half_map_manifest
from cryomaps.data.synthetic import helix_bundle, synthesize_half_maps, two_region_resolution, write_synthetic
from cryomaps.errors import InputError
from cryomaps.models.weights import load_network
from cryomaps.metrics import mask_iou
from cryomaps.metrics.masks import threshold_mask

FINETUNE = [
    "task=cryores", "data=half_maps_locres", "trainer.max_epochs=1", "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false", "data.patch_size=16", "data.batch_size=2", "data.samples_per_volume=2",
    "data.queue_length=4", "data.val_samples_per_volume=2", "data.train_volumes.window=20",
]


@pytest.fixture(scope="module")
def pair():
    """4 x 2 helix bundle at 1 Å: x below the median at 3 Å, above at 6 Å."""
    bundle = helix_bundle(n_x=4, n_y=2, n_residues=24)
    return synthesize_half_maps(bundle, two_region_resolution(bundle.coords, 3.0, 6.0), voxel_size=1.0, seed=11)


def test_threshold_mask_finds_the_molecule(pair):
    assert mask_iou(threshold_mask(pair.full), pair.mask.data) > 0.6


def test_half_map_labels_are_the_local_fsc_on_the_prepared_grid(pair):
    from cryomaps.signal.local_fsc import local_resolution

    volume = half_map_volume(pair.half1, pair.half2, pair.mask.data, window=20.0)
    inside = volume["mask"] > 0.5
    np.testing.assert_allclose(volume["voxel_size"], 1.0)
    direct = local_resolution(pair.half1, pair.half2, pair.mask.data, window=20.0)
    np.testing.assert_array_equal(volume["locres"], on_prepared_grid(direct, volume))
    assert np.all(volume["locres"][~inside] == 100.0)
    truth = on_prepared_grid(pair.true_locres, volume)
    fine, coarse = (np.median(volume["locres"][inside & (np.abs(truth - level) < 0.3)]) for level in (3.0, 6.0))
    assert fine < 4.0 and coarse > fine + 1.0  # the 3 Å half reads finer than the 6 Å half
    # The network input is the average of the halves, prepared like a single map (z-scored).
    assert abs(volume["map"].mean()) < 1e-3 and abs(volume["map"].std() - 1) < 1e-3


def on_prepared_grid(density, volume: dict) -> np.ndarray:
    """A map's values on a prepared volume's grid (nearest voxel, 100 Å outside)."""
    from cryomaps.data.locres_input import nearest_on_grid
    from cryomaps.io import Grid

    grid = Grid(volume["map"].shape, volume["voxel_size"], volume["origin"])
    return nearest_on_grid(density, grid, 100.0)


def test_synthetic_volumes_with_classical_labels():
    from cryomaps.data.synthetic import synthetic_training_volumes

    (truth,) = synthetic_training_volumes(1, seed=7, structures=["helix_bundle"])
    (classical,) = synthetic_training_volumes(1, seed=7, structures=["helix_bundle"], labels="classical")
    np.testing.assert_allclose(classical["map"], truth["map"], atol=1e-5)  # same map, other labels
    inside = truth["mask"] > 0.5
    assert np.array_equal(classical["mask"] > 0.5, inside)
    assert not np.allclose(classical["locres"][inside], truth["locres"][inside])
    assert np.corrcoef(classical["locres"][inside], truth["locres"][inside])[0, 1] > 0.5
    with pytest.raises(InputError, match="labels must be one of truth, classical"):
        synthetic_training_volumes(1, seed=7, labels="fsc")


def test_manifest_errors_name_the_file_and_line(tmp_path):
    manifest = tmp_path / "halves.csv"
    manifest.write_text("name,half1\nA,a.mrc\n")
    with pytest.raises(InputError, match=r"halves.csv: missing column\(s\) half2 in the header line"):
        read_half_map_manifest(manifest)
    manifest.write_text("half1,half2\n")
    with pytest.raises(InputError, match="halves.csv: half-map manifest has no rows"):
        read_half_map_manifest(manifest)
    manifest.write_text("half1,half2,split\na.mrc,b.mrc,test\n")
    with pytest.raises(InputError, match="line 2: split 'test' is not one of train, val"):
        read_half_map_manifest(manifest)
    manifest.write_text("half1,half2,mask\na.mrc,/abs/b.mrc,\n")
    (row,) = read_half_map_manifest(manifest)
    assert row == {"name": "a", "half1": tmp_path / "a.mrc", "half2": Path("/abs/b.mrc"), "mask": None, "split": "train"}


def test_finetune_on_user_half_maps_from_the_cli(tmp_path, pair, capsys):
    """`cryomaps finetune task=cryores data=half_maps_locres ...` from a tiny trained network; the
    fine-tuned weights differ from the start and `cryomaps locres` uses them."""
    start = tmp_path / "start"
    assert cli_main(["train", f"run_dir={start}", *FINETUNE[:1], "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                     "trainer.limit_val_batches=1", "data.patch_size=16", "data.batch_size=2", "data.samples_per_volume=2",
                     "data.queue_length=4", "data.val_samples_per_volume=2", "data.train_volumes.count=1",
                     "data.val_volumes.count=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]) == 0
    paths = write_synthetic(pair, tmp_path, prefix="pair")
    manifest = tmp_path / "halves.csv"
    manifest.write_text(f"name,half1,half2,mask,split\nwith_mask,pair_half1.mrc,pair_half2.mrc,pair_mask.mrc,train\n"
                        f"no_mask,{paths['half1']},{paths['half2']},,val\n")
    run = tmp_path / "tuned"
    arguments = ["finetune", f"ckpt={start / 'cryores.pt'}", f"run_dir={run}", f"data.train_volumes.manifest={manifest}", *FINETUNE]
    assert cli_main(arguments) == 0
    assert "fine-tuning from" in capsys.readouterr().out
    before = load_network(start / "cryores.pt", "cryores").network.state_dict()
    after = load_network(run / "cryores.pt", "cryores").network.state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert cli_main(["locres", str(paths["full"]), "-o", str(tmp_path / "locres.mrc"), "--ckpt", str(run / "cryores.pt"),
                     "--device", "cpu"]) == 0


def test_half_map_training_without_a_manifest_is_one_line(tmp_path, capsys):
    assert cli_main(["train", f"run_dir={tmp_path / 'run'}", "task=cryores", "data=half_maps_locres"]) == 2
    error = capsys.readouterr().err.strip()
    assert "manifest" in error and "\n" not in error
    absent = tmp_path / "absent.csv"
    assert cli_main(["train", f"run_dir={tmp_path / 'run'}", "task=cryores", "data=half_maps_locres",
                     f"data.train_volumes.manifest={absent}"]) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # (Lightning's seed message may precede it)
    assert last_line == f"cryomaps train: error: {absent}: half-map manifest not found"
