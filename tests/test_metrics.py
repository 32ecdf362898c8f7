"""cryomaps.metrics: each metric against an independent computation on small hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from cryomaps.io import DensityMap, Grid, read_map
from cryomaps.metrics import (
    align_to_reference,
    atom_mask,
    chimerax_correlation,
    contour_level_enclosing,
    evaluate_maps,
    fourier_shell_correlation,
    local_resolution_rmse,
    map_model_fsc,
    mask_iou,
    masked_correlation,
    soft_atom_mask,
    struc2mapgan_pearson,
    struc2mapgan_preprocess,
    struc2mapgan_ssim,
)
from cryomaps.metrics.figures import (
    save_local_resolution_slices,
    central_slices_image,
    save_central_slices,
    save_fsc_curves,
    save_metric_boxplots,
)


def blob_map(shape=(14, 12, 16), seed=0, background_zero=True) -> np.ndarray:
    """Smooth positive blobs plus noise, with a zero background like a masked experimental map."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    values = np.zeros(shape)
    for centre in rng.uniform(3, np.array(shape) - 3, size=(5, 3)):
        values += np.exp(-np.sum((grid - centre) ** 2, axis=-1) / 6.0)
    values += 0.05 * rng.standard_normal(shape)
    if background_zero:
        values[values < 0.1] = 0.0
    return values.astype(np.float32).astype(np.float64)


def pearson64(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


# --- struc2mapGAN preprocessing, SSIM and Pearson -------------------------------------------


def test_preprocessing_matches_a_hand_computation():
    values = np.zeros((3, 3, 3))
    values.flat[:12] = [-2.0, 1.0, 5.0, 3.0, 7.0, 9.0, 4.0, 8.0, 6.0, 2.0, 10.0, 0.5]
    # 90th percentile of the 12 non-zero values, linear interpolation between order statistics.
    ordered = np.sort(values[values != 0])
    rank = 0.9 * (len(ordered) - 1)  # 9.9 -> between ordered[9] = 8 and ordered[10] = 9
    threshold = ordered[9] + (rank - 9) * (ordered[10] - ordered[9])
    assert threshold == pytest.approx(8.9)
    expected = np.where(values < threshold, 0.0, values)  # keeps 9 and 10
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    result = struc2mapgan_preprocess(values)
    np.testing.assert_allclose(result, expected, atol=1e-12)
    assert sorted(result[result > 0].tolist()) == pytest.approx([0.9, 1.0])


def test_preprocessing_of_an_empty_map_is_zero():
    assert not struc2mapgan_preprocess(np.zeros((4, 4, 4))).any()


def test_ssim_equals_a_direct_skimage_call_on_the_preprocessed_maps():
    pred, ref = blob_map(seed=1), blob_map(seed=2)
    expected = structural_similarity(
        struc2mapgan_preprocess(pred), struc2mapgan_preprocess(ref), win_size=7, data_range=1.0
    )
    assert struc2mapgan_ssim(pred, ref) == pytest.approx(expected, abs=1e-12)
    assert struc2mapgan_ssim(ref, ref) == pytest.approx(1.0)


def test_pearson_equals_a_float64_formula_on_the_preprocessed_maps():
    pred, ref = blob_map(seed=3), blob_map(seed=4)
    expected = pearson64(struc2mapgan_preprocess(pred), struc2mapgan_preprocess(ref))
    assert struc2mapgan_pearson(pred, ref) == pytest.approx(expected, abs=1e-12)


# --- ChimeraX correlations -------------------------------------------------------------------


def test_contour_level_leaves_exactly_one_percent_of_voxels_above():
    values = np.random.default_rng(5).permutation(2000).reshape(10, 10, 20).astype(np.float64)
    level = contour_level_enclosing(values)
    assert np.count_nonzero(values > level) == 20
    assert level == 1979.0


def test_chimerax_correlations_equal_the_formulas_on_one_grid():
    ref, other = blob_map(seed=6, background_zero=False), blob_map(seed=7, background_zero=False)
    level = np.sort(ref.ravel())[::-1][round(0.01 * ref.size)]  # (k+1)-th largest
    above = ref > level
    a, b = ref[above], other[above]
    result = chimerax_correlation(ref, other)
    assert result.n_points == round(0.01 * ref.size)
    assert result.about_zero == pytest.approx(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)), abs=1e-12)
    assert result.about_mean == pytest.approx(pearson64(a, b), abs=1e-12)


