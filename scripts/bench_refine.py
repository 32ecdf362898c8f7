"""Benchmark real-space refinement against the installable peers; prints a table, writes JSON.

Cases (all in one invocation; peers run in subprocesses because CCTBX must be imported before
gemmi, and a missing peer is skipped with a printed reason):

1. ADP, 5NI1 + EMD-3488 at 3.2 Å, every B set to 60 Å² at the start: cryomaps
   (``--refine adp``), servalcat ``refine_spa_norefmac --fix_xyz --adp iso --unrestrained
   --bfactor 60 -s electron --ncycle 5`` and CCTBX's real-space ADP refinement as
   phenix.real_space_refine calls it (``mmtbx.refinement.real_space.adp.ncs_aware_refinement``,
   group B per residue then individual B; no restraints, as no monomer library is installed).
   Scores: Pearson correlation of the refined B with the deposited B, and cryomaps' masked
   map-model correlation (same mask, same Peng renderer) of every result and of the deposited B.
   Repeats alternate the programs; times are medians.
2. Rigid body: chain A of 5NI1 rotated 10° about a random axis through its centre and shifted
   2 Å; cryomaps (``--refine rigid``, one body per chain) vs CCTBX ``refine_mz`` per chain (as
   ``refine_groups`` runs it, without its boxing step, whose API this cctbx-base lacks). Score:
   RMSD of chain A to the deposited place.
3. Coordinates, synthetic: 5NI1 chain A's map simulated at 3 Å (Peng, B as deposited, the
   refinement's own default model: finite-resolution images) with noise
   (10 % of the map's standard deviation), the chain perturbed by 0.5 Å rms; refined with
   geometry targets from the deposited chain (standing in for a monomer library). Scores: RMSD to
   the truth, bond and angle RMSD from the targets.
4. Coordinates, real: 5NI1 in EMD-3488 (``--refine xyz``; targets = the deposited geometry):
   masked correlation before and after, bond and angle RMSD.
5. Occupancy, synthetic: 5NI1 chain A with 8 residues at occupancy 0.3-0.6, map at 3 Å plus 5 %
   noise, refined from occupancy 1: largest error over all residues.

    python scripts/bench_refine.py [--repeats 1] [--json bench_results/refine.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

RESOLUTION = 3.2
CCTBX_ADP = r"""
import json, sys, time
import iotbx.data_manager
import mmtbx.refinement.real_space.adp as rs_adp
from iotbx.map_model_manager import map_model_manager
model_path, map_path, out = sys.argv[1:4]
manager = iotbx.data_manager.DataManager()
mmm = map_model_manager(model=manager.get_model(model_path), map_manager=manager.get_real_map(map_path))
mmm.model().set_b_iso(values=mmm.model().get_b_iso() * 0 + 60)
start = time.perf_counter()
rs_adp.ncs_aware_refinement(map_model_manager=mmm, d_min=float(sys.argv[4]), atom_radius=2.0, nproc=1,
                            individual=True, group_mode="one_per_residue", restraints_weight=None)
json.dump({"seconds": time.perf_counter() - start, "b": list(mmm.model().get_b_iso())}, open(out, "w"))
"""
CCTBX_RIGID = r"""
import json, sys, time
import iotbx.data_manager
from mmtbx.refinement.real_space.rigid_body import refine_mz
from iotbx.map_model_manager import map_model_manager
model_path, map_path, out = sys.argv[1:4]
manager = iotbx.data_manager.DataManager()
mmm = map_model_manager(model=manager.get_model(model_path), map_manager=manager.get_real_map(map_path))
hierarchy = mmm.model().get_hierarchy()
xrs = mmm.model().get_xray_structure()
start_sites = xrs.sites_cart().deep_copy()
sites = start_sites.deep_copy()
start = time.perf_counter()
for chain in hierarchy.chains():  # refine_mz per chain, as refine_groups does
    selection = chain.atoms().extract_i_seq()
    result = refine_mz(map_data=mmm.map_data(), pdb_hierarchy=hierarchy.select(selection),
                       xray_structure=xrs.select(selection), d_min=float(sys.argv[4]),
                       log=open("/dev/null", "w"))
    sites = sites.set_selected(selection, result.sites_cart_best)
