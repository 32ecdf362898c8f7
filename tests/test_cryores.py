"""CryoRes single-map local resolution: input preparation, training from the CLI, weights, `cryomaps locres MAP`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cryomaps.cli import main as cli_main
from cryomaps.data.synthetic import helix_bundle, two_region_resolution, synthesize_half_maps
from cryomaps.data.locres_input import (
    InputPreparation,
    prepare_map,
    prepare_training_volume,
    threshold_box,
)
from cryomaps.io import DensityMap, Grid, read_map, resample_map, sample_map, write_map
from cryomaps.io.weights import bundled_weights_path
from cryomaps.models.weights import load_network
from cryomaps.signal.local_fsc import BACKGROUND_RESOLUTION

TINY = [
    "task=cryores", "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
    "data.patch_size=16", "data.batch_size=2", "data.samples_per_volume=2", "data.queue_length=8",
    "data.val_samples_per_volume=2", "data.train_volumes.count=2", "data.val_volumes.count=1",
    "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
]


def blob_map(voxel_size: float, shape=(40, 36, 30), origin=(-5.0, 3.0, 7.0)) -> DensityMap:
    """A smooth Gaussian blob (σ 3 Å) at world (8, 14, 16) Å on a grid of ``voxel_size`` Å, plus an offset of 2."""
    grid = Grid(shape, voxel_size, origin)
    distance2 = ((grid.voxel_centres() - np.array([8.0, 14.0, 16.0])) ** 2).sum(axis=1)
    return DensityMap.from_grid((2.0 + np.exp(-distance2 / 18.0)).reshape(shape).astype(np.float32), grid)


def test_prepare_map_resamples_crops_normalises_and_pads():
    density = blob_map(0.7)
    preparation = InputPreparation(voxel_size=1.0, threshold_sigmas=3.0, crop_margin=4.0, tile_size=16)
    prepared = prepare_map(density, preparation, stride=4)

    assert all(n % 4 == 0 for n in prepared.volume.shape)
    np.testing.assert_allclose(prepared.grid.voxel_size, 1.0)
    assert np.all(prepared.grid.origin >= density.origin - 1e-4)
    # The crop holds the blob and its margin, smaller than the 28 x 25 x 21 Å box.
    peak = prepared.grid.index_to_world(np.argwhere(prepared.volume == prepared.volume.max()))[0]
    np.testing.assert_allclose(peak, [8.0, 14.0, 16.0], atol=1.0)
    assert prepared.volume.size < 0.8 * 28 * 25 * 21
    # z-scored with the statistics of the 3σ box (which lies inside the crop); zero padding at the high end.
    resampled = resample_map(density, density.grid.resampled_isotropic(1.0))
    box = threshold_box(resampled.data, 3.0, 4)
    start = np.rint((prepared.grid.origin - resampled.grid.origin) / 1.0).astype(int)
    statistics = prepared.volume[tuple(slice(b.start - a, b.stop - a) for b, a in zip(box, start))]
    assert statistics.shape == resampled.data[box].shape
    assert abs(statistics.mean()) < 1e-4 and abs(statistics.std() - 1.0) < 1e-4
    # Same geometry: inside the crop the prepared values are the original map's, rescaled.
    unpadded = prepared.volume[tuple(slice(0, n) for n in _unpadded_shape(prepared.volume))]
    crop = Grid(unpadded.shape, prepared.grid.voxel_size, prepared.grid.origin)
    original = sample_map(density, crop.voxel_centres())
    assert np.corrcoef(original, unpadded.reshape(-1))[0, 1] > 0.9999


def test_crop_keeps_a_weak_low_resolution_domain_beside_a_sharp_core():
    """Half of a helix bundle at 3 Å dominates the 3σ threshold; the 6 Å half must stay in the crop."""
    bundle = helix_bundle(n_x=6, n_y=2, n_residues=30)
    pair = synthesize_half_maps(bundle, two_region_resolution(bundle.coords, 3.0, 6.0), finest_b_factor=120.0, seed=5)
    preparation = InputPreparation()
    coarse_atoms = pair.grid.world_to_index(bundle.coords[pair.atom_resolution > 4.5])
    box = threshold_box(pair.full.data, 3.0, 8)
    assert np.mean(coarse_atoms[:, 0] < box[0].stop) < 0.5  # the published 3σ box alone loses most of it
    prepared = prepare_map(pair.full, preparation, stride=4)
    low = prepared.grid.origin
    high = low + (np.asarray(prepared.volume.shape) - 1) * preparation.voxel_size
    coords = bundle.coords
    assert np.all((coords >= low) & (coords <= high))


def _unpadded_shape(volume: np.ndarray) -> tuple[int, ...]:
    """Shape of ``volume`` without its trailing all-zero planes."""
    shape = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nonzero = np.flatnonzero(np.abs(volume).max(axis=other) > 0)
        shape.append(int(nonzero[-1]) + 1)
    return tuple(shape)


def test_threshold_box_is_the_whole_map_when_nothing_stands_out():
    flat = np.ones((5, 6, 7), dtype=np.float32)
    assert threshold_box(flat, 3.0, 2) == (slice(0, 5), slice(0, 6), slice(0, 7))


def test_training_volumes_are_prepared_like_inference_inputs():
    bundle = helix_bundle(n_x=2, n_y=1, n_residues=12)
    pair = synthesize_half_maps(bundle, two_region_resolution(bundle.coords), voxel_size=1.25, seed=3)
    volume = {"map": pair.full.data, "locres": pair.true_locres.data, "mask": pair.mask.data,
              "voxel_size": pair.grid.voxel_size, "origin": pair.grid.origin}
    preparation = InputPreparation()
    prepared = prepare_training_volume(volume, preparation)
    inference = prepare_map(pair.full, preparation)

    np.testing.assert_array_equal(prepared["map"], inference.volume)
    np.testing.assert_allclose(prepared["origin"], inference.grid.origin)
    assert prepared["locres"].shape == prepared["mask"].shape == prepared["map"].shape
    inside = prepared["mask"] > 0.5
    assert inside.any() and set(np.unique(prepared["mask"])) <= {0.0, 1.0}
    assert np.all(prepared["locres"][~inside] == BACKGROUND_RESOLUTION)
    assert prepared["locres"][inside].max() < 30.0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("cryores") / "run"
    assert cli_main(["train", f"run_dir={run_dir}", *TINY, "task.lr_schedule=cosine"]) == 0
    return run_dir


def test_tiny_training_writes_weights_only_checkpoints_with_input_metadata(tiny_run):
    checkpoint = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    metadata = checkpoint["hyper_parameters"]["metadata"]
    assert metadata["voxel_size"] == 1.0 and metadata["tile_size"] == 16
    assert "z-score" in metadata["normalisation"]
    # The cosine schedule spans the planned steps: from 1e-3 down to 0 after the last step.
    learning_rates = checkpoint["optimizer_states"][0]["param_groups"][0]
    assert learning_rates["initial_lr"] == pytest.approx(1e-3) and learning_rates["lr"] < 1e-12
    schedule = checkpoint["lr_schedulers"][0]
    assert schedule["T_max"] == schedule["last_epoch"] == checkpoint["global_step"] >= 2
    assert (tiny_run / "logs" / "version_0" / "metrics.csv").is_file()

    loaded = load_network(tiny_run / "cryores.pt", "cryores")
    assert loaded.metadata == metadata
    assert torch.load(tiny_run / "cryores.pt", weights_only=True)["kind"] == "cryores"
    from_checkpoint = load_network(tiny_run / "checkpoints" / "last.ckpt", "cryores")
    for name, tensor in loaded.network.state_dict().items():
        torch.testing.assert_close(from_checkpoint.network.state_dict()[name], tensor)


def test_unknown_learning_rate_schedule_is_one_line(tmp_path, capsys):
    assert cli_main(["train", f"run_dir={tmp_path / 'run'}", *TINY, "task.lr_schedule=linear"]) == 2
    error = capsys.readouterr().err.strip()
    assert "lr_schedule must be one of constant, cosine" in error and "\n" not in error


def test_training_volumes_at_random_voxel_sizes_are_resampled_to_the_network_grid():
    """Maps rendered at coarse voxels and resampled to 1 Å carry interpolation-correlated noise:
    the neighbour correlation of the prepared background rises well above that of native 1 Å maps."""
    from cryomaps.data.synthetic import synthetic_training_volumes

    def background_neighbour_correlation(voxel_size_range) -> float:
        (volume,) = synthetic_training_volumes(1, seed=4, structures=["example_peptide"], voxel_size_range=voxel_size_range)
        np.testing.assert_allclose(volume["voxel_size"], 1.0)
        outside = (volume["mask"] == 0)[:-1] & (volume["mask"] == 0)[1:]
        values = volume["map"]
        return float(np.corrcoef(values[:-1][outside], values[1:][outside])[0, 1])

    native = background_neighbour_correlation(None)
    coarse = background_neighbour_correlation([1.45, 1.5])
    assert native < 0.3 and coarse > native + 0.2


def synthetic_map_file(folder: Path, voxel_size: float) -> tuple[Path, DensityMap]:
    bundle = helix_bundle(n_x=3, n_y=2, n_residues=14)
    pair = synthesize_half_maps(bundle, two_region_resolution(bundle.coords), voxel_size=voxel_size, seed=5)
    return write_map(folder / "map.mrc", pair.full), pair.full


def run_single_map(tmp_path: Path, ckpt: Path | None, capsys) -> tuple[DensityMap, DensityMap, DensityMap, str]:
    """``cryomaps locres MAP -o … --mask-out … --png …``: the outputs, the input and the summary line."""
    map_path, density = synthetic_map_file(tmp_path, voxel_size=1.3)
    output, mask_out, png = tmp_path / "locres.mrc", tmp_path / "mask.mrc", tmp_path / "locres.png"
    arguments = ["locres", str(map_path), "-o", str(output), "--mask-out", str(mask_out), "--png", str(png), "--device", "cpu"]
    assert cli_main(arguments + ([] if ckpt is None else ["--ckpt", str(ckpt)])) == 0
    line, slices = capsys.readouterr().out.strip().splitlines()
    assert slices == f"slices: {png}" and png.read_bytes()[:4] == b"\x89PNG"
    return read_map(output), read_map(mask_out), density, line


def check_on_input_grid(locres: DensityMap, mask: DensityMap, density: DensityMap) -> None:
    for written in (locres, mask):
        assert written.data.shape == density.data.shape
        np.testing.assert_allclose(written.voxel_size, density.voxel_size)
        np.testing.assert_allclose(written.origin, density.origin)
    assert set(np.unique(mask.data)) <= {0.0, 1.0}
    assert np.all(locres.data[mask.data < 0.5] == BACKGROUND_RESOLUTION)
    assert np.all(locres.data[mask.data > 0.5] < BACKGROUND_RESOLUTION)


def test_single_map_locres_with_a_trained_checkpoint(tmp_path, tiny_run, capsys):
    locres, mask, density, line = run_single_map(tmp_path, tiny_run / "cryores.pt", capsys)
    check_on_input_grid(locres, mask, density)
    assert "median" in line and line.endswith("s)")


def test_single_map_locres_with_the_bundled_network(tmp_path, capsys):
    assert bundled_weights_path("cryores").is_file(), "the package ships cryomaps/weights/cryores_small.pt"
    started = time.perf_counter()
    locres, mask, density, line = run_single_map(tmp_path, None, capsys)
    check_on_input_grid(locres, mask, density)
    assert mask.data.mean() > 0.05  # the helix bundle is found
    inside = locres.data[mask.data > 0.5]
    assert 2.0 < np.median(inside) < 10.0
    assert f"median {np.median(inside):.2f}" in line
    assert time.perf_counter() - started < 60


def test_bundled_network_tells_a_3_angstrom_half_from_a_6_angstrom_half(bundled_cryores):
    """Oracle: the synthetic truth. The network sees only the average of the half maps."""
    from cryomaps.inference.locres_network import predict_local_resolution

    bundle = helix_bundle(n_x=6, n_y=2, n_residues=30)
    pair = synthesize_half_maps(bundle, two_region_resolution(bundle.coords, 3.0, 6.0), finest_b_factor=120.0, seed=5)
    estimate = predict_local_resolution(pair.full, bundled_cryores.network, bundled_cryores.metadata, device="cpu").estimate.data
    truth, inside = pair.true_locres.data, pair.mask.data > 0.5
    fine, coarse = inside & (truth < 4.5), inside & (truth > 4.5)
    assert 2.5 < np.median(estimate[fine]) < 4.0
    assert 5.0 < np.median(estimate[coarse]) < 8.0
    network_rmse = np.sqrt(np.mean((estimate[inside] - truth[inside]) ** 2))
    trivial_rmse = np.sqrt(np.mean((np.median(truth[inside]) - truth[inside]) ** 2))
    assert network_rmse < 0.6 * trivial_rmse


def test_estimates_stay_at_or_above_the_nyquist_limit_of_a_coarsely_sampled_map(bundled_cryores):
    """A map at 2.4 Å voxels (coarser than any training map) holds nothing finer than 4.8 Å; the truth says so too.
    (Without the floor the bundled_cryores network reports about 2.8 Å on three quarters of this map.)"""
    from cryomaps.inference.locres_network import predict_local_resolution

    bundle = helix_bundle(n_x=4, n_y=2, n_residues=20)
    pair = synthesize_half_maps(bundle, two_region_resolution(bundle.coords, 3.0, 6.0), voxel_size=2.4, finest_b_factor=120.0, seed=5)
    estimate = predict_local_resolution(pair.full, bundled_cryores.network, bundled_cryores.metadata, device="cpu").estimate.data
    inside = pair.mask.data > 0.5
    assert estimate[inside].min() >= 4.8 - 1e-5
    truth_median = np.median(pair.true_locres.data[inside])
    assert abs(np.median(estimate[inside]) - truth_median) < 0.15 * truth_median


def test_flip_average_is_the_mean_of_the_map_and_its_inversion_predicted_separately(bundled_cryores):
    """Flip averaging inverts the prepared tensor. On this map preparation commutes with the inversion
    (1 Å voxels: no resampling; the crop is the whole 28 x 28 x 24 box, a multiple of the stride: no
    padding), so the oracle is the inverted map predicted on its own and flipped back."""
    from cryomaps.inference.locres_network import predict_local_resolution

    density = blob_map(1.0, shape=(28, 28, 24), origin=(-5.0, 1.0, 5.0))  # blob at the box centre
    inverted = DensityMap(np.flip(density.data).copy(), density.voxel_size, density.origin)
    preparation = InputPreparation.from_metadata(bundled_cryores.metadata)
    prepared = prepare_map(density, preparation, bundled_cryores.network.stride).volume
    assert prepared.shape == density.data.shape
    np.testing.assert_array_equal(prepare_map(inverted, preparation, bundled_cryores.network.stride).volume, np.flip(prepared))

    def estimate(map_: DensityMap, flip_average: bool) -> np.ndarray:
        result = predict_local_resolution(map_, bundled_cryores.network, bundled_cryores.metadata, flip_average=flip_average, device="cpu")
        return result.estimate.data

    expected = (estimate(density, False) + np.flip(estimate(inverted, False))) / 2
    averaged = estimate(density, True)
    np.testing.assert_allclose(averaged, expected, atol=1e-4)
    assert np.abs(averaged - estimate(density, False)).max() > 1e-3  # the inverted pass does change the answer


def test_single_map_options_are_refused_with_half_maps(tmp_path, capsys):
    map_path, _ = synthetic_map_file(tmp_path, voxel_size=1.0)
    status = cli_main(["locres", "--half1", str(map_path), "--half2", str(map_path), "-o", str(tmp_path / "x.mrc"),
                       "--mask-out", str(tmp_path / "m.mrc")])
    assert status == 2
    assert "single-map mode" in capsys.readouterr().err
