"""``cryomaps refine``: real-space refinement of a model against a map (rigid, xyz, adp, occupancy).

Macro-cycles run the chosen modes in the order rigid → xyz → adp → occupancy, each by L-BFGS on
the masked real-space target with closed-form scale and offset (see :mod:`cryomaps.fit.refine`).
A line per cycle is printed; the refined model (coordinates, B-factors, occupancies; everything
else as read) is written atomically, the log to ``--json`` and the score per cycle to ``--png``.
"""

from __future__ import annotations

from cryomaps.commands import options
from cryomaps.commands.fit import add_common_arguments, load_inputs

HELP = "refine a model against a map in real space (rigid bodies, coordinates, B-factors, occupancies)"


def modes(text: str) -> tuple:
    """``--refine`` value: comma-separated modes among rigid, xyz, adp, occupancy."""
    import argparse

    from cryomaps.fit.refine import REFINE_MODES

    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [mode for mode in chosen if mode not in REFINE_MODES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(REFINE_MODES)}, got {text!r}")
    return chosen


def add_arguments(parser) -> None:
    add_common_arguments(parser, resolution_mode="finite")
    parser.add_argument("--refine", type=modes, default=("adp",), metavar="MODES",
                        help="what to refine: comma-separated rigid, xyz, adp, occupancy (default adp)")
    parser.add_argument("--cycles", type=options.int_range(1, 1000), default=5, metavar="N",
                        help="macro-cycles (default 5)")
    parser.add_argument("--iterations", type=options.int_range(1, 1000), default=8, metavar="N",
                        help="L-BFGS iterations per mode and cycle (default 8)")
    parser.add_argument("--adp-groups", choices=("atom", "residue", "chain"), default="atom",
                        help="one B-factor per atom (default, with the bonded-B similarity restraint), residue or chain")
    parser.add_argument("--rigid-bodies", choices=("chain", "model"), default="chain",
                        help="rigid groups for --refine rigid (default: one per chain)")
    parser.add_argument("--mask-radius", type=options.float_range(0.5, 20.0, unit="Å"), default=None, metavar="Å",
                        help="mask around the atoms (default max(2.5, 0.75 x resolution))")
    parser.add_argument("--xyz-weight", type=options.positive_float, default=None, metavar="W",
                        help="weight of the map against the geometry restraints (default 5)")
    parser.add_argument("--monomer-library", type=options.input_folder, default=None, metavar="DIR",
                        help="CCP4 monomer library for geometry restraints (default $CLIBD_MON; none: covalent radii "
                        "with the starting model's values as targets)")


def run(args) -> int:
    from cryomaps.metrics.figures import save_score_plot
    from cryomaps.fit.refine import RefineOptions, refine
    from cryomaps.io.atomic import write_json_atomically
    from cryomaps.io.structure_output import moved_copy, write_structure

    structure, density_map = load_inputs(args)
    extra = {} if args.xyz_weight is None else {"xyz_weight": args.xyz_weight}
    refine_options = RefineOptions(
        resolution=args.resolution, modes=args.refine, cycles=args.cycles, iterations=args.iterations,
        model=args.model, resolution_mode=args.resolution_mode, mask_radius=args.mask_radius,
        adp_groups=args.adp_groups, rigid_bodies=args.rigid_bodies, monomer_library=args.monomer_library, **extra,
    )
    print(f"refining {', '.join(refine_options.ordered_modes())} of {structure.n_atoms} atoms, "
          f"{args.cycles} cycles, mask radius {refine_options.mask_radius_A:g} Å")
    result = refine(structure, density_map, refine_options, progress=_print_cycle)
    refined = moved_copy(structure, coords=result.coords, b_factors=result.b_factors, occupancies=result.occupancies)
    path = write_structure(args.output, refined)
    geometry = ""
    if result.geometry is not None:
        geometry = (f"; bond RMSD {result.geometry['bond_rmsd_A']:.4f} Å, angle RMSD "
                    f"{result.geometry['angle_rmsd_degrees']:.2f}°{_planes_and_chirality(result.geometry)} "
                    f"({result.geometry['source']})")
    print(f"masked correlation {result.correlation_before:.4f} -> {result.correlation_after:.4f} in "
          f"{result.seconds:.2f} s{geometry}; wrote {path}")
    if args.json:
        write_json_atomically(args.json, {
            "model": args.model_file, "map": args.map_file, "resolution_A": args.resolution,
            "modes": refine_options.ordered_modes(), "correlation_before": result.correlation_before,
            "correlation_after": result.correlation_after, "seconds": result.seconds,
            "geometry": result.geometry, "cycles": result.cycles,
        })
    if args.png:
        scores = [result.correlation_before] + [cycle["correlation"] for cycle in result.cycles]
        save_score_plot(args.png, {"masked correlation": scores}, x_label="macro-cycle (0 = start)",
                        title=f"cryomaps refine ({', '.join(refine_options.ordered_modes())})")
    return 0


def _print_cycle(entry: dict) -> None:
    geometry = ""
    if "bond_rmsd_A" in entry:
        geometry = (f", bonds {entry['bond_rmsd_A']:.4f} Å, angles {entry['angle_rmsd_degrees']:.2f}°"
                    f"{_planes_and_chirality(entry)}")
    print(f"cycle {entry['cycle']}: masked correlation {entry['correlation']:.4f}{geometry} "
          f"({entry['evaluations']} evaluations, {entry['seconds']:.1f} s)", flush=True)


def _planes_and_chirality(deviations: dict) -> str:
    """The plane (Å) and chiral-volume (Å³) RMS deviations as text, for a geometry that has such restraints."""
    text = ""
    if deviations["n_planes"]:
        text += f", planes {deviations['plane_rmsd_A']:.4f} Å"
    if deviations["n_chirals"]:
        text += f", chiral volumes {deviations['chiral_rmsd_A3']:.3f} Å³"
    return text