seconds = time.perf_counter() - start
# the manager works in a shifted frame: report displacements, which do not depend on it
json.dump({"seconds": seconds, "displacements": [[b - a for a, b in zip(p, q)] for p, q in zip(start_sites, sites)]},
          open(out, "w"))
"""


def python_has(module: str) -> bool:
    finished = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return finished.returncode == 0


def run_json(command, out: Path) -> dict:
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(finished.stderr.strip().splitlines()[-1] if finished.stderr.strip() else "failed")
    return json.loads(out.read_text())


def servalcat_adp(model: Path, map_file: Path, work: Path):
    """(seconds, B per atom in file order) of servalcat's unrestrained isotropic ADP refinement."""
    import gemmi

    executable = shutil.which("servalcat") or str(Path(sys.executable).parent / "servalcat")
    command = [executable, "refine_spa_norefmac", "--model", str(model), "--map", str(map_file), "-d", str(RESOLUTION),
               "--fix_xyz", "--adp", "iso", "--unrestrained", "--bfactor", "60", "-s", "electron", "--ncycle", "5",
               "-o", "servalcat_adp"]
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=work, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise RuntimeError(finished.stderr.strip().splitlines()[-1] if finished.stderr.strip() else "servalcat failed")
    refined = gemmi.read_structure(str(work / "servalcat_adp.mmcif"))
    b_by_atom = {(ch.name, r.seqid.num, a.name): a.b_iso for ch in refined[0] for r in ch for a in r}
    return seconds, b_by_atom


def adp_case(structure, density_map, paths, repeats: int, work: Path) -> dict:
    from cryomaps.fit.refine import RefineOptions, masked_correlation, refine

    options = RefineOptions(resolution=RESOLUTION, modes=("adp",), cycles=1, iterations=8)  # finite-resolution images (the default)
    start = replace(structure, b_factors=np.full(structure.n_atoms, 60.0))
    score_options = RefineOptions(resolution=RESOLUTION)
    rows = {"deposited B": {"pearson": 1.0, "masked_cc": masked_correlation(structure, density_map, score_options)}}
    rows["all B = 60 (start)"] = {"masked_cc": masked_correlation(start, density_map, score_options)}
    times = {"cryomaps": [], "servalcat": [], "cctbx": []}
    results = {}
    have_servalcat = shutil.which("servalcat") or (Path(sys.executable).parent / "servalcat").exists()
    have_cctbx = python_has("mmtbx.refinement.real_space.adp")
    skipped = {}
    if not have_servalcat:
        skipped["servalcat"] = "servalcat not installed"
    if not have_cctbx:
        skipped["cctbx"] = "cctbx-base (mmtbx) not installed"
    for _ in range(repeats):
        result = refine(start, density_map, options)
        times["cryomaps"].append(result.seconds)
        results["cryomaps"] = result.b_factors
        if have_servalcat and "servalcat" not in skipped:
            try:
                seconds, b_by_atom = servalcat_adp(paths["model"], paths["map"], work)
                times["servalcat"].append(seconds)
                results["servalcat"] = np.array([b_by_atom[(c, int(s), a)] for c, s, a in zip(
                    structure.chain_ids, structure.residue_seqids, structure.atom_names)])
            except (RuntimeError, KeyError, OSError) as error:
                skipped["servalcat"] = f"failed: {error}"
        if have_cctbx and "cctbx" not in skipped:
            out = work / "cctbx_adp.json"
            try:
                peer = run_json([sys.executable, "-c", CCTBX_ADP, str(paths["model"]), str(paths["map"]), str(out), str(RESOLUTION)], out)
                times["cctbx"].append(peer["seconds"])
                results["cctbx"] = np.array(peer["b"])
            except (RuntimeError, OSError) as error:
                skipped["cctbx"] = f"failed: {error}"
    for name, b_factors in results.items():
        refined = replace(structure, b_factors=b_factors)
        rows[name] = {
            "pearson": float(np.corrcoef(b_factors, structure.b_factors)[0, 1]),
            "masked_cc": masked_correlation(refined, density_map, score_options),
            "median_seconds": statistics.median(times[name]),
            "fraction_at_bounds": float(np.mean((b_factors <= 2.01) | (b_factors >= 299.9))),
        }
    return {"rows": rows, "skipped": skipped, "cryomaps_options": {"cycles": options.cycles, "iterations": options.iterations}}


