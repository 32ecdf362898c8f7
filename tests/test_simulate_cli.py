"""``cryomaps simulate``: the written map overlays the model, ``--like`` reuses a map's grid, and
user errors end with one line and exit status 2. Maps are read back with mrcfile directly."""

from __future__ import annotations

import gemmi
import mrcfile
import numpy as np
import pytest

from cryomaps.cli import main
from cryomaps.io import Grid, read_structure
from cryomaps.render import render_structure


def read_back(path):
    """(data (x, y, z), voxel size (3,), origin (3,)) straight from the MRC header."""
    with mrcfile.open(path, permissive=True) as mrc:
        header = mrc.header
        assert (int(header.mapc), int(header.mapr), int(header.maps)) == (1, 2, 3)
        voxel = np.array([float(mrc.voxel_size.x), float(mrc.voxel_size.y), float(mrc.voxel_size.z)])
        origin = np.array([float(header.origin.x), float(header.origin.y), float(header.origin.z)])
        return np.asarray(mrc.data, dtype=np.float64).transpose(2, 1, 0), voxel, origin


def weighted_centroid(data, voxel, origin):
    axes = [origin[a] + np.arange(data.shape[a]) * voxel[a] for a in range(3)]
    total = data.sum()
    return np.array([
        np.tensordot(data.sum(axis=tuple(b for b in range(3) if b != a)), axes[a], axes=1) / total
        for a in range(3)
    ])


def test_molmap_map_overlays_model(small_model, tmp_path, capsys):
    output = tmp_path / "molmap.mrc"
    status = main(["simulate", str(small_model), "-o", str(output), "--model", "molmap",
                   "--resolution", "4", "--voxel-size", "1.5", "--padding", "12"])
    assert status == 0 and "wrote" in capsys.readouterr().out
    data, voxel, origin = read_back(output)
    np.testing.assert_allclose(voxel, 1.5)
    structure = gemmi.read_structure(str(small_model))
    atoms = [cra.atom for cra in structure[0].all()]
    positions = np.array([[a.pos.x, a.pos.y, a.pos.z] for a in atoms])
    numbers = np.array([a.element.atomic_number for a in atoms])
    atom_centroid = (positions * numbers[:, None]).sum(0) / numbers.sum()
    np.testing.assert_allclose(weighted_centroid(data, voxel, origin), atom_centroid, atol=0.02)
    np.testing.assert_allclose(origin, positions.min(axis=0) - 12.0, atol=1e-4)
    assert data.sum() * 1.5**3 == pytest.approx(numbers.sum(), rel=1e-3)


def test_like_renders_on_the_reference_grid(small_model, tmp_path):
    reference = tmp_path / "reference.mrc"
    assert main(["simulate", str(small_model), "-o", str(reference), "--model", "molmap", "--resolution", "3",
                 "--voxel-size", "1.2"]) == 0
    output = tmp_path / "peng.mrc"
    assert main(["simulate", str(small_model), "-o", str(output), "--like", str(reference),
                 "--sampling", "average", "--resolution", "3"]) == 0
    data, voxel, origin = read_back(output)
    reference_data, reference_voxel, reference_origin = read_back(reference)
    assert data.shape == reference_data.shape
    np.testing.assert_array_equal(voxel, reference_voxel)
    np.testing.assert_array_equal(origin, reference_origin)
    expected = render_structure(
        read_structure(small_model), Grid(data.shape, voxel, origin), model="peng", sampling="average", resolution=3.0
    )
    np.testing.assert_allclose(data, expected.numpy(), rtol=1e-6, atol=1e-7)


def test_user_errors_exit_with_status_2(small_model, tmp_path, capsys):
    output = tmp_path / "out.mrc"
    assert main(["simulate", str(small_model), "-o", str(output), "--model", "molmap"]) == 2
    assert "needs --resolution" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "missing.pdb"), "-o", str(output)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["simulate", str(small_model), "-o", str(output), "--voxel-size", "0"]) == 2
    assert not output.exists()