def ramp(points: np.ndarray) -> np.ndarray:
    """A linear function of world position (Å); trilinear interpolation reproduces it exactly."""
    return 0.5 * points[:, 0] - 0.25 * points[:, 1] + 0.125 * points[:, 2] + 3.0


def ramp_map(grid: Grid) -> DensityMap:
    return DensityMap.from_grid(ramp(grid.voxel_centres()).reshape(grid.shape), grid)


def test_other_map_is_interpolated_at_reference_positions_on_a_shifted_grid():
    ref_grid = Grid((10, 9, 8), 1.0, (2.0, 3.0, 4.0))
    other_grid = Grid((14, 13, 12), 1.0, (0.5, 1.5, 2.5))  # shifted by half a voxel, larger box
    ref = DensityMap.from_grid(blob_map((10, 9, 8), seed=8, background_zero=False), ref_grid)
    other = ramp_map(other_grid)
    aligned = align_to_reference(other, ref)
    np.testing.assert_allclose(aligned.data.ravel(), ramp(ref_grid.voxel_centres()), rtol=1e-6)

    result = chimerax_correlation(ref, other)
    above = np.argwhere(ref.data > result.contour_level)
    a = ref.data[tuple(above.T)].astype(np.float64)
    b = ramp(ref_grid.index_to_world(above))
    assert result.about_zero == pytest.approx(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)), rel=1e-6)
    assert result.about_mean == pytest.approx(pearson64(a, b), rel=1e-5)


def test_arrays_without_geometry_must_share_a_shape():
    with pytest.raises(Exception, match="cannot be compared"):
        align_to_reference(np.zeros((4, 4, 4)), np.zeros((5, 4, 4)))


# --- masks, masked correlation, RMSE, IoU ----------------------------------------------------


def test_atom_mask_matches_brute_force_distances_with_anisotropic_voxels():
    grid = Grid((12, 10, 9), (0.8, 1.1, 1.3), (-2.0, 1.0, 0.5))
    coords = np.random.default_rng(9).uniform(-4, 14, size=(40, 3))  # some atoms outside the box
    centres = grid.voxel_centres()
    distances = np.linalg.norm(centres[:, None, :] - coords[None, :, :], axis=2).min(axis=1)
    expected = (distances <= 3.0).reshape(grid.shape)
    np.testing.assert_array_equal(atom_mask(coords, grid, radius=3.0), expected)


def test_soft_mask_is_one_inside_and_falls_to_zero_over_the_edge():
    grid = Grid((30, 30, 30), 1.0, (0.0, 0.0, 0.0))
    soft = soft_atom_mask(np.array([[15.0, 15.0, 15.0]]), grid, radius=3.0, edge_width=4.0)
    assert soft[15, 15, 15] == 1.0 and soft[18, 15, 15] == 1.0
    assert 0.0 < soft[20, 15, 15] < 1.0
    assert soft[22, 15, 15] == 0.0 and soft[0, 0, 0] == 0.0


def test_masked_correlation_uses_only_voxels_near_atoms():
    grid = Grid((16, 16, 16), 1.0, (0.0, 0.0, 0.0))
    ref, pred = blob_map((16, 16, 16), seed=10), blob_map((16, 16, 16), seed=11)
    coords = np.array([[5.0, 6.0, 7.0], [10.0, 9.5, 8.0]])
    inside = atom_mask(coords, grid, 3.0)
    expected = pearson64(pred[inside], ref[inside])
    assert masked_correlation(pred, DensityMap.from_grid(ref, grid), coords) == pytest.approx(expected, rel=1e-6)


def test_local_resolution_rmse_on_a_hand_made_map():
    ref = np.full((2, 2, 2), 3.0)
    pred = ref.copy()
    pred[0, 0, 0], pred[1, 1, 1] = 5.0, 2.0
    assert local_resolution_rmse(pred, ref) == pytest.approx(np.sqrt((4.0 + 1.0) / 8))
    mask = np.zeros((2, 2, 2), dtype=bool)
    mask[0, 0, 0] = mask[0, 1, 0] = True
    assert local_resolution_rmse(pred, ref, mask) == pytest.approx(np.sqrt(4.0 / 2))