def moved_chain(structure, chain: str, angle: float, shift: float, seed: int):
    from cryomaps.fit.pose import random_rotation

    rng = np.random.default_rng(seed)
    selected = structure.chain_ids == chain
    centre = structure.coords[selected].mean(axis=0)
    direction = rng.normal(size=3)
    coords = structure.coords.copy()
    coords[selected] = (coords[selected] - centre) @ random_rotation(rng, angle).T + centre + shift * direction / np.linalg.norm(direction)
    return replace(structure, coords=coords), selected


def rigid_case(structure, density_map, paths, work: Path) -> dict:
    from cryomaps.fit.pose import rmsd
    from cryomaps.fit.refine import RefineOptions, refine
    from cryomaps.io.structure_output import write_structure

    moved, chain_a = moved_chain(structure, "A", 10.0, 2.0, seed=0)
    rows = {"start": {"rmsd_A": rmsd(moved.coords[chain_a], structure.coords[chain_a])}}
    result = refine(moved, density_map, RefineOptions(resolution=RESOLUTION, modes=("rigid",), cycles=3, iterations=10))
    rows["cryomaps"] = {"rmsd_A": rmsd(result.coords[chain_a], structure.coords[chain_a]), "seconds": result.seconds}
    skipped = {}
    if python_has("mmtbx.refinement.real_space.rigid_body"):
        moved_path = write_structure(work / "moved_chain_a.pdb", moved, write_b_factors=False, write_occupancies=False)
        out = work / "cctbx_rigid.json"
        try:
            peer = run_json([sys.executable, "-c", CCTBX_RIGID, str(moved_path), str(paths["map"]), str(out), str(RESOLUTION)], out)
            sites = moved.coords + np.array(peer["displacements"])
            rows["cctbx"] = {"rmsd_A": rmsd(sites[chain_a], structure.coords[chain_a]), "seconds": peer["seconds"]}
        except (RuntimeError, OSError) as error:
            skipped["cctbx"] = f"failed: {error}"
    else:
        skipped["cctbx"] = "cctbx-base (mmtbx) not installed"
    return {"rows": rows, "skipped": skipped}


def chain_subset(structure, chain: str):
    selected = structure.chain_ids == chain
    fields = {name: getattr(structure, name)[selected] for name in (
        "coords", "atomic_numbers", "elements", "b_factors", "occupancies", "chain_ids", "residue_names",
        "residue_seqids", "atom_names", "altlocs")}
    return replace(structure, **fields)


def simulated(structure, noise: float, seed: int):
    import torch

    from cryomaps.io import DensityMap, Grid
    from cryomaps.render import render_structure

    from cryomaps.fit.refine import RefineOptions

    grid = Grid.around(structure.coords, voxel_size=1.0, padding=8.0)
    clean = render_structure(structure, grid, model="peng", resolution=3.0, dtype=torch.float64,
                             resolution_mode=RefineOptions.resolution_mode).numpy()
    rng = np.random.default_rng(seed)
    return DensityMap(clean + rng.normal(scale=noise * clean.std(), size=clean.shape), grid.voxel_size, grid.origin)


