"""Geometry restraints for real-space refinement: bonds, angles, planes, chirality and non-bonded repulsion.

Geometry comes from one of two sources:

- a CCP4 monomer library (``--monomer-library DIR`` or ``$CLIBD_MON``): gemmi's topology
  (:func:`gemmi.read_monomer_lib`, :func:`gemmi.prepare_topology`) gives bonds and angles with
  ideal values and standard deviations, planes of 4 or more atoms (each atom's distance from the
  least-squares plane through the plane's atoms, against the plane's esd) and chiral centres (the
  signed volume ``(a1 - c) · ((a2 - c) × (a3 - c))`` Å³ against gemmi's ideal volume, computed from
  the ideal bonds and angles and signed by the library's ``volume_sign``; σ = ``CHIRAL_SIGMA_A3``,
  Refmac's and Phenix's default; centres marked ``both`` are not restrained);
- otherwise, covalent radii: atoms i, j of one chain are bonded when their distance in the starting
  model is below ``r_i + r_j + 0.45 Å`` (gemmi's covalent radii; alternative conformations A and B
  never bond), angles are the pairs of bonds sharing an atom, and the targets are the starting
  model's own values (or those of a reference model), with σ = 0.02 Å and 2°.

Non-bonded repulsion: heavy-atom pairs that are neither bonded nor 1-3 (angle ends) and within
``NONBONDED_DISTANCE_A`` + 1 Å in the starting model are pushed apart by ``((d0 - d) / σ)²`` when
closer than d0 = their starting distance clipped to [``NONBONDED_FLOOR_A``, ``NONBONDED_DISTANCE_A``]
(so hydrogen bonds and 1-4 contacts of the start are not strained, and no pair gets closer than 2.2 Å).
Distances in Å, angles in degrees; energies are sums of squared z-scores / 2 (dimensionless).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from cryomaps.errors import InputError
from cryomaps.io.structures import keep_selected_atoms

BOND_TOLERANCE_A = 0.45
BOND_SIGMA_A = 0.02
ANGLE_SIGMA_DEGREES = 2.0
NONBONDED_DISTANCE_A = 2.9
NONBONDED_FLOOR_A = 2.2
NONBONDED_SIGMA_A = 0.2
CHIRAL_SIGMA_A3 = 0.2
MONOMER_LIBRARY_ENV = "CLIBD_MON"


@dataclass
class Geometry:
    """Geometry restraints of one model (index arrays into its atoms).

    Attributes:
        bonds: (B, 2) atom pairs; bond_targets, bond_sigmas: (B,) Å.
        angles: (A, 3) atom triples (the middle one is the vertex); angle_targets, angle_sigmas: (A,) degrees.
        nonbonded: (P, 2) pairs pushed apart below nonbonded_targets (P,) Å.
        source: ``"monomer library"`` or ``"covalent radii"``.
        plane_atoms: (M,) the atoms of all planes; plane_of_atom: (M,) the plane (0..L-1) of each;
            plane_sigmas: (L,) Å, the allowed distance from the plane (monomer library only).
        chirals: (C, 4) atoms (centre, a1, a2, a3); chiral_targets: (C,) signed ideal volumes Å³
            (monomer library only).
    """

    bonds: np.ndarray
    bond_targets: np.ndarray
    bond_sigmas: np.ndarray
    angles: np.ndarray
    angle_targets: np.ndarray
    angle_sigmas: np.ndarray
    nonbonded: np.ndarray
    nonbonded_targets: np.ndarray
    source: str
    plane_atoms: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    plane_of_atom: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    plane_sigmas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    chirals: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    chiral_targets: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def energy(self, coords: torch.Tensor) -> torch.Tensor:
        """Sum of squared z-scores / 2 of bonds, angles, planes, chiral volumes and non-bonded contacts
        at ``coords`` (N, 3)."""
        bonds = _as_index(self.bonds)
        bond_z = (bond_lengths(coords, bonds) - _like(self.bond_targets, coords)) / _like(self.bond_sigmas, coords)
        angle_z = (bond_angles(coords, _as_index(self.angles)) - _like(self.angle_targets, coords)) / _like(self.angle_sigmas, coords)
        plane_z = self.plane_distances(coords) / _like(self.plane_sigmas, coords)[_as_index(self.plane_of_atom)]
        chiral_z = (chiral_volumes(coords, _as_index(self.chirals)) - _like(self.chiral_targets, coords)) / CHIRAL_SIGMA_A3
        contact = bond_lengths(coords, _as_index(self.nonbonded))
        clash_z = torch.relu(_like(self.nonbonded_targets, coords) - contact) / NONBONDED_SIGMA_A
        return 0.5 * sum((z**2).sum() for z in (bond_z, angle_z, plane_z, chiral_z, clash_z))

    def plane_distances(self, coords: torch.Tensor) -> torch.Tensor:
        """Signed distances (M,) Å of the plane atoms from their planes (see :func:`plane_distances`)."""
        return plane_distances(coords, _as_index(self.plane_atoms), _as_index(self.plane_of_atom), len(self.plane_sigmas))

    def deviations(self, coords) -> dict:
        """RMS deviations from the targets and the count of each restraint kind: bonds (Å), angles
        (degrees), planes (the atoms' distances from their planes, Å) and chiral volumes (Å³)."""
        coords = torch.as_tensor(np.asarray(coords, dtype=np.float64))
        bond_error = bond_lengths(coords, _as_index(self.bonds)).numpy() - self.bond_targets
        angle_error = bond_angles(coords, _as_index(self.angles)).numpy() - self.angle_targets
        plane_error = self.plane_distances(coords).numpy()
        chiral_error = chiral_volumes(coords, _as_index(self.chirals)).numpy() - self.chiral_targets
        return {
            "bond_rmsd_A": _rms(bond_error),
            "angle_rmsd_degrees": _rms(angle_error),
            "plane_rmsd_A": _rms(plane_error),
            "chiral_rmsd_A3": _rms(chiral_error),
            "n_bonds": int(len(bond_error)),
            "n_angles": int(len(angle_error)),
            "n_planes": int(len(self.plane_sigmas)),
            "n_chirals": int(len(chiral_error)),
            "source": self.source,
        }


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2))) if len(values) else 0.0


