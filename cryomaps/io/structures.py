"""Reading atomic models (PDB, mmCIF, optionally gzipped) through gemmi into typed arrays."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryomaps.errors import CryomapsError, InputError, require_file

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


MAX_COORDINATE_A = 1.0e5
"""Largest accepted |coordinate| (Å). Beyond it float32 maps lose sub-0.01 Å precision (and no
real model is that large: the PDB format itself stops at 9999.999 Å)."""


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
        InputError: unreadable file, no such model, no atoms, an unknown element symbol, an element
            that cannot be inferred, a coordinate that overflowed its PDB field (``********``), or
            values out of range (see :func:`check_atom_values`).
    """
    import gemmi

    path = Path(path)
    if altloc not in ALTLOC_POLICIES:
        raise InputError(None, f"altloc policy must be one of {ALTLOC_POLICIES}, got {altloc!r}")
    require_file(path)
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as error:
        raise InputError(path, f"not a readable PDB/mmCIF structure ({str(error).strip().splitlines()[0]})") from None
    if len(structure) == 0:
        raise InputError(path, "contains no models (no atoms)")
    if not 0 <= model_index < len(structure):
        raise InputError(path, f"has {len(structure)} model(s); model index {model_index} does not exist")
    if structure.input_format == gemmi.CoorFormat.Pdb:
        _check_pdb_records(path)
    keep_selected_atoms(structure, model_index, remove_waters=remove_waters, remove_hydrogens=remove_hydrogens,
                        altloc=altloc)
    result = _structure_from_model(path, structure[0])
    check_atom_values(result)
    return result


def keep_selected_atoms(structure, model_index: int = 0, *, remove_waters: bool = False,
                        remove_hydrogens: bool = False, altloc: str = "all"):
    """Reduce a ``gemmi.Structure`` in place to the atoms :func:`read_structure` keeps (same options).

    Returns the structure, now holding the one model ``model_index``.
    """
    for index in range(len(structure) - 1, -1, -1):
        if index != model_index:
            del structure[index]
    if remove_waters:
        structure.remove_waters()
    if remove_hydrogens:
        structure.remove_hydrogens()
    if altloc == "first":
        structure.remove_alternative_conformations()
    return structure


def start_reading_structure(path: str | os.PathLike, **options) -> Callable[[], Structure]:
    """Begin :func:`read_structure` (same ``options``) in a forked child; call the result to collect it.

    A command that still has to import torch (about 2 s) lets the child parse the model meanwhile
    (about 1 s for the 306,720-atom capsid) on another core. The child hands the
    :class:`Structure`, or the :class:`cryomaps.errors.CryomapsError` it raised, back through a
    pipe. The fork happens only while the process is single-threaded (torch not imported yet);
    otherwise the structure is read at once, in this process.
    """
    if "torch" in sys.modules or not hasattr(os, "fork"):
        structure = read_structure(path, **options)
        return lambda: structure
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, send, exit without running the parent's cleanup
        os.close(read_end)
        os._exit(_send_structure(write_end, path, options))
    os.close(write_end)

    def collect() -> Structure:
        import pickle

        with os.fdopen(read_end, "rb") as stream:
            try:
                outcome = pickle.load(stream)
            except EOFError:  # the child died (e.g. out of memory): read here instead
                outcome = None
        os.waitpid(pid, 0)
        if outcome is None:
            return read_structure(path, **options)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return collect


def _send_structure(write_end: int, path, options: dict) -> int:
    """In the child: pickle the structure (or the input error) into ``write_end``; returns the exit status."""
    import pickle

    try:
        try:
            outcome = read_structure(path, **options)
        except CryomapsError as error:
            outcome = error
        with os.fdopen(write_end, "wb") as stream:
            pickle.dump(outcome, stream, protocol=pickle.HIGHEST_PROTOCOL)
        return 0
    except BaseException:  # interrupted, or the parent stopped reading: the parent reads itself
        return 1


def _check_pdb_records(path: Path) -> None:
    """Refuse PDB atom records with an overflowed coordinate (``****``) or an unknown element symbol.

    gemmi reads an overflowed field as 0 and an unknown symbol as "X"; both would be silently wrong.
    """
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.startswith((b"ATOM  ", b"HETATM")):
                continue
            if b"*" in line[30:54]:
                raise InputError(path, f"line {number}: overflowed coordinate field {line[30:54].decode(errors='replace').strip()!r}")
            symbol = line[76:78].decode(errors="replace").strip()
            if symbol and not _is_element(symbol):
                raise InputError(path, f"line {number}: unknown element {symbol!r}")


