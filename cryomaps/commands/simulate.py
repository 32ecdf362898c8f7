"""``cryomaps simulate``: render a density map from an atomic model.

The map is written with voxel size and origin such that it overlays the model (see
:mod:`cryomaps.io.grid`): either on a box around the atoms (``--voxel-size``, ``--padding``) or on
the grid of an existing map (``--like``).
"""

from __future__ import annotations

from cryomaps.commands import options

HELP = "simulate a density map from an atomic model (molmap or Peng potential)"


def add_arguments(parser) -> None:
    parser.add_argument("model_file", metavar="MODEL", help="atomic model (.pdb/.cif, optionally .gz)")
    parser.add_argument("-o", "--output", required=True, type=options.output_file, metavar="OUT.mrc", help="map to write")
    parser.add_argument(
        "--model", choices=("peng", "molmap"), default="peng",
        help="density model: Peng/ITC 4.3.2.2 electron potential with B-factors (default), "
        "or ChimeraX molmap Gaussians (needs --resolution)",
    )
    parser.add_argument(
        "--resolution", type=options.resolution, default=None, metavar="Å",
        help="resolution d: molmap sigma = sigma_factor x d; for peng an extra blur of the same sigma "
        "(or the finite-resolution image with --resolution-mode finite); default none for peng",
    )
    parser.add_argument(
        "--resolution-mode", choices=("blur", "finite"), default="blur",
        help="how peng applies --resolution: Gaussian blur (default) or finite-resolution atomic images",
    )
    parser.add_argument(
        "--sigma-factor", type=options.float_range(0.01, 10.0), default=None, metavar="F",
        help="Gaussian sigma per Å of resolution (default 1/(pi*sqrt(2)) = 0.225, ChimeraX molmap)",
    )
    parser.add_argument(
        "--sampling", choices=("point", "average"), default="point",
        help="values at voxel centres (default) or exact averages over each voxel",
    )
    parser.add_argument("--voxel-size", type=options.voxel_size, default=1.0, metavar="Å", help="voxel size (default 1)")
    parser.add_argument(
        "--padding", type=options.padding, default=10.0, metavar="Å",
        help="margin added around the atoms' bounding box (default 10)",
    )
    parser.add_argument(
        "--like", metavar="REF.mrc", default=None,
        help="render on the grid of this map (its shape, voxel size and origin; "
        "--voxel-size and --padding are then ignored)",
    )
    parser.add_argument("--remove-hydrogens", action="store_true", help="leave hydrogen atoms out")
    parser.add_argument("--remove-waters", action="store_true", help="leave water molecules out")
    parser.add_argument(
        "--device", default=None, type=options.device,
        help="torch device (default: cuda when available, else cpu)",
    )


def output_grid(args, coords):
    """The grid of the output map: ``--like``'s grid, else a box around ``coords`` (N, 3) Å."""
    from cryomaps.io import Grid, read_map

    if args.like is not None:
        like = read_map(args.like)
        options.check_map_informative(like, args.like, require_variation=False)  # only its grid is used
        return like.grid
    return Grid.around(coords, voxel_size=args.voxel_size, padding=args.padding)


def density_config(args):
    """The :class:`cryomaps.render.DensityModelConfig` that the options describe."""
    from cryomaps.render import DensityModelConfig

    from cryomaps.errors import InputError

    if args.resolution is None and (args.model == "molmap" or args.resolution_mode == "finite"):
        needs = "--model molmap" if args.model == "molmap" else "--resolution-mode finite"
        raise InputError(None, f"{needs} needs --resolution (Å)")
    settings = {}
    if args.sigma_factor is not None:
        settings["sigma_factor"] = args.sigma_factor
    return DensityModelConfig(
        model=args.model,
        resolution=args.resolution,
        resolution_mode=args.resolution_mode,
        sampling=args.sampling,
        **settings,
    )


def run(args) -> int:
    from cryomaps.io.structures import start_reading_structure

    options.check_distinct_paths({"MODEL": args.model_file, "--like": args.like}, {"-o": args.output})
    reading = start_reading_structure(  # parsed in a child process while torch is imported here
        args.model_file, remove_hydrogens=args.remove_hydrogens, remove_waters=args.remove_waters
    )
    from cryomaps.devices import resolve_device
    from cryomaps.io import DensityMap, write_map
    from cryomaps.render import render_structure_array

    config = density_config(args)
    structure = reading()
    grid = output_grid(args, structure.coords)
    options.check_resolution_sampled(args.resolution, args.resolution_mode, grid)
    if args.like is not None:
        options.check_model_in_grid(structure, grid, f"the --like map {args.like}")
    density = render_structure_array(structure, grid, config, device=resolve_device(args.device))
    written = write_map(args.output, DensityMap.from_grid(density, grid), label=f"cryomaps simulate {config.model}")
    print(
        f"wrote {written}: {structure.n_atoms} atoms, model {config.model}, grid {grid.shape} "
        f"at {grid.voxel_size[0]:g} Å, origin {tuple(round(float(o), 3) for o in grid.origin)}"
    )
    return 0