def _as_index(pairs) -> torch.Tensor:
    return torch.as_tensor(np.asarray(pairs, dtype=np.int64))


def _like(values, reference: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=reference.dtype, device=reference.device)


def bond_lengths(coords: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Distances (P,) Å between atom pairs (P, 2)."""
    if len(pairs) == 0:
        return coords.new_zeros(0)
    return (coords[pairs[:, 0]] - coords[pairs[:, 1]]).norm(dim=1)


def bond_angles(coords: torch.Tensor, triples: torch.Tensor) -> torch.Tensor:
    """Angles (A,) degrees at the middle atom of triples (A, 3); atan2 form, stable near 0° and 180°."""
    if len(triples) == 0:
        return coords.new_zeros(0)
    first = coords[triples[:, 0]] - coords[triples[:, 1]]
    second = coords[triples[:, 2]] - coords[triples[:, 1]]
    sine = torch.cross(first, second, dim=1).norm(dim=1)
    cosine = (first * second).sum(dim=1)
    return torch.rad2deg(torch.atan2(sine, cosine))


def plane_distances(coords: torch.Tensor, atoms: torch.Tensor, plane_of_atom: torch.Tensor, n_planes: int) -> torch.Tensor:
    """Signed distances (M,) Å of atoms (M,) from the least-squares plane of their plane (M,) labels.

    Each plane passes through its atoms' centroid, with the normal of least scatter. The normal is
    taken without gradient: it minimises the sum of squared distances, so the gradient of that sum
    with respect to the coordinates is the same without the normal's own derivative (envelope
    theorem), and ``torch.linalg.eigh``'s backward, unstable for repeated eigenvalues, is not needed.
    """
    if len(atoms) == 0:
        return coords.new_zeros(0)
    points = coords[atoms]
    counts = torch.bincount(plane_of_atom, minlength=n_planes).to(coords.dtype)[:, None]
    centroids = coords.new_zeros(n_planes, 3).index_add_(0, plane_of_atom, points) / counts
    centred = points - centroids[plane_of_atom]
    with torch.no_grad():
        outer = centred[:, :, None] * centred[:, None, :]
        scatter = coords.new_zeros(n_planes, 3, 3).index_add_(0, plane_of_atom, outer)
        normals = torch.linalg.eigh(scatter).eigenvectors[:, :, 0]
    return (centred * normals[plane_of_atom]).sum(dim=1)


def chiral_volumes(coords: torch.Tensor, quadruples: torch.Tensor) -> torch.Tensor:
    """Signed chiral volumes (C,) Å³, ``(a1 - c) · ((a2 - c) × (a3 - c))``, of (c, a1, a2, a3) rows (C, 4)."""
    if len(quadruples) == 0:
        return coords.new_zeros(0)
    centre = coords[quadruples[:, 0]]
    first, second, third = (coords[quadruples[:, k]] - centre for k in (1, 2, 3))
    return (first * torch.cross(second, third, dim=1)).sum(dim=1)


def covalent_bonds(structure) -> np.ndarray:
    """(B, 2) bonded atom pairs of ``structure`` from covalent radii (see the module docstring)."""
    import gemmi
    from scipy.spatial import cKDTree

    radii = np.array([gemmi.Element(symbol).covalent_r for symbol in structure.elements])
    pairs = cKDTree(structure.coords).query_pairs(2 * radii.max() + BOND_TOLERANCE_A, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    i, j = pairs[:, 0], pairs[:, 1]
    distance = np.linalg.norm(structure.coords[i] - structure.coords[j], axis=1)
    altloc_i, altloc_j = structure.altlocs[i], structure.altlocs[j]
    keep = (
        (distance < radii[i] + radii[j] + BOND_TOLERANCE_A)
        & (distance > 0.4)
        & (structure.chain_ids[i] == structure.chain_ids[j])
        & ((altloc_i == "") | (altloc_j == "") | (altloc_i == altloc_j))
    )
    return np.sort(pairs[keep], axis=1).astype(np.int64)


def angles_from_bonds(bonds: np.ndarray, n_atoms: int) -> np.ndarray:
    """(A, 3) triples (i, vertex, k) for every two bonds sharing a vertex."""
    neighbours = [[] for _ in range(n_atoms)]
    for i, j in bonds:
        neighbours[i].append(j)
        neighbours[j].append(i)
    triples = [(a, vertex, b) for vertex, around in enumerate(neighbours)
               for index, a in enumerate(around) for b in around[index + 1:]]
    return np.array(triples, dtype=np.int64).reshape(-1, 3)


def nonbonded_pairs(structure, coords, bonds: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(P, 2) heavy-atom pairs closer than ``NONBONDED_DISTANCE_A`` + 1 Å that are not 1-2 or 1-3."""
    from scipy.spatial import cKDTree

    heavy = np.flatnonzero(structure.atomic_numbers > 1)
    pairs = cKDTree(coords[heavy]).query_pairs(NONBONDED_DISTANCE_A + 1.0, output_type="ndarray")
    pairs = np.sort(heavy[pairs], axis=1) if len(pairs) else np.zeros((0, 2), dtype=np.int64)
    excluded = {tuple(p) for p in bonds} | {tuple(sorted((a, b))) for a, _, b in angles}
    altlocs = structure.altlocs
    keep = [tuple(p) not in excluded and (altlocs[p[0]] == "" or altlocs[p[1]] == "" or altlocs[p[0]] == altlocs[p[1]])
            for p in pairs]
    return pairs[np.asarray(keep, dtype=bool)].reshape(-1, 2).astype(np.int64)


