"""Fourier shells, the FSC crossing rule and the raised cosine (cryomaps.signal), against independent oracles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from cryomaps.metrics.fsc import FSCCurve
from cryomaps.signal.fourier_shells import (
    crossing_resolution,
    fourier_shells,
    nyquist_fraction_shell_index,
    shell_correlation,
    shell_matrix,
    shell_sums,
)
from cryomaps.signal.windows import cosine_ramp, raised_cosine


def signed_frequency(index: int, n: int, voxel: float) -> float:
    """The DFT frequency (1/Å) of sample ``index`` of ``n`` spaced ``voxel`` Å, written out by hand."""
    return (index if index <= (n - 1) // 2 else index - n) / (n * voxel)


def brute_force_shells(shape, voxel):
    """Shell (nearest multiple of the width, or n_shells beyond the last) of every rfftn voxel, and the
    number of coefficients per shell over the whole (not half) spectrum, by loops in float64."""
    width = max(1.0 / (n * h) for n, h in zip(shape, voxel))
    last = 0
    while (last + 1) * width <= min(0.5 / h for h in voxel) + 1e-12:
        last += 1
    n_shells = last + 1

    def shell_of(i, j, k):
        radius = math.sqrt(sum(signed_frequency(m, n, h) ** 2 for m, n, h in zip((i, j, k), shape, voxel)))
        return min(int(math.floor(radius / width + 0.5)), n_shells)

    half = np.empty((shape[0], shape[1], shape[2] // 2 + 1), dtype=np.int64)
    for i, j, k in itertools.product(*(range(n) for n in half.shape)):
        half[i, j, k] = shell_of(i, j, k)
    counts = np.zeros(n_shells + 1)
    for i, j, k in itertools.product(*(range(n) for n in shape)):
        counts[shell_of(i, j, k)] += 1
    return half, counts[:n_shells], n_shells


@pytest.mark.parametrize(("shape", "voxel"), [((8, 8, 8), (1.0, 1.0, 1.0)), ((7, 10, 9), (1.0, 1.3, 0.9)), ((9, 6, 10), (0.8, 0.8, 1.1))])
def test_shell_assignment_matches_a_float64_loop_over_voxels(shape, voxel):
    index, counts, n_shells = brute_force_shells(shape, voxel)
    shells = fourier_shells(shape, voxel)
    assert shells.n_shells == n_shells
    np.testing.assert_array_equal(shells.index.numpy(), index)
    np.testing.assert_allclose(shells.frequency, np.arange(n_shells) * max(1 / (n * h) for n, h in zip(shape, voxel)))
    # full-sphere counts: the half spectrum with its Hermitian multiplicity equals the whole spectrum
    np.testing.assert_array_equal(shell_sums(torch.ones(index.shape, dtype=torch.float64), shells).numpy(), counts)
    np.testing.assert_array_equal(shell_matrix(shells).sum(dim=0).numpy(), counts)


def test_spectral_head_bins_are_floors_of_the_nyquist_fraction():
    shape, shells = (6, 9, 8), 5
    index = nyquist_fraction_shell_index(shape, shells).numpy()
    for i, j, k in itertools.product(*(range(n) for n in index.shape)):
        radius = math.sqrt(sum(signed_frequency(m, n, 1.0) ** 2 for m, n in zip((i, j, k), shape)))
        assert index[i, j, k] == math.floor(radius / 0.5 * shells)


def test_fsc_of_a_map_with_itself_is_one():
    volume = torch.from_numpy(np.random.default_rng(0).standard_normal((20, 18, 16)))
    spectrum = torch.fft.rfftn(volume)
    fsc = shell_correlation(spectrum, spectrum, fourier_shells(volume.shape, (1.0, 1.2, 0.9)))
    np.testing.assert_allclose(fsc[1:].numpy(), 1.0, atol=1e-12)


def test_fsc_of_independent_noise_stays_within_its_expected_spread():
    # n real, independent products per shell (the full-sphere count): FSC ~ N(0, 1/n).
    rng = np.random.default_rng(1)
    shape = (40, 36, 32)
    shells = fourier_shells(shape, 1.0)
    counts = shell_sums(torch.ones(shells.index.shape, dtype=torch.float64), shells).numpy()
    spectra = [torch.fft.rfftn(torch.from_numpy(rng.standard_normal(shape))) for _ in range(2)]
    fsc = shell_correlation(*spectra, shells).numpy()
    z_scores = (fsc * np.sqrt(counts))[2:]
    assert np.all(np.abs(z_scores) < 5.0)
    assert 0.7 < np.sqrt(np.mean(z_scores**2)) < 1.3


FREQUENCY = np.array([0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize(
    ("curve", "finest", "coarsest", "expected"),
    [
        ([0.9, 0.5, 0.1, 0.0], None, None, 1 / 0.25),  # halfway between 0.2 and 0.3 (0.5 -> 0.1 across 0.3)
        ([0.9, 0.8, 0.31, 0.30], None, None, 1 / 0.4),  # never below: the last shell
        ([0.9, 0.8, 0.31, 0.30], 2.0, 30.0, 2.0),  # never below: the given finest
        ([0.2, 0.9, 0.1, 0.0], None, None, 1 / 0.1),  # below at the first shell: the first shell
        ([0.2, 0.9, 0.1, 0.0], 2.0, 30.0, 30.0),  # below at the first shell: the given coarsest
        ([0.9, 0.5, 0.1, 0.0], 2.0, 3.0, 3.0),  # the crossing (4 Å) clamped to coarsest
        ([1.0, 1.0, 1.0, 0.3], None, None, 1 / 0.4),  # exactly at the threshold counts as not below
    ],
)
def test_crossing_rule_on_hand_made_curves(curve, finest, coarsest, expected):
    resolution = crossing_resolution(torch.tensor(curve, dtype=torch.float64), FREQUENCY, 0.3, finest, coarsest)
    assert float(resolution) == pytest.approx(expected, rel=1e-12)


def test_crossing_rule_is_applied_per_curve_of_a_batch_and_by_fsc_curves():
    curves = torch.tensor([[0.9, 0.5, 0.1, 0.0], [0.9, 0.8, 0.7, 0.6], [0.1, 0.0, 0.0, 0.0]], dtype=torch.float64)
    batch = crossing_resolution(curves, FREQUENCY, 0.3).numpy()
    np.testing.assert_allclose(batch, [4.0, 2.5, 10.0], rtol=1e-12)
    for row, expected in zip(curves.numpy(), batch):
        assert FSCCurve(FREQUENCY, row, np.ones(4, np.int64)).resolution_at(0.3) == pytest.approx(expected, rel=1e-12)


def test_cosine_ramp_follows_its_formula_and_saturates():
    phase = torch.tensor([-1.0, 0.0, 0.1, 0.25, 0.5, 0.8, 1.0, 2.0], dtype=torch.float64)
    clamped = np.clip(phase.numpy(), 0.0, 1.0)
    np.testing.assert_allclose(cosine_ramp(phase).numpy(), (1 - np.cos(np.pi * clamped)) / 2, atol=1e-15)
    assert cosine_ramp(phase)[[0, 1, 6, 7]].tolist() == [0.0, 0.0, 1.0, 1.0]  # exact at and beyond the ends


def test_raised_cosine_is_one_inside_half_at_the_radius_zero_outside_and_continuous():
    radius, soft_edge = 10.0, 4.0
    points = torch.tensor([0.0, 7.9, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0], dtype=torch.float64)
    expected = [1.0, 1.0, 1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 - math.cos(math.pi / 4)) / 2, 0.0, 0.0]
    np.testing.assert_allclose(raised_cosine(points, radius, soft_edge).numpy(), expected, atol=1e-15)
    step = 1e-4
    distance = torch.arange(0.0, 15.0, step, dtype=torch.float64)
    values = raised_cosine(distance, radius, soft_edge)
    jumps = values.diff().abs()
    assert float(jumps.max()) <= math.pi / 2 * step / soft_edge * (1 + 1e-6)  # no jump: slope at most π/(2 edge)
    # smooth at both ends of the edge too: the slope vanishes there
    ends = torch.tensor([radius - soft_edge / 2, radius + soft_edge / 2], dtype=torch.float64)
    slopes = (raised_cosine(ends + step, radius, soft_edge) - raised_cosine(ends - step, radius, soft_edge)) / (2 * step)
    assert float(slopes.abs().max()) < 1e-3
    assert torch.equal(raised_cosine(points, radius, 0.0), (points <= radius).double())
