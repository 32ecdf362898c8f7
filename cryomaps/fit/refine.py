"""Real-space refinement: rigid bodies, coordinates, B-factors and occupancies against a map.

Target (Afonine et al.'s real-space target): inside a mask of radius ``mask_radius`` Å around the
atoms (recomputed at the start of every macro-cycle), ``T = Σ (k ρ_model + c - ρ_map)² / Σ (ρ_map -
mean)²`` with scale k and offset c solved in closed form at every evaluation
(:func:`cryomaps.fit.score.scaled_residual`; ``T = 1 - r²``, r the masked correlation). The model
map is the Peng potential with per-atom B and occupancy at resolution R
(:func:`cryomaps.fit.score.model_map`), by default as finite-resolution atomic images (the form
factor cut at 1/R), on the sub-box of the map around the model.

Weighting: the data term is ``D = ½ N_eff T / T_0``, with T_0 the target at the start and
``N_eff = N_mask · (h / (R/2))³`` the number of independent resolution elements in the mask (h the
voxel size), so D is about ½ per independent observation, the same scale as restraint energies
(½ Σ z²). ``xyz_weight`` (default 5) multiplies
D against the geometry (:mod:`cryomaps.fit.restraints`). The default was chosen on two measured
cases: a synthetic 3 Å map of the proteasome segment with noise, 0.5 Å rms perturbation (weight 5:
72 % closer to the truth, bond RMSD 0.003 Å; 10: 81 %), and 5NI1 in EMD-3488 (weight 5: bonds
0.011 Å, angles 1.3°; 10: angles 2.1°).

Parametrisations (each mode optimises only its own parameters, L-BFGS with strong-Wolfe line search):

- ``rigid``: one :class:`cryomaps.fit.pose.RigidPose` per chain (or for the model).
- ``xyz``: a displacement per atom, restrained by the geometry.
- ``adp``: B = B_min + (B_max - B_min)·sigmoid(u) per atom, residue or chain, restrained by
  ``½ Σ_bonds ((B_i - B_j) / adp_sigma)²`` (bonded atoms have similar B).
- ``occupancy``: per residue, or per alternative-conformation group: ``q_g = e^{z_g} / (1 + Σ_h e^{z_h})``
  over the conformers h of a residue, so each q is in [0, 1] and a residue's conformers sum to ≤ 1.
  Atoms without altloc in a residue that has alternative conformations keep their occupancy.

Macro-cycles run the selected modes in the fixed order rigid → xyz → adp → occupancy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from cryomaps.errors import CryomapsError, InputError
from cryomaps.fit.local import rigid_groups
from cryomaps.fit.pose import RigidPose, group_centres
from cryomaps.fit.restraints import (
    covalent_bonds,
    geometry_from_model,
    geometry_from_monomer_library,
    monomer_library_path,
)
from cryomaps.fit.score import box_around, model_map, pearson, scaled_residual
from cryomaps.metrics.masks import atom_mask
from cryomaps.render import DensityModelConfig

REFINE_MODES = ("rigid", "xyz", "adp", "occupancy")
ADP_GROUPINGS = ("atom", "residue", "chain")


@dataclass(frozen=True)
class RefineOptions:
    """Options of :func:`refine`.

    Attributes:
        resolution: R (Å).
        modes: subset of ``REFINE_MODES`` (run in that fixed order every cycle).
        cycles: macro-cycles.
        iterations: L-BFGS iterations per mode and cycle.
        model, resolution_mode: the density model (``peng``; ``finite``, the finite-resolution
            atomic images, by default, or ``blur``, Peng + Gaussian sigma = 0.225 R).
        mask_radius: Å around atoms (default max(2.5, 0.75 R)).
        adp_groups: ``atom``, ``residue`` or ``chain``.
        b_range: allowed B (Å²).
        adp_sigma: allowed B difference of bonded atoms (Å²) in the ADP similarity restraint.
        rigid_bodies: ``chain`` or ``model``.
        xyz_weight: multiplier of the data term against the geometry restraints.
        monomer_library: CCP4 monomer library folder (default ``$CLIBD_MON``; none: covalent radii).
        reference_coords: (N, 3) Å; geometry targets from this model instead of the starting one
            (covalent-radii restraints only).
    """

    resolution: float
    modes: tuple = ("adp",)
    cycles: int = 5
    iterations: int = 8
    model: str = "peng"
    resolution_mode: str = "finite"
    mask_radius: float | None = None
    adp_groups: str = "atom"
    b_range: tuple = (2.0, 300.0)
    adp_sigma: float = 10.0
    rigid_bodies: str = "chain"
    xyz_weight: float = 5.0
    monomer_library: str | None = None
    reference_coords: object = field(default=None, compare=False)

    def __post_init__(self):
        unknown = set(self.modes) - set(REFINE_MODES)
        if unknown or not self.modes:
            raise InputError(None, f"refinement modes must be some of {REFINE_MODES}, got {self.modes}")
        if self.adp_groups not in ADP_GROUPINGS:
            raise InputError(None, f"ADP groups must be one of {ADP_GROUPINGS}, got {self.adp_groups!r}")
        if not (self.resolution > 0 and math.isfinite(self.resolution)):
            raise InputError(None, f"resolution must be a positive number of Å, got {self.resolution}")

    @property
    def mask_radius_A(self) -> float:
        return self.mask_radius if self.mask_radius is not None else max(2.5, 0.75 * self.resolution)

    @property
    def moves_atoms(self) -> bool:
        """Whether a mode changes coordinates (rigid or xyz)."""
        return bool({"rigid", "xyz"} & set(self.modes))

    def ordered_modes(self) -> list:
        return [mode for mode in REFINE_MODES if mode in self.modes]


@dataclass
class RefineResult:
    """Refined coordinates (N, 3) Å, B-factors (N,) Å², occupancies (N,), and the log."""

    coords: np.ndarray
    b_factors: np.ndarray
    occupancies: np.ndarray
    correlation_before: float
    correlation_after: float
    cycles: list
    geometry: dict | None
    seconds: float


class _Target:
    """The data term on the sub-box around the model: model map vs experimental map in a mask."""

    def __init__(self, structure, density_map, options: RefineOptions):
        self.config = DensityModelConfig(model=options.model, resolution=options.resolution,
                                         resolution_mode=options.resolution_mode)
        self.options = options
        # the box only has to hold the mask (atoms outside it still add density to the voxels inside),
        # plus room for the atoms to move when coordinates are refined
        moving = options.resolution if options.moves_atoms else 0.0
        margin = options.mask_radius_A + float(np.max(density_map.voxel_size)) + moving
        slices, self.grid = box_around(structure.coords, density_map.grid, margin)
        self.map = torch.as_tensor(density_map.data[slices], dtype=torch.float64)
        self.numbers = torch.as_tensor(structure.atomic_numbers)
        self.scale = 1.0

    def set_mask(self, coords: np.ndarray) -> None:
        mask = torch.as_tensor(atom_mask(coords, self.grid, self.options.mask_radius_A)).reshape(-1)
        if int(mask.sum()) < 10:
            raise InputError(None, "fewer than 10 map voxels lie near the model: is it inside the map?")
        self.indices = torch.nonzero(mask).squeeze(1)
        self.map_values = self.map.reshape(-1)[self.indices]
        voxel = float(np.prod(self.grid.voxel_size)) ** (1 / 3)
        self.n_effective = float(len(self.indices)) * min(1.0, (2 * voxel / self.options.resolution) ** 3)

    def model_values(self, coords, b_factors, occupancies) -> torch.Tensor:
        """Model map values (M,) at the mask's voxels (float64)."""
        density = model_map(coords.float(), self.numbers, b_factors.float(), occupancies.float(), self.grid, self.config)
        return density.reshape(-1)[self.indices].double()

    def data_term(self, coords, b_factors, occupancies) -> torch.Tensor:
        """½ N_eff T / T_0 (see the module docstring)."""
        target, _, _ = scaled_residual(self.model_values(coords, b_factors, occupancies), self.map_values)
        return 0.5 * self.n_effective * target / self.scale

    def correlation(self, coords, b_factors, occupancies) -> float:
        with torch.no_grad():
            return float(pearson(self.model_values(coords, b_factors, occupancies), self.map_values))


