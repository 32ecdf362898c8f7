"""The density renderer against independent oracles: brute-force float64 sums, analytic integrals,
finite differences (gradcheck), and the rules of the custom-op registration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryomaps.errors import InputError
from cryomaps.io.grid import Grid
from cryomaps.io import read_structure
from cryomaps.io.example import write_example_peptide
from cryomaps.render import (
    DensityModelConfig,
    density_cutoff_radii,
    network_input,
    peng_coefficients,
    render_density,
    render_structure,
    render_structure_array,
)
from cryomaps.render.ops import gaussian_sum_op

ANISOTROPIC_GRID = Grid((23, 19, 26), (1.1, 1.3, 0.9), (-3.2, 1.7, -5.05))


def random_atoms(n_atoms: int, grid: Grid, seed: int = 0, margin: float = -2.0):
    """Random atoms in (and, with negative ``margin``, slightly outside) the grid's box, float64."""
    generator = np.random.default_rng(seed)
    low = grid.origin + margin
    high = grid.origin + (np.asarray(grid.shape) - 1) * grid.voxel_size - margin
    coords = generator.uniform(low, high, size=(n_atoms, 3))
    atomic_numbers = generator.choice([1, 6, 7, 8, 16], size=n_atoms)
    b_factors = generator.uniform(5.0, 60.0, size=n_atoms)
    occupancies = generator.uniform(0.3, 1.0, size=n_atoms)
    return (
        torch.tensor(coords),
        torch.tensor(atomic_numbers),
        torch.tensor(b_factors),
        torch.tensor(occupancies),
    )


def brute_force_molmap(coords, atomic_numbers, grid: Grid, resolution: float) -> np.ndarray:
    """ChimeraX molmap written out directly: every atom against every voxel centre, float64."""
    sigma = resolution / (math.pi * math.sqrt(2.0))
    centres = grid.voxel_centres()
    density = np.zeros(len(centres))
    for position, z in zip(np.asarray(coords), np.asarray(atomic_numbers)):
        delta = centres - position
        inside = np.all(np.abs(delta) <= 5 * sigma, axis=1)
        squared = np.sum(delta[inside] ** 2, axis=1)
        density[inside] += z * (2 * math.pi * sigma**2) ** -1.5 * np.exp(-0.5 * squared / sigma**2)
    return density.reshape(grid.shape)


@pytest.mark.parametrize("dtype,resolution", [(torch.float64, 3.0), (torch.float32, 3.0), (torch.float64, 0.5)])
def test_molmap_matches_brute_force(dtype, resolution):
    """At 0.5 Å many atoms' windows (+/- 0.56 Å) hold one voxel or none along an axis."""
    coords, numbers, _, _ = random_atoms(60, ANISOTROPIC_GRID, seed=1)
    expected = brute_force_molmap(coords, numbers, ANISOTROPIC_GRID, resolution=resolution)
    rendered = render_density(coords.to(dtype), numbers, grid=ANISOTROPIC_GRID, model="molmap", resolution=resolution)
    assert rendered.dtype == dtype and rendered.shape == ANISOTROPIC_GRID.shape
    error = np.linalg.norm(rendered.double().numpy() - expected) / np.linalg.norm(expected)
    assert error <= 1e-5


def test_molmap_ignores_b_factors_and_occupancy_unless_asked():
    coords, numbers, b_factors, occupancies = random_atoms(20, ANISOTROPIC_GRID, seed=2)
    plain = render_density(coords, numbers, grid=ANISOTROPIC_GRID, model="molmap", resolution=4.0)
    with_extras = render_density(
        coords, numbers, ANISOTROPIC_GRID, b_factors=b_factors, occupancies=occupancies, model="molmap", resolution=4.0)
    torch.testing.assert_close(plain, with_extras)
    weighted = render_density(
        coords, numbers, ANISOTROPIC_GRID, b_factors=b_factors, occupancies=occupancies, model="molmap",
        resolution=4.0, molmap_occupancy=True,
    )
    scaled = render_density(coords, numbers * 0 + 1, ANISOTROPIC_GRID, model="molmap", resolution=4.0)
    assert weighted.sum() < plain.sum() and scaled.sum() < plain.sum()


