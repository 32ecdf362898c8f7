"""Density models: atoms (coordinates, elements, B-factors, occupancies) -> a map on a grid.

Models (all differentiable with respect to coordinates, B-factors and occupancies):

- ``"molmap"``: ChimeraX ``molmap`` semantics. One normalised Gaussian per atom with integral Z
  (the atomic number) and standard deviation ``sigma = sigma_factor * resolution`` (Å; default
  ``sigma_factor = 1 / (pi sqrt 2) ≈ 0.225``), evaluated inside a cube of +/- ``cutoff_sigmas * sigma``
  (default 5) around the atom along each axis. No B-factors; occupancies only when
  ``molmap_occupancy=True`` (ChimeraX ignores them).
- ``"peng"``: the electron scattering potential from the Peng (1996) / ITC 4.3.2.2 5-Gaussian
  coefficients (read from gemmi). Per atom
  ``rho(r) = occ * sum_i a_i (4 pi / (b_i + B))^(3/2) exp(-4 pi² r² / (b_i + B))``, i.e. Gaussians of
  weight ``occ * a_i`` and per-axis variance ``(b_i + B) / (8 pi²)`` Å². Each atom is evaluated inside
  the cube of half-width equal to the radius where its density (at occupancy 1) falls below
  ``peng_cutoff_density`` (default 1e-5, gemmi's cutoff, which gemmi applies as a sphere).

Resolution for ``peng`` (``resolution_mode``):

- ``"blur"``: every Gaussian gets an extra per-axis variance ``sigma_res² = (sigma_factor * d)²``
  (Å²), i.e. an extra B-factor ``B_extra = 8 pi² sigma_res²``; ``resolution=None`` means no blur.
- ``"finite"``: finite-resolution atomic images, i.e. the Peng map with its Fourier transform cut
  sharply at ``|s| = 1/d`` (ripples included), computed by one FFT pair on a padded box in
  :func:`cryomaps.render.finite_resolution.render_finite_resolution`; point-sampled or
  voxel-averaged like the other models.

Sampling: ``"point"`` (values at voxel centres) or ``"average"`` (the exact mean of each Gaussian
over the voxel). Point sampling approximates averaging with an extra B of ``8 pi² h² / 12``.

Units: maps are in "per Å³" of the weights: a molmap atom integrates to Z, a peng atom to
``occ * sum_i a_i`` (sum of voxel values times voxel volume).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from cryomaps.errors import InputError
from cryomaps.io.grid import Grid
from cryomaps.render.finite_resolution import render_finite_resolution
from cryomaps.render.form_factors import check_atomic_numbers, peng_gaussian_terms
from cryomaps.render.gaussian_torch import single_intra_op_thread
from cryomaps.render.ops import gaussian_sum
from cryomaps.render.profiles import SAMPLING_MODES

MODELS = ("molmap", "peng")
RESOLUTION_MODES = ("blur", "finite")
MOLMAP_SIGMA_FACTOR = 1.0 / (math.pi * math.sqrt(2.0))
"""ChimeraX molmap: Gaussian standard deviation = 0.225 x resolution."""

MAX_ATOMIC_NUMBER = 118

_RADIUS_BISECTION_STEPS = 8


@dataclass(frozen=True)
class DensityModelConfig:
    """Options of the density models (see the module docstring), checked on construction.

    Attributes:
        model: ``"molmap"`` or ``"peng"``.
        resolution: d (Å). Required for ``molmap``; for ``peng``, None means no resolution limit.
        sampling: ``"point"`` or ``"average"``.
        resolution_mode: ``"blur"`` (extra Gaussian blur, sigma = sigma_factor * d) or ``"finite"``
            (finite-resolution atomic images; ``peng`` only).
        sigma_factor: Gaussian standard deviation per Å of resolution (default 1/(pi sqrt 2)).
        cutoff_sigmas: ``molmap`` window half-width in standard deviations (ChimeraX: 5).
        peng_cutoff_density: ``peng`` window radius: where an atom's density falls below this.
        molmap_occupancy: weight ``molmap`` atoms by occupancy (ChimeraX does not).

    Raises:
        InputError: a bad value, as one line that starts with the field's name
            (``sampling=cubic: expected one of point, average``).
    """

    model: str = "peng"
    resolution: float | None = None
    sampling: str = "point"
    resolution_mode: str = "blur"
    sigma_factor: float = MOLMAP_SIGMA_FACTOR
    cutoff_sigmas: float = 5.0
    peng_cutoff_density: float = 1e-5
    molmap_occupancy: bool = False

    ALWAYS_IN_DICT = ("model", "resolution", "sampling")
    """Fields that :meth:`to_dict` always writes (the others only when they differ from their defaults)."""

    def __post_init__(self):
        _check_choice("model", self.model, MODELS)
        _check_choice("sampling", self.sampling, SAMPLING_MODES)
        _check_choice("resolution_mode", self.resolution_mode, RESOLUTION_MODES)
        if self.resolution is not None:
            self._store_positive_number("resolution", "Å")
        for name in ("sigma_factor", "cutoff_sigmas", "peng_cutoff_density"):
            self._store_positive_number(name)
        if not isinstance(self.molmap_occupancy, bool):
            raise InputError(None, f"molmap_occupancy={self.molmap_occupancy}: expected true or false")
        if self.model == "molmap" and self.resolution is None:
            raise InputError(None, "resolution=None: the molmap model needs a resolution (Å)")
        if self.resolution_mode == "finite" and (self.model != "peng" or self.resolution is None):
            raise InputError(
                None, "resolution_mode=finite: finite-resolution images need the peng model and a resolution"
            )

    def _store_positive_number(self, name: str, unit: str = "") -> None:
        """Check that field ``name`` is a finite number > 0 and store it as a float."""
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
            raise InputError(None, f"{name}={value}: expected a finite number > 0{f' ({unit})' if unit else ''}")
        object.__setattr__(self, name, float(value))

    def to_dict(self) -> dict:
        """The plain (JSON-ready) form: :data:`ALWAYS_IN_DICT` and every other field that differs
        from its default, e.g. ``{"model": "molmap", "resolution": 2.0, "sampling": "point"}``
        (the form curated pairs and generator weights store). ``from_dict(to_dict())`` is equal."""
        return {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if field.name in self.ALWAYS_IN_DICT or getattr(self, field.name) != field.default
        }

    @classmethod
    def from_dict(cls, plain: Mapping, prefix: str = "") -> DensityModelConfig:
        """The options of a plain dict (:meth:`to_dict`'s form; missing fields keep their defaults).

        Args:
            plain: field names and values.
            prefix: put before the field's name in errors, to name the option as its user wrote it
                (``"render."`` gives ``render.sampling=cubic: expected one of point, average``).

        Raises:
            InputError: an unknown field or a bad value (one line naming ``prefix`` + the field).
        """
        names = [field.name for field in fields(cls)]
        try:
            unknown = [key for key in plain if key not in names]
            if unknown:
                raise InputError(None, f"{unknown[0]}: unknown render option (expected one of {', '.join(names)})")
            return cls(**plain)
        except InputError as error:
            raise InputError(None, prefix + error.problem) from None

    @property
    def resolution_sigma(self) -> float:
        """Standard deviation (Å) of the Gaussian that stands for the resolution (0 without one)."""
        return 0.0 if self.resolution is None else self.sigma_factor * self.resolution


def _check_choice(name: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(None, f"{name}={value}: expected one of {', '.join(allowed)}")


def molmap_gaussians(atomic_numbers, occupancies, config: DensityModelConfig):
    """Weights (N, 1), variances (N, 1) Å² and window radii (N,) Å of the molmap model."""
    sigma = config.resolution_sigma
    weights = atomic_numbers.to(occupancies.dtype)[:, None]
    if config.molmap_occupancy:
        weights = weights * occupancies[:, None]
    variances = torch.full_like(weights, sigma**2)
    radii = torch.full_like(occupancies, config.cutoff_sigmas * sigma)
    return weights, variances, radii


def peng_gaussians(atomic_numbers, b_factors, occupancies, config: DensityModelConfig):
    """Weights (N, 5), variances (N, 5) Å² and window radii (N,) Å of the Peng model."""
    a, variances = peng_gaussian_terms(atomic_numbers, b_factors)
    weights = occupancies[:, None] * a
    variances = variances + config.resolution_sigma**2
    # the radius depends only on (element, B): solve once per distinct pair (often a few: models
    # with B = 0 or shared B-factors, symmetry copies)
    pair, representative = distinct_pairs(atomic_numbers, b_factors.detach())
    radii = density_cutoff_radii(a[representative], variances.detach()[representative], config.peng_cutoff_density)
    return weights, variances, radii[pair]


def distinct_pairs(atomic_numbers: torch.Tensor, b_factors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Number (N,) of each atom's distinct (atomic number, B-factor) pair, and one atom (M,) with
    each of the M pairs."""
    if b_factors.element_size() <= 4:  # exact integer key: the B-factor's float32 bits and Z < 128
        b_key = b_factors.to(torch.float32).view(torch.int32).long()
    else:
        b_key = torch.unique(b_factors, return_inverse=True)[1]
    _, pair = torch.unique(b_key * 128 + atomic_numbers, return_inverse=True)
    n_pairs = int(pair.max()) + 1 if len(pair) else 0
    representative = pair.new_empty(n_pairs).scatter_(0, pair, torch.arange(len(pair), device=pair.device))
    return pair, representative


@torch.no_grad()
def density_cutoff_radii(weights: torch.Tensor, variances: torch.Tensor, threshold: float) -> torch.Tensor:
    """Radius (N,) Å beyond which ``sum_k weights * G(r; variances)`` stays below ``threshold``.

    ``G`` is the normalised 3-D Gaussian. The radius is bracketed by the largest radius where one
    term alone reaches ``threshold`` (below) and the largest where one term reaches
    ``threshold / K`` (above, since then the K terms sum to less), then refined by bisection on the
    (decreasing) sum; the upper end of the final bracket is returned.
    """
    # (K, N) layout: the sums over terms add whole rows. Exponents are clamped at -80 (terms below
    # e^-80 of their peak cannot reach any threshold) to keep exp off its slow underflow path.
    variances = variances.T.contiguous()
    n_terms = variances.shape[0]
    peaks = weights.T.clamp(min=0) * (2 * math.pi * variances) ** -1.5
    scale = -0.5 / variances

    def largest_radius(level):
        return torch.sqrt(2 * variances * torch.log((peaks / level).clamp(min=1.0))).amax(dim=0)

    low, high = largest_radius(threshold), largest_radius(threshold / n_terms)
    for _ in range(_RADIUS_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        density = ((middle * middle) * scale).clamp_(min=-80.0).exp_().mul_(peaks).sum(dim=0)
        above = density > threshold
        low = torch.where(above, middle, low)
        high = torch.where(above, high, middle)
    return high


def _as_batched(coords, atomic_numbers, b_factors, occupancies):
    """Coordinates (B, N, 3) and per-atom tensors (B, N), with ``batched`` telling if a batch was given."""
    if coords.ndim not in (2, 3) or coords.shape[-1] != 3:
        raise InputError(None, f"coordinates must have shape (N, 3) or (B, N, 3), got {tuple(coords.shape)}")
    if not coords.is_floating_point():
        raise InputError(None, f"coordinates must be a floating-point tensor, got {coords.dtype}")
    batched = coords.ndim == 3
    coords = coords if batched else coords[None]
    n_batch, n_atoms, _ = coords.shape
    if n_atoms == 0:
        raise InputError(None, "no atoms to render (empty coordinates)")
    if not torch.isfinite(coords.detach()).all():
        raise InputError(None, "coordinates contain NaN or infinite values")

    def per_atom(values, default, name, dtype):
        if values is None:
            if default is None:
                raise InputError(None, f"{name} are required")
            values = torch.full((n_atoms,), default)
        values = torch.as_tensor(values)
        values = values.to(device=coords.device, dtype=dtype)
        if values.shape not in ((n_atoms,), (n_batch, n_atoms)):
            raise InputError(None, f"{name} must have shape ({n_atoms},) or ({n_batch}, {n_atoms}), got {tuple(values.shape)}")
        return values.expand(n_batch, n_atoms)

    return (
        coords,
        per_atom(atomic_numbers, None, "atomic numbers", torch.long),
        per_atom(b_factors, 0.0, "B-factors", coords.dtype),
        per_atom(occupancies, 1.0, "occupancies", coords.dtype),
        batched,
    )


@single_intra_op_thread()
def render_density(
    coords: torch.Tensor,
    atomic_numbers,
    grid: Grid,
    config: DensityModelConfig | None = None,
    *,
    b_factors=None,
    occupancies=None,
    **options,
) -> torch.Tensor:
    """Differentiable density of atoms on ``grid``.

    Args:
        coords: (N, 3) or (B, N, 3) atom positions (Å), (x, y, z); float32 or float64. Gradients
            flow to it.
        atomic_numbers: (N,) or (B, N) integers (1..98 for peng).
        grid: output sampling (shape, voxel size, origin); results are indexed (x, y, z).
        config: a :class:`DensityModelConfig`; ``options`` override its fields
            (e.g. ``model="molmap", resolution=4.0``).
        b_factors: (N,) or (B, N) isotropic B-factors (Å²), default 0; used by ``peng``.
        occupancies: (N,) or (B, N), default 1.

    Returns:
        (nx, ny, nz) tensor, or (B, nx, ny, nz) for batched ``coords``, with the dtype and device
        of ``coords``.
    """
    config = replace(config or DensityModelConfig(), **options)
    coords, atomic_numbers, b_factors, occupancies, batched = _as_batched(
        coords, atomic_numbers, b_factors, occupancies
    )
    if config.resolution_mode == "finite":
        maps = render_finite_resolution(
            coords, atomic_numbers, b_factors, occupancies, grid, config.resolution, sampling=config.sampling
        )
    else:
        maps = _render_gaussians(coords, atomic_numbers, b_factors, occupancies, grid, config)
    return maps if batched else maps[0]


def _render_gaussians(coords, atomic_numbers, b_factors, occupancies, grid, config):
    n_batch, n_atoms, _ = coords.shape
    flat_numbers, flat_b, flat_occ = (t.reshape(-1) for t in (atomic_numbers, b_factors, occupancies))
    if config.model == "molmap":
        check_atomic_numbers(flat_numbers, max_atomic_number=MAX_ATOMIC_NUMBER)
        weights, variances, radii = molmap_gaussians(flat_numbers, flat_occ, config)
    else:
        weights, variances, radii = peng_gaussians(flat_numbers, flat_b, flat_occ, config)
    batch_index = torch.arange(n_batch, device=coords.device).repeat_interleave(n_atoms)
    return gaussian_sum(
        coords.reshape(-1, 3),
        weights,
        variances,
        radii,
        grid,
        batch_index=batch_index,
        n_batch=n_batch,
        sampling=config.sampling,
    )


def render_structure(
    structure,
    grid: Grid,
    config: DensityModelConfig | None = None,
    *,
    device=None,
    dtype: torch.dtype = torch.float32,
    **options,
) -> torch.Tensor:
    """Render a :class:`cryomaps.io.Structure` on ``grid`` -> (nx, ny, nz) tensor.

    ``config`` and ``options`` as in :func:`render_density` (e.g. ``model="molmap",
    resolution=4.0, sampling="average"``); ``device`` and ``dtype`` choose where and in which
    precision the map is computed.
    """
    if structure.n_atoms == 0:
        raise InputError(structure.source, "the structure has no atoms")
    tensors = structure.to_tensors(device=device, dtype=dtype)
    return render_density(
        tensors["coords"],
        tensors["atomic_numbers"],
        grid,
        config,
        b_factors=tensors["b_factors"],
        occupancies=tensors["occupancies"],
        **options,
    )


def render_structure_array(structure, grid: Grid, config: DensityModelConfig | None = None, **options) -> np.ndarray:
    """:func:`render_structure` (same arguments) without gradients, as a numpy array (nx, ny, nz)
    on the CPU, of the rendering's dtype (float32 by default)."""
    with torch.no_grad():
        return render_structure(structure, grid, config, **options).cpu().numpy()


def min_max(values: np.ndarray) -> np.ndarray:
    """``values`` scaled linearly to [0, 1] (all zeros when constant); float32."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def network_input(structure, grid: Grid, config: DensityModelConfig) -> np.ndarray:
    """The struc2map generator's input: ``structure`` rendered with ``config`` on ``grid``
    (float32, then float64), min-max scaled to [0, 1]; float32 (x, y, z).

    Curation makes the training inputs with it, and generation the inputs of a trained generator
    from the options its weights carry (``metadata["input"]``, :meth:`DensityModelConfig.to_dict`).
    """
    return min_max(render_structure_array(structure, grid, config).astype(np.float64))