def geometry_from_model(structure, reference_coords: np.ndarray | None = None) -> Geometry:
    """Covalent-radii restraints with targets from ``reference_coords`` (default: the model itself)."""
    reference = structure.coords if reference_coords is None else np.asarray(reference_coords, dtype=np.float64)
    bonds = covalent_bonds(structure)
    angles = angles_from_bonds(bonds, structure.n_atoms)
    reference_t = torch.as_tensor(reference)
    return Geometry(
        bonds=bonds,
        bond_targets=bond_lengths(reference_t, _as_index(bonds)).numpy(),
        bond_sigmas=np.full(len(bonds), BOND_SIGMA_A),
        angles=angles,
        angle_targets=bond_angles(reference_t, _as_index(angles)).numpy(),
        angle_sigmas=np.full(len(angles), ANGLE_SIGMA_DEGREES),
        **_nonbonded(structure, bonds, angles),
        source="covalent radii",
    )


def monomer_library_path(explicit: str | None) -> str | None:
    """The monomer library folder: ``explicit``, else ``$CLIBD_MON``, else None."""
    return explicit or os.environ.get(MONOMER_LIBRARY_ENV) or None


def geometry_from_monomer_library(structure, library: str) -> Geometry:
    """Bonds and angles with ideal values from a CCP4 monomer library, through gemmi's topology.

    ``structure`` must have been read with :func:`cryomaps.io.read_structure`'s default options
    (all atoms, in file order): atoms are matched through their serial numbers in that order.
    """
    import gemmi

    source = keep_selected_atoms(gemmi.read_structure(structure.source))
    source.setup_entities()
    names = sorted({residue.name for chain in source[0] for residue in chain})
    try:
        notes = []  # gemmi's warnings (e.g. links missing from the library), kept out of the way
        monomers = gemmi.read_monomer_lib(str(library), names, ignore_missing=True)
        topology = gemmi.prepare_topology(source, monomers, model_index=0, h_change=gemmi.HydrogenChange.NoChange,
                                          reorder=False, warnings=notes.append, ignore_unknown_links=True)
    except (RuntimeError, ValueError, OSError) as error:
        raise InputError(library, f"cannot build restraints from this monomer library ({error})") from None
    source.assign_serial_numbers()
    if sum(len(residue) for chain in source[0] for residue in chain) != structure.n_atoms:
        raise InputError(structure.source, "the model was read with atoms removed; restraints need all atoms")
    bonds = [[atom.serial - 1 for atom in bond.atoms] for bond in topology.bonds]
    angles = [[atom.serial - 1 for atom in angle.atoms] for angle in topology.angles]
    bond_targets = [bond.restr.value for bond in topology.bonds]
    bond_sigmas = [max(bond.restr.esd, 1e-3) for bond in topology.bonds]
    angle_targets = [angle.restr.value for angle in topology.angles]
    angle_sigmas = [max(angle.restr.esd, 0.1) for angle in topology.angles]
    bonds = np.array(bonds, dtype=np.int64).reshape(-1, 2)
    angles = np.array(angles, dtype=np.int64).reshape(-1, 3)
    return Geometry(bonds=bonds, bond_targets=np.array(bond_targets), bond_sigmas=np.array(bond_sigmas), angles=angles,
                    angle_targets=np.array(angle_targets), angle_sigmas=np.array(angle_sigmas),
                    **_nonbonded(structure, bonds, angles), source="monomer library",
                    **_planes(topology), **_chirals(topology))