def test_peng_single_atom_matches_formula():
    """One atom against rho(r) = occ sum a (4 pi/(b+B))^1.5 exp(-4 pi² r²/(b+B)) with gemmi's a, b."""
    import gemmi

    grid = Grid((15, 16, 17), (0.7, 0.8, 0.9), (-5.0, -6.0, -7.0))
    centre, b_factor, occupancy = np.array([0.31, -0.42, 0.77]), 25.0, 0.8
    rendered = render_density(
        torch.tensor(centre[None]), torch.tensor([16]), grid, b_factors=torch.tensor([b_factor], dtype=torch.float64),
        occupancies=torch.tensor([occupancy], dtype=torch.float64),
    ).numpy()
    coefficients = gemmi.Element("S").c4322
    squared = np.sum((grid.voxel_centres() - centre) ** 2, axis=1)
    expected = sum(
        occupancy * a * (4 * math.pi / (b + b_factor)) ** 1.5 * np.exp(-4 * math.pi**2 * squared / (b + b_factor))
        for a, b in zip(coefficients.a, coefficients.b)
    ).reshape(grid.shape)
    kept = expected > 1e-5  # inside gemmi's cutoff the values must agree exactly
    np.testing.assert_allclose(rendered[kept], expected[kept], rtol=1e-10)
    assert np.abs(rendered - expected).max() < 1e-5


@pytest.mark.parametrize("model", ["molmap", "peng"])
def test_voxel_average_keeps_total(model):
    """Voxel averaging and point sampling both integrate to the model's total (an analytic sum).

    Point sampling integrates exactly only Gaussians wider than about half a voxel, hence B >= 30.
    """
    grid = Grid((40, 38, 36), 1.0, (-2.0, -2.0, -2.0))
    coords, numbers, b_factors, occupancies = random_atoms(30, grid, seed=3, margin=12.0)
    b_factors = b_factors + 25.0
    options = {"model": model, "resolution": 3.0 if model == "molmap" else None}
    atoms = {"b_factors": b_factors, "occupancies": occupancies}
    totals = {
        sampling: float(render_density(coords, numbers, grid, sampling=sampling, **atoms, **options).sum())
        for sampling in ("point", "average")
    }
    if model == "molmap":
        expected = float(numbers.sum())
    else:
        expected = float((occupancies[:, None] * peng_coefficients(numbers)[0]).sum())
    assert totals["average"] == pytest.approx(totals["point"], rel=1e-3)
    assert totals["average"] == pytest.approx(expected, rel=1e-3)


