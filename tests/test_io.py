"""Map and model I/O: real pairs overlay their density, exact round trips, clear errors."""

from __future__ import annotations

import gzip
import os
import warnings

import mrcfile
import numpy as np
import pytest

from cryomaps.cli import main as cli_main
from cryomaps.errors import InputError
from cryomaps.io import DensityMap, Grid, read_map, read_structure, resample_map, sample_map, write_map


def density_z_score_at_atoms(density: DensityMap, coords: np.ndarray) -> float:
    """(mean map value at atoms - map mean) / map standard deviation."""
    values = sample_map(density, coords)
    return float((values.mean() - density.data.mean()) / density.data.std())


def header_origins(path) -> dict[str, np.ndarray]:
    """Origins (Å, x y z) of a map under the right and two wrong conventions, from the raw header."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(path, permissive=True, header_only=True) as mrc:
            header = mrc.header
            assert (int(header.mapc), int(header.mapr), int(header.maps)) == (1, 2, 3)
            voxel = np.array([header.cella.x / header.mx, header.cella.y / header.my, header.cella.z / header.mz])
            field = np.array([header.origin.x, header.origin.y, header.origin.z], dtype=float)
            starts = np.array([header.nxstart, header.nystart, header.nzstart], dtype=float) * voxel
    right = field if np.any(field != 0) else starts
    return {"right": right, "sum_of_both": field + starts, "origin_field_only": field}


def test_every_shared_pair_sits_on_its_density(shared_pairs):
    assert len(shared_pairs) == 8
    for pair in shared_pairs:
        density = read_map(pair["map_path"])
        model = read_structure(pair["model_path"])
        z_score = density_z_score_at_atoms(density, model.coords)
        assert z_score > 1.0, f"{pair['name']}: model not on density (z = {z_score:.2f})"
        np.testing.assert_allclose(density.origin, header_origins(pair["map_path"])["right"], atol=1e-4)


def test_wrong_origin_conventions_move_models_off_their_density(shared_pairs):
    """Adding ORIGIN and NXSTART, or ignoring NXSTART, misplaces the maps where the two differ."""
    checked = 0
    for pair in shared_pairs:
        density = read_map(pair["map_path"])
        model = read_structure(pair["model_path"])
        origins = header_origins(pair["map_path"])
        for convention in ("sum_of_both", "origin_field_only"):
            if np.allclose(origins[convention], origins["right"]):
                continue  # this header is placed the same way under this convention
            wrong = DensityMap(density.data, density.voxel_size, origins[convention])
            z_score = density_z_score_at_atoms(wrong, model.coords)
            assert z_score < 1.0, f"{pair['name']} with {convention}: z = {z_score:.2f} should fail the check"
            checked += 1
    assert checked >= 3  # EMD-5168 and EMD-5170 (NXSTART-placed) and EMD-6374 (both fields set)


def test_swapped_axes_move_models_off_their_density(shared_pairs):
    """Reading (z, y, x) data as if it were (x, y, z) fails the overlay check."""
    for pair in shared_pairs:
        density = read_map(pair["map_path"])
        model = read_structure(pair["model_path"])
        swapped = DensityMap(density.data.transpose(2, 1, 0), density.voxel_size[::-1], density.origin)
        assert density_z_score_at_atoms(swapped, model.coords) < 1.0, pair["name"]


def _write_raw_mrc(path, file_data, axis_order, starts, voxel, origin_field=(0.0, 0.0, 0.0)):
    """Write a map with mrcfile directly: ``file_data`` is (section, row, column) as stored."""
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(file_data, dtype=np.float32))
        header = mrc.header
        header.mapc, header.mapr, header.maps = axis_order
        header.nxstart, header.nystart, header.nzstart = starts
        shape_by_axis = {axis: file_data.shape[2 - dim] for dim, axis in enumerate(axis_order)}
        header.mx, header.my, header.mz = (shape_by_axis[a] for a in (1, 2, 3))
        header.cella = tuple(voxel[a - 1] * shape_by_axis[a] for a in (1, 2, 3))
        header.origin = origin_field


def test_axis_order_321_with_nxstart_reads_like_123(tmp_path):
    rng = np.random.default_rng(0)
    data_xyz = rng.normal(size=(5, 6, 7)).astype(np.float32)
    voxel = (1.5, 1.25, 0.75)
    start_xyz = (-3, 4, 11)
    # MAPC/R/S = 1,2,3: columns x, rows y, sections z -> stored as (z, y, x).
    _write_raw_mrc(tmp_path / "xyz.mrc", data_xyz.transpose(2, 1, 0), (1, 2, 3), start_xyz, voxel)
    # MAPC/R/S = 3,2,1: columns z, rows y, sections x -> stored as (x, y, z); starts follow the order.
    _write_raw_mrc(tmp_path / "zyx.mrc", data_xyz, (3, 2, 1), start_xyz[::-1], voxel)
    reference, permuted = read_map(tmp_path / "xyz.mrc"), read_map(tmp_path / "zyx.mrc")
    np.testing.assert_array_equal(reference.data, data_xyz)
    np.testing.assert_array_equal(permuted.data, data_xyz)
    np.testing.assert_allclose(permuted.voxel_size, voxel, rtol=1e-7)
    np.testing.assert_allclose(permuted.origin, np.array(start_xyz) * voxel, rtol=1e-7)
    np.testing.assert_array_equal(permuted.voxel_size, reference.voxel_size)
    np.testing.assert_array_equal(permuted.origin, reference.origin)


@pytest.mark.parametrize("name", ["round.mrc", "round.map.gz"])
def test_write_read_round_trip_is_exact(tmp_path, name):
    rng = np.random.default_rng(1)
    original = DensityMap(rng.normal(size=(9, 4, 13)), voxel_size=(1.05, 0.65, 2.38), origin=(-117.3, 0.1, 242.88))
    written = write_map(tmp_path / name, original)
    if name.endswith(".gz"):
        with gzip.open(written) as handle:
            assert handle.read(4)  # really gzip
    back = read_map(written)
    np.testing.assert_array_equal(back.data, original.data)
    np.testing.assert_array_equal(back.voxel_size, original.voxel_size)
    np.testing.assert_array_equal(back.origin, original.origin)
    assert list(tmp_path.iterdir()) == [written]  # no temporary file left behind


def test_shared_maps_round_trip_exactly(shared_pairs, tmp_path):
    for pair in shared_pairs:
        original = read_map(pair["map_path"])
        back = read_map(write_map(tmp_path / "copy.mrc", original))
        np.testing.assert_array_equal(back.data, original.data)
        np.testing.assert_array_equal(back.voxel_size, original.voxel_size)
        np.testing.assert_array_equal(back.origin, original.origin)


@pytest.mark.parametrize("name", ["out.mrc", "out.mrc.gz"])
def test_failed_write_leaves_no_file(tmp_path, monkeypatch, name):
    """A failure after the file was opened (here while the header is filled in) leaves nothing."""
    import cryomaps.io.maps

    def broken_geometry(header, density_map):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cryomaps.io.maps, "_set_geometry", broken_geometry)
    with pytest.raises(RuntimeError):
        write_map(tmp_path / name, DensityMap(np.zeros((2, 2, 2)), 1.0, 0.0))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.mrc", "out.mrc.gz"])
def test_written_header_statistics_are_those_of_the_data(tmp_path, name):
    """DMIN/DMAX/DMEAN/RMS as mrcfile computes them from the data read back (float32 header fields)."""
    rng = np.random.default_rng(3)
    density = DensityMap(rng.normal(2.0, 3.0, (13, 7, 11)).astype(np.float32), (1.0, 1.5, 0.8), (1.0, 2.0, 3.0))
    path = write_map(tmp_path / name, density)
    with mrcfile.open(path) as mrc:
        data, header = mrc.data.astype(np.float64), mrc.header
        assert np.array_equal(mrc.data, density.data.transpose(2, 1, 0))
        assert (float(header.dmin), float(header.dmax)) == (float(data.min()), float(data.max()))
        np.testing.assert_allclose([header.dmean, header.rms], [data.mean(), data.std()], rtol=1e-6)


def test_trilinear_sampling_is_exact_on_a_linear_field():
    grid = Grid((6, 7, 8), (1.0, 0.5, 2.0), (10.0, -3.0, 4.0))
    centres = grid.voxel_centres()
    field = (2.0 * centres[:, 0] - 3.0 * centres[:, 1] + 0.5 * centres[:, 2]).reshape(grid.shape)
    density = DensityMap.from_grid(field.astype(np.float32), grid)
    rng = np.random.default_rng(2)
    low, high = grid.origin, grid.origin + (np.array(grid.shape) - 1) * grid.voxel_size
    points = rng.uniform(low, high, size=(200, 3))
    expected = 2.0 * points[:, 0] - 3.0 * points[:, 1] + 0.5 * points[:, 2]
    np.testing.assert_allclose(sample_map(density, points), expected, atol=1e-4)
    outside = np.array([[low[0] - 0.1, low[1], low[2]]])
    assert sample_map(density, outside, fill_value=-7.0)[0] == -7.0
    half_voxel_shift = Grid((5, 6, 7), grid.voxel_size, grid.origin + grid.voxel_size / 2)
    shifted = resample_map(density, half_voxel_shift)
    shifted_centres = half_voxel_shift.voxel_centres()
    expected_shifted = 2.0 * shifted_centres[:, 0] - 3.0 * shifted_centres[:, 1] + 0.5 * shifted_centres[:, 2]
    np.testing.assert_allclose(shifted.data.reshape(-1), expected_shifted, atol=1e-4)


def test_the_two_inside_box_rules_differ_only_in_the_half_voxel_rim():
    grid = Grid((4, 5, 6), (2.0, 1.0, 0.5), (-3.0, 1.0, 7.0))
    # Continuous indices probing each rule's bounds on the x axis (4 voxels: centres at 0..3).
    indices = np.array([[-0.5, 0, 0], [-0.25, 0, 0], [0, 0, 0], [3, 2, 5], [3.25, 0, 0], [3.5, 0, 0], [0, 0, 5.5]])
    points = grid.index_to_world(indices)
    # Nearest voxel exists exactly when np.rint of the index is a valid array index.
    rint_valid = np.all((np.rint(indices) >= 0) & (np.rint(indices) < np.asarray(grid.shape)), axis=1)
    np.testing.assert_array_equal(rint_valid, [True, True, True, True, True, False, False])
    np.testing.assert_array_equal(grid.has_nearest_voxel(points), rint_valid)
    np.testing.assert_array_equal(grid.within_sampled_box(points), [False, False, True, True, False, False, False])


def test_the_isotropic_resampled_grid_covers_the_voxel_centres_without_extrapolating():
    grid = Grid((11, 8, 5), (0.8, 1.25, 2.0), (4.0, -2.0, 0.5))
    resampled = grid.resampled_isotropic(1.5)
    np.testing.assert_array_equal(resampled.voxel_size, [1.5, 1.5, 1.5])
    np.testing.assert_array_equal(resampled.origin, grid.origin)
    # Spans of 8, 8.75 and 8 Å hold 6, 6 and 6 centres 1.5 Å apart (7.5 Å <= span < 9 Å).
    assert resampled.shape == (6, 6, 6)
    assert grid.within_sampled_box(resampled.voxel_centres()).all()
    # A span that is an exact multiple of the voxel size keeps its last centre.
    assert Grid((5, 5, 5), 0.6, 0.0).resampled_isotropic(1.2).shape == (3, 3, 3)


# ---------------------------------------------------------------- structures


PDB_WITHOUT_ELEMENTS = """\
ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00 20.00
ATOM      2  CA  ALA A   1      11.639   6.071  -5.147  1.00 20.00
ATOM      3  CB AALA A   1      12.000   7.000  -5.000  0.60 20.00
ATOM      4  CB BALA A   1      12.300   7.200  -5.100  0.40 20.00
HETATM    5 CA    CA A 101      15.000   5.000   5.000  1.00 30.00
HETATM    6  O   HOH A 201      20.000   5.000   5.000  1.00 30.00
HETATM    7  H1  HOH A 201      20.500   5.500   5.000  1.00 30.00
END
"""


def test_structure_fields_and_options(tmp_path):
    path = tmp_path / "mini.pdb"
    path.write_text(PDB_WITHOUT_ELEMENTS)
    full = read_structure(path)
    assert full.n_atoms == 7
    assert list(full.elements) == ["N", "C", "C", "C", "Ca", "O", "H"]
    assert list(full.atomic_numbers) == [7, 6, 6, 6, 20, 8, 1]
    np.testing.assert_allclose(full.coords[1], [11.639, 6.071, -5.147])
    np.testing.assert_allclose(full.occupancies[2:4], [0.6, 0.4])
    assert full.b_factors[4] == 30.0 and list(full.chain_ids) == ["A"] * 7
    assert read_structure(path, remove_waters=True).n_atoms == 5
    assert read_structure(path, remove_hydrogens=True).n_atoms == 6
    first_altloc = read_structure(path, altloc="first")
    assert first_altloc.n_atoms == 6 and first_altloc.coords[2][0] == pytest.approx(12.0)


def test_structure_matches_gemmi_on_real_files(structures_dir):
    import gemmi

    for name in ("2va0A_99res.pdb.gz", "5fjj_5631res.cif"):
        ours = read_structure(structures_dir / name)
        model = gemmi.read_structure(str(structures_dir / name))[0]
        positions = np.array([atom.pos.tolist() for residue in model.all() for atom in [residue.atom]])
        assert ours.n_atoms == len(positions)
        np.testing.assert_allclose(ours.coords, positions)


def _per_atom_reference(path, **options):
    """The reader's fields gathered atom by atom straight from gemmi (the per-atom semantics the
    vectorised reader must keep): same filtering options, same order, missing elements inferred."""
    import gemmi

    from cryomaps.io.structures import _infer_element

    structure = gemmi.read_structure(str(path))
    for index in range(len(structure) - 1, 0, -1):
        del structure[index]
    if options.get("remove_waters"):
        structure.remove_waters()
    if options.get("remove_hydrogens"):
        structure.remove_hydrogens()
    if options.get("altloc") == "first":
        structure.remove_alternative_conformations()
    rows = []
    for chain in structure[0]:
        for residue in chain:
            for atom in residue:
                element = atom.element.name if atom.element.atomic_number else _infer_element(path, residue, atom)
                rows.append((atom.pos.tolist(), element, gemmi.Element(element).atomic_number, atom.b_iso, atom.occ,
                             chain.name, residue.name, residue.seqid.num, atom.name, atom.altloc.replace("\x00", "")))
    return rows


@pytest.mark.parametrize("name, options", [
    ("5fjj_5631res.cif", {}),                                   # 452 altloc atoms, 2117 waters
    ("5fjj_5631res.cif", {"altloc": "first", "remove_waters": True}),
    ("3j6r_2868res.pdb", {}),                                   # 5748 hydrogens
    ("3j6r_2868res.pdb", {"remove_hydrogens": True}),
    ("2va0A_99res.pdb.gz", {}),
])
def test_vectorised_reader_keeps_the_per_atom_semantics(structures_dir, name, options):
    ours = read_structure(structures_dir / name, **options)
    reference = _per_atom_reference(structures_dir / name, **options)
    assert ours.n_atoms == len(reference)
    columns = list(zip(*reference))
    np.testing.assert_array_equal(ours.coords, np.array(columns[0]))
    assert list(ours.elements) == list(columns[1])
    np.testing.assert_array_equal(ours.atomic_numbers, columns[2])
    np.testing.assert_array_equal(ours.b_factors, columns[3])
    np.testing.assert_array_equal(ours.occupancies, columns[4])
    for field, column in zip(("chain_ids", "residue_names", "residue_seqids", "atom_names", "altlocs"), columns[5:]):
        assert list(getattr(ours, field)) == list(column), field


def test_vectorised_reader_infers_missing_elements_like_the_per_atom_one(tmp_path):
    path = tmp_path / "mini.pdb"
    path.write_text(PDB_WITHOUT_ELEMENTS)
    reference = _per_atom_reference(path)
    ours = read_structure(path)
    assert list(ours.elements) == [row[1] for row in reference] and list(ours.altlocs) == [row[9] for row in reference]


def test_first_model_only(tmp_path):
    two_models = "MODEL        1\n" + PDB_WITHOUT_ELEMENTS.replace("END\n", "ENDMDL\n") + \
        "MODEL        2\nATOM      1  N   ALA A   1       1.000   2.000   3.000  1.00 20.00           N\nENDMDL\nEND\n"
    path = tmp_path / "two.pdb"
    path.write_text(two_models)
    assert read_structure(path).n_atoms == 7
    second = read_structure(path, model_index=1)
    assert second.n_atoms == 1 and second.coords[0].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(InputError, match="model index 2"):
        read_structure(path, model_index=2)


def test_example_peptide_is_an_ideal_helix(tmp_path):
    from cryomaps.io.example import EXAMPLE_SEQUENCE, write_example_peptide

    write_example_peptide(tmp_path / "helix.pdb")
    helix = read_structure(tmp_path / "helix.pdb")
    assert helix.n_atoms == 5 * len(EXAMPLE_SEQUENCE)
    ca = helix.coords[helix.atom_names == "CA"]
    np.testing.assert_allclose(np.linalg.norm(np.diff(ca, axis=0), axis=1), 3.80, atol=0.02)
    carbonyl_o, amide_n = helix.coords[helix.atom_names == "O"], helix.coords[helix.atom_names == "N"]
    hydrogen_bonds = np.linalg.norm(carbonyl_o[:-4] - amide_n[4:], axis=1)
    assert np.all((hydrogen_bonds > 2.7) & (hydrogen_bonds < 3.3))  # i -> i+4 helical H-bonds


# ---------------------------------------------------------------- bad input


def _write_bad_inputs(tmp_path) -> dict:
    good = write_map(tmp_path / "good.mrc", DensityMap(np.ones((8, 8, 8)), 1.0, 0.0))
    truncated = tmp_path / "truncated.mrc"
    truncated.write_bytes(good.read_bytes()[:-100])
    text = tmp_path / "text.mrc"
    text.write_text("this is not a map\n" * 100)
    skewed = tmp_path / "skewed.mrc"
    with mrcfile.new(skewed) as mrc:
        mrc.set_data(np.ones((4, 4, 4), dtype=np.float32))
        mrc.header.cellb = (90.0, 90.0, 120.0)
    nan_map = tmp_path / "nan.mrc"
    with mrcfile.new(nan_map) as mrc:
        mrc.set_data(np.full((4, 4, 4), np.nan, dtype=np.float32))
        mrc.voxel_size = 1.0
    empty = tmp_path / "empty.pdb"
    empty.write_text("")
    atomless = tmp_path / "atomless.cif"
    atomless.write_text("data_x\n_cell.length_a 10\n")
    bad_element = tmp_path / "bad_element.pdb"
    bad_element.write_text("HETATM    1 XQ1  LIG A   1       1.000   2.000   3.000  1.00 20.00\nEND\n")
    return {
        truncated: "truncated", text: "not", skewed: "non-orthogonal", nan_map: "NaN",
        empty: "no", atomless: "no", bad_element: "cannot infer the element",
    }


def test_bad_inputs_raise_one_clear_error(tmp_path):
    for path, phrase in _write_bad_inputs(tmp_path).items():
        reader = read_structure if path.suffix in (".pdb", ".cif") else read_map
        with pytest.raises(InputError) as caught:
            reader(path)
        message = str(caught.value)
        assert message.startswith(str(path)), message
        assert phrase in message and "\n" not in message, message


def test_cli_reports_bad_inputs_in_one_line(tmp_path, capsys):
    for path in _write_bad_inputs(tmp_path):
        assert cli_main(["info", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("cryomaps info: error: ") and str(path) in err and "\n" not in err
        assert "Traceback" not in err


def test_json_reports_are_written_atomically_into_new_folders(tmp_path):
    import json

    from cryomaps.io.atomic import write_json_atomically

    path = write_json_atomically(tmp_path / "bench" / "report.json", {"rows": [1.5, 2]})
    assert json.loads(path.read_text()) == {"rows": [1.5, 2]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]  # no temporary left behind


def test_json_non_finite_floats_round_trip_or_become_null_on_request(tmp_path):
    import json

    from cryomaps.io.atomic import write_json_atomically

    data = {"a": float("nan"), "b": [1.0, float("inf"), (float("-inf"), 2)], "c": {"d": float("nan")}}
    kept = json.loads(write_json_atomically(tmp_path / "kept.json", data).read_text())
    assert np.isnan(kept["a"]) and kept["b"][1] == np.inf and kept["b"][2][0] == -np.inf
    strict = write_json_atomically(tmp_path / "strict.json", data, indent=2, non_finite_as_null=True).read_text()
    assert "NaN" not in strict and "Infinity" not in strict
    assert json.loads(strict) == {"a": None, "b": [1.0, None, [None, 2]], "c": {"d": None}}


# ---------------------------------------------------------------- atomic writes


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_atomic_write_removes_stale_temporaries_of_its_target_only(tmp_path):
    from cryomaps.io.atomic import _temporary_stem, write_text_atomically

    target, other = tmp_path / "map.mrc", tmp_path / "other.mrc"
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f"{_temporary_stem(target.name)}.{dead}.abcd1234.part"
    running = tmp_path / f"{_temporary_stem(target.name)}.{alive}.abcd1234.part"
    unrelated = tmp_path / f"{_temporary_stem(other.name)}.{dead}.abcd1234.part"
    for path in (stale, running, unrelated):
        path.write_bytes(b"half a map")
    write_text_atomically(target, "new")
    assert target.read_text() == "new"
    assert not stale.exists() and running.exists() and unrelated.exists()


def test_atomic_temporary_names_fit_the_file_name_limit(tmp_path):
    from cryomaps.io.atomic import atomic_output

    target = tmp_path / ("é" * 125 + ".mrc")  # 254 bytes in UTF-8
    with atomic_output(target) as temporary:
        assert len(os.fsencode(temporary.name)) <= 255
        temporary.write_bytes(b"x")
    assert target.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_maps_with_nan_or_infinite_values_are_never_written(tmp_path):
    from cryomaps.errors import OutputError

    old = write_map(tmp_path / "map.mrc", DensityMap(np.ones((4, 4, 4)), 1.0, 0.0))
    before = old.read_bytes()
    for bad_value in (np.nan, np.inf, -np.inf):
        data = np.ones((4, 4, 4), dtype=np.float32)
        data[1, 2, 3] = bad_value
        with pytest.raises(OutputError, match="1 NaN or infinite"):
            write_map(old, DensityMap(data, 1.0, 0.0))
    assert old.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["map.mrc"]


def test_structure_read_in_a_forked_child_equals_the_direct_read(small_model, tmp_path):
    """The fork path only runs before torch is imported, so it is exercised in a fresh interpreter."""
    import json
    import subprocess
    import sys

    bad = tmp_path / "bad.pdb"
    bad.write_text("ATOM      1  N   ALA A   1      11.104   6.134  -6.504   nan 20.00           N\nEND\n")
    script = (
        "import json, sys\n"
        "from cryomaps.io.structures import start_reading_structure\n"
        "from cryomaps.errors import InputError\n"
        "reading = start_reading_structure(sys.argv[1], remove_waters=True)\n"
        "assert 'torch' not in sys.modules\n"
        "s = reading()\n"
        "out = {'coords': s.coords.tolist(), 'elements': s.elements.tolist(), 'b': s.b_factors.tolist(),\n"
        "       'names': s.atom_names.tolist(), 'chains': s.chain_ids.tolist()}\n"
        "try:\n"
        "    start_reading_structure(sys.argv[2])()\n"
        "except InputError as error:\n"
        "    out['error'] = [type(error).__name__, str(error), error.path]\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(small_model), str(bad)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    forked = json.loads(done.stdout)
    direct = read_structure(small_model, remove_waters=True)
    np.testing.assert_array_equal(np.array(forked["coords"]), direct.coords)
    assert forked["elements"] == direct.elements.tolist() and forked["b"] == direct.b_factors.tolist()
    assert forked["names"] == direct.atom_names.tolist() and forked["chains"] == direct.chain_ids.tolist()
    assert forked["error"][0] == "InputError" and "occupancy" in forked["error"][1] and forked["error"][2] == str(bad)


def test_a_file_the_safe_unpickler_refuses_is_one_line_without_torch_advice_to_load_it_unsafely(tmp_path):
    """torch's message leads with advice to retry with weights_only=False; the user gets the reason."""
    from cryomaps.io.weights import read_weights_content

    path = tmp_path / "notes.pt"
    path.write_text("# a text file, not weights\n")
    with pytest.raises(InputError) as refused:
        read_weights_content(path)
    message = str(refused.value)
    assert "notes.pt" in message and "Unsupported operand" in message
    assert "weights_only" not in message and "\n" not in message
