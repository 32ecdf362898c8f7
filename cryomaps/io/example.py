"""The built-in example structure: an ideal α-helical peptide built from internal coordinates.

Nothing is read from disk: backbone atoms are placed one after another by the natural extension
reference frame (NeRF) method from standard bond lengths, bond angles and the α-helix torsions
(φ = −57°, ψ = −47°, ω = 180°); Cβ atoms follow from ideal tetrahedral geometry at Cα.
"""

from __future__ import annotations

import numpy as np

# Engh & Huber ideal geometry (Å, degrees).
_BOND = {"N-CA": 1.458, "CA-C": 1.525, "C-N": 1.329, "C-O": 1.231, "CA-CB": 1.530}
_ANGLE = {"N-CA-C": 111.2, "CA-C-N": 116.2, "C-N-CA": 121.7, "CA-C-O": 120.5, "N-CA-CB": 110.5}
_HELIX_PHI, _HELIX_PSI, _OMEGA = -57.0, -47.0, 180.0

# One-letter sequence of the example: a soluble helical peptide with varied residues.
EXAMPLE_SEQUENCE = "AEAAAKEAAAKEAAAKA"
_THREE_LETTER = {"A": "ALA", "E": "GLU", "K": "LYS"}


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle_deg: float, torsion_deg: float) -> np.ndarray:
    """Position of atom d bonded to c, with |cd| = bond, angle bcd and torsion abcd (NeRF)."""
    angle, torsion = np.radians(angle_deg), np.radians(torsion_deg)
    bc = (c - b) / np.linalg.norm(c - b)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal)
    frame = np.stack([bc, np.cross(normal, bc), normal], axis=1)
    local = bond * np.array([-np.cos(angle), np.sin(angle) * np.cos(torsion), np.sin(angle) * np.sin(torsion)])
    return c + frame @ local


def ideal_helix_backbone(n_residues: int) -> list[dict[str, np.ndarray]]:
    """Backbone (N, CA, C, O) and CB coordinates (Å) of an ideal α-helix, one dict per residue."""
    n = np.zeros(3)
    ca = np.array([_BOND["N-CA"], 0.0, 0.0])
    angle = np.radians(_ANGLE["N-CA-C"])
    c = ca + _BOND["CA-C"] * np.array([-np.cos(angle), np.sin(angle), 0.0])
    residues: list[dict[str, np.ndarray]] = []
    prev: dict[str, np.ndarray] = {}
    for index in range(n_residues):
        if index > 0:
            n = _place(prev["N"], prev["CA"], prev["C"], _BOND["C-N"], _ANGLE["CA-C-N"], _HELIX_PSI)
            ca = _place(prev["CA"], prev["C"], n, _BOND["N-CA"], _ANGLE["C-N-CA"], _OMEGA)
            c = _place(prev["C"], n, ca, _BOND["CA-C"], _ANGLE["N-CA-C"], _HELIX_PHI)
        next_n = _place(n, ca, c, _BOND["C-N"], _ANGLE["CA-C-N"], _HELIX_PSI)
        o = _place(next_n, ca, c, _BOND["C-O"], _ANGLE["CA-C-O"], 180.0)
        cb = _place(c, n, ca, _BOND["CA-CB"], _ANGLE["N-CA-CB"], -122.5)
        prev = {"N": n, "CA": ca, "C": c, "O": o, "CB": cb}
        residues.append(prev)
    return residues


def build_example_peptide():
    """A ``gemmi.Structure`` of the example helix (backbone + Cβ, B = 20 Å², occupancy 1)."""
    import gemmi

    structure = gemmi.Structure()
    structure.name = "cryomaps_example_helix"
    structure.cell = gemmi.UnitCell(1, 1, 1, 90, 90, 90)
    model = gemmi.Model(1) if _model_takes_number() else gemmi.Model("1")
    chain = gemmi.Chain("A")
    for index, (letter, atoms) in enumerate(zip(EXAMPLE_SEQUENCE, ideal_helix_backbone(len(EXAMPLE_SEQUENCE)))):
        residue = gemmi.Residue()
        residue.name = _THREE_LETTER[letter]
        residue.seqid = gemmi.SeqId(index + 1, " ")
        residue.entity_type = gemmi.EntityType.Polymer
        for name, position in atoms.items():
            atom = gemmi.Atom()
            atom.name = name
            atom.element = gemmi.Element(name[0])
            atom.pos = gemmi.Position(*position)
            atom.b_iso = 20.0
            atom.occ = 1.0
            residue.add_atom(atom)
        chain.add_residue(residue)
    model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    return structure


def _model_takes_number() -> bool:
    import gemmi

    try:
        gemmi.Model(1)
    except TypeError:
        return False
    return True


def write_example_peptide(path) -> None:
    """Write the example helix as PDB (or mmCIF when ``path`` ends in .cif)."""
    from pathlib import Path

    structure = build_example_peptide()
    path = Path(path)
    if path.suffix == ".cif":
        structure.make_mmcif_document().write_file(str(path))
    else:
        structure.write_pdb(str(path))
