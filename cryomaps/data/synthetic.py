"""Synthetic half maps with a known local-resolution field, for testing local-resolution methods.

A model is rendered with the Peng potential (:func:`cryomaps.render.render_density`, point sampled)
with one B-factor per atom, chosen from the atom's target local resolution; two half maps get
independent white Gaussian noise of standard deviation ``noise_sd`` per voxel.

**Resolution ↔ B-factor convention (FSC-equivalent resolution).** The target local resolution
``d`` of an atom is the resolution that the local FSC of :mod:`cryomaps.signal.local_fsc`
(same window diameter, soft edge, shape and threshold) reports *in expectation* for a window
centred on that atom, when the window is filled with carbon atoms at uncorrelated positions (Wilson
statistics) at the atom's local density, all with the atom's B-factor, and both half maps carry
white noise of standard deviation ``σ`` per voxel. For atoms of density ``n`` (Å⁻³) the expected
windowed signal power at DFT frequency ``k`` is exactly (Campbell's theorem, point sampling)::

    E|S_k|² = n sum_r A(r) R_B(r) exp(-2πi k·r),   R_B(r) = FT⁻¹[f_C(q)² exp(-B q²/2)](r)

with ``A`` the autocorrelation of the window weights over voxel offsets ``r`` and ``f_C`` the Peng
carbon form factor (``R_B`` is a sum of Gaussians, evaluated in closed form), so window leakage
and aliasing are included. The noise power is ``σ² W2`` per Fourier voxel (``W2`` = sum of the
squared weights). The expected shell FSC is ``S/(S + N)`` with ``S`` and ``N`` summed per shell,
and ``d`` is its first crossing of the threshold, found exactly as the estimator finds it.
``B`` is solved per atom from ``d`` by interpolation in a table of B-factors. The local density is
``n_j = C_j / (v W2)`` with ``v`` the voxel volume and ``C_j = sum_k w(x_k - x_j)² r_k`` the
window-weighted count of carbon equivalents (``r_k = occ_k² f_k(1/d_k)² / f_C(1/d_k)²``), computed by
an FFT convolution on the grid, so atoms near the surface of the model (half-empty windows) get the
B-factors that give them the same FSC-equivalent resolution as buried ones. B-factors are clamped to
[0, ``MAX_B_FACTOR``]; the recorded truth is the resolution each atom's B actually achieves, equal to
the target wherever no clamping happened. The truth depends on the estimator's window, as any
FSC-defined local resolution does; where windows straddle atoms of different targets, estimates are
expected to mix them.

Unless ``noise_sd`` is given, it is chosen so that atoms with the finest target resolution would
need ``finest_b_factor`` at the median local density among them; a larger ``finest_b_factor``
means less noise and a steeper FSC fall-off, which makes the FSC crossing less sensitive to the
departures of real atom arrangements (helices, sheets) from Wilson statistics.

The true local-resolution map holds, for each voxel within ``mask_radius`` of an atom (the
molecular mask), the truth of the nearest atom; other voxels hold ``background`` (100 Å, the
convention of :mod:`cryomaps.signal.local_fsc`). Arrays are indexed (x, y, z), lengths in Å.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from cryomaps.data.half_maps import labelled_half_maps
from cryomaps.data.locres_input import InputPreparation, prepare_training_volume
from cryomaps.data_root import ENV_VAR, find_data_root
from cryomaps.errors import InputError
from cryomaps.io import DensityMap, Grid, Structure, read_structure, write_map
from cryomaps.io.grid import nyquist_resolution
from cryomaps.io.atomic import write_text_atomically
from cryomaps.io.example import ideal_helix_backbone, write_example_peptide
from cryomaps.metrics.masks import atom_mask
from cryomaps.render import render_density
from cryomaps.render.form_factors import gaussian_density, peng_form_factor, peng_gaussian_terms
from cryomaps.signal import local_fsc as locres
from cryomaps.signal.fourier_shells import crossing_resolution, fourier_shells, shell_matrix

CARBON = 6


@dataclass
class SyntheticHalfMaps:
    """Two noisy half maps of a model with a known local-resolution field.

    Attributes:
        half1, half2: half maps (signal + independent noise), on ``grid``.
        full: their average.
        true_locres: true local resolution (Å) inside ``mask``, ``background`` outside.
        mask: molecular mask (1 inside, 0 outside) as a map.
        grid: the common grid (shape (x, y, z), voxel size and origin in Å).
        atom_target_resolution: (N,) requested resolution of each atom (Å).
        atom_resolution: (N,) resolution achieved by each atom's B-factor (Å): the truth.
        atom_b_factors: (N,) B-factors used for rendering (Å²).
        metadata: plain-Python facts (noise level, SNR, window, threshold, seed, convention).
    """

    half1: DensityMap
    half2: DensityMap
    full: DensityMap
    true_locres: DensityMap
    mask: DensityMap
    grid: Grid
    atom_target_resolution: np.ndarray
    atom_resolution: np.ndarray
    atom_b_factors: np.ndarray
    metadata: dict = field(default_factory=dict)


def two_region_resolution(coords: np.ndarray, fine: float = 3.0, coarse: float = 6.0, axis: int = 0) -> np.ndarray:
    """Target resolution per atom (N,) Å: ``fine`` below the median coordinate along ``axis``, else ``coarse``."""
    coords = np.asarray(coords, dtype=np.float64)
    return np.where(coords[:, axis] < np.median(coords[:, axis]), fine, coarse)


def radial_resolution(coords: np.ndarray, centre_resolution: float = 3.0, edge_resolution: float = 6.0) -> np.ndarray:
    """Smooth target resolution per atom (N,) Å: ``centre_resolution`` at the centroid rising
    quadratically with distance to ``edge_resolution`` at the farthest atom (a typical real-map pattern)."""
    coords = np.asarray(coords, dtype=np.float64)
    distance = np.linalg.norm(coords - coords.mean(axis=0), axis=1)
    fraction = (distance / max(distance.max(), 1e-9)) ** 2
    return centre_resolution + (edge_resolution - centre_resolution) * fraction


def helix_bundle(n_x: int = 8, n_y: int = 3, n_residues: int = 30, spacing: float = 10.0) -> Structure:
    """A protein-like packed test model: ``n_x`` x ``n_y`` parallel ideal α-helices along z.

    Each helix has ``n_residues`` residues (N, CA, C, O, CB; B = 0, occupancy 1); helix axes sit on a
    square lattice of ``spacing`` Å in the xy plane, the first at (0, 0).
    """
    residues = ideal_helix_backbone(n_residues)
    names = list(residues[0].keys())
    helix = np.array([[residue[name] for name in names] for residue in residues]).reshape(-1, 3)
    helix = _align_axis_to_z(helix)
    offsets = [(ix * spacing, iy * spacing, 0.0) for ix in range(n_x) for iy in range(n_y)]
    coords = np.concatenate([helix + np.asarray(offset) for offset in offsets])
    n_atoms = len(coords)
    per_helix_elements = [name[0] for name in names] * n_residues
    elements = np.array(per_helix_elements * len(offsets))
    atom_names = np.array(names * n_residues * len(offsets))
    residue_ids = np.tile(np.repeat(np.arange(1, n_residues + 1), len(names)), len(offsets))
    chain_ids = np.repeat([_chain_name(i) for i in range(len(offsets))], n_residues * len(names))
    numbers = {"C": 6, "N": 7, "O": 8}
    return Structure(
        coords=coords,
        atomic_numbers=np.array([numbers[e] for e in elements], dtype=np.int64),
        elements=elements,
        b_factors=np.zeros(n_atoms),
        occupancies=np.ones(n_atoms),
        chain_ids=chain_ids,
        residue_names=np.full(n_atoms, "ALA"),
        residue_seqids=residue_ids.astype(np.int64),
        atom_names=atom_names,
        altlocs=np.full(n_atoms, ""),
    )


def _align_axis_to_z(points: np.ndarray) -> np.ndarray:
    """Rotate ``points`` (N, 3) so that their principal (longest) axis is z, centred at 0."""
    centred = points - points.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    rotation = np.stack([axes[1], np.cross(axes[0], axes[1]), axes[0]])  # rows: new x, y, z
    return centred @ rotation.T


def _chain_name(index: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return letters[index % 26] + ("" if index < 26 else str(index // 26))


def carbon_equivalent_counts(
    coords: np.ndarray, weights_per_atom: np.ndarray, grid: Grid, window_weights: np.ndarray
) -> np.ndarray:
    """``C_j = sum_k w(x_k - x_j)² weights_per_atom[k]`` for every atom ``j`` (N,).

    Atoms are put on their nearest voxel, the grid is convolved with the squared window
    ``window_weights`` (n_x, n_y, n_z), centred on voxel ``n // 2``, by FFT and read back at each
    atom's voxel. Atoms outside the grid neither count nor receive a count (0).
    """
    index = np.rint(grid.world_to_index(coords)).astype(np.int64)
    inside = grid.has_nearest_voxel(coords)
    box = np.asarray(window_weights.shape)
    padded_shape = tuple(int(n) for n in np.asarray(grid.shape) + box)
    splat = np.zeros(padded_shape)
    np.add.at(splat, tuple(index[inside].T), weights_per_atom[inside])
    kernel = np.zeros(padded_shape)
    kernel[tuple(slice(0, n) for n in box)] = window_weights.astype(np.float64) ** 2
    kernel = np.roll(kernel, tuple(-(n // 2) for n in box), axis=(0, 1, 2))
    counts = torch.fft.irfftn(
        torch.fft.rfftn(torch.from_numpy(splat)) * torch.fft.rfftn(torch.from_numpy(kernel)), s=padded_shape
    ).numpy()
    result = np.zeros(len(coords))
    result[inside] = counts[tuple(index[inside].T)]
    return result


MAX_B_FACTOR = 20000.0
"""Largest B-factor (Å²) the calibration assigns (coarser targets are clamped)."""

B_FACTOR_TABLE = np.concatenate([[0.0], np.geomspace(1.0, MAX_B_FACTOR, 64)])
"""B-factors (Å²) at which the expected window power is tabulated."""


@dataclass(frozen=True)
class ExpectedFsc:
    """Expected local FSC of a Wilson carbon model in one estimator window, tabulated over B.

    Attributes:
        signal: (T, n_shells) expected signal power per shell per unit atom density (Å³), for
            the B-factors of ``B_FACTOR_TABLE``.
        noise: (n_shells,) expected noise power per shell per unit noise variance.
        frequency: (n_shells,) shell frequencies (1/Å).
        finest, coarsest: clamp of the resolutions (Å), as in the estimator.
        threshold: FSC threshold.
    """

    signal: np.ndarray
    noise: np.ndarray
    frequency: np.ndarray
    finest: float
    coarsest: float
    threshold: float

    def resolution(self, density: np.ndarray, noise_variance: float) -> np.ndarray:
        """Expected FSC resolution (Å), (len(density), T): atom density (Å⁻³) x tabulated B, by the
        estimator's crossing rule over the shells after zero frequency."""
        signal = np.asarray(density, dtype=np.float64)[:, None, None] * self.signal[None]
        fsc = signal / (signal + noise_variance * self.noise)
        flat = torch.from_numpy(fsc.reshape(-1, len(self.frequency)))
        crossing = crossing_resolution(flat[:, 1:], self.frequency[1:], self.threshold, self.finest, self.coarsest)
        return crossing.numpy().reshape(fsc.shape[:2])