def test_mask_iou_on_hand_made_masks():
    first = np.zeros((4, 4, 4), dtype=bool)
    second = np.zeros((4, 4, 4), dtype=bool)
    first[:2], second[1:3] = True, True  # 32 voxels each, 16 shared
    assert mask_iou(first, second) == pytest.approx(16 / 48)
    assert mask_iou(first.astype(float) * 0.9, first) == 1.0
    assert mask_iou(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))) == 1.0


# --- FSC ---------------------------------------------------------------------------------------


def test_fsc_of_a_map_with_itself_is_one_and_with_independent_noise_near_zero():
    rng = np.random.default_rng(12)
    noise = rng.standard_normal((32, 30, 28))
    curve = fourier_shell_correlation(noise, noise)
    np.testing.assert_allclose(curve.correlations, 1.0, atol=1e-12)
    independent = fourier_shell_correlation(noise, rng.standard_normal((32, 30, 28)))
    upper_half = independent.correlations[len(independent.correlations) // 2 :]
    assert abs(upper_half.mean()) < 0.05
    assert curve.frequencies[-1] <= 0.5 + 1e-12


def fourier_filter(values: np.ndarray, voxel_size, transfer) -> np.ndarray:
    """Multiply the full FFT of ``values`` by ``transfer(|s|)`` with |s| in 1/Å (independent of rfft)."""
    axes = [np.fft.fftfreq(n, h) for n, h in zip(values.shape, voxel_size)]
    sx, sy, sz = np.meshgrid(*axes, indexing="ij")
    return np.real(np.fft.ifftn(np.fft.fftn(values) * transfer(np.sqrt(sx**2 + sy**2 + sz**2))))


def test_fsc_crossings_of_a_hard_cutoff_fall_at_the_cutoff_with_anisotropic_voxels():
    voxel_size = (1.0, 1.25, 0.8)
    noise = np.random.default_rng(13).standard_normal((40, 36, 44))
    cutoff = 0.2  # 1/Å, i.e. 5 Å
    filtered = fourier_filter(noise, voxel_size, lambda s: (s <= cutoff).astype(float))
    curve = fourier_shell_correlation(filtered, noise, voxel_size)
    shell_width = curve.frequencies[0]
    for threshold in (0.5, 0.143):
        resolution = curve.resolution_at(threshold)
        assert 1 / (cutoff + shell_width) <= resolution <= 1 / (cutoff - shell_width)


def test_fsc_crossings_of_gaussian_filtered_signal_plus_noise_match_the_expected_curve():
    # X, Y = G*S + independent noise, |S| = a |noise|: FSC(s) = a²G(s)² / (a²G(s)² + 1).
    rng = np.random.default_rng(14)
    amplitude, width = 10.0, 0.12
    signal = fourier_filter(rng.standard_normal((48, 48, 48)), (1, 1, 1), lambda s: np.exp(-(s**2) / (2 * width**2)))
    first = amplitude * signal + rng.standard_normal(signal.shape)
    second = amplitude * signal + rng.standard_normal(signal.shape)
    curve = fourier_shell_correlation(first, second)
    for threshold in (0.5, 0.143):
        transfer = np.sqrt(threshold / (1 - threshold)) / amplitude
        expected_frequency = width * np.sqrt(-2 * np.log(transfer))
        assert curve.resolution_at(threshold) == pytest.approx(1 / expected_frequency, rel=0.05)


def test_map_model_fsc_with_a_soft_mask_of_identical_maps_is_one():
    grid = Grid((20, 20, 20), 1.0, (0.0, 0.0, 0.0))
    values = DensityMap.from_grid(blob_map((20, 20, 20), seed=15), grid)
    mask = soft_atom_mask(np.array([[10.0, 10.0, 10.0]]), grid, radius=4.0)
    curve = map_model_fsc(values, values, mask)
    np.testing.assert_allclose(curve.correlations, 1.0, atol=1e-9)


# --- evaluate_maps and figures ----------------------------------------------------------------


def test_evaluate_maps_returns_plain_keys_and_matches_the_single_metrics():
    grid = Grid((16, 14, 12), 1.0, (0.0, 0.0, 0.0))
    ref = DensityMap.from_grid(blob_map((16, 14, 12), seed=16), grid)
    pred = DensityMap.from_grid(blob_map((16, 14, 12), seed=17), grid)
    coords = np.array([[6.0, 7.0, 5.0]])
    scores = evaluate_maps(pred, ref, model_coords=coords, model_map=ref)
    assert list(scores) == [
        "ssim", "pearson", "corr_about_zero", "corr_about_mean", "masked_corr", "fsc_0.5_A", "fsc_0.143_A",
        "map_model_fsc_0.5_A", "map_model_fsc_0.143_A", "ref_map_model_fsc_0.5_A", "ref_map_model_fsc_0.143_A",
    ]  # fmt: skip
    assert all(isinstance(value, float) for value in scores.values())
    assert scores["ssim"] == pytest.approx(struc2mapgan_ssim(pred, ref))
    assert evaluate_maps(torch.from_numpy(pred.data), ref)["ssim"] == pytest.approx(scores["ssim"])
    assert scores["ref_map_model_fsc_0.143_A"] == pytest.approx(2.0)  # ref vs itself: Nyquist


def test_figures_write_pngs_and_return_an_rgb_panel(tmp_path):
    ref = blob_map((16, 14, 12), seed=18)
    others = {"pred": blob_map((16, 14, 12), seed=19), "baseline": blob_map((16, 14, 12), seed=20)}
    image = central_slices_image(ref, others, dpi=40)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[:2] == (264, 264)  # 3 rows (maps) x 3 columns (axes) of 2.2-inch panels at 40 dpi
    assert central_slices_image(ref, {"pred": others["pred"]}, dpi=40).shape == (176, 264, 3)
    rows = [{"method": m, "ssim": v, "pearson": v / 2} for m, v in [("a", 0.8), ("a", 0.9), ("b", float("nan"))]]
    curve = fourier_shell_correlation(ref, others["pred"])
    written = [
        save_central_slices(tmp_path / "slices.png", ref, others, dpi=40),
        save_metric_boxplots(tmp_path / "box.png", rows, ["ssim", "pearson"], dpi=40),
        save_fsc_curves(tmp_path / "fsc.png", {"pred": curve}, dpi=40),
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box.png", "fsc.png", "slices.png"]


def test_local_resolution_slices_share_one_colour_scale_and_blank_the_background(tmp_path):
    from matplotlib.image import imread

    density = blob_map((24, 24, 24), seed=21)
    locres = np.full((24, 24, 24), 100.0)
    locres[4:12, 4:20, 4:20], locres[12:20, 4:20, 4:20] = 3.0, 6.0  # two regions, background outside
    path = save_local_resolution_slices(tmp_path / "locres.png", density, {"truth": locres, "copy": locres}, dpi=40)
    image = (imread(path)[..., :3] * 255).round()
    assert image.shape[0] == 3 * 88  # map row + two local-resolution rows of 2.2-inch panels at 40 dpi
    viridis_low, viridis_high = np.array([68, 1, 84]), np.array([253, 231, 37])
    for colour in (viridis_low, viridis_high):  # 3 Å and 6 Å at the ends of the shared scale
        assert (np.abs(image - colour).max(axis=-1) <= 3).sum() > 200
    assert (image == 255).all(axis=-1).mean() > 0.3  # background and margins left white


# --- real data -----------------------------------------------------------------------------------


def test_real_map_against_itself_and_a_shifted_copy(shared_pairs):
    row = next(r for r in shared_pairs if r["name"] == "EMD-21457_spike_NTD_segment")
    ref = read_map(row["map_path"])
    same = evaluate_maps(ref, ref)
    assert same["ssim"] == pytest.approx(1.0)
    assert same["pearson"] == pytest.approx(1.0)
    assert same["corr_about_mean"] == pytest.approx(1.0)
    shifted = DensityMap(np.roll(ref.data, shift=(3, -2, 2), axis=(0, 1, 2)), ref.voxel_size, ref.origin)
    moved = evaluate_maps(shifted, ref)
    for key in ("ssim", "pearson", "corr_about_zero", "corr_about_mean"):
        assert moved[key] < same[key] - 0.05, key
