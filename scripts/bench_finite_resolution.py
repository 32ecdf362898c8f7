"""Benchmark of finite-resolution maps with gradients: cryomaps vs CCTBX's bcr real-space kernel.

The case: 5NI1 (EMD-3488's model, 4,579 atoms) on EMD-3488's grid (100³ voxels of 1.05 Å),
resolution d = 3.2 Å, the model's B-factors and occupancies, one CPU thread for both programs.

- ``cryomaps forward``: ``render_density(..., model="peng", resolution=d, resolution_mode="finite")``
  (float32 and float64), coordinates, B and occupancies requiring gradients;
- ``cryomaps fwd+bwd``: the same plus ``backward()`` of the target ``0.5 * sum((map - data)²)``,
  ``data`` = the experimental map: gradients for coordinates, B and occupancies;
- ``cctbx forward`` / ``cctbx fwd+bwd``: ``cctbx_maptbx_bcr_bcr_ext.vrm`` (cctbx-base; the Gaussian
  + shell decomposition of Afonine, Adams & Urzhumtsev, with CCTBX's tables for the electron
  form factors at the nearest tabulated resolution, atoms summed within 2 d, its exp table on):
  ``vrm(...)`` + ``compute()``, then ``compute_gradients(data)``, which evaluates the same target
  and its gradients for xyz, occupancy and u_iso. CCTBX's tables hold C, H, N, O, S only: the
  model's 4 Fe atoms are given S tables on that side. The scatterer setup (tables, radii) is done
  once, outside the timings; CCTBX runs in a subprocess with ``OMP_NUM_THREADS=1`` (cctbx and gemmi
  cannot share a process), and the two programs' repeats are interleaved (medians reported).

Accuracy, against references that share no code with the renderer
(:mod:`cryomaps.render.reference`):

- the exact map: structure factors of the continuous Peng form factors summed on the reciprocal
  lattice of the grid padded by ``--margin`` Å (default 30), cut at ``|s| <= 1/d``, inverse FFT,
  float64; figures: correlation inside the model's 3 Å mask, relative total density over the grid,
  relative L2 over the grid and inside the mask;
- the continuous map itself at ``--points`` random voxels of the mask (the sum over all atoms of
  the 1-D atom image by quadrature): relative L2 and correlation at those voxels.

    python scripts/bench_finite_resolution.py [--repeats 7] [--json bench_results/finite_resolution.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESOLUTION = 3.2
PAIR = "EMD-3488_hemoglobin"
MASK_RADIUS = 3.0
CCTBX_ELEMENTS = ("C", "H", "N", "O", "S")
CCTBX_RADIUS_FACTOR = 2.0
"""CCTBX's default atom radius in resolutions (qmap: ``RadFact``), and the shell radius limit below."""
CCTBX_SHELL_LIMIT = 2.5
"""Shells with R < 2.5 d are kept (qmap: ``RadFact + RadAdd``)."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case (default 7)")
    parser.add_argument("--margin", type=float, default=30.0, help="padding (Å) of the exact reference's box")
    parser.add_argument("--points", type=int, default=300, help="mask voxels checked against the continuous map")
    parser.add_argument("--json", default="bench_results/finite_resolution.json", help="where to write the results")
    parser.add_argument("--cctbx-worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------- CCTBX side


def cctbx_worker(spec: dict) -> None:
    """Line protocol on stdin/stdout: ``run`` -> one forward and one forward + gradients, timed (JSON);
    ``map PATH`` -> the last map saved as a (x, y, z) float64 .npy; ``quit``."""
    import boost_adaptbx.boost.python as bp
    import iotbx.pdb
    from cctbx import crystal
    from scitbx.array_family import flex

    ext = bp.import_ext("cctbx_maptbx_bcr_bcr_ext")
    n_real = tuple(spec["shape"])
    symmetry = crystal.symmetry(unit_cell=tuple(spec["cell"]) + (90.0, 90.0, 90.0), space_group_symbol="P1")
    structure = iotbx.pdb.input(file_name=spec["model"]).xray_structure_simple(crystal_symmetry=symmetry)
    substituted = 0
    for scatterer in structure.scatterers():
        if scatterer.scattering_type.strip().upper() not in CCTBX_ELEMENTS:
            scatterer.scattering_type = "S"
            substituted += 1
    structure.scattering_type_registry(table="electron")
    scatterers = bcr_scatterers(ext, structure, spec["resolution"])
    data = flex.double(np.load(spec["data"]).transpose(2, 1, 0).copy())  # CCTBX maps are (z, y, x)
    data.reshape(flex.grid(n_real[2], n_real[1], n_real[0]))
    print(json.dumps({"ready": True, "substituted_by_sulfur": substituted}), flush=True)
    values = None
    for line in sys.stdin:
        command = line.split()
        if command[0] == "run":
            start = time.perf_counter()
            kernel = ext.vrm(Ncrs=n_real, Scrs=[0, 0, 0], Nxyz=n_real, unit_cell=symmetry.unit_cell(),
                             bcr_scatterers=scatterers, use_exp_table=True)
            values = kernel.compute(compute_gradients=False)
            forward = time.perf_counter() - start
            kernel.compute_gradients(map_data=data)
            both = time.perf_counter() - start
            print(json.dumps({"forward": forward, "fwd+bwd": both, "target": kernel.target}), flush=True)
        elif command[0] == "map":
            np.save(command[1], values.as_numpy_array().transpose(2, 1, 0))
            print(json.dumps({"saved": command[1]}), flush=True)
        else:
            return


def bcr_scatterers(ext, structure, resolution: float) -> list:
    """CCTBX bcr scatterers: each element's tabulated (R, B, C) terms at the tabulated resolution
    nearest to ``resolution``, terms with R < 2.5 d, atom radius 2 d (CCTBX's defaults)."""
    import math

    from cctbx.maptbx.bcr import qmap
    from scitbx.array_family import flex

    tables = {}
    result = []
    for scatterer in structure.scatterers():
        element = scatterer.scattering_type.strip().upper()
        if element not in tables:
            table = qmap.load_table(element=element, table="electron")
            nearest = min(table, key=lambda key: abs(float(key) - resolution))
            terms = {name: flex.double(table[nearest][name]) for name in ("R", "B", "C")}
            keep = terms["R"] < CCTBX_SHELL_LIMIT * resolution
            tables[element] = {name: values.select(keep) for name, values in terms.items()}
        radius, blur, weight = (tables[element][name] for name in ("R", "B", "C"))
        result.append(ext.bcr_scatterer(
            scatterer=scatterer, radius=CCTBX_RADIUS_FACTOR * resolution, resolution=resolution,
            mu=radius, kappa=weight, nu=blur / (8.0 * math.pi**2), musq=radius * radius,
            kappi=weight / math.pi**1.5,
        ))
    return result


class CctbxProcess:
    """The CCTBX worker subprocess (one thread)."""

    def __init__(self, spec: dict):
        environment = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--cctbx-worker", json.dumps(spec)], env=environment,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.info = self.ask(None)

    def ask(self, command: str | None) -> dict:
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the CCTBX worker stopped (see its error output above)")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(timeout=60)


def cctbx_skip_reason() -> str | None:
    """Why CCTBX cannot run here, or None."""
    probe = "import boost_adaptbx.boost.python as bp; bp.import_ext('cctbx_maptbx_bcr_bcr_ext'); import iotbx.pdb"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if completed.returncode != 0:
        return "cctbx-base (cctbx.maptbx.bcr) is not importable: " + completed.stderr.strip().splitlines()[-1]
    return None


# -------------------------------------------------------------------------------- cryomaps side


def cryomaps_runner(tensors, data, grid, dtype, backward: bool):
    import torch

    from cryomaps.render import render_density

    target = torch.as_tensor(data, dtype=dtype)

    def run():
        inputs = [tensors[name].to(dtype).clone().requires_grad_() for name in ("coords", "b_factors", "occupancies")]
        start = time.perf_counter()
        density = render_density(inputs[0], tensors["atomic_numbers"], grid, b_factors=inputs[1], occupancies=inputs[2],
                                 model="peng", resolution=RESOLUTION, resolution_mode="finite")
        if backward:
            (0.5 * (density - target).square().sum()).backward()
        return time.perf_counter() - start, density.detach()

    return run


def accuracy(values: np.ndarray, exact: np.ndarray, mask: np.ndarray) -> dict:
    """Figures of a map (x, y, z) against the exact map."""
    inside = values[mask]
    return {
        "correlation_in_mask": float(np.corrcoef(inside, exact[mask])[0, 1]),
        "relative_total": float(values.sum() / exact.sum() - 1.0),
        "relative_l2": float(np.linalg.norm(values - exact) / np.linalg.norm(exact)),
        "relative_l2_in_mask": float(np.linalg.norm(inside - exact[mask]) / np.linalg.norm(exact[mask])),
    }


def continuum_accuracy(values: np.ndarray, continuum: np.ndarray, flat_index: np.ndarray) -> dict:
    sampled = values.reshape(-1)[flat_index]
    return {
        "relative_l2_at_points": float(np.linalg.norm(sampled - continuum) / np.linalg.norm(continuum)),
        "correlation_at_points": float(np.corrcoef(sampled, continuum)[0, 1]),
    }


def print_table(timings: dict, figures: dict) -> None:
    print(f"\nfinite-resolution map + gradients, 5NI1 (4,579 atoms), 100³ grid at 1.05 Å, d = {RESOLUTION} Å, "
          "one thread")
    print(f"{'case':<26}{'median (s)':>12}{'min (s)':>10}")
    for case, values in timings.items():
        print(f"{case:<26}{statistics.median(values):>12.3f}{min(values):>10.3f}")
    cctbx = timings.get("cctbx fwd+bwd")
    if cctbx:
        for dtype in ("float32", "float64"):
            ours = statistics.median(timings[f"cryomaps {dtype} fwd+bwd"])
            print(f"cctbx / cryomaps {dtype} fwd+bwd: {statistics.median(cctbx) / ours:.1f}x")
    print(f"\n{'map':<18}{'corr (mask)':>12}{'total':>10}{'L2':>9}{'L2 mask':>9}{'L2 cont.':>10}{'corr cont.':>12}")
    for name, row in figures.items():
        print(f"{name:<18}{row['correlation_in_mask']:>12.6f}{row['relative_total']:>+10.2e}"
              f"{row['relative_l2']:>9.4f}{row['relative_l2_in_mask']:>9.4f}"
              f"{row['relative_l2_at_points']:>10.4f}{row['correlation_at_points']:>12.6f}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cctbx_worker:
        cctbx_worker(json.loads(args.cctbx_worker))
        return 0
    skip_cctbx = cctbx_skip_reason()  # probed before torch and gemmi load here
    import torch
    from scipy.spatial import cKDTree

    from cryomaps.data_root import find_data_root
    from cryomaps.io.atomic import write_json_atomically
    from cryomaps.io.maps import read_map
    from cryomaps.io.structures import read_structure
    from cryomaps.render.reference import continuum_finite_resolution_values, exact_finite_resolution_map

    root = find_data_root()
    if root is None:
        print("shared data not found (see cryomaps.data_root): nothing to benchmark")
        return 1
    folder = root / "pairs" / PAIR
    structure = read_structure(folder / "5ni1.cif")
    experimental = read_map(folder / "emd_3488.mrc")
    grid = experimental.grid
    tensors = structure.to_tensors(dtype=torch.float64)
    torch.set_num_threads(1)

    print("exact references (float64) ...", file=sys.stderr)
    start = time.perf_counter()
    exact = exact_finite_resolution_map(structure.coords, structure.atomic_numbers, structure.b_factors,
                                        structure.occupancies, grid, RESOLUTION, args.margin).numpy()
    exact_seconds = time.perf_counter() - start
    distance, _ = cKDTree(structure.coords).query(grid.voxel_centres(), distance_upper_bound=MASK_RADIUS)
    mask = np.isfinite(distance).reshape(grid.shape)
    flat_index = np.random.default_rng(0).choice(np.flatnonzero(mask), size=args.points, replace=False)
    continuum = continuum_finite_resolution_values(grid.voxel_centres()[flat_index], structure.coords,
                                                   structure.atomic_numbers, structure.b_factors,
                                                   structure.occupancies, RESOLUTION)

    runners = {
        f"cryomaps {dtype} {kind}": cryomaps_runner(
            tensors, experimental.data, grid, getattr(torch, dtype), backward=kind == "fwd+bwd"
        )
        for dtype in ("float32", "float64") for kind in ("forward", "fwd+bwd")
    }
    cctbx = None
    if skip_cctbx:
        print(f"skipping CCTBX: {skip_cctbx}")
    else:
        with tempfile.TemporaryDirectory() as scratch:
            data_path = str(Path(scratch) / "data.npy")
            np.save(data_path, np.asarray(experimental.data, dtype=np.float64))
            spec = {"model": str(folder / "5ni1.cif"), "shape": list(grid.shape),
                    "cell": [float(n * h) for n, h in zip(grid.shape, grid.voxel_size)],
                    "resolution": RESOLUTION, "data": data_path}
            cctbx = CctbxProcess(spec)
    timings = {name: [] for name in runners}
    if cctbx:
        timings.update({"cctbx forward": [], "cctbx fwd+bwd": []})
    maps = {}
    for repeat in range(args.repeats + 1):  # the first round warms up (fits, FFT plans, tables)
        for name, run in runners.items():
            seconds, maps[name] = run()
            if repeat:
                timings[name].append(seconds)
        if cctbx:
            reply = cctbx.ask("run")
            if repeat:
                timings["cctbx forward"].append(reply["forward"])
                timings["cctbx fwd+bwd"].append(reply["fwd+bwd"])
    figures = {}
    for dtype in ("float32", "float64"):
        values = maps[f"cryomaps {dtype} forward"].double().numpy()
        figures[f"cryomaps {dtype}"] = accuracy(values, exact, mask) | continuum_accuracy(values, continuum, flat_index)
    cctbx_info = None
    if cctbx:
        with tempfile.TemporaryDirectory() as scratch:
            path = str(Path(scratch) / "cctbx.npy")
            cctbx.ask(f"map {path}")
            values = np.load(path)
        figures["cctbx bcr"] = accuracy(values, exact, mask) | continuum_accuracy(values, continuum, flat_index)
        cctbx_info = {"fe_atoms_given_sulfur_tables": cctbx.info["substituted_by_sulfur"]}
        cctbx.close()
    print_table(timings, figures)
    report = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                    "torch": torch.__version__},
        "settings": {"pair": PAIR, "atoms": structure.n_atoms, "grid": list(grid.shape),
                     "voxel_size": float(grid.voxel_size[0]), "resolution": RESOLUTION, "repeats": args.repeats,
                     "threads": 1, "reference_margin": args.margin, "continuum_points": args.points,
                     "mask_radius": MASK_RADIUS, "exact_reference_seconds": exact_seconds,
                     "cctbx": cctbx_info or {"skipped": skip_cctbx}},
        "timings_seconds": {
            name: {"median": statistics.median(values), "min": min(values), "all": values}
            for name, values in timings.items()
        },
        "accuracy": figures,
    }
    output = write_json_atomically(args.json, report)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