def masked_correlation(structure, density_map, options: RefineOptions) -> float:
    """The refinement's masked map-model correlation of ``structure`` as it is (mask around its atoms)."""
    target = _Target(structure, density_map, options)
    target.set_mask(structure.coords)
    tensors = structure.to_tensors(dtype=torch.float64)
    return target.correlation(tensors["coords"], tensors["b_factors"], tensors["occupancies"])


def refine(structure, density_map, options: RefineOptions, progress=None) -> RefineResult:
    """Refine ``structure`` against ``density_map`` (see the module docstring).

    ``progress``: optional callable receiving each cycle's log entry (a dict) as it completes.
    """
    started = time.perf_counter()
    state = {
        "coords": torch.as_tensor(structure.coords, dtype=torch.float64),
        "b": torch.as_tensor(structure.b_factors, dtype=torch.float64).clamp(*options.b_range),
        "occ": torch.as_tensor(structure.occupancies, dtype=torch.float64),
    }
    target = _Target(structure, density_map, options)
    target.set_mask(structure.coords)
    correlation_before = target.correlation(state["coords"], state["b"], state["occ"])
    target.scale = max(1.0 - correlation_before**2, 1e-6) if correlation_before > 0 else 1.0  # T_0 = 1 - r0²
    geometry = _geometry(structure, options) if "xyz" in options.modes else None
    steps = {"rigid": _RigidStep, "xyz": _CoordinateStep, "adp": _AdpStep, "occupancy": _OccupancyStep}
    cycles = []
    for cycle in range(1, options.cycles + 1):
        if cycle > 1 and options.moves_atoms:
            target.set_mask(state["coords"].numpy())
        entry = {"cycle": cycle}
        for mode in options.ordered_modes():
            evaluations = steps[mode](structure, state, options, geometry).run(target, options.iterations)
            entry["evaluations"] = entry.get("evaluations", 0) + evaluations
            entry[f"correlation_after_{mode}"] = target.correlation(state["coords"], state["b"], state["occ"])
        entry["correlation"] = entry[f"correlation_after_{options.ordered_modes()[-1]}"]
        entry["seconds"] = time.perf_counter() - started
        if geometry is not None:
            entry.update(geometry.deviations(state["coords"].numpy()))
        cycles.append(entry)
        if progress is not None:
            progress(entry)
    for name, values in state.items():
        if not torch.isfinite(values).all():
            raise CryomapsError(f"refinement diverged: non-finite {name} (try fewer modes or a smaller --xyz-weight)")
    correlation_after = cycles[-1]["correlation"]
    if options.moves_atoms:
        target.set_mask(structure.coords)  # the starting model's mask, as for correlation_before
        correlation_after = target.correlation(state["coords"], state["b"], state["occ"])
    return RefineResult(
        coords=state["coords"].numpy().copy(),
        b_factors=state["b"].numpy().copy(),
        occupancies=state["occ"].numpy().copy(),
        correlation_before=correlation_before,
        correlation_after=correlation_after,
        cycles=cycles,
        geometry=None if geometry is None else geometry.deviations(state["coords"].numpy()),
        seconds=time.perf_counter() - started,
    )