def check_atom_values(structure: Structure) -> None:
    """Refuse coordinates, B-factors and occupancies that cannot describe atoms.

    Rules: coordinates finite with |x| <= :data:`MAX_COORDINATE_A`; B finite and >= 0 Å²;
    occupancy finite, in [0, 1], and not zero for every atom.

    Raises:
        InputError: naming the file, the first offending atom and the rule.
    """
    checks = (
        (~np.all(np.isfinite(structure.coords), axis=1), "non-finite coordinates"),
        (np.any(np.abs(structure.coords) > MAX_COORDINATE_A, axis=1), f"a coordinate beyond ±{MAX_COORDINATE_A:g} Å"),
        (~(structure.b_factors >= 0) | ~np.isfinite(structure.b_factors), "a B-factor that is negative or not finite"),
        (~((structure.occupancies >= 0) & (structure.occupancies <= 1)), "an occupancy outside [0, 1]"),
    )
    for bad, problem in checks:
        if np.any(bad):
            first = int(np.flatnonzero(bad)[0])
            raise InputError(structure.source, f"{int(bad.sum())} atom(s) with {problem}, first {_describe_atom(structure, first)}")
    if not np.any(structure.occupancies > 0):
        raise InputError(structure.source, "every atom has zero occupancy (the map would be empty)")


def _describe_atom(structure: Structure, index: int) -> str:
    return (f"atom {structure.atom_names[index]} of {structure.residue_names[index]} "
            f"{structure.chain_ids[index]}{structure.residue_seqids[index]}")


def _structure_from_model(path: Path, model) -> Structure:
    """Parallel arrays of a gemmi model, in file order (one list comprehension per residue and field group)."""
    numbers, atom_names, altlocs = [], [], []
    chain_ids, residue_names, residue_seqids, residue_sizes = [], [], [], []
    for chain in model:
        for residue in chain:
            numbers.extend([(a.pos.x, a.pos.y, a.pos.z, a.b_iso, a.occ, a.element.atomic_number) for a in residue])
            atom_names.extend([a.name for a in residue])
            altlocs.extend([a.altloc for a in residue])
            chain_ids.append(chain.name)
            residue_names.append(residue.name)
            residue_seqids.append(residue.seqid.num)
            residue_sizes.append(len(residue))
    if not numbers:
        raise InputError(path, "contains no atoms")
    table = np.array(numbers, dtype=np.float64)
    atomic_numbers = table[:, 5].astype(np.int64)
    if not np.all(atomic_numbers):
        atomic_numbers = _with_inferred_elements(path, model, atomic_numbers)
    return Structure(
        coords=np.ascontiguousarray(table[:, :3]),
        atomic_numbers=atomic_numbers,
        elements=_element_symbols(atomic_numbers),
        b_factors=np.ascontiguousarray(table[:, 3]),
        occupancies=np.ascontiguousarray(table[:, 4]),
        chain_ids=np.repeat(np.array(chain_ids, dtype=str), residue_sizes),
        residue_names=np.repeat(np.array(residue_names, dtype=str), residue_sizes),
        residue_seqids=np.repeat(np.array(residue_seqids, dtype=np.int64), residue_sizes),
        atom_names=np.array(atom_names, dtype=str),
        altlocs=np.char.replace(np.array(altlocs, dtype=str), "\x00", ""),
        source=str(path),
    )


def _with_inferred_elements(path: Path, model, atomic_numbers: np.ndarray) -> np.ndarray:
    """``atomic_numbers`` with the zeros (element unknown to gemmi) inferred from atom names."""
    atomic_numbers = atomic_numbers.copy()
    index = 0
    for chain in model:
        for residue in chain:
            for atom in residue:
                if atomic_numbers[index] == 0:
                    atomic_numbers[index] = _atomic_number(_infer_element(path, residue, atom))
                index += 1
    return atomic_numbers


def _element_symbols(atomic_numbers: np.ndarray) -> np.ndarray:
    """(N,) element symbols ("C", "Fe") of (N,) atomic numbers, looked up once per distinct element."""
    import gemmi

    distinct, inverse = np.unique(atomic_numbers, return_inverse=True)
    symbols = np.array([gemmi.Element(int(number)).name for number in distinct], dtype=str)
    return symbols[inverse.reshape(-1)]


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
