"""A generator for any resolution (issue #17): the one low-pass filter, resolution augmentation of
training targets, and the FSC-free resolution estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryomaps.data.patches import (
    RESOLUTION_KEY,
    RandomTargetResolution,
    ResolutionAugmentationOptions,
    SeededPatchQueue,
    PatchOptions,
    make_subject,
)
from cryomaps.io import Grid, read_structure
from cryomaps.render import render_structure
from cryomaps.signal import degradation_sigma, gaussian_low_pass, low_pass_to_resolution


def test_low_pass_of_a_point_is_the_normalised_gaussian_on_anisotropic_voxels():
    """Float64 oracle: a unit point blurred by σ is (2πσ²)^{-3/2} exp(−r²/2σ²) per Å³ of voxel volume."""
    voxel = np.array([0.8, 1.0, 1.3])
    volume = torch.zeros(41, 36, 29, dtype=torch.float64)
    centre = (20, 17, 14)
    volume[centre] = 1.0
    blurred = gaussian_low_pass(volume, voxel, sigma=2.1)
    axes = [(np.arange(n) - c) * h for n, c, h in zip(volume.shape, centre, voxel)]
    r2 = sum(np.meshgrid(*[a**2 for a in axes], indexing="ij"))
    expected = np.prod(voxel) * np.exp(-r2 / (2 * 2.1**2)) / (2 * math.pi * 2.1**2) ** 1.5
    assert blurred.dtype == torch.float64 and blurred.shape == volume.shape
    np.testing.assert_allclose(blurred.numpy(), expected, atol=2e-6 * expected.max())


def test_nothing_wraps_around_the_box():
    """Density at one face must not appear at the opposite face (zero padding, not a periodic blur)."""
    volume = torch.zeros(24, 24, 24)
    volume[0] = 1.0
    blurred = gaussian_low_pass(volume, 1.0, sigma=3.0)
    assert float(blurred[0, 12, 12]) == pytest.approx(1 / (math.sqrt(2 * math.pi) * 3.0), rel=1e-3)  # a blurred plane
    assert float(blurred[-1].abs().max()) < 1e-6


def test_filtering_molmap_at_d0_to_r_gives_molmap_at_r(shared_pairs):
    """The definition σ = 0.225·√(R² − d0²): molmap at 3.2 Å filtered to 8 Å is molmap at 8 Å."""
    row = next(row for row in shared_pairs if row["name"] == "EMD-21457_spike_NTD_segment")
    structure = read_structure(row["model_path"], remove_waters=True, remove_hydrogens=True)
    grid = Grid.around(structure.coords, voxel_size=1.0, padding=12.0)
    fine = render_structure(structure, grid, model="molmap", resolution=3.2).double()
    coarse = render_structure(structure, grid, model="molmap", resolution=8.0).double()
    filtered = low_pass_to_resolution(fine, grid.voxel_size, 3.2, 8.0)
    assert float((filtered - coarse).abs().max()) < 2e-3 * float(coarse.max())
    two_steps = low_pass_to_resolution(low_pass_to_resolution(fine, 1.0, 3.2, 5.0), 1.0, 5.0, 8.0)
    assert float((two_steps - filtered).abs().max()) < 1e-5 * float(coarse.max())  # only what left the box


def test_degradation_sigma_refuses_to_sharpen():
    assert degradation_sigma(3.0, 3.0) == 0.0
    assert degradation_sigma(3.0, 5.0) == pytest.approx(4.0 / (math.pi * math.sqrt(2)))  # molmap σ = d/(π√2) ≈ 0.225·d
    with pytest.raises(ValueError, match="cannot sharpen"):
        degradation_sigma(5.0, 3.0)


def _blob_subject(resolution: float):
    """A 20³ subject: a smooth blob target inside a spherical mask, patch size 16."""
    axes = np.arange(20) - 9.5
    r2 = sum(np.meshgrid(axes**2, axes**2, axes**2, indexing="ij"))
    target = np.exp(-r2 / 18.0) * (1 + 0.5 * np.cos(axes[:, None, None] * 2.0))
    mask = r2 < 49
    return make_subject({"input": target, "target": target}, mask, 1.0, (0, 0, 0), 16, "blob", resolution=resolution)


def test_random_target_resolution_filters_the_target_only_and_records_r():
    subject = _blob_subject(3.0)
    transform = RandomTargetResolution(ResolutionAugmentationOptions(probability=1.0, max_resolution=12.0))
    torch.manual_seed(1)
    augmented = transform(subject)
    drawn = augmented[RESOLUTION_KEY]
    assert 3.0 < drawn < 12.0 and subject[RESOLUTION_KEY] == 3.0
    assert torch.equal(augmented["input"].data, subject["input"].data)
    inside = subject["mask"].data[0] > 0
    expected = low_pass_to_resolution(subject["target"].data[0], 1.0, 3.0, drawn)
    scale = np.percentile(subject["target"].data[0][inside], 99.9) / np.percentile(expected[inside], 99.9)
    torch.testing.assert_close(augmented["target"].data[0], expected * float(scale))
    never = RandomTargetResolution(ResolutionAugmentationOptions(probability=0.0))
    assert never(subject)[RESOLUTION_KEY] == 3.0


def test_patches_carry_the_resolution_their_target_was_filtered_to():
    """Every patch of a filtered subject load reports the same R; native loads report d0."""
    options = ResolutionAugmentationOptions(probability=0.5, max_resolution=12.0)
    queue = SeededPatchQueue(
        [_blob_subject(3.0)], ("input", "target", "mask"), PatchOptions(16, 4, 8, seed=3), RandomTargetResolution(options)
    )
    seen = set()
    for epoch in range(6):
        queue.start_epoch(epoch)
        resolutions = {round(float(queue[i][RESOLUTION_KEY]), 6) for i in range(len(queue))}
        assert len(resolutions) == 1  # one subject load per epoch
        seen |= resolutions
    assert 3.0 in seen and any(3.0 < r <= 12.0 for r in seen)


def test_spectral_resolution_tracks_the_filter_on_a_real_map(shared_pairs):
    """EMD-3488 (3.2 Å) filtered to 5, 8 and 12 Å: the estimate increases with R and stays within 1.6 Å of it."""
    from cryomaps.io import read_map
    from cryomaps.signal import filtered_map
    from cryomaps.signal.resolution import spectral_resolution

    row = next(row for row in shared_pairs if row["name"] == "EMD-3488_hemoglobin")
    structure = read_structure(row["model_path"], remove_waters=True, remove_hydrogens=True)
    experimental = read_map(row["map_path"])
    sharp = 2.0 * float(experimental.voxel_size.max())
    model = render_structure(structure, experimental.grid, model="molmap", resolution=sharp).numpy()
    estimates = [
        spectral_resolution(filtered_map(experimental, 3.2, r).data, model, experimental.voxel_size, sharp) for r in (5.0, 8.0, 12.0)
    ]
    assert estimates[0] < estimates[1] < estimates[2]
    assert np.all(np.abs(np.array(estimates) - [5.0, 8.0, 12.0]) < 1.6), estimates


def test_generate_with_like_and_no_resolution_prints_the_estimate_it_conditions_on(tmp_path, shared_pairs, capsys):
    """A conditioned generator (FiLM, tiny, random) on the spike map: the CLI says what it assumed."""
    from cryomaps.cli import main as cli_main
    from cryomaps.io import read_map
    from cryomaps.models.weights import save_network
    from cryomaps.models.registry import build_generator
    from cryomaps.signal.resolution import spectral_resolution

    row = next(row for row in shared_pairs if row["name"] == "EMD-21457_spike_NTD_segment")
    hyperparameters = {"preset": "small", "channels": [2, 4], "resolution_conditioning": True}
    metadata = {"input": {"model": "molmap", "resolution": 2.0, "sampling": "point"}, "voxel_size": 1.0}
    weights = save_network(tmp_path / "film.pt", "generator", build_generator(**hyperparameters), hyperparameters, metadata=metadata)
    output = tmp_path / "generated.mrc"
    arguments = ["generate", str(row["model_path"]), "-o", str(output), "--ckpt", str(weights), "--overlap", "0"]
    assert cli_main([*arguments, "--like", str(row["map_path"])]) == 0
    printed = capsys.readouterr().out
    like = read_map(row["map_path"])
    structure = read_structure(row["model_path"], remove_waters=True, remove_hydrogens=True)
    sharp = 2.0 * float(like.voxel_size.max())
    model = render_structure(structure, like.grid, model="molmap", resolution=sharp).numpy()
    expected = spectral_resolution(like.data, model, like.voxel_size, sharp)
    assert f"assumed resolution {expected:.1f} Å (estimated from the --like map" in printed
    assert read_map(output).data.shape == like.data.shape
    assert cli_main(arguments) == 0 and "assumed resolution 3.0 Å (the default" in capsys.readouterr().out


def test_patch_low_pass_continues_the_edges_and_matches_the_whole_map_filter_inside(small_model):
    """Float64 oracle: a patch cut from a molmap, filtered alone (edges replicated), equals the crop of
    the whole map filtered, away from the patch faces; a patch whose R is not coarser is untouched;
    gradients pass through."""
    from cryomaps.signal import low_pass_patches

    structure = read_structure(small_model)
    grid = Grid.around(structure.coords, voxel_size=1.0, padding=6.0)
    whole = render_structure(structure, grid, model="molmap", resolution=3.2).double()
    corner = [(n - 32) // 2 for n in whole.shape]
    crop = tuple(slice(c, c + 32) for c in corner)
    patch = whole[crop].clone().requires_grad_(True)
    patches = torch.stack([patch[None], patch[None]])
    filtered = low_pass_patches(patches, 1.0, 3.2, torch.tensor([3.0, 8.0]))
    assert torch.equal(filtered[0, 0], patch)
    expected = low_pass_to_resolution(whole, 1.0, 3.2, 8.0)[crop]
    inner = (slice(8, -8),) * 3
    error = (filtered[1, 0].detach()[inner] - expected[inner]).abs().max()
    assert float(error) < 1e-6 * float(expected.max())
    zero_edged = low_pass_to_resolution(patch.detach(), 1.0, 3.2, 8.0)  # the edge error the replicated edge halves

    def rms_error(volume):
        return float((volume - expected).pow(2).mean().sqrt())

    assert rms_error(filtered[1, 0].detach()) < 0.7 * rms_error(zero_edged)
    filtered[1].sum().backward()
    assert torch.isfinite(patch.grad).all() and float(patch.grad.abs().sum()) > 0


def _conditioned_weights(tmp_path, output_resolution):
    from cryomaps.models.registry import build_generator
    from cryomaps.models.weights import load_network, save_network

    torch.manual_seed(0)
    hyperparameters = {"preset": "small", "channels": [2, 4], "resolution_conditioning": True}
    metadata = {"input": {"model": "molmap", "resolution": 2.0, "sampling": "point"}, "voxel_size": 1.0}
    if output_resolution is not None:
        metadata["output_resolution"] = output_resolution
    path = save_network(tmp_path / f"film_{output_resolution}.pt", "generator", build_generator(**hyperparameters),
                        hyperparameters, metadata=metadata)
    return load_network(path, "generator")


def test_a_conditioned_generator_trained_through_the_filter_is_filtered_to_r_when_generating(tmp_path, small_model):
    """The rule of :mod:`cryomaps.workflows.generation` for conditioned generators: filtered from the
    output resolution stored with the weights (trained through the filter); never when none is stored
    (the generator outputs maps at R itself)."""
    from cryomaps.inference.generate import TilingOptions, generate_map
    from cryomaps.signal import filtered_map
    from cryomaps.workflows.generation import filters_output, generate_at_resolution, output_resolution

    through_filter, direct = _conditioned_weights(tmp_path, 3.2), _conditioned_weights(tmp_path, None)
    assert output_resolution(through_filter) == 3.2 and output_resolution(direct) is None
    assert filters_output(through_filter, 8.0) and not filters_output(through_filter, 3.0)
    assert not filters_output(direct, 8.0)
    structure = read_structure(small_model)
    tiling = TilingOptions(tile_size=16, overlap=0, batch_size=8)
    raw = generate_map(structure, through_filter.network, through_filter.metadata, resolution=8.0, tiling=tiling)
    generated = generate_at_resolution(structure, through_filter, 8.0, tiling=tiling)
    np.testing.assert_allclose(generated.data, filtered_map(raw, 3.2, 8.0).data, atol=1e-6)
    unfiltered = generate_at_resolution(structure, direct, 8.0, tiling=tiling)
    assert np.array_equal(unfiltered.data, generate_map(structure, direct.network, direct.metadata, resolution=8.0, tiling=tiling).data)


def test_training_through_the_filter_needs_conditioning_and_filters_each_patch_to_its_resolution():
    from cryomaps.signal import low_pass_patches
    from cryomaps.tasks.struc2map import Struc2MapTask

    networks = {"discriminator": {"preset": "small"}}
    with pytest.raises(ValueError, match="output_resolution needs a resolution-conditioned generator"):
        Struc2MapTask(generator={"preset": "small", "channels": [2, 4]}, output_resolution=3.2, **networks)
    task = Struc2MapTask(generator={"preset": "small", "channels": [2, 4], "resolution_conditioning": True},
                         output_resolution=3.2, metadata={"voxel_size": 1.0}, **networks)
    batch = {"input": torch.rand(2, 1, 16, 16, 16), "resolution": torch.tensor([3.0, 10.0])}
    with torch.no_grad():
        raw = task(batch["input"], batch["resolution"])
        assert torch.allclose(task._generate(batch), low_pass_patches(raw, 1.0, 3.2, batch["resolution"]))


class _Blur(torch.nn.Module):
    """A stand-in generator: tiles blurred by a Gaussian of ``sigma`` Å (1 Å voxels)."""

    resolution_conditioned = False

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def forward(self, tiles):
        return torch.stack([gaussian_low_pass(tile[0], 1.0, self.sigma, edge="replicate")[None] for tile in tiles])


def test_measured_output_resolution_reads_the_blur_of_the_output(example_entries):
    """The input (molmap at 2 Å) blurred to 6 Å by the stand-in generator reads about 6 Å on the
    shared pairs' grids (the estimate's own spread on filtered real maps is ±1.6 Å)."""
    from cryomaps.models.weights import LoadedNetwork
    from cryomaps.workflows.generation import measured_output_resolution

    metadata = {"input": {"model": "molmap", "resolution": 2.0, "sampling": "point"}, "voxel_size": 1.0}
    pairs = [entry for entry in example_entries if entry.emdb_id in ("EMD-3488", "EMD-2566")]
    loaded = LoadedNetwork(_Blur(degradation_sigma(2.0, 6.0)), {}, metadata)
    assert abs(measured_output_resolution(loaded, pairs) - 6.0) < 1.0
    sharp = LoadedNetwork(_Blur(0.0), {}, metadata)
    assert measured_output_resolution(sharp, pairs) < 4.0


def test_a_coarser_resolution_gives_a_map_that_falls_off_earlier(small_model, bundled_generator):
    """``generate --resolution R`` with the bundled generator: the Fourier falloff of the map against the
    model (the FSC-free estimate) reads about R and grows with R. (The FSC against the unfiltered output
    cannot show it: a filter scales whole shells, and a shell's correlation ignores its scale.)"""
    from cryomaps.inference.generate import TilingOptions, estimated_resolution
    from cryomaps.workflows.generation import generate_at_resolution

    structure = read_structure(small_model, remove_waters=True, remove_hydrogens=True)
    tiling = TilingOptions(tile_size=32, overlap=16)
    resolutions = (6.0, 9.0, 12.0)
    read = [estimated_resolution(generate_at_resolution(structure, bundled_generator, r, tiling=tiling), structure)
            for r in resolutions]
    assert read[0] < read[1] < read[2], read
    assert np.all(np.abs(np.array(read) - resolutions) < 1.6), read


@pytest.mark.slow
def test_the_bundled_output_resolution_is_the_one_its_recipe_measures(example_entries, bundled_generator):
    """The recipe (scripts/train_bundled_generator.py) stores the median estimate on the training
    pairs, rounded to 0.1 Å; measured again here."""
    from cryomaps.data.manifest import filter_split
    from cryomaps.workflows.generation import measured_output_resolution

    measured = measured_output_resolution(bundled_generator, filter_split(example_entries, "train"))
    assert round(measured, 1) == bundled_generator.metadata["output_resolution"] == 4.3


def test_generate_like_a_coarse_map_gives_a_map_at_its_estimated_resolution(tmp_path, shared_pairs, bundled_generator, capsys):
    """The bundled generator with ``--like`` a map filtered to 8 Å and no ``--resolution``: the estimate
    is printed, in the estimate's spread at 8 Å on the shared maps (6.6–9.9 Å, README), and the map
    written is the generator's map at that estimate."""
    from cryomaps.cli import main as cli_main
    from cryomaps.inference.generate import TilingOptions, estimated_resolution
    from cryomaps.io import read_map, write_map
    from cryomaps.signal import filtered_map
    from cryomaps.workflows.generation import generate_at_resolution

    row = next(row for row in shared_pairs if row["name"] == "EMD-21457_spike_NTD_segment")
    coarse = write_map(tmp_path / "coarse.mrc", filtered_map(read_map(row["map_path"]), 3.2, 8.0))
    output = tmp_path / "generated.mrc"
    assert cli_main(["generate", str(row["model_path"]), "-o", str(output), "--like", str(coarse)]) == 0
    structure = read_structure(row["model_path"], remove_waters=True, remove_hydrogens=True)
    like = read_map(coarse)
    estimate = estimated_resolution(like, structure)
    assert f"assumed resolution {estimate:.1f} Å (estimated from the --like map" in capsys.readouterr().out
    assert 6.5 < estimate < 10.0
    expected = generate_at_resolution(structure, bundled_generator, estimate, like=like, tiling=TilingOptions())
    np.testing.assert_allclose(read_map(output).data, expected.data, atol=1e-6)


def test_a_bad_output_resolution_in_the_weights_is_one_line_naming_it(tmp_path, small_model, capsys):
    from cryomaps.cli import main as cli_main
    from cryomaps.io.weights import read_stored_network, write_weights_file
    from cryomaps.io.weights import bundled_weights_path

    stored = read_stored_network(bundled_weights_path("generator"), "generator")
    weights = write_weights_file(tmp_path / "bad.pt", "generator", stored.state_dict, stored.hyperparameters,
                                 {**stored.metadata, "output_resolution": "4.3 A"})
    output = tmp_path / "out.mrc"
    status = cli_main(["generate", str(small_model), "-o", str(output), "--ckpt", str(weights), "--resolution", "8"])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(error) == 1 and not output.exists()
    assert error[0].endswith(f"{weights}: generator weights metadata output_resolution must be a positive number of Å, got '4.3 A'")