def _planes(topology) -> dict:
    """Plane restraints of a gemmi topology (planes of 4 or more atoms; any 3 atoms lie in a plane)."""
    planes = [plane for plane in topology.planes if len(plane.atoms) >= 4]
    return {
        "plane_atoms": np.array([atom.serial - 1 for plane in planes for atom in plane.atoms], dtype=np.int64),
        "plane_of_atom": np.array([index for index, plane in enumerate(planes) for _ in plane.atoms], dtype=np.int64),
        "plane_sigmas": np.array([max(plane.restr.esd, 1e-3) for plane in planes], dtype=np.float64),
    }


def _chirals(topology) -> dict:
    """Chiral-centre restraints of a gemmi topology, with signed ideal volumes (``both`` centres skipped)."""
    import gemmi

    signs = {gemmi.ChiralityType.Positive: 1.0, gemmi.ChiralityType.Negative: -1.0}
    chirals = [chir for chir in topology.chirs if chir.restr.sign in signs]
    atoms = [[atom.serial - 1 for atom in chir.atoms] for chir in chirals]
    targets = [signs[chir.restr.sign] * topology.ideal_chiral_abs_volume(chir) for chir in chirals]
    return {"chirals": np.array(atoms, dtype=np.int64).reshape(-1, 4), "chiral_targets": np.array(targets, dtype=np.float64)}


def _nonbonded(structure, bonds, angles) -> dict:
    pairs = nonbonded_pairs(structure, structure.coords, bonds, angles)
    start = bond_lengths(torch.as_tensor(structure.coords), _as_index(pairs)).numpy()
    return {"nonbonded": pairs, "nonbonded_targets": np.clip(start, NONBONDED_FLOOR_A, NONBONDED_DISTANCE_A)}