@functools.lru_cache(maxsize=8)
def expected_fsc_table(
    voxel_size: tuple[float, float, float], window: float, soft_edge: float, shape: str, threshold: float
) -> ExpectedFsc:
    """Tabulate the expected signal and noise shell powers of the estimator's window (module doc)."""
    geometry = locres.window_geometry(voxel_size, window, soft_edge, shape, dtype=torch.float64)
    box = geometry.box
    double = tuple(2 * n for n in box)
    weights = geometry.weights.to(torch.float64)
    autocorrelation = torch.fft.irfftn(torch.fft.rfftn(weights, s=double).abs().square(), s=double)
    offsets = [torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64) * float(h) for n, h in zip(double, geometry.voxel_size)]
    x, y, z = torch.meshgrid(*offsets, indexing="ij")
    unique_radius_squared, voxel_to_unique = torch.unique(x * x + y * y + z * z, return_inverse=True)
    a, variances = peng_gaussian_terms(torch.full((len(B_FACTOR_TABLE),), CARBON), torch.from_numpy(B_FACTOR_TABLE))
    # The autocorrelation of an atom's potential sum_i a_i G(v_i) is sum_ij a_i a_j G(v_i + v_j).
    pair_amplitude = (a[:, :, None] * a[:, None, :]).flatten(1)[:, :, None]  # (T, 25, 1)
    pair_variance = (variances[:, :, None] + variances[:, None, :]).flatten(1)[:, :, None]
    # (T, U) signal autocovariance per unit density at each distinct squared offset.
    covariance = (pair_amplitude * gaussian_density(unique_radius_squared, pair_variance)).sum(dim=1)
    shells = fourier_shells(box, geometry.voxel_size)
    per_voxel = shell_matrix(shells)  # one row per Fourier voxel
    signal = []
    for row in covariance:
        power = torch.fft.rfftn(autocorrelation * row[voxel_to_unique]).real[::2, ::2, ::2]
        signal.append((power.reshape(-1) @ per_voxel).numpy())
    noise = float((weights**2).sum()) * per_voxel.sum(dim=0).numpy()
    finest = nyquist_resolution(geometry.voxel_size)
    return ExpectedFsc(np.array(signal), noise, shells.frequency, finest, max(window, finest), threshold)


