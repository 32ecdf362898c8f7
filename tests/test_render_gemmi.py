"""The Peng model against gemmi's DensityCalculatorE (same ITC 4.3.2.2 potential) on real structures.

gemmi renders on a periodic P1 cell whose grid point 0 is the cell origin. The test gives gemmi a
cell of exactly our grid's extent and shape, with the atoms translated by -origin, so both
programs sample the same points; the 10 Å padding keeps periodic images out of each atom's cutoff.
"""

from __future__ import annotations

import numpy as np
import pytest

from cryomaps.io import Grid, read_structure
from cryomaps.render import render_structure

DEFAULT_STRUCTURES = ["2va0A_99res.pdb.gz", "1rb8_645res.pdb", "5fuu_2494res.pdb", "3j6r_2868res.pdb", "5fjj_5631res.cif"]
SLOW_STRUCTURES = ["1rb8_assembly1_38700res.cif.gz"]


def gemmi_density(path, grid: Grid) -> np.ndarray:
    """gemmi.DensityCalculatorE on ``grid`` (point-sampled, no blur, cutoff 1e-5), (x, y, z)."""
    import gemmi

    structure = gemmi.read_structure(str(path))
    for cra in structure[0].all():
        position = cra.atom.pos
        cra.atom.pos = gemmi.Position(*(np.array([position.x, position.y, position.z]) - grid.origin))
    calculator = gemmi.DensityCalculatorE()
    calculator.d_min = 0  # grid set below, not derived from a resolution
    calculator.blur = 0
    calculator.cutoff = 1e-5
    calculator.grid.set_unit_cell(gemmi.UnitCell(*grid.extent, 90, 90, 90))
    calculator.grid.spacegroup = gemmi.SpaceGroup("P 1")
    calculator.grid.set_size(*grid.shape)
    calculator.put_model_density_on_grid(structure[0])
    return np.array(calculator.grid, copy=True).astype(np.float64)


def check_against_gemmi(path):
    structure = read_structure(path)
    grid = Grid.around(structure.coords, voxel_size=1.0, padding=10.0)
    ours = render_structure(structure, grid, model="peng", sampling="point").double().numpy()
    reference = gemmi_density(path, grid)
    correlation = np.corrcoef(ours.ravel(), reference.ravel())[0, 1]
    relative_l2 = np.linalg.norm(ours - reference) / np.linalg.norm(reference)
    assert correlation >= 0.9999
    assert relative_l2 <= 1e-3


@pytest.mark.parametrize("name", DEFAULT_STRUCTURES)
def test_peng_matches_gemmi(structures_dir, name):
    check_against_gemmi(structures_dir / name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_STRUCTURES)
def test_peng_matches_gemmi_large(structures_dir, name):
    check_against_gemmi(structures_dir / name)