def test_cutoff_radius_is_where_density_falls_below_threshold():
    a, b = peng_coefficients(torch.tensor([1, 6, 8, 16, 26]))
    variances = (b + 30.0) / (8 * math.pi**2)
    radii = density_cutoff_radii(a, variances, 1e-5)

    def density(r):
        return (a * (2 * math.pi * variances) ** -1.5 * torch.exp(-0.5 * r[:, None] ** 2 / variances)).sum(-1)

    assert torch.all(density(radii) <= 1e-5)
    assert torch.all(density(radii * 0.999) > 1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_peng_radii_are_solved_once_per_element_and_b_factor(dtype):
    from cryomaps.render.density import distinct_pairs, peng_gaussians

    numbers = torch.tensor([6, 6, 8, 6, 16, 8, 6, 1])
    b_factors = torch.tensor([0.0, 0.0, 0.0, 20.5, 20.5, 20.5, 20.5 + 2**-7, 0.0], dtype=dtype)
    pair, representative = distinct_pairs(numbers, b_factors)
    assert len(representative) == 7 and pair[0] == pair[1] and pair[3] != pair[6]
    assert torch.equal(numbers[representative][pair], numbers) and torch.equal(b_factors[representative][pair], b_factors)
    weights, variances, radii = peng_gaussians(numbers, b_factors, torch.ones(8, dtype=dtype), DensityModelConfig())
    a, _ = peng_coefficients(numbers, dtype=dtype)
    torch.testing.assert_close(radii, density_cutoff_radii(a, variances.detach(), 1e-5), rtol=0, atol=0)


def test_atoms_outside_grid_and_batches():
    grid = Grid((12, 10, 14), 1.0, (0.0, 0.0, 0.0))
    coords, numbers, b_factors, occupancies = random_atoms(25, grid, seed=4, margin=-6.0)
    far = torch.tensor([[500.0, -300.0, 7.0]], dtype=torch.float64)
    with_far = render_density(
        torch.cat([coords, far]), torch.cat([numbers, torch.tensor([8])]), grid,
        b_factors=torch.cat([b_factors, torch.tensor([20.0])]), occupancies=torch.cat([occupancies, torch.tensor([1.0])]),
    )
    single = render_density(coords, numbers, grid, b_factors=b_factors, occupancies=occupancies)
    torch.testing.assert_close(with_far, single)
    shifted = coords + torch.tensor([0.4, -0.3, 0.2])
    atoms = {"b_factors": b_factors, "occupancies": occupancies}
    batch = render_density(torch.stack([coords, shifted]), numbers, grid, sampling="average", **atoms)
    assert batch.shape == (2, *grid.shape)
    torch.testing.assert_close(batch[1], render_density(shifted, numbers, grid, sampling="average", **atoms))


GRADIENT_CASES = [(model, sampling) for model in ("molmap", "peng") for sampling in ("point", "average")]


@pytest.mark.parametrize("model,sampling", GRADIENT_CASES)
def test_gradcheck(model, sampling):
    grid = Grid((9, 8, 10), (1.0, 0.9, 1.1), (0.0, 0.0, 0.0))
    coords, numbers, b_factors, occupancies = random_atoms(4, grid, seed=5, margin=2.0)
    options = {"model": model, "sampling": sampling, "resolution": 2.5 if model == "molmap" else 2.0}
    if model == "molmap":
        options["molmap_occupancy"] = True

    def render(coords, b_factors, occupancies):
        return render_density(coords, numbers, grid, b_factors=b_factors, occupancies=occupancies, **options)

    inputs = tuple(t.clone().requires_grad_() for t in (coords, b_factors, occupancies))
    assert torch.autograd.gradcheck(render, inputs, fast_mode=True, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("model,sampling", [("peng", "point"), ("molmap", "average")])
def test_float32_gradients_match_float64(model, sampling):
    grid = Grid((24, 22, 20), 1.0, (0.0, 0.0, 0.0))
    coords, numbers, b_factors, occupancies = random_atoms(40, grid, seed=6, margin=3.0)
    weights = torch.rand(grid.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    options = {"model": model, "sampling": sampling, "resolution": 3.0, "molmap_occupancy": True}

    def gradients(dtype):
        inputs = [t.to(dtype).requires_grad_() for t in (coords, b_factors, occupancies)]
        density = render_density(inputs[0], numbers, grid, b_factors=inputs[1], occupancies=inputs[2], **options)
        (density * weights.to(dtype)).sum().backward()
        return [t.grad for t in inputs]

    compared = 0
    for low, high in zip(gradients(torch.float32), gradients(torch.float64)):
        if high is not None:  # molmap has no B-factor gradient
            assert (low.double() - high).norm() / high.norm() <= 1e-4
            compared += 1
    assert compared == (3 if model == "peng" else 2)


def test_custom_op_registration():
    """torch.library's own checks of schema, fake tensor and autograd registration."""
    grid = Grid((7, 6, 8), 1.0, (0.0, 0.0, 0.0))
    centres = torch.rand(5, 3, dtype=torch.float64) * 6
    weights, variances = torch.rand(5, 2, dtype=torch.float64), 0.3 + torch.rand(5, 2, dtype=torch.float64)
    args = (
        centres.requires_grad_(), weights.requires_grad_(), variances.requires_grad_(),
        torch.full((5,), 2.5, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1]), 2,
        list(grid.shape), [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], "average",
    )
    torch.library.opcheck(gaussian_sum_op, args)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_works_under_torch_compile(backend):
    """Fake-tensor and autograd registrations let dynamo trace the op (inductor compiles C++: slow)."""
    grid = Grid((8, 9, 7), 1.0, (0.0, 0.0, 0.0))
    coords, numbers, b_factors, occupancies = random_atoms(6, grid, seed=7, margin=2.0)
    a, b = peng_coefficients(numbers)
    radii = torch.full((6,), 4.0, dtype=torch.float64)
    batch_index = torch.zeros(6, dtype=torch.long)

    def loss(coords, b_factors):
        variances = (b + b_factors[:, None]) / (8 * math.pi**2)
        density = torch.ops.cryomaps.gaussian_sum(
            coords, a * occupancies[:, None], variances, radii, batch_index, 1,
            list(grid.shape), [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], "point",
        )
        return density.square().sum()

    compiled = torch.compile(loss, backend=backend, fullgraph=True)
    eager_inputs = [t.clone().requires_grad_() for t in (coords, b_factors)]
    compiled_inputs = [t.clone().requires_grad_() for t in (coords, b_factors)]
    expected = loss(*eager_inputs)
    expected.backward()
    result = compiled(*compiled_inputs)
    result.backward()
    torch.testing.assert_close(result, expected)
    for eager, traced in zip(eager_inputs, compiled_inputs):
        torch.testing.assert_close(traced.grad, eager.grad)


def test_bad_inputs_raise_input_error():
    grid = Grid((8, 8, 8), 1.0, (0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="no atoms"):
        render_density(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), grid=grid)
    with pytest.raises(InputError, match="outside 1..98"):
        render_density(torch.zeros(1, 3), torch.tensor([0]), grid=grid)
    with pytest.raises(InputError, match="GiB"):
        render_density(torch.zeros(1, 3), torch.tensor([6]), grid=Grid((100000, 100000, 1000), 1.0, (0, 0, 0)))
    with pytest.raises(InputError, match="needs a resolution"):
        DensityModelConfig(model="molmap")
    with pytest.raises(InputError, match="sampling"):
        render_density(torch.zeros(1, 3), torch.tensor([6]), grid=grid, sampling="nearest")
    with pytest.raises(InputError, match="NaN"):
        render_density(torch.full((1, 3), float("nan")), torch.tensor([6]), grid=grid)


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"model": "gaussian", "resolution": 3.0}, "model=gaussian"),
        ({"sampling": "cubic"}, "sampling=cubic"),
        ({"resolution_mode": "sharp", "resolution": 3.0}, "resolution_mode=sharp"),
        ({"resolution": 0}, "resolution=0"),
        ({"resolution": float("inf")}, "resolution=inf"),
        ({"resolution": "abc"}, "resolution=abc"),
        ({"sigma_factor": -1.0}, "sigma_factor=-1.0"),
        ({"cutoff_sigmas": float("nan")}, "cutoff_sigmas=nan"),
        ({"peng_cutoff_density": 0.0}, "peng_cutoff_density=0.0"),
        ({"molmap_occupancy": "yes", "model": "molmap", "resolution": 3.0}, "molmap_occupancy=yes"),
        ({"model": "molmap"}, "resolution=None"),
        ({"resolution_mode": "finite"}, "resolution_mode=finite"),
        ({"backend": "triton"}, "backend"),
    ],
)
def test_render_options_are_checked_in_one_line_naming_the_field(fields, named):
    with pytest.raises(InputError) as raised:
        DensityModelConfig.from_dict(fields, prefix="render.")
    message = str(raised.value)
    assert message.startswith("render." + named) and "\n" not in message, message


