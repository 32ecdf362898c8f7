"""Real-space refinement against maps simulated from a known truth (and, slow, the real EMD-3488)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from cryomaps.cli import main
from cryomaps.fit.pose import random_rotation, rmsd
from cryomaps.fit.refine import RefineOptions, masked_correlation, occupancy_groups, refine
from cryomaps.fit.restraints import (
    angles_from_bonds,
    bond_angles,
    chiral_volumes,
    covalent_bonds,
    geometry_from_model,
    geometry_from_monomer_library,
)
from cryomaps.fit.score import scaled_residual
from cryomaps.io import DensityMap, Grid, read_map, read_structure
from cryomaps.render import render_structure

SEGMENT = "fitting/EMD-5623_T20S_alpha_segment/test_model.pdb"
RESOLUTION = 3.0
MODE = "blur"  # the synthetic cases test the optimisation; blur renders small maps fastest (the CLI test runs the default)


@pytest.fixture(scope="module")
def truth(data_root):
    """The 218-atom proteasome segment with B = 30 Å² everywhere."""
    structure = read_structure(data_root / SEGMENT)
    return replace(structure, b_factors=np.full(structure.n_atoms, 30.0))


def simulated_map(structure, noise: float, seed: int = 0) -> DensityMap:
    """Peng map at 3 Å (the refinement's own model) plus Gaussian noise of ``noise`` x its std."""
    grid = Grid.around(structure.coords, voxel_size=1.0, padding=8.0)
    clean = render_structure(structure, grid, model="peng", resolution=RESOLUTION, dtype=torch.float64,
                             resolution_mode=MODE).numpy()
    rng = np.random.default_rng(seed)
    return DensityMap(clean + rng.normal(scale=noise * clean.std(), size=clean.shape), grid.voxel_size, grid.origin)


def test_closed_form_scale_and_offset_match_least_squares():
    rng = np.random.default_rng(0)
    model = torch.as_tensor(rng.normal(size=200))
    data = 2.5 * model + 0.7 + torch.as_tensor(rng.normal(scale=0.3, size=200))
    target, scale, offset = scaled_residual(model, data)
    design = np.stack([model.numpy(), np.ones(200)], axis=1)
    (k, c), residual, *_ = np.linalg.lstsq(design, data.numpy(), rcond=None)
    assert float(scale) == pytest.approx(k) and float(offset) == pytest.approx(c)
    assert float(target) == pytest.approx(residual[0] / np.sum((data.numpy() - data.numpy().mean()) ** 2))
    assert float(target) == pytest.approx(1 - np.corrcoef(model, data)[0, 1] ** 2)


def test_covalent_bonds_and_angles_of_a_protein_chain(truth):
    structure = truth
    bonds = {tuple(sorted(p)) for p in covalent_bonds(structure)}
    index = {(int(s), a): i for i, (s, a) in enumerate(zip(structure.residue_seqids, structure.atom_names))}
    residues = sorted(set(int(s) for s in structure.residue_seqids))
    for residue in residues:  # every backbone bond, and every peptide bond to the next residue
        for a, b in (("N", "CA"), ("CA", "C"), ("C", "O")):
            assert tuple(sorted((index[residue, a], index[residue, b]))) in bonds
        if residue + 1 in residues:
            assert tuple(sorted((index[residue, "C"], index[residue + 1, "N"]))) in bonds
    assert not any((index[r, "O"], index[r, "N"]) in bonds or (index[r, "N"], index[r, "O"]) in bonds for r in residues)
    triple = torch.tensor([[index[residues[1], "N"], index[residues[1], "CA"], index[residues[1], "C"]]])
    first, vertex, last = (structure.coords[i] for i in triple[0].tolist())
    u, v = first - vertex, last - vertex
    expected = np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
    assert float(bond_angles(torch.as_tensor(structure.coords), triple)) == pytest.approx(expected)
    assert 105 < expected < 118  # N-CA-C


def test_geometry_energy_gradients_pass_gradcheck(truth):
    structure = truth
    geometry = geometry_from_model(structure)
    coords = torch.as_tensor(structure.coords + np.random.default_rng(1).normal(scale=0.1, size=structure.coords.shape))
    assert float(geometry.energy(torch.as_tensor(structure.coords))) == pytest.approx(0.0, abs=1e-9)
    assert torch.autograd.gradcheck(geometry.energy, (coords.requires_grad_(True),))


def test_occupancy_groups_follow_alternative_conformations(truth):
    structure = truth
    altlocs = structure.altlocs.copy()
    first = structure.residue_seqids == structure.residue_seqids[0]
    side_chain = first & ~np.isin(structure.atom_names, ["N", "CA", "C", "O"])
    altlocs[side_chain] = "A"
    doubled = replace(structure, altlocs=altlocs)
    groups, residue_of_group = occupancy_groups(doubled)
    assert (groups[first & ~side_chain] == -1).all()  # shared atoms of a residue with conformers stay fixed
    assert len(set(groups[side_chain])) == 1
    assert len(residue_of_group) == len(set(structure.residue_seqids))


def test_b_factors_are_recovered_from_a_simulated_map(truth):
    structure = truth
    rng = np.random.default_rng(2)
    per_residue = {s: rng.uniform(15, 90) for s in set(structure.residue_seqids)}
    true_b = np.array([per_residue[s] for s in structure.residue_seqids]) + rng.normal(scale=2, size=structure.n_atoms)
    density_map = simulated_map(replace(structure, b_factors=true_b), noise=0.05)
    start = replace(structure, b_factors=np.full(structure.n_atoms, 60.0))
    result = refine(start, density_map, RefineOptions(resolution=RESOLUTION, resolution_mode=MODE, modes=("adp",), cycles=1, iterations=10))
    assert np.corrcoef(result.b_factors, true_b)[0, 1] > 0.9
    assert result.correlation_after > result.correlation_before
    assert ((result.b_factors >= 2.0) & (result.b_factors <= 300.0)).all()


def test_occupancies_are_recovered_within_a_tenth(truth):
    structure = truth
    rng = np.random.default_rng(3)
    chosen = rng.choice(np.unique(structure.residue_seqids), 6, replace=False)
    occupancy = np.ones(structure.n_atoms)
    true_values = {residue: rng.uniform(0.3, 0.6) for residue in chosen}
    for residue, value in true_values.items():
        occupancy[structure.residue_seqids == residue] = value
    density_map = simulated_map(replace(structure, occupancies=occupancy), noise=0.05)
    result = refine(structure, density_map, RefineOptions(resolution=RESOLUTION, resolution_mode=MODE, modes=("occupancy",), cycles=2, iterations=10))
    np.testing.assert_allclose(result.occupancies, occupancy, atol=0.1)
    assert (result.occupancies <= 1).all() and (result.occupancies >= 0).all()


def test_coordinates_move_towards_the_truth_with_restrained_geometry(truth):
    structure = truth
    density_map = simulated_map(structure, noise=0.1)
    rng = np.random.default_rng(4)
    start = replace(structure, coords=structure.coords + rng.normal(scale=0.5 / np.sqrt(3), size=structure.coords.shape))
    before = rmsd(start.coords, structure.coords)
    # restraint targets from the true geometry stand in for a monomer library's ideal values
    options = RefineOptions(resolution=RESOLUTION, resolution_mode=MODE, modes=("xyz",), cycles=2, iterations=12, reference_coords=structure.coords)
    result = refine(start, density_map, options)
    assert rmsd(result.coords, structure.coords) < 0.5 * before
    assert result.geometry["bond_rmsd_A"] < 0.02 and result.geometry["angle_rmsd_degrees"] < 2.0


def test_rigid_body_returns_a_moved_model(truth):
    structure = truth
    density_map = simulated_map(structure, noise=0.1)
    centre = structure.coords.mean(axis=0)
    rotation = random_rotation(np.random.default_rng(5), 10.0)
    start = replace(structure, coords=(structure.coords - centre) @ rotation.T + centre + np.array([2.0, 0, 0]))
    result = refine(start, density_map, RefineOptions(resolution=RESOLUTION, resolution_mode=MODE, modes=("rigid",), cycles=1, iterations=15))
    assert rmsd(result.coords, structure.coords) < 0.1


def test_refine_command_writes_the_model_and_the_plot(tmp_path, data_root, capsys):
    model = data_root / SEGMENT
    map_file = data_root / "fitting/EMD-5623_T20S_alpha_segment/test_map.ccp4"
    status = main(["refine", str(model), str(map_file), "-o", str(tmp_path / "refined.pdb"), "--resolution", "3.6",
                   "--refine", "adp,occupancy", "--cycles", "1", "--iterations", "4", "--png", str(tmp_path / "cycles.png")])
    assert status == 0
    assert "cycle 1" in capsys.readouterr().out
    refined = read_structure(tmp_path / "refined.pdb")
    np.testing.assert_allclose(refined.coords, read_structure(model).coords, atol=1e-3)
    assert refined.b_factors.std() > 0  # the input has B = 0 everywhere
    assert (tmp_path / "cycles.png").read_bytes()[:4] == b"\x89PNG"
    status = main(["refine", str(model), str(map_file), "-o", str(tmp_path / "x.pdb"), "--resolution", "3",
                   "--refine", "adp,bfactors"])
    assert status == 2 and "--refine" in capsys.readouterr().err
    assert not (tmp_path / "x.pdb").exists()


@pytest.mark.slow
def test_adp_on_emd_3488_from_uniform_b(data_root):
    pair = data_root / "pairs/EMD-3488_hemoglobin"
    deposited = read_structure(pair / "5ni1.cif")
    density_map = read_map(pair / "emd_3488.mrc")
    start = replace(deposited, b_factors=np.full(deposited.n_atoms, 60.0))
    result = refine(start, density_map, RefineOptions(resolution=3.2, modes=("adp",), cycles=1, iterations=8))
    assert np.corrcoef(result.b_factors, deposited.b_factors)[0, 1] >= 0.92
    assert result.correlation_after >= masked_correlation(deposited, density_map, RefineOptions(resolution=3.2))


# planar side-chain groups and the CA chiral centre (N, C, CB), as in the CCP4 monomer library
PLANES = {"PHE": "CB CG CD1 CD2 CE1 CE2 CZ", "TYR": "CB CG CD1 CD2 CE1 CE2 CZ OH", "ARG": "CD NE CZ NH1 NH2",
          "ASP": "CB CG OD1 OD2", "GLU": "CG CD OE1 OE2", "GLN": "CG CD OE1 NE2"}
CHIRAL = ("CA", "N", "C", "CB")


def write_monomer_library(structure, folder):
    """A tiny CCP4-format monomer library: each residue type's bonds, angles, side-chain plane and CA
    chirality (sign) as in its first instance in ``structure`` (covalent-radii bonds), in the folder
    layout gemmi reads."""
    bonds = covalent_bonds(structure)
    angles = angles_from_bonds(bonds, structure.n_atoms)
    (folder / "list").mkdir(parents=True)
    (folder / "list" / "mon_lib_list.cif").write_text("data_lib\n")
    (folder / "ener_lib.cif").write_text("data_energy\n")
    residue_keys = [f"{c}|{s}" for c, s in zip(structure.chain_ids, structure.residue_seqids)]
    first = {}
    for index, name in enumerate(structure.residue_names):
        first.setdefault(name, residue_keys[index])
    for name, key in first.items():
        atoms = {i for i, k in enumerate(residue_keys) if k == key}
        names, coords = structure.atom_names, structure.coords
        lines = ["data_comp_list", "loop_", "_chem_comp.id", "_chem_comp.group", f"{name} peptide", f"data_comp_{name}",
                 "loop_", "_chem_comp_atom.comp_id", "_chem_comp_atom.atom_id", "_chem_comp_atom.type_symbol",
                 "_chem_comp_atom.type_energy"]
        lines += [f"{name} {names[i]} {structure.elements[i]} {structure.elements[i]}" for i in sorted(atoms)]
        lines += ["loop_", "_chem_comp_bond.comp_id", "_chem_comp_bond.atom_id_1", "_chem_comp_bond.atom_id_2",
                  "_chem_comp_bond.type", "_chem_comp_bond.value_dist", "_chem_comp_bond.value_dist_esd"]
        lines += [f"{name} {names[a]} {names[b]} single {np.linalg.norm(coords[a] - coords[b]):.4f} 0.020"
                  for a, b in bonds if a in atoms and b in atoms]
        lines += ["loop_", "_chem_comp_angle.comp_id", "_chem_comp_angle.atom_id_1", "_chem_comp_angle.atom_id_2",
                  "_chem_comp_angle.atom_id_3", "_chem_comp_angle.value_angle", "_chem_comp_angle.value_angle_esd"]
        triples = [t for t in angles if set(t) <= atoms]
        values = bond_angles(torch.as_tensor(coords), torch.as_tensor(np.array(triples).reshape(-1, 3))).numpy()
        lines += [f"{name} {names[a]} {names[v]} {names[b]} {value:.3f} 2.0" for (a, v, b), value in zip(triples, values)]
        index = {names[i]: i for i in atoms}
        if name in PLANES:
            lines += ["loop_", "_chem_comp_plane_atom.comp_id", "_chem_comp_plane_atom.plane_id",
                      "_chem_comp_plane_atom.atom_id", "_chem_comp_plane_atom.dist_esd"]
            lines += [f"{name} plan-1 {atom} 0.020" for atom in PLANES[name].split()]
        if all(atom in index for atom in CHIRAL):
            centre, *others = (coords[index[atom]] for atom in CHIRAL)
            volume = np.dot(others[0] - centre, np.cross(others[1] - centre, others[2] - centre))
            lines += ["loop_", "_chem_comp_chir.comp_id", "_chem_comp_chir.id", "_chem_comp_chir.atom_id_centre",
                      "_chem_comp_chir.atom_id_1", "_chem_comp_chir.atom_id_2", "_chem_comp_chir.atom_id_3",
                      "_chem_comp_chir.volume_sign", f"{name} chir_01 {' '.join(CHIRAL)} {'positiv' if volume > 0 else 'negativ'}"]
        (folder / name[0].lower()).mkdir(exist_ok=True)
        (folder / name[0].lower() / f"{name}.cif").write_text("\n".join(lines) + "\n")


def test_monomer_library_restraints_come_from_gemmi_topology(truth, tmp_path):
    structure = truth
    write_monomer_library(structure, tmp_path)
    geometry = geometry_from_monomer_library(structure, tmp_path)
    assert geometry.source == "monomer library"
    residue = np.array([f"{c}|{s}" for c, s in zip(structure.chain_ids, structure.residue_seqids)])
    bonds = covalent_bonds(structure)
    intra = {tuple(sorted(p)) for p in bonds if residue[p[0]] == residue[p[1]]}
    assert {tuple(sorted(p)) for p in geometry.bonds} == intra  # links (peptide bonds) are not in this library
    triples = angles_from_bonds(bonds, structure.n_atoms)
    assert len(geometry.angles) == sum(residue[a] == residue[v] == residue[b] for a, v, b in triples)
    # the first residue of each type defined the ideal values, so it matches them exactly
    first = residue == residue[0]
    own = [i for i, (a, b) in enumerate(geometry.bonds) if first[a] and first[b]]
    lengths = np.linalg.norm(structure.coords[geometry.bonds[own, 0]] - structure.coords[geometry.bonds[own, 1]], axis=1)
    np.testing.assert_allclose(geometry.bond_targets[own], lengths, atol=1e-3)
    np.testing.assert_allclose(geometry.bond_sigmas, 0.02)


def gemmi_topology(structure, library, coords):
    """gemmi's own (structure, topology) of ``structure`` from ``library``, its atoms moved to ``coords``
    (N, 3) in file order; the topology points into the structure, which must outlive it."""
    import gemmi

    source = gemmi.read_structure(str(structure.source))
    source.setup_entities()
    for atom, position in zip((atom for chain in source[0] for residue in chain for atom in residue), coords):
        atom.pos = gemmi.Position(*position)
    names = sorted({residue.name for chain in source[0] for residue in chain})
    monomers = gemmi.read_monomer_lib(str(library), names, ignore_missing=True)
    return source, gemmi.prepare_topology(source, monomers, h_change=gemmi.HydrogenChange.NoChange, reorder=False,
                                          warnings=[].append, ignore_unknown_links=True)


def test_planes_and_chiral_volumes_match_gemmi(truth, tmp_path):
    import gemmi

    structure = truth
    write_monomer_library(structure, tmp_path)
    geometry = geometry_from_monomer_library(structure, tmp_path)
    residues = dict(zip(zip(structure.chain_ids, structure.residue_seqids), structure.residue_names))
    assert len(geometry.plane_sigmas) == sum(name in PLANES for name in residues.values())
    assert len(geometry.chirals) == sum(name != "GLY" for name in residues.values())
    # the first residue of each type defined the library, so its chiral volume is the ideal one
    volumes = chiral_volumes(torch.as_tensor(structure.coords), torch.as_tensor(geometry.chirals)).numpy()
    assert (np.sign(geometry.chiral_targets) == np.sign(volumes)).all()  # all L, all signed like the model
    first = [i for i, (c, *_) in enumerate(geometry.chirals)
             if structure.residue_seqids[c] == structure.residue_seqids[structure.residue_names == structure.residue_names[c]][0]]
    np.testing.assert_allclose(geometry.chiral_targets[first], volumes[first], atol=0.01)
    # on a perturbed model, distances from the best planes and chiral volumes are gemmi's own
    moved = structure.coords + np.random.default_rng(6).normal(scale=0.2, size=structure.coords.shape)
    model, topology = gemmi_topology(structure, tmp_path, moved)  # model: keeps the atoms of the topology alive
    planes = [plane for plane in topology.planes if len(plane.atoms) >= 4]
    expected = [gemmi.get_distance_from_plane(atom.pos, gemmi.find_best_plane(plane.atoms))
                for plane in planes for atom in plane.atoms]
    ours = geometry.plane_distances(torch.as_tensor(moved)).numpy()
    np.testing.assert_allclose(np.abs(ours), np.abs(expected), atol=1e-6)
    expected_volumes = np.array([chir.calculate() for chir in topology.chirs])
    deviations = geometry.deviations(moved)
    assert deviations["plane_rmsd_A"] == pytest.approx(np.sqrt(np.mean(np.square(expected))))
    assert deviations["chiral_rmsd_A3"] == pytest.approx(np.sqrt(np.mean((expected_volumes - geometry.chiral_targets) ** 2)))
    assert deviations["n_planes"] == len(planes) and deviations["n_chirals"] == len(topology.chirs)
    assert torch.autograd.gradcheck(geometry.energy, (torch.as_tensor(moved).requires_grad_(True),))


def test_coordinates_refined_with_a_monomer_library_keep_planes_and_chirality(truth, tmp_path):
    structure = truth
    write_monomer_library(structure, tmp_path)
    density_map = simulated_map(structure, noise=0.1)
    rng = np.random.default_rng(7)
    start = replace(structure, coords=structure.coords + rng.normal(scale=0.3 / np.sqrt(3), size=structure.coords.shape))
    options = RefineOptions(resolution=RESOLUTION, resolution_mode=MODE, modes=("xyz",), cycles=2, iterations=12,
                            monomer_library=str(tmp_path))
    result = refine(start, density_map, options)
    before = geometry_from_monomer_library(structure, tmp_path).deviations(start.coords)
    assert result.geometry["source"] == "monomer library" and result.geometry["n_planes"] > 0
    assert result.geometry["plane_rmsd_A"] < 0.5 * before["plane_rmsd_A"]
    assert result.geometry["chiral_rmsd_A3"] < 0.5 * before["chiral_rmsd_A3"]
    assert rmsd(result.coords, structure.coords) < rmsd(start.coords, structure.coords)


def test_refine_command_reports_planes_and_chirality_from_a_monomer_library(truth, tmp_path, data_root, capsys):
    write_monomer_library(truth, tmp_path / "library")
    map_file = data_root / "fitting/EMD-5623_T20S_alpha_segment/test_map.ccp4"
    status = main(["refine", str(data_root / SEGMENT), str(map_file), "-o", str(tmp_path / "refined.pdb"),
                   "--resolution", "3.6", "--resolution-mode", "blur", "--refine", "xyz", "--cycles", "1",
                   "--iterations", "3", "--monomer-library", str(tmp_path / "library")])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    cycle = next(line for line in lines if line.startswith("cycle 1"))
    assert "planes" in cycle and "chiral volumes" in cycle
    assert "planes" in lines[-1] and "(monomer library)" in lines[-1]