def b_factors_for_resolution(
    targets: np.ndarray, density: np.ndarray, noise_variance: float, table: ExpectedFsc, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """B-factor (Å²) per atom giving expected FSC resolution ``targets`` (Å), and the resolution
    actually achieved (Å) after clamping B to the table's range. ``density``: atoms per Å³ (N,)."""
    b_factors = np.empty(len(targets))
    achieved = np.empty(len(targets))
    for start in range(0, len(targets), chunk):
        part = slice(start, start + chunk)
        resolutions = np.maximum.accumulate(table.resolution(density[part], noise_variance), axis=1)
        for row, (target, curve) in enumerate(zip(targets[part], resolutions)):
            b_factors[start + row], achieved[start + row] = _invert_monotonic(curve, target)
    return b_factors, achieved


def _invert_monotonic(resolutions: np.ndarray, target: float) -> tuple[float, float]:
    """(B, resolution) on the tabulated non-decreasing curve resolution(B) closest to ``target``."""
    if target <= resolutions[0]:
        return 0.0, float(resolutions[0])
    if target >= resolutions[-1]:
        return float(B_FACTOR_TABLE[-1]), float(resolutions[-1])
    upper = int(np.searchsorted(resolutions, target, side="left"))
    lower = upper - 1
    fraction = (target - resolutions[lower]) / max(resolutions[upper] - resolutions[lower], 1e-12)
    b_factor = B_FACTOR_TABLE[lower] + fraction * (B_FACTOR_TABLE[upper] - B_FACTOR_TABLE[lower])
    return float(b_factor), float(target)


def noise_variance_for(target: float, density: float, b_factor: float, table: ExpectedFsc) -> float:
    """Noise variance per voxel at which atoms of ``density`` (Å⁻³) and ``b_factor`` (Å²) reach
    expected FSC resolution ``target`` (Å); bisection in log variance."""
    index = int(np.argmin(np.abs(B_FACTOR_TABLE - b_factor)))
    low, high = -60.0, 60.0  # natural log of the variance
    for _ in range(80):
        middle = 0.5 * (low + high)
        resolution = table.resolution(np.array([density]), math.exp(middle))[0, index]
        low, high = (middle, high) if resolution < target else (low, middle)
    return math.exp(0.5 * (low + high))


def synthesize_half_maps(
    structure: Structure,
    atom_resolution: np.ndarray,
    *,
    grid: Grid | None = None,
    voxel_size: float = 1.0,
    padding: float = 6.0,
    noise_sd: float | None = None,
    finest_b_factor: float = 80.0,
    window: float | None = None,
    soft_edge: float | None = None,
    shape: str = "sphere",
    threshold: float | None = None,
    mask_radius: float = 3.0,
    background: float | None = None,
    seed: int = 0,
) -> SyntheticHalfMaps:
    """Render ``structure`` with per-atom B-factors from target resolutions and add half-map noise.

    Args:
        structure: the model (coordinates Å; its own B-factors are replaced).
        atom_resolution: (N,) target local resolution per atom (Å), e.g. from
            :func:`two_region_resolution` or :func:`radial_resolution`.
        grid: the map grid; default: the atoms' bounding box plus ``padding`` Å at ``voxel_size``.
        noise_sd: noise standard deviation per voxel of each half map (map units); default: chosen
            so that the finest-target atoms get ``finest_b_factor`` (see the module docstring).
        finest_b_factor: Å², used only when ``noise_sd`` is None.
        window, soft_edge, shape, threshold: the local-FSC setting the truth refers to (defaults of
            :mod:`cryomaps.signal.local_fsc`).
        mask_radius: Å around atoms for the molecular mask.
        background: true-resolution value outside the mask (default 100 Å).
        seed: seeds the noise; the same inputs and seed give identical maps.
    Returns:
        :class:`SyntheticHalfMaps`.
    """
    window = locres.DEFAULT_WINDOW if window is None else window
    soft_edge = locres.DEFAULT_SOFT_EDGE if soft_edge is None else soft_edge
    threshold = locres.DEFAULT_THRESHOLD if threshold is None else threshold
    background = locres.BACKGROUND_RESOLUTION if background is None else background
    grid = grid or Grid.around(structure.coords, voxel_size, padding)
    targets = np.asarray(atom_resolution, dtype=np.float64).reshape(-1)
    if targets.shape != (structure.n_atoms,):
        raise ValueError(f"need one target resolution per atom ({structure.n_atoms}), got {targets.shape}")

    geometry = locres.window_geometry(grid.voxel_size, window, soft_edge, shape, dtype=torch.float64)
    carbon_equivalents = (
        structure.occupancies * peng_form_factor(structure.atomic_numbers, 1.0 / targets)
        / peng_form_factor(np.full(structure.n_atoms, CARBON), 1.0 / targets)
    ) ** 2
    counts = carbon_equivalent_counts(structure.coords, carbon_equivalents, grid, geometry.weights.numpy())
    density = counts / (float(np.prod(grid.voxel_size)) * float((geometry.weights**2).sum()))
    table = expected_fsc_table(tuple(grid.voxel_size.tolist()), window, soft_edge, shape, threshold)
    if noise_sd is None:
        finest_atoms = targets <= targets.min() * 1.0001
        variance = noise_variance_for(targets.min(), float(np.median(density[finest_atoms])), finest_b_factor, table)
        noise_sd = math.sqrt(variance)
    b_factors, truth = b_factors_for_resolution(targets, density, noise_sd**2, table)

    tensors = structure.to_tensors(dtype=torch.float64)
    signal = render_density(
        tensors["coords"], tensors["atomic_numbers"], grid, b_factors=torch.as_tensor(b_factors),
        occupancies=tensors["occupancies"], model="peng", sampling="point",
    ).detach().cpu().numpy()
    rng = np.random.default_rng(seed)
    half1 = signal + rng.normal(0.0, noise_sd, grid.shape)
    half2 = signal + rng.normal(0.0, noise_sd, grid.shape)

    mask = atom_mask(structure.coords, grid, mask_radius)
    true_map = np.full(grid.shape, background, dtype=np.float64)
    true_map[mask] = truth[_nearest_atoms(structure.coords, grid, mask)]
    metadata = {
        "noise_sd": float(noise_sd),
        "snr_in_mask": float(signal[mask].var() / noise_sd**2),
        "window": float(window), "soft_edge": float(soft_edge), "shape": shape, "threshold": float(threshold),
        "mask_radius": float(mask_radius), "background": float(background), "seed": int(seed),
        "n_atoms": structure.n_atoms, "n_atoms_off_target": int(np.count_nonzero(np.abs(truth - targets) > 1e-3 * targets)),
        "b_factor_range": [float(b_factors.min()), float(b_factors.max())],
        "convention": "B from expected local-FSC resolution of a Wilson model (cryomaps.data.synthetic)",
    }
    maps = {name: DensityMap.from_grid(values.astype(np.float32), grid) for name, values in (
        ("half1", half1), ("half2", half2), ("full", 0.5 * (half1 + half2)),
        ("true_locres", true_map), ("mask", mask.astype(np.float32)))}
    return SyntheticHalfMaps(
        **maps, grid=grid, atom_target_resolution=targets, atom_resolution=truth,
        atom_b_factors=b_factors, metadata=metadata,
    )


def _nearest_atoms(coords: np.ndarray, grid: Grid, mask: np.ndarray) -> np.ndarray:
    """Index of the nearest atom of every masked voxel, in C order of the voxels (x, y, z)."""
    from scipy.spatial import cKDTree

    voxel_index = np.argwhere(mask)
    _, nearest = cKDTree(coords).query(grid.index_to_world(voxel_index))
    return nearest


def write_synthetic(result: SyntheticHalfMaps, folder: str | os.PathLike, prefix: str = "synthetic") -> dict:
    """Write the maps (``PREFIX_half1.mrc``, ``_half2``, ``_full``, ``_true_locres``, ``_mask``) and
    ``PREFIX_metadata.json`` into ``folder`` (atomically each). Returns {name: path}."""
    folder = Path(folder)
    paths = {}
    for name in ("half1", "half2", "full", "true_locres", "mask"):
        paths[name] = write_map(folder / f"{prefix}_{name}.mrc", getattr(result, name), label=f"cryomaps synthetic {name}")
    metadata_path = folder / f"{prefix}_metadata.json"
    write_text_atomically(metadata_path, json.dumps(result.metadata, indent=1))
    paths["metadata"] = metadata_path
    return paths


# ---- varied synthetic training data for the single-map local-resolution network

RESOLUTION_FIELDS = ("radial", "two_region")
GENERATED_STRUCTURES = ("helix_bundle", "example_peptide")


def synthetic_structure(name: str, rng: np.random.Generator) -> Structure:
    """A randomly rotated model: ``helix_bundle`` (random size), ``example_peptide``, or a model file
    (a path, or a file name in the shared data's ``structures`` folder)."""
    from scipy.spatial.transform import Rotation

    structure = _unrotated_structure(name, rng)
    rotation = Rotation.random(random_state=rng).as_matrix()
    centred = structure.coords - structure.coords.mean(axis=0)
    return replace(structure, coords=centred @ rotation.T)


def _unrotated_structure(name: str, rng: np.random.Generator) -> Structure:
    if name == "helix_bundle":
        return helix_bundle(n_x=int(rng.integers(2, 7)), n_y=int(rng.integers(1, 4)), n_residues=int(rng.integers(15, 41)))
    if name == "example_peptide":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "example_peptide.pdb"
            write_example_peptide(path)
            return read_structure(path)
    return read_structure(_structure_path(name), remove_waters=True, remove_hydrogens=True)


def _structure_path(name: str) -> Path:
    """``name`` itself when it is a file, else the file of that name in the shared data's structures."""
    if Path(name).is_file():
        return Path(name)
    root = find_data_root()
    if root is None or not (root / "structures" / name).is_file():
        raise InputError(name, f"no such model file (nor in the shared data's structures folder; set {ENV_VAR})")
    return root / "structures" / name


def resolution_field(coords: np.ndarray, field: str, resolution_range: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Target resolution per atom (N,) Å: ``radial`` (centre finer than edge) or ``two_region``
    (two halves along a random axis), levels drawn uniformly from ``resolution_range``."""

    finer, coarser = np.sort(rng.uniform(*resolution_range, size=2))
    if field == "radial":
        return radial_resolution(coords, finer, coarser)
    if field == "two_region":
        fine, coarse = (finer, coarser) if rng.random() < 0.5 else (coarser, finer)
        return two_region_resolution(coords, fine, coarse, axis=int(rng.integers(0, 3)))
    raise ValueError(f"unknown resolution field {field!r}; choose one of {RESOLUTION_FIELDS}")


def synthetic_example(
    structure_name: str,
    seed: int,
    voxel_size: float = 1.0,
    resolution_range: Sequence[float] = (2.5, 8.0),
    fields: Sequence[str] = RESOLUTION_FIELDS,
    finest_b_factor_range: Sequence[float] = (40.0, 160.0),
):
    """Half maps with a known local-resolution field (:class:`cryomaps.data.synthetic.SyntheticHalfMaps`).

    From ``seed``: the rotation (and size, for helix bundles) of the structure, the resolution
    field and its levels (Å), and the noise level through ``finest_b_factor`` (Å², drawn from
    ``finest_b_factor_range``; larger means less noise).
    """

    rng = np.random.default_rng(seed)
    structure = synthetic_structure(structure_name, rng)
    field = fields[int(rng.integers(0, len(fields)))]
    targets = resolution_field(structure.coords, field, resolution_range, rng)
    finest_b_factor = float(rng.uniform(*finest_b_factor_range))
    result = synthesize_half_maps(structure, targets, voxel_size=voxel_size, finest_b_factor=finest_b_factor, seed=seed)
    result.metadata.update({"structure": structure_name, "field": field, "finest_b_factor": finest_b_factor})
    return result


LABEL_KINDS = ("truth", "classical")


def synthetic_training_volumes(
    count: int,
    seed: int,
    structures: Sequence[str] = GENERATED_STRUCTURES,
    resolution_range: Sequence[float] = (2.5, 8.0),
    fields: Sequence[str] = RESOLUTION_FIELDS,
    finest_b_factor_range: Sequence[float] = (40.0, 160.0),
    preparation: Mapping | None = None,
    voxel_size_range: Sequence[float] | None = None,
    labels: str = "truth",
) -> list[dict]:
    """A volume provider for :class:`cryomaps.data.datamodules.SingleMapPatchDataModule`.

    ``count`` synthetic examples (:func:`synthetic_example`, seeds ``seed``, ``seed + 1``, …,
    structures taken in turn from ``structures``), each passed through
    :func:`prepare_training_volume` with ``preparation`` (the network metadata, see
    :meth:`InputPreparation.from_metadata`; defaults when None). Examples are rendered at the
    network's voxel size, or, with ``voxel_size_range`` (Å, low and high), at a voxel size drawn
    uniformly from it per example, so that the network also sees maps resampled as users' maps are.
    ``labels``: ``truth`` (the true local-resolution field) or ``classical`` (the windowed local FSC
    of the two half maps inside the true mask, :func:`cryomaps.data.half_maps.labelled_half_maps`, as
    labels from experimental half maps would be).
    """
    if labels not in LABEL_KINDS:
        raise InputError(None, f"labels must be one of {', '.join(LABEL_KINDS)}, not {labels!r}")
    settings = InputPreparation() if preparation is None else InputPreparation.from_metadata(preparation)
    volumes = []
    for index in range(count):
        voxel_size = settings.voxel_size
        if voxel_size_range is not None:
            voxel_size = float(np.random.default_rng([seed + index, 1]).uniform(*voxel_size_range))
        result = synthetic_example(
            structures[index % len(structures)], seed + index, voxel_size, resolution_range, fields,
            finest_b_factor_range,
        )
        if labels == "classical":
            volume = labelled_half_maps(result.half1, result.half2, result.mask.data)
        else:
            volume = {"map": result.full.data, "locres": result.true_locres.data, "mask": result.mask.data,
                      "voxel_size": result.grid.voxel_size, "origin": result.grid.origin}
        volumes.append(prepare_training_volume(volume, settings))
    return volumes