def test_render_options_plain_form_round_trips_and_keeps_the_stored_recipe_form():
    recipe = {"model": "molmap", "resolution": 2.0, "sampling": "point"}
    assert DensityModelConfig.from_dict(recipe).to_dict() == recipe
    assert DensityModelConfig(model="molmap", resolution=2) == DensityModelConfig.from_dict(recipe)
    detailed = DensityModelConfig(model="peng", resolution=3.0, resolution_mode="finite", sampling="average",
                                  peng_cutoff_density=1e-4)
    assert detailed.to_dict() == {"model": "peng", "resolution": 3.0, "sampling": "average",
                                  "resolution_mode": "finite", "peng_cutoff_density": 1e-4}
    assert DensityModelConfig.from_dict(detailed.to_dict()) == detailed
    assert DensityModelConfig().to_dict() == {"model": "peng", "resolution": None, "sampling": "point"}


def test_grid_is_required_and_structure_arrays_match_the_tensor_renderer(tmp_path):
    coords, numbers, b_factors, occupancies = random_atoms(6, ANISOTROPIC_GRID, seed=11, margin=2.0)
    with pytest.raises(TypeError):
        render_density(coords, numbers)
    with pytest.raises(TypeError):  # per-atom values are keywords: the old positional order fails loudly
        render_density(coords, numbers, b_factors, occupancies, ANISOTROPIC_GRID)
    write_example_peptide(tmp_path / "helix.pdb")
    structure = read_structure(tmp_path / "helix.pdb")
    grid = Grid.around(structure.coords, voxel_size=1.5, padding=3.0)
    config = DensityModelConfig(model="peng", resolution=3.0, sampling="average")
    array = render_structure_array(structure, grid, config)
    tensor = render_structure(structure, grid, config)
    assert isinstance(array, np.ndarray) and array.dtype == np.float32
    np.testing.assert_array_equal(array, tensor.detach().numpy())
    scaled = network_input(structure, grid, config)
    np.testing.assert_allclose(scaled, (tensor - tensor.min()).detach().numpy() / float(tensor.max() - tensor.min()),
                               rtol=0, atol=1e-6)


