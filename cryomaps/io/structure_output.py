"""Writing a moved or refined model back to PDB or mmCIF (gemmi), atomically.

:class:`cryomaps.io.Structure` keeps parallel arrays only, not the gemmi object, so the writer
re-reads the source file with the same options as :func:`cryomaps.io.read_structure` and walks
its atoms in the same order (chains, residues, atoms), checking chain, residue and atom names on
the way. Only positions (Å), isotropic B-factors (Å²) and occupancies are replaced; chains,
residue names, numbering, alternative conformations and all other records stay as read. Anisotropic
ADPs are dropped when B-factors are rewritten (they would contradict the new isotropic values).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cryomaps.errors import InputError
from cryomaps.io.atomic import atomic_output
from cryomaps.io.structures import keep_selected_atoms

PDB_SUFFIXES = (".pdb", ".ent")
MMCIF_SUFFIXES = (".cif", ".mmcif")


def structure_format(path: str | os.PathLike) -> str:
    """``"pdb"`` or ``"mmcif"`` from the file name (``.pdb``/``.ent`` or ``.cif``/``.mmcif``)."""
    suffix = Path(path).suffix.lower()
    if suffix in PDB_SUFFIXES:
        return "pdb"
    if suffix in MMCIF_SUFFIXES:
        return "mmcif"
    raise InputError(path, f"output model must end with one of {PDB_SUFFIXES + MMCIF_SUFFIXES}")


def write_structure(
    path: str | os.PathLike,
    structure,
    *,
    write_b_factors: bool = True,
    write_occupancies: bool = True,
    **read_options,
) -> Path:
    """Write ``structure``'s coordinates (and B-factors, occupancies) into a copy of its source file.

    Args:
        path: output file; PDB or mmCIF by its extension.
        structure: a :class:`cryomaps.io.Structure` read from a file (``structure.source``), with
            possibly changed ``coords`` (N, 3) Å, ``b_factors`` (N,) Å² and ``occupancies`` (N,).
        write_b_factors, write_occupancies: replace those columns too (else they stay as read).
        read_options: the options ``structure`` was read with (``remove_waters``,
            ``remove_hydrogens``, ``altloc``, ``model_index``), so that atoms pair up in order.
    Raises:
        InputError: bad extension, missing output folder, or a source whose atoms no longer match.
    """
    import gemmi

    output_format = structure_format(path)
    source = _read_like(structure, **read_options)
    atoms = [(chain, residue, atom) for chain in source[0] for residue in chain for atom in residue]
    if len(atoms) != structure.n_atoms:
        raise InputError(structure.source, f"has {len(atoms)} atoms now, {structure.n_atoms} when read")
    for index, (chain, residue, atom) in enumerate(atoms):
        if (chain.name, residue.name, atom.name) != (
            structure.chain_ids[index], structure.residue_names[index], structure.atom_names[index]
        ):
            raise InputError(structure.source, f"atom {index} differs from the one read ({chain.name} {residue.name} {atom.name})")
        atom.pos = gemmi.Position(*(float(v) for v in structure.coords[index]))
        if write_b_factors:
            atom.b_iso = float(structure.b_factors[index])
            atom.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
        if write_occupancies:
            atom.occ = float(structure.occupancies[index])
    with atomic_output(path) as temporary:
        if output_format == "pdb":
            source.write_pdb(str(temporary))
        else:
            source.setup_entities()
            source.make_mmcif_document().write_file(str(temporary))
    return Path(path)


def _read_like(structure, **read_options):
    """The gemmi structure of ``structure.source`` reduced as ``read_structure`` reduced it."""
    import gemmi

    if structure.source is None:
        raise InputError(None, "the structure was not read from a file; nothing to copy records from")
    return keep_selected_atoms(gemmi.read_structure(structure.source), **read_options)


def moved_copy(structure, coords=None, b_factors=None, occupancies=None):
    """A copy of ``structure`` with new coordinates (N, 3) Å, B-factors or occupancies (N,)."""
    from dataclasses import replace

    def pick(new, old):
        return np.array(old if new is None else np.asarray(new, dtype=np.float64).reshape(np.shape(old)))

    return replace(
        structure,
        coords=pick(coords, structure.coords),
        b_factors=pick(b_factors, structure.b_factors),
        occupancies=pick(occupancies, structure.occupancies),
    )