def xyz_cases(structure, density_map) -> dict:
    from cryomaps.fit.pose import rmsd
    from cryomaps.fit.refine import RefineOptions, refine

    truth = chain_subset(structure, "A")
    synthetic_map = simulated(truth, noise=0.1, seed=1)
    rng = np.random.default_rng(2)
    start = replace(truth, coords=truth.coords + rng.normal(scale=0.5 / np.sqrt(3), size=truth.coords.shape))
    options = RefineOptions(resolution=3.0, modes=("xyz",), cycles=3, iterations=12, reference_coords=truth.coords)
    result = refine(start, synthetic_map, options)
    synthetic = {"start_rmsd_A": rmsd(start.coords, truth.coords), "final_rmsd_A": rmsd(result.coords, truth.coords),
                 "seconds": result.seconds, **result.geometry}
    real = refine(structure, density_map, RefineOptions(resolution=RESOLUTION, modes=("xyz",), cycles=3, iterations=12))
    return {"synthetic": synthetic, "real": {"masked_cc_before": real.correlation_before,
                                             "masked_cc_after": real.correlation_after, "seconds": real.seconds,
                                             "shift_rms_A": rmsd(real.coords, structure.coords), **real.geometry}}


def occupancy_case(structure) -> dict:
    from cryomaps.fit.refine import RefineOptions, refine

    truth = chain_subset(structure, "A")
    rng = np.random.default_rng(5)
    chosen = rng.choice(np.unique(truth.residue_seqids), 8, replace=False)
    occupancy = np.ones(truth.n_atoms)
    for residue in chosen:
        occupancy[truth.residue_seqids == residue] = rng.uniform(0.3, 0.6)
    density_map = simulated(replace(truth, occupancies=occupancy), noise=0.05, seed=6)
    result = refine(truth, density_map, RefineOptions(resolution=3.0, modes=("occupancy",), cycles=2, iterations=10))
    error = np.abs(result.occupancies - occupancy)
    return {"max_error": float(error.max()), "max_error_chosen": float(error[np.isin(truth.residue_seqids, chosen)].max()),
            "seconds": result.seconds}


def main() -> None:
    import torch

    from cryomaps.data_root import find_data_root
    from cryomaps.io import read_map, read_structure
    from cryomaps.io.atomic import write_json_atomically

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", default="bench_results/refine.json")
    args = parser.parse_args()
    data_root = find_data_root()
    if data_root is None:
        raise SystemExit("shared data not found (set CRYOMAPS_DATA_ROOT)")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    pair = data_root / "pairs/EMD-3488_hemoglobin"
    paths = {"model": pair / "5ni1.cif", "map": pair / "emd_3488.mrc"}
    structure = read_structure(paths["model"])
    density_map = read_map(paths["map"])
    report = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        report["adp"] = adp_case(structure, density_map, paths, args.repeats, work)
        _print_adp(report["adp"])
        report["rigid"] = rigid_case(structure, density_map, paths, work)
        _print_rows("rigid body, chain A moved 10° + 2 Å", report["rigid"])
    report["xyz"] = xyz_cases(structure, density_map)
    print("coordinates:", json.dumps({k: {n: round(v, 4) if isinstance(v, float) else v for n, v in d.items()}
                                      for k, d in report["xyz"].items()}))
    report["occupancy"] = occupancy_case(structure)
    print("occupancy:", {k: round(v, 4) for k, v in report["occupancy"].items()})
    write_json_atomically(args.json, report)
    print(f"wrote {args.json}")


def _print_adp(case) -> None:
    print(f"ADP, 5NI1 + EMD-3488 at {RESOLUTION} Å from B = 60")
    print(f"  {'program':20s} {'Pearson B':>9s} {'masked cc':>9s} {'seconds':>8s} {'at bounds':>9s}")
    for name, row in case["rows"].items():
        pearson = f"{row['pearson']:9.3f}" if "pearson" in row else f"{'':9s}"
        seconds = f"{row['median_seconds']:8.2f}" if "median_seconds" in row else f"{'':8s}"
        bounds = f"{row['fraction_at_bounds']:9.3f}" if "fraction_at_bounds" in row else ""
        print(f"  {name:20s} {pearson} {row['masked_cc']:9.4f} {seconds} {bounds}")
    for name, reason in case["skipped"].items():
        print(f"  skipped {name}: {reason}")


def _print_rows(title, case) -> None:
    print(title)
    for name, row in case["rows"].items():
        print(f"  {name:20s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    for name, reason in case["skipped"].items():
        print(f"  skipped {name}: {reason}")


if __name__ == "__main__":
    main()