def _geometry(structure, options: RefineOptions):
    library = monomer_library_path(options.monomer_library)
    if library is not None:
        return geometry_from_monomer_library(structure, library)
    return geometry_from_model(structure, options.reference_coords)


class _Step:
    """One mode's parameters: ``current()`` gives (coords, B, occupancies, restraint energy)."""

    parameters: list

    def current(self):
        raise NotImplementedError

    def run(self, target: _Target, iterations: int) -> int:
        """Optimise in place; returns the number of target evaluations."""
        evaluations = 0
        optimiser = torch.optim.LBFGS(self.parameters, max_iter=iterations, line_search_fn="strong_wolfe",
                                      history_size=10)

        def closure():
            nonlocal evaluations
            evaluations += 1
            optimiser.zero_grad()
            coords, b_factors, occupancies, restraint = self.current()
            loss = target.data_term(coords, b_factors, occupancies) + restraint
            loss.backward()
            return loss

        optimiser.step(closure)
        with torch.no_grad():
            coords, b_factors, occupancies, _ = self.current()
            self.state.update(coords=coords.detach().clone(), b=b_factors.detach().clone(), occ=occupancies.detach().clone())
        return evaluations


class _RigidStep(_Step):
    def __init__(self, structure, state, options, geometry):
        self.state = state
        labels, names = rigid_groups(structure, "chain" if options.rigid_bodies == "chain" else "model")
        self.groups = torch.as_tensor(labels)
        self.centres = group_centres(state["coords"], self.groups, len(names))
        lever = float(torch.sqrt(((state["coords"] - self.centres[self.groups]) ** 2).sum(dim=1).mean()))
        self.pose = RigidPose(len(names), lever=max(lever, 1.0))
        self.parameters = list(self.pose.parameters())

    def current(self):
        coords = self.pose(self.state["coords"], self.centres, self.groups)
        return coords, self.state["b"], self.state["occ"], coords.new_zeros(())


class _CoordinateStep(_Step):
    def __init__(self, structure, state, options, geometry):
        self.state, self.geometry = state, geometry
        self.weight = options.xyz_weight
        self.shift = torch.zeros_like(state["coords"], requires_grad=True)
        self.parameters = [self.shift]

    def current(self):
        coords = self.state["coords"] + self.shift
        return coords, self.state["b"], self.state["occ"], self.geometry.energy(coords) / self.weight


