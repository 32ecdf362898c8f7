"""Reading atomic models (PDB, mmCIF, optionally gzipped) through gemmi into typed arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryomaps.errors import InputError

ALTLOC_POLICIES = ("all", "first")
_ORGANIC_ELEMENTS = ("C", "N", "O", "S", "H", "P")


@dataclass
class Structure:
    """Atoms of one model as parallel arrays (one entry per atom).

    Attributes:
        coords: (N, 3) float64 Cartesian coordinates in Å.
        atomic_numbers: (N,) int64.
        elements: (N,) element symbols, e.g. "C", "Fe".
        b_factors: (N,) float64 isotropic B-factors in Å².
        occupancies: (N,) float64 in [0, 1].
        chain_ids, residue_names, atom_names: (N,) strings; residue_seqids: (N,) int64;
        altlocs: (N,) strings ("" when none).
        source: the file it was read from, if any.
    """

    coords: np.ndarray
    atomic_numbers: np.ndarray
    elements: np.ndarray
    b_factors: np.ndarray
    occupancies: np.ndarray
    chain_ids: np.ndarray
    residue_names: np.ndarray
    residue_seqids: np.ndarray
    atom_names: np.ndarray
    altlocs: np.ndarray
    source: str | None = field(default=None)

    @property
    def n_atoms(self) -> int:
        return int(len(self.coords))

    def to_tensors(self, device=None, dtype=None) -> dict:
        """Coordinates, atomic numbers, B-factors and occupancies as torch tensors."""
        import torch

        dtype = dtype or torch.float32
        return {
            "coords": torch.as_tensor(self.coords, dtype=dtype, device=device),
            "atomic_numbers": torch.as_tensor(self.atomic_numbers, dtype=torch.long, device=device),
            "b_factors": torch.as_tensor(self.b_factors, dtype=dtype, device=device),
            "occupancies": torch.as_tensor(self.occupancies, dtype=dtype, device=device),
        }


def read_structure(
    path: str | os.PathLike,
    *,
    model_index: int = 0,
    remove_waters: bool = False,
    remove_hydrogens: bool = False,
    altloc: str = "all",
) -> Structure:
    """Read one model of a PDB or mmCIF file (``.gz`` accepted).

    Args:
        path: the file.
        model_index: which model of a multi-model file (0 = first, the default).
        remove_waters: drop water molecules.
        remove_hydrogens: drop hydrogen and deuterium atoms.
        altloc: "all" keeps every alternative conformation with its occupancy (the density of a
            disordered site); "first" keeps only the first conformation, with occupancy as read.
    Raises:
        InputError: unreadable file, no such model, no atoms, or an element that cannot be inferred.
    """
    import gemmi

    path = Path(path)
    if altloc not in ALTLOC_POLICIES:
        raise InputError(None, f"altloc policy must be one of {ALTLOC_POLICIES}, got {altloc!r}")
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as error:
        raise InputError(path, f"not a readable PDB/mmCIF structure ({str(error).strip().splitlines()[0]})") from None
    if len(structure) == 0:
        raise InputError(path, "contains no models (no atoms)")
    if not 0 <= model_index < len(structure):
        raise InputError(path, f"has {len(structure)} model(s); model index {model_index} does not exist")
    for index in range(len(structure) - 1, -1, -1):
        if index != model_index:
            del structure[index]
    if remove_waters:
        structure.remove_waters()
    if remove_hydrogens:
        structure.remove_hydrogens()
    if altloc == "first":
        structure.remove_alternative_conformations()
    return _structure_from_model(path, structure[0])


def _structure_from_model(path: Path, model) -> Structure:
    rows = []
    for chain in model:
        for residue in chain:
            for atom in residue:
                element = atom.element.name if atom.element.atomic_number > 0 else _infer_element(path, residue, atom)
                rows.append((atom.pos.x, atom.pos.y, atom.pos.z, element, atom.b_iso, atom.occ,
                             chain.name, residue.name, residue.seqid.num, atom.name, atom.altloc))
    if not rows:
        raise InputError(path, "contains no atoms")
    columns = list(zip(*rows))
    elements = np.array(columns[3], dtype=object)
    return Structure(
        coords=np.array(list(zip(columns[0], columns[1], columns[2])), dtype=np.float64),
        atomic_numbers=np.array([_atomic_number(symbol) for symbol in elements], dtype=np.int64),
        elements=elements.astype(str),
        b_factors=np.array(columns[4], dtype=np.float64),
        occupancies=np.array(columns[5], dtype=np.float64),
        chain_ids=np.array(columns[6], dtype=str),
        residue_names=np.array(columns[7], dtype=str),
        residue_seqids=np.array(columns[8], dtype=np.int64),
        atom_names=np.array(columns[9], dtype=str),
        altlocs=np.array([c if c != "\x00" else "" for c in columns[10]], dtype=str),
        source=str(path),
    )


def _atomic_number(symbol: str) -> int:
    import gemmi

    return gemmi.Element(symbol).atomic_number


def _infer_element(path: Path, residue, atom) -> str:
    """Element of an atom whose element field is missing, from its atom name when unambiguous.

    Rules: in standard residues (amino acids, nucleotides) the first letter of the name (C, N, O,
    S, H, P); for a one-atom residue named like its atom (e.g. ``CA`` in residue ``CA``) the name
    itself; otherwise the first letter when it is one of C, N, O, S, H, P and the first two letters
    are not themselves an element symbol. Anything else is an error.
    """
    import gemmi

    letters = "".join(ch for ch in atom.name if ch.isalpha()).upper()
    info = gemmi.find_tabulated_residue(residue.name)
    is_standard = info is not None and (info.is_amino_acid() or info.is_nucleic_acid())
    if letters and is_standard and letters[0] in _ORGANIC_ELEMENTS:
        return letters[0]
    if letters and len(residue) == 1 and residue.name.strip().upper() == letters and _is_element(letters):
        return letters.capitalize()
    if letters and letters[0] in _ORGANIC_ELEMENTS and not (len(letters) > 1 and _is_element(letters[:2])):
        return letters[0]
    raise InputError(
        path,
        f"cannot infer the element of atom {atom.name!r} in residue {residue.name} {residue.seqid.num}; "
        "add the element column",
    )


def _is_element(symbol: str) -> bool:
    import gemmi

    return gemmi.Element(symbol.capitalize()).atomic_number > 0