def test_chunks_give_the_same_result_on_one_thread(monkeypatch):
    """Many small chunks: same map and gradients as one chunk; the render runs on one intra-op
    thread and restores torch's thread count; the backward op records no autograd graph."""
    from cryomaps.render import gaussian_torch

    grid = Grid((16, 14, 15), 1.0, (0.0, 0.0, 0.0))
    coords, numbers, b_factors, occupancies = random_atoms(30, grid, seed=8, margin=-1.0)
    weights = torch.rand(grid.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def map_and_gradients():
        inputs = [t.clone().requires_grad_() for t in (coords, b_factors, occupancies)]
        density = render_density(inputs[0], numbers, grid, b_factors=inputs[1], occupancies=inputs[2], sampling="average")
        (density * weights).sum().backward()
        return [density.detach()] + [t.grad for t in inputs]

    one_chunk = map_and_gradients()
    threads = torch.get_num_threads()
    seen_threads = []
    original = gaussian_torch.render_chunk

    def spy(*args):
        seen_threads.append(torch.get_num_threads())
        return original(*args)

    monkeypatch.setattr(gaussian_torch, "WINDOW_VOXELS_PER_CHUNK", 1500)
    monkeypatch.setattr(gaussian_torch, "render_chunk", spy)
    torch.set_num_threads(2)
    try:
        radii = torch.full((30,), 3.0, dtype=torch.float64)
        first, last = gaussian_torch.window_bounds(coords.T, radii, [1.0] * 3, [0.0] * 3)
        _, chunks = gaussian_torch.atom_chunks(gaussian_torch.box_geometry(first, last, grid.shape)[0])
        assert len(chunks) > 4
        chunked = map_and_gradients()
        assert torch.get_num_threads() == 2 and len(seen_threads) > 4 and set(seen_threads) == {1}
        a, b = peng_coefficients(numbers)
        with torch.no_grad():  # as in autograd's backward pass
            gradients = torch.ops.cryomaps.gaussian_sum_backward(
                weights[None], coords.clone().requires_grad_(), (a * occupancies[:, None]).requires_grad_(),
                (b + b_factors[:, None]) / (8 * math.pi**2), torch.full((30,), 4.0, dtype=torch.float64),
                torch.zeros(30, dtype=torch.long), [1.0] * 3, [0.0] * 3, "point",
            )
    finally:
        torch.set_num_threads(threads)
    for expected, actual in zip(one_chunk, chunked):
        torch.testing.assert_close(actual, expected)
    assert not any(g.requires_grad for g in gradients)


def test_finite_resolution_mode_uses_the_finite_resolution_renderer():
    from cryomaps.render.finite_resolution import render_finite_resolution

    grid = Grid((14, 12, 13), 1.0, (0.0, 0.0, 0.0))
    coords, numbers, b_factors, occupancies = random_atoms(5, grid, seed=9, margin=3.0)
    expected = render_finite_resolution(coords[None], numbers[None], b_factors[None], occupancies[None], grid, 3.0)
    rendered = render_density(
        torch.stack([coords + 1.0, coords]), numbers, grid, b_factors=b_factors, occupancies=occupancies,
        resolution=3.0, resolution_mode="finite",
    )
    torch.testing.assert_close(rendered[1], expected[0])
    with pytest.raises(InputError, match="peng model"):
        DensityModelConfig(model="molmap", resolution=3.0, resolution_mode="finite")
