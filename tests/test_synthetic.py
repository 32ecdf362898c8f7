"""Synthetic half maps with known local resolution (cryomaps.data.synthetic)."""

from __future__ import annotations

import numpy as np
import pytest

from cryomaps.data.synthetic import (
    B_FACTOR_TABLE,
    expected_fsc_table,
    helix_bundle,
    radial_resolution,
    synthesize_half_maps,
    two_region_resolution,
    write_synthetic,
)
from cryomaps.io import read_map


@pytest.fixture(scope="module")
def small_bundle():
    return helix_bundle(n_x=3, n_y=2, n_residues=14)


@pytest.fixture(scope="module")
def small_pair(small_bundle):
    return synthesize_half_maps(small_bundle, two_region_resolution(small_bundle.coords), voxel_size=1.2, seed=7)


def test_helix_bundle_is_a_lattice_of_helices_along_z():
    bundle = helix_bundle(n_x=2, n_y=3, n_residues=20, spacing=10.0)
    assert bundle.n_atoms == 2 * 3 * 20 * 5
    extent = bundle.coords.max(axis=0) - bundle.coords.min(axis=0)
    assert 25.0 < extent[2] < 35.0  # 20 residues x 1.5 Å rise
    assert 10.0 < extent[0] < 20.0 and 20.0 < extent[1] < 30.0
    assert set(bundle.elements) == {"N", "C", "O"}


def test_region_and_radial_targets():
    coords = np.random.default_rng(0).normal(size=(101, 3)) * 10
    regions = two_region_resolution(coords, fine=3.0, coarse=6.0, axis=1)
    below = coords[:, 1] < np.median(coords[:, 1])
    assert np.all(regions[below] == 3.0) and np.all(regions[~below] == 6.0)
    radial = radial_resolution(coords, 2.5, 7.0)
    assert radial.min() >= 2.5 and np.isclose(radial.max(), 7.0)


def test_same_seed_gives_identical_maps_and_new_seed_new_noise(small_bundle, small_pair):
    again = synthesize_half_maps(small_bundle, two_region_resolution(small_bundle.coords), voxel_size=1.2, seed=7)
    other = synthesize_half_maps(small_bundle, two_region_resolution(small_bundle.coords), voxel_size=1.2, seed=8)
    for name in ("half1", "half2", "full", "true_locres", "mask"):
        np.testing.assert_array_equal(getattr(again, name).data, getattr(small_pair, name).data)
    assert not np.array_equal(other.half1.data, small_pair.half1.data)
    np.testing.assert_array_equal(other.true_locres.data, small_pair.true_locres.data)
    np.testing.assert_allclose(small_pair.full.data, 0.5 * (small_pair.half1.data + small_pair.half2.data), atol=1e-6)


def test_recorded_truth_matches_the_regions(small_bundle, small_pair):
    assert small_pair.metadata["n_atoms_off_target"] == 0
    np.testing.assert_allclose(small_pair.atom_resolution, small_pair.atom_target_resolution, rtol=1e-3)
    mask = small_pair.mask.data > 0.5
    truth = small_pair.true_locres.data
    assert np.all(truth[~mask] == 100.0)
    assert set(np.unique(np.round(truth[mask], 3))) == {3.0, 6.0}
    x = small_pair.grid.axis_coordinates(0)[:, None, None] + np.zeros(small_pair.grid.shape)
    split = np.median(small_bundle.coords[:, 0])
    assert np.all(truth[mask & (x < split - 3)] == pytest.approx(3.0, rel=1e-3))
    assert np.all(truth[mask & (x > split + 3)] == pytest.approx(6.0, rel=1e-3))


def test_coarser_targets_get_larger_b_factors(small_pair):
    fine = small_pair.atom_b_factors[small_pair.atom_target_resolution == 3.0]
    coarse = small_pair.atom_b_factors[small_pair.atom_target_resolution == 6.0]
    assert fine.min() >= 0 and coarse.min() > fine.max()


def test_expected_resolution_grows_with_b_factor_and_noise():
    table = expected_fsc_table((1.0, 1.0, 1.0), 25.0, 6.0, "sphere", 0.143)
    quiet = table.resolution(np.array([0.05]), 1e-4)[0]
    noisy = table.resolution(np.array([0.05]), 1e-2)[0]
    assert np.all(np.diff(quiet) >= -1e-6)
    assert np.all(noisy >= quiet - 1e-6) and noisy[len(B_FACTOR_TABLE) // 2] > quiet[len(B_FACTOR_TABLE) // 2]
    assert quiet[0] == pytest.approx(2.0) and 8.0 < quiet[-1] <= 25.0  # Nyquist .. window (leakage-limited)


def test_write_synthetic_round_trips(tmp_path, small_pair):
    paths = write_synthetic(small_pair, tmp_path, prefix="pair")
    assert sorted(paths) == ["full", "half1", "half2", "mask", "metadata", "true_locres"]
    half1 = read_map(paths["half1"])
    np.testing.assert_array_equal(half1.data, small_pair.half1.data)
    np.testing.assert_allclose(half1.origin, small_pair.grid.origin)
    assert '"noise_sd"' in paths["metadata"].read_text()
