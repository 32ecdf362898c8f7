"""Finite-resolution atomic images: shell fits, the radial_shells op (CPU and Triton), gradients."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from cryomaps.errors import InputError
from cryomaps.io.grid import Grid
from cryomaps.render import finite_resolution as fr
from cryomaps.render.form_factors import peng_coefficients

CARBON, NITROGEN, OXYGEN, SULFUR = 6, 7, 8, 16


def _peng(z: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = peng_coefficients(torch.tensor([z]))
    return a[0].numpy(), b[0].numpy()


def _peng_image(distance: np.ndarray, z: int, b_factor: float) -> np.ndarray:
    """Plain Peng image (no resolution cut) at distances (M,) Å."""
    a, b = _peng(z)
    width = b + b_factor
    return (a * (4 * np.pi / width) ** 1.5 * np.exp(-4 * np.pi**2 * distance[:, None] ** 2 / width)).sum(axis=1)


def _shell_reference(distance: np.ndarray, radius: float, b_param: float) -> np.ndarray:
    """Omega(r; R, B) from its defining formula (float64; needs r > 0)."""
    if radius == 0.0:
        return (4 * np.pi / b_param) ** 1.5 * np.exp(-4 * np.pi**2 * distance**2 / b_param)
    a = 4 * np.pi**2 / b_param
    difference = np.exp(-a * (distance - radius) ** 2) - np.exp(-a * (distance + radius) ** 2)
    return difference / (np.sqrt(4 * np.pi * b_param) * distance * radius)


def _relative_l2(value, reference) -> float:
    return float(np.linalg.norm(np.asarray(value) - reference) / np.linalg.norm(reference))


def test_quadrature_tends_to_peng_image_without_cut():
    a, b = _peng(CARBON)
    distance = np.linspace(0.0, 6.0, 200)
    image = fr.truncated_atom_profile(distance, a, b, resolution=0.2, b_factor=20.0)
    assert _relative_l2(image, _peng_image(distance, CARBON, 20.0)) < 1e-10


def test_shell_blur_adds_b_exactly():
    """Omega(R, B) has Fourier transform sinc(2 R s) exp(-B s²/4), so a Gaussian blur adds to B."""
    radius, b_param = 1.7, 9.0
    s, ds = np.polynomial.legendre.leggauss(400)
    s, ds = 2.0 * (s + 1.0), 2.0 * ds  # s in [0, 4] Å⁻¹, where exp(-B s²/4) < 1e-15
    transform = np.sinc(2 * radius * s) * np.exp(-b_param * s**2 / 4)
    distance = np.linspace(0.05, 5.0, 100)
    inverse = (4 * np.pi * s**2 * np.sinc(2 * distance[:, None] * s)) @ (transform * ds)
    assert _relative_l2(inverse, _shell_reference(distance, radius, b_param)) < 1e-10


@pytest.mark.parametrize("resolution", [2.0, 4.0])
@pytest.mark.parametrize("z", [CARBON, NITROGEN, OXYGEN, SULFUR])
def test_fitted_profile_matches_quadrature(z, resolution):
    fit = fr.fit_shells(z, resolution)
    a, b = _peng(z)
    cutoff = fr.summation_radius(fit, 0.0)
    distance = np.linspace(0.0, cutoff, 1500)
    truth = fr.truncated_atom_profile(distance, a, b, resolution)
    fitted = fit.profile(distance)
    near = distance <= 2.0 * resolution
    assert fit.relative_error < 6e-3
    assert _relative_l2(fitted[near], truth[near]) < 4e-3
    assert _relative_l2(fitted, truth) < 1.5e-2
    assert sum(fit.coefficients) == pytest.approx(a.sum(), rel=1e-9)  # the atom's mass is kept


@pytest.mark.parametrize("resolution", [2.0, 3.0, 4.0])
def test_profile_ripples(resolution):
    """First zero near 0.72 d and a negative first minimum near 0.93 d."""
    distance = np.linspace(0.0, 1.5 * resolution, 3001)
    profile = fr.fit_shells(CARBON, resolution).profile(distance)
    first_zero = distance[np.argmax(profile < 0)]
    first_minimum = distance[np.argmin(profile)]
    assert 0.68 * resolution < first_zero < 0.78 * resolution
    assert 0.88 * resolution < first_minimum < 0.98 * resolution
    assert profile.min() < -0.03 * profile[0]


def _one_atom_grid(position, voxel: float, half_width: float) -> Grid:
    n = int(round(2 * half_width / voxel)) + 1
    return Grid((n, n, n), voxel, np.round(np.asarray(position) - half_width))


def _brute_force_map(grid: Grid, position, fit: fr.ShellFit, b_factor: float, cutoff: float) -> np.ndarray:
    """float64 sum of the fitted shells at every voxel centre within ``cutoff``."""
    distance = np.linalg.norm(grid.voxel_centres() - np.asarray(position), axis=1)
    values = sum(
        c * _shell_reference(distance, radius, fit.b_shell + b_factor)
        for c, radius in zip(fit.coefficients, fit.radii)
    )
    return np.where(distance <= cutoff, values, 0.0).reshape(grid.shape)


def test_rendered_atom_matches_brute_force_and_shows_ripples():
    resolution, b_factor = 2.0, 5.0
    position = np.array([0.31, -0.17, 0.43])
    grid = _one_atom_grid(position, voxel=0.7, half_width=7.7)
    rendered = fr.render_finite_resolution(
        torch.tensor(position[None], dtype=torch.float32),
        torch.tensor([CARBON]),
        torch.tensor([b_factor]),
        torch.tensor([1.0]),
        grid,
        resolution,
    )
    fit = fr.fit_shells(CARBON, resolution)
    reference = _brute_force_map(grid, position, fit, b_factor, fr.summation_radius(fit, b_factor))
    assert rendered.shape == grid.shape and rendered.dtype == torch.float32
    assert _relative_l2(rendered.double().numpy(), reference) < 1e-5
    distance = np.linalg.norm(grid.voxel_centres() - position, axis=1).reshape(grid.shape)
    first_ring = (distance > 0.85 * resolution) & (distance < 1.05 * resolution)
    assert rendered.numpy()[first_ring].max() < 0.0  # the whole first ripple is negative


def test_fine_resolution_approaches_peng_image():
    resolution, b_factor = 0.5, 20.0
    position = np.array([0.11, 0.07, -0.13])
    grid = _one_atom_grid(position, voxel=0.3, half_width=5.1)
    rendered = fr.render_finite_resolution(
        torch.tensor(position[None], dtype=torch.float64),
        torch.tensor([CARBON]),
        torch.tensor([b_factor], dtype=torch.float64),
        torch.tensor([1.0], dtype=torch.float64),
        grid,
        resolution,
    ).numpy()
    distance = np.linalg.norm(grid.voxel_centres() - position, axis=1)
    peng = _peng_image(distance, CARBON, b_factor).reshape(grid.shape)
    voxel_volume = float(np.prod(grid.voxel_size))
    a, _ = _peng(CARBON)
    assert rendered.sum() * voxel_volume == pytest.approx(a.sum(), rel=2e-3)
    assert _relative_l2(rendered, peng) < 1e-2


def test_gradcheck_coordinates_b_factors_occupancies():
    grid = Grid((9, 8, 10), 0.9, (-2.0, -1.5, -2.5))
    coords = torch.tensor([[0.3, 0.4, 0.1], [1.6, 1.1, 2.2], [-0.4, 2.3, 1.3]], dtype=torch.float64)
    atomic_numbers = torch.tensor([CARBON, OXYGEN, SULFUR])
    b_factors = torch.tensor([12.0, 25.0, 40.0], dtype=torch.float64)
    occupancies = torch.tensor([1.0, 0.7, 0.9], dtype=torch.float64)
    inputs = tuple(t.clone().requires_grad_() for t in (coords, b_factors, occupancies))

    def render(coords, b_factors, occupancies):
        return fr.render_finite_resolution(coords, atomic_numbers, b_factors, occupancies, grid, 2.0)

    # fast mode checks random projections of the Jacobian (one backward pass instead of one per voxel)
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-7, rtol=1e-4, fast_mode=True)


def test_unsupported_sampling_and_resolution_raise():
    args = (torch.zeros(1, 3), torch.tensor([CARBON]), torch.tensor([10.0]), torch.ones(1), Grid((4, 4, 4), 1.0, 0.0))
    with pytest.raises(InputError, match="voxel averaging"):
        fr.render_finite_resolution(*args, 3.0, sampling="average")
    with pytest.raises(InputError, match="resolution"):
        fr.render_finite_resolution(*args, 0.0)


_TRITON_SCRIPT = textwrap.dedent(
    """
    import json
    import torch
    from cryomaps.io.grid import Grid
    from cryomaps.render import finite_resolution, shell_ops, shell_triton

    torch.manual_seed(0)
    grid = Grid((12, 11, 10), (0.9, 1.0, 1.1), (-2.0, -2.5, -1.5))
    fit = finite_resolution.fit_shells(6, 1.5)
    n_atoms, n_terms = 5, len(fit.radii)
    result = {"interpreted": type(shell_triton._radial_shells_forward_kernel).__name__}
    for dtype in (torch.float32, torch.float64):
        centres = torch.rand(n_atoms, 3, dtype=dtype) * 8.0 - 1.5
        weights = torch.tensor(fit.coefficients, dtype=dtype) * (0.5 + torch.rand(n_atoms, 1, dtype=dtype))
        radii = torch.tensor(fit.radii, dtype=dtype).expand(n_atoms, n_terms).contiguous()
        b_params = fit.b_shell + 30.0 * torch.rand(n_atoms, n_terms, dtype=dtype)
        geometry = (list(grid.shape), grid.voxel_size.tolist(), grid.origin.tolist(), 4.5)
        grad_map = torch.randn(grid.shape, dtype=dtype)
        pairs = [(shell_triton.radial_shells_forward(centres, weights, radii, b_params, *geometry),
                  shell_ops.radial_shells(centres, weights, radii, b_params, *geometry))]
        pairs += zip(shell_triton.radial_shells_backward(grad_map, centres, weights, radii, b_params, *geometry),
                     shell_ops.radial_shells_backward(grad_map, centres, weights, radii, b_params, *geometry))
        result[str(dtype)] = [float((t - c).norm() / c.norm()) for t, c in pairs]
    print(json.dumps(result))
    """
)


def test_triton_kernels_match_torch_under_interpreter():
    pytest.importorskip("triton")
    environment = dict(os.environ, TRITON_INTERPRET="1")
    completed = subprocess.run(
        [sys.executable, "-c", _TRITON_SCRIPT], env=environment, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["interpreted"] == "InterpretedFunction"  # the interpreter really ran the kernels
    for dtype in ("torch.float32", "torch.float64"):
        forward, grad_centres, grad_weights, grad_b_params = result[dtype]
        assert max(result[dtype]) < 1e-5, (dtype, result[dtype])
        assert all(math.isfinite(error) for error in (forward, grad_centres, grad_weights, grad_b_params))
