"""``cryomaps info``: versions, devices and data roots; with files, a summary of each map or model."""

from __future__ import annotations

HELP = "show versions, devices and data roots, or describe map/model files"


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="*", help="maps (.mrc/.map[.gz]) or models (.pdb/.cif[.gz]) to describe")


def run(args) -> int:
    if args.files:
        for path in args.files:
            print(describe_file(path))
        return 0
    for key, value in environment_report().items():
        print(f"{key:>12}: {value}")
    return 0


def environment_report() -> dict:
    """Versions of the stack, the compute devices and the data roots, as printable strings."""
    import importlib.metadata
    import platform

    import torch

    from cryomaps import __version__
    from cryomaps.data_root import candidate_data_roots, find_data_root

    report = {"cryomaps": __version__, "python": platform.python_version()}
    for package in ("torch", "lightning", "torchio", "gemmi", "mrcfile", "hydra-core", "numpy", "triton", "wandb"):
        try:
            report[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            report[package] = "not installed"
    report["CUDA"] = torch.version.cuda or "none (CPU build)"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        report["devices"] = ", ".join(names)
    else:
        report["devices"] = f"CPU only ({torch.get_num_threads()} threads)"
    root = find_data_root()
    report["data root"] = str(root) if root else "not found (tried " + ", ".join(map(str, candidate_data_roots())) + ")"
    return report


def describe_file(path: str) -> str:
    """One line on a map (shape, voxel size, origin, value range) or a model (atoms, chains, box)."""
    from pathlib import Path

    from cryomaps.io import read_map, read_structure
    from cryomaps.io.maps import MAP_SUFFIXES

    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(MAP_SUFFIXES):
        density = read_map(path)
        return (
            f"{path}: map {density.data.shape} (x,y,z), voxel {_fmt(density.voxel_size)} Å, "
            f"origin {_fmt(density.origin)} Å, values {density.data.min():.4g}..{density.data.max():.4g} "
            f"(mean {density.data.mean():.4g}, sd {density.data.std():.4g})"
        )
    structure = read_structure(path)
    low, high = structure.coords.min(axis=0), structure.coords.max(axis=0)
    return (
        f"{path}: model with {structure.n_atoms} atoms in {len(set(structure.chain_ids))} chain(s), "
        f"box {_fmt(low)} .. {_fmt(high)} Å, mean B {structure.b_factors.mean():.1f} Å²"
    )


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"
