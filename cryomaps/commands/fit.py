"""``cryomaps fit``: rigid-body fit of an atomic model into a map (local or global search).

The moved model is written as PDB or mmCIF (by the output's extension) with every record but the
coordinates untouched; the score (correlation about the mean over the model's region at the given
resolution) before and after, the rotation and translation and the time are printed, and logged
to ``--json``. See :mod:`cryomaps.fit.local` and :mod:`cryomaps.fit.global_search`.
"""

from __future__ import annotations

from cryomaps.commands import options

HELP = "fit an atomic model into a map as rigid bodies (local refinement or global search)"


def add_common_arguments(parser, resolution_mode: str = "blur") -> None:
    """Arguments shared by ``fit`` and ``refine``: MODEL MAP -o OUT --resolution R and the density model."""
    parser.add_argument("model_file", metavar="MODEL", help="atomic model (.pdb/.cif, optionally .gz)")
    parser.add_argument("map_file", metavar="MAP", help="experimental map (.mrc/.map/.ccp4)")
    parser.add_argument("-o", "--output", required=True, type=options.output_file, metavar="OUT.cif",
                        help="model to write (.pdb/.ent or .cif/.mmcif)")
    parser.add_argument("--resolution", required=True, type=options.resolution, metavar="Å",
                        help="resolution of the map (Å)")
    parser.add_argument("--model", choices=("peng", "molmap"), default="peng",
                        help="density model of the model map (default peng, with the atoms' B-factors)")
    parser.add_argument("--resolution-mode", choices=("blur", "finite"), default=resolution_mode,
                        help="how peng applies the resolution: Gaussian blur (sigma 0.225 x resolution) or "
                        f"finite-resolution atomic images (default {resolution_mode})")
    parser.add_argument("--json", default=None, type=options.output_file, metavar="LOG.json", help="write a JSON log")
    parser.add_argument("--png", default=None, type=options.output_file, metavar="PLOT.png", help="plot the scores")


def add_arguments(parser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--search", choices=("local", "global"), default="local",
                        help="local: refine the current placement (default); global: any position and orientation")
    parser.add_argument("--rigid-bodies", choices=("model", "chain"), default="model",
                        help="one rigid body (default) or one per chain (local search)")
    parser.add_argument("--solutions", type=options.int_range(1, 1000), default=1, metavar="K",
                        help="global search: write the K best solutions (OUT, OUT_2, ...; default 1)")
    parser.add_argument("--angular-step", type=options.float_range(1.0, 90.0, unit="°"), default=None, metavar="DEG",
                        help="global search: rotation step (default from the resolution and the model's radius)")
    parser.add_argument("--device", default=None, type=options.device,
                        help="torch device for the global scan (default: cuda when available, else cpu)")


def load_inputs(args):
    """Check paths and read the model and the map: (structure, density_map)."""
    from cryomaps.io import read_map, read_structure

    outputs = {"-o": args.output, "--json": args.json, "--png": args.png}
    options.check_distinct_paths({"MODEL": args.model_file, "MAP": args.map_file}, outputs)
    from cryomaps.io.structure_output import structure_format

    structure_format(args.output)
    structure = read_structure(args.model_file)
    density_map = read_map(args.map_file)
    options.check_map_informative(density_map, args.map_file)
    options.check_model_in_grid(structure, density_map.grid, f"the map {args.map_file}")
    options.check_resolution_sampled(args.resolution, args.resolution_mode, density_map.grid)
    return structure, density_map


def solution_path(output: str, rank: int) -> str:
    """Output file of the solution of this rank (1 = ``output`` itself, else ``stem_rank.ext``)."""
    from pathlib import Path

    if rank == 1:
        return output
    path = Path(output)
    return str(path.with_name(f"{path.stem}_{rank}{path.suffix}"))


def run(args) -> int:
    from cryomaps.fit import FitOptions, fit_local
    from cryomaps.fit.local import score_model
    from cryomaps.fit.global_search import SearchOptions, fit_global
    from cryomaps.io.atomic import write_json_atomically
    from cryomaps.io.structure_output import moved_copy, write_structure

    structure, density_map = load_inputs(args)
    fit_options = FitOptions(resolution=args.resolution, model=args.model, resolution_mode=args.resolution_mode,
                             rigid_bodies=args.rigid_bodies)
    if args.search == "local":
        fits = [fit_local(structure, density_map, fit_options)]
        log = {"search": "local", **fits[0].summary()}
    else:
        search = SearchOptions(step_degrees=args.angular_step, n_solutions=args.solutions, device=args.device,
                               progress=True)
        result = fit_global(structure, density_map, fit_options, search)
        fits = [solution.fit for solution in result.solutions]
        before = score_model(structure, density_map, fit_options)
        log = {"search": "global", "score_before": before, **result.summary()}
    for rank, fit in enumerate(fits, start=1):
        path = write_structure(solution_path(args.output, rank), moved_copy(structure, coords=fit.coords),
                               write_b_factors=False, write_occupancies=False)
        _print_fit(rank, fit, path, log.get("score_before", fit.score_before), log)
    if args.json:
        write_json_atomically(args.json, {"model": args.model_file, "map": args.map_file,
                                          "resolution_A": args.resolution, **log})
    if args.png:
        from cryomaps.metrics.figures import save_score_plot

        save_score_plot(args.png, {f"solution {rank}": fit.stage_scores for rank, fit in enumerate(fits, 1)},
                        x_label="stage (coarse to fine)", title=f"cryomaps fit ({args.search})")
    return 0


def _print_fit(rank, fit, path, score_before, log) -> None:
    import numpy as np

    extra = ""
    if log["search"] == "global":
        solution = log["solutions"][rank - 1]
        extra = f", z-score {solution['z_score']:.2f}, {log['n_rotations']} rotations at {log['step_degrees']:.1f}°"
    print(f"solution {rank}: score {score_before:.4f} -> {fit.score_after:.4f}{extra}, {log['seconds']:.2f} s; wrote {path}")
    for name, rotation, translation in zip(fit.group_names, fit.rotations, fit.translations):
        rows = "; ".join(" ".join(f"{v:+.5f}" for v in row) for row in np.asarray(rotation))
        print(f"  {name}: rotation [{rows}] translation {np.round(translation, 3).tolist()} Å")