class _AdpStep(_Step):
    def __init__(self, structure, state, options, geometry):
        self.state = state
        self.low, self.high = options.b_range
        self.index = torch.as_tensor(_group_labels(structure, options.adp_groups))
        n_groups = int(self.index.max()) + 1
        group_b = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, self.index, state["b"])
        group_b /= torch.bincount(self.index, minlength=n_groups).to(torch.float64)
        fraction = ((group_b - self.low) / (self.high - self.low)).clamp(1e-4, 1 - 1e-4)
        self.logits = torch.logit(fraction).requires_grad_(True)
        self.parameters = [self.logits]
        self.pairs = torch.as_tensor(_bonds(structure, geometry)) if options.adp_groups == "atom" else None
        self.sigma = options.adp_sigma

    def current(self):
        b_factors = (self.low + (self.high - self.low) * torch.sigmoid(self.logits))[self.index]
        restraint = b_factors.new_zeros(())
        if self.pairs is not None and len(self.pairs):
            difference = b_factors[self.pairs[:, 0]] - b_factors[self.pairs[:, 1]]
            restraint = 0.5 * ((difference / self.sigma) ** 2).sum()
        return self.state["coords"], b_factors, self.state["occ"], restraint


class _OccupancyStep(_Step):
    def __init__(self, structure, state, options, geometry):
        self.state = state
        group_of_atom, residue_of_group = occupancy_groups(structure)
        self.atoms = torch.as_tensor(np.flatnonzero(group_of_atom >= 0))
        self.group_of_atom = torch.as_tensor(group_of_atom[group_of_atom >= 0])
        self.residue_of_group = torch.as_tensor(residue_of_group)
        n_groups = len(residue_of_group)
        start = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, self.group_of_atom, state["occ"][self.atoms])
        start = (start / torch.bincount(self.group_of_atom, minlength=n_groups)).clamp(0.02, 0.99)
        total = torch.zeros(int(self.residue_of_group.max()) + 1, dtype=torch.float64).index_add_(0, self.residue_of_group, start)
        free = (1 - total).clamp(min=0.02)
        self.logits = torch.log(start / free[self.residue_of_group]).requires_grad_(True)
        self.parameters = [self.logits]

    def current(self):
        weights = torch.exp(self.logits)
        totals = torch.ones(int(self.residue_of_group.max()) + 1, dtype=weights.dtype).index_add(0, self.residue_of_group, weights)
        occupancy = weights / totals[self.residue_of_group]
        occupancies = self.state["occ"].index_put((self.atoms,), occupancy[self.group_of_atom])
        return self.state["coords"], self.state["b"], occupancies, occupancy.new_zeros(())


def _group_labels(structure, grouping: str) -> np.ndarray:
    """Group label (N,) per atom: every atom its own, one per residue, or one per chain."""
    if grouping == "atom":
        return np.arange(structure.n_atoms)
    if grouping == "chain":
        return np.unique(structure.chain_ids, return_inverse=True)[1]
    keys = [f"{c}|{s}" for c, s in zip(structure.chain_ids, structure.residue_seqids)]
    return np.unique(keys, return_inverse=True)[1]


def occupancy_groups(structure) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy group (N,) of each atom (-1: kept fixed) and the residue (G,) of each group.

    A residue without alternative conformations is one group; one with them has a group per altloc,
    and its atoms without altloc are kept fixed.
    """
    residues = np.unique([f"{c}|{s}" for c, s in zip(structure.chain_ids, structure.residue_seqids)],
                         return_inverse=True)[1]
    has_altlocs = np.zeros(residues.max() + 1, dtype=bool)
    np.logical_or.at(has_altlocs, residues, structure.altlocs != "")
    keys = np.array([f"{r}|{a}" for r, a in zip(residues, structure.altlocs)])
    groups, group_of_atom = np.unique(keys, return_inverse=True)
    residue_of_group = np.array([int(key.split("|")[0]) for key in groups])
    fixed = has_altlocs[residues] & (structure.altlocs == "")
    group_of_atom = np.where(fixed, -1, group_of_atom)
    used = np.unique(group_of_atom[group_of_atom >= 0])
    renumber = -np.ones(len(groups), dtype=np.int64)
    renumber[used] = np.arange(len(used))
    return np.where(group_of_atom >= 0, renumber[np.maximum(group_of_atom, 0)], -1), residue_of_group[used]


def _bonds(structure, geometry) -> np.ndarray:
    if geometry is not None:
        return geometry.bonds
    return covalent_bonds(structure)
