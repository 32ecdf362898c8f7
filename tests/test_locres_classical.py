"""Classical local resolution by windowed FSC (cryomaps.signal.local_fsc) and its command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryomaps.cli import main
from cryomaps.data.synthetic import helix_bundle, synthesize_half_maps, two_region_resolution, write_synthetic
from cryomaps.errors import InputError
from cryomaps.signal.local_fsc import (
    BACKGROUND_RESOLUTION,
    active_step_points,
    frequency_shells,
    interpolate_step_values,
    local_resolution,
    step_grid,
    window_fsc,
    window_geometry,
)
from cryomaps.io import DensityMap, read_map, write_map


@pytest.fixture(scope="module")
def two_region_pair():
    """8 x 3 helix bundle at 1 Å (89 x 39 x 61 voxels): x below the median 3 Å, above 6 Å."""
    bundle = helix_bundle(n_x=8, n_y=3, n_residues=30)
    return synthesize_half_maps(bundle, two_region_resolution(bundle.coords, 3.0, 6.0), voxel_size=1.0, seed=0)


def noise_map(shape, seed, voxel=(1.0, 1.0, 1.0)):
    data = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return DensityMap(data, voxel, (0.0, 0.0, 0.0))


def test_two_regions_recovered_within_15_percent(two_region_pair):
    pair = two_region_pair
    estimate = local_resolution(pair.half1, pair.half2, pair.mask.data)
    mask = pair.mask.data > 0.5
    for truth in (3.0, 6.0):
        region = mask & np.isclose(pair.true_locres.data, truth, rtol=1e-3)
        median = float(np.median(estimate.data[region]))
        assert abs(median - truth) <= 0.15 * truth, f"region {truth} Å: median estimate {median:.2f} Å"
    assert np.all(estimate.data[~mask] == BACKGROUND_RESOLUTION)


def test_identical_halves_give_the_finest_resolution():
    half = noise_map((30, 28, 26), seed=1, voxel=(1.2, 1.2, 1.2))
    estimate = local_resolution(half, DensityMap(half.data.copy(), half.voxel_size, half.origin), step=6.0)
    np.testing.assert_allclose(estimate.data, 2.4, rtol=1e-5)


def test_independent_noise_gives_the_coarsest_resolution():
    estimate = local_resolution(noise_map((48, 44, 40), 2), noise_map((48, 44, 40), 3), window=25.0)
    assert np.median(estimate.data) >= 0.9 * 25.0
    assert estimate.data.max() <= 25.0 + 1e-4


def test_output_has_the_half_map_geometry_with_anisotropic_voxels():
    voxel = (1.0, 1.25, 1.1)
    half1, half2 = noise_map((25, 20, 22), 4, voxel), noise_map((25, 20, 22), 5, voxel)
    half1.origin = half2.origin = np.array([3.0, -2.0, 10.5])
    estimate = local_resolution(half1, half2, window=15.0, step=4.0, shape="cube")
    assert estimate.data.shape == (25, 20, 22)
    np.testing.assert_allclose(estimate.voxel_size, half1.voxel_size)
    np.testing.assert_allclose(estimate.origin, half1.origin)
    assert np.all((estimate.data >= 2.5 - 1e-5) & (estimate.data <= 15.0 + 1e-4))


def test_window_geometry():
    sphere = window_geometry((1.0, 1.5, 2.0), window=20.0, soft_edge=4.0)
    assert sphere.box == (25, 18, 15)  # FFT-friendly sizes >= (25, 17, 13): radius 12 Å either side
    weights = sphere.weights
    assert weights[sphere.centre] == 1.0 and weights.min() == 0.0 and weights.max() == 1.0
    cx, cy, cz = sphere.centre
    assert weights[cx + 10, cy, cz] == pytest.approx(0.5)  # half weight at window / 2
    cube = window_geometry((1.0, 1.0, 1.0), window=10.0, soft_edge=2.0, shape="cube")
    cx, cy, cz = cube.centre
    assert cube.weights[cx + 4, cy + 4, cz + 4] == pytest.approx(1.0)  # corner of a cube, outside the sphere
    with pytest.raises(InputError):
        window_geometry((1.0, 1.0, 1.0), shape="ellipse")


def test_shells_place_a_plane_wave_at_its_frequency():
    geometry = window_geometry((1.0, 1.0, 1.0), window=20.0, soft_edge=4.0)
    shells = frequency_shells(geometry.box, (1.0, 1.0, 1.0))
    x = torch.arange(geometry.box[0], dtype=torch.float32)[:, None, None].expand(geometry.box)
    wave = torch.cos(2 * np.pi * x / 4.0)[None]  # period 4 Å
    noise = torch.randn((2, 1) + geometry.box, generator=torch.Generator().manual_seed(0))
    fsc = window_fsc(wave + noise[0], wave + noise[1], geometry.weights, shells)[0]
    peak_shell = int(np.argmin(np.abs(shells.frequency - 0.25)))
    assert int(torch.argmax(fsc[1:])) + 1 == peak_shell
    assert fsc[peak_shell] > 0.8


def reference_fsc(window1: np.ndarray, window2: np.ndarray, weights: np.ndarray, voxel, n_shells: int) -> np.ndarray:
    """Float64 FSC per shell from the full complex spectrum, shells binned one by one (the oracle)."""
    spectra = []
    for window in (window1, window2):
        weighted = window * weights
        spectra.append(np.fft.fftn(weighted - weighted.sum() / weights.sum() * weights))
    axes = [np.fft.fftfreq(n, d=h) for n, h in zip(weights.shape, voxel)]
    radius = np.sqrt(sum(f**2 for f in np.meshgrid(*axes, indexing="ij")))
    spacing = max(1.0 / (n * h) for n, h in zip(weights.shape, voxel))
    shell = np.rint(radius / spacing)
    fsc = np.zeros(n_shells)
    for k in range(n_shells):
        a, b = spectra[0][shell == k], spectra[1][shell == k]
        fsc[k] = np.real(np.sum(a * np.conj(b))) / np.sqrt(np.sum(np.abs(a) ** 2) * np.sum(np.abs(b) ** 2))
    return fsc


@pytest.mark.parametrize("voxel", [(1.0, 1.0, 1.0), (1.0, 1.3, 1.6)])
def test_window_fsc_matches_a_float64_full_spectrum_reference(voxel):
    geometry = window_geometry(voxel, window=12.0, soft_edge=3.0)
    shells = frequency_shells(geometry.box, voxel)
    generator = torch.Generator().manual_seed(3)
    signal = torch.randn((3,) + geometry.box, generator=generator)
    windows1 = signal + 0.7 * torch.randn((3,) + geometry.box, generator=generator) + 5.0  # offset: mean removal
    windows2 = signal + 0.7 * torch.randn((3,) + geometry.box, generator=generator)
    fsc = window_fsc(windows1, windows2, geometry.weights, shells).numpy()
    for index in range(3):
        expected = reference_fsc(windows1[index].double().numpy(), windows2[index].double().numpy(),
                                 geometry.weights.double().numpy(), voxel, shells.n_shells)
        np.testing.assert_allclose(fsc[index, 1:], expected[1:], atol=2e-5)


def test_active_step_points_are_those_within_one_step_of_the_mask():
    rng = np.random.default_rng(4)
    mask = torch.from_numpy(rng.random((23, 17, 12)) > 0.995)
    steps = step_grid(mask.shape, (1.0, 1.0, 1.0), step=3.0)
    points = {tuple(p) for p in active_step_points(mask, steps).tolist()}
    voxels = np.argwhere(mask.numpy())
    expected = set()
    for k in np.ndindex(*steps.counts):
        centre = np.array(k) * np.array(steps.step)
        if np.any(np.all(np.abs(voxels - centre) <= np.array(steps.step) - 1, axis=1)):
            expected.add(k)
    assert len(expected) > 0 and points == expected


def test_step_interpolation_is_exact_for_linear_fields():
    steps = step_grid((23, 17, 9), (1.0, 1.0, 1.0), step=4.0)
    assert steps.step == (4, 4, 4) and steps.counts == (7, 5, 3)  # last point at or past the last voxel
    k = [torch.arange(c, dtype=torch.float32) * s for c, s in zip(steps.counts, steps.step)]
    coarse = k[0][:, None, None] + 2 * k[1][None, :, None] - k[2][None, None, :]
    full = interpolate_step_values(coarse, (23, 17, 9), steps)
    i = [torch.arange(n, dtype=torch.float32) for n in (23, 17, 9)]
    np.testing.assert_allclose(full, i[0][:, None, None] + 2 * i[1][None, :, None] - i[2][None, None, :], atol=1e-4)


def test_mask_limits_estimates_and_bad_inputs_raise():
    half1, half2 = noise_map((30, 30, 30), 6), noise_map((30, 30, 30), 7)
    mask = np.zeros((30, 30, 30), dtype=np.float32)
    mask[10:20, 10:20, 10:20] = 1.0
    estimate = local_resolution(half1, half2, mask, window=15.0, background=float("nan"))
    assert np.all(np.isfinite(estimate.data[mask > 0.5])) and np.all(np.isnan(estimate.data[mask == 0]))
    with pytest.raises(InputError, match="different grids"):
        local_resolution(half1, noise_map((30, 30, 31), 8))
    with pytest.raises(InputError, match="mask shape"):
        local_resolution(half1, half2, np.ones((30, 30, 29)))
    with pytest.raises(InputError, match="empty"):
        local_resolution(half1, half2, np.zeros((30, 30, 30)))


def test_command_end_to_end(tmp_path, capsys):
    bundle = helix_bundle(n_x=3, n_y=2, n_residues=14)
    pair = synthesize_half_maps(bundle, two_region_resolution(bundle.coords), voxel_size=1.2, seed=7)
    paths = write_synthetic(pair, tmp_path, prefix="pair")
    output = tmp_path / "locres.mrc"
    status = main(["locres", "--half1", str(paths["half1"]), "--half2", str(paths["half2"]),
                   "--mask", str(paths["mask"]), "-o", str(output), "--window", "20", "--device", "cpu",
                   "--png", str(tmp_path / "locres.png")])
    assert status == 0
    line, slices = capsys.readouterr().out.strip().splitlines()
    assert slices == f"slices: {tmp_path / 'locres.png'}"
    assert (tmp_path / "locres.png").read_bytes()[:4] == b"\x89PNG"
    assert "median" in line and "inside the mask" in line and line.endswith("s)")
    result = read_map(output)
    assert result.data.shape == pair.grid.shape
    np.testing.assert_allclose(result.origin, pair.grid.origin)
    assert np.all(result.data[pair.mask.data < 0.5] == BACKGROUND_RESOLUTION)

    assert main(["locres", str(paths["full"]), "--mask", str(paths["mask"]), "-o", str(tmp_path / "single.mrc")]) == 2
    assert "half-map mode" in capsys.readouterr().err
    shifted = DensityMap(pair.half2.data, pair.grid.voxel_size, pair.grid.origin + 1.0)
    write_map(tmp_path / "shifted.mrc", shifted)
    assert main(["locres", "--half1", str(paths["half1"]), "--half2", str(tmp_path / "shifted.mrc"),
                 "-o", str(tmp_path / "bad.mrc")]) == 2
    assert "different grids" in capsys.readouterr().err
