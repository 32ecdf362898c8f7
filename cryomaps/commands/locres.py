"""``cryomaps locres``: local-resolution map from two half maps (classical local FSC).

Half maps are the supported mode. The positional ``map`` argument is reserved for the single-map
mode (trained network, with ``--mask-out``), which is not available yet.
"""

from __future__ import annotations

HELP = "estimate a local-resolution map (Å) from two half maps by windowed FSC"


def add_arguments(parser) -> None:
    parser.add_argument("map", nargs="?", help="single map (needs the trained network; not available yet)")
    parser.add_argument("--half1", help="first half map (.mrc/.map[.gz])")
    parser.add_argument("--half2", help="second half map, on the same grid")
    parser.add_argument("--mask", help="mask on the same grid (values > 0.5 inside); estimates only inside")
    parser.add_argument("-o", "--output", required=True, help="output local-resolution map (Å)")
    parser.add_argument("--mask-out", help="write the mask used (single-map mode; reserved)")
    parser.add_argument("--window", type=float, default=25.0, help="window diameter at half weight, Å (25)")
    parser.add_argument("--step", type=float, default=None, help="distance between estimates, Å (window/4)")
    parser.add_argument("--soft-edge", type=float, default=5.0, help="raised-cosine window edge width, Å (5)")
    parser.add_argument("--shape", choices=("sphere", "cube"), default="sphere", help="window shape (sphere)")
    parser.add_argument("--threshold", type=float, default=0.143, help="FSC threshold (0.143)")
    parser.add_argument("--background", type=float, default=100.0, help="value outside the mask, Å (100)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def run(args) -> int:
    import time

    from cryomaps.errors import InputError

    if args.half1 is None and args.half2 is None:
        if args.map is not None:
            raise InputError(
                args.map,
                "single-map local resolution needs the trained network, which is not available yet; "
                "give two half maps with --half1 and --half2",
            )
        raise InputError(None, "give two half maps with --half1 and --half2")
    if args.half1 is None or args.half2 is None:
        raise InputError(None, "both --half1 and --half2 are needed")
    if args.map is not None:
        raise InputError(args.map, "give either a single map or two half maps, not both")

    from cryomaps.inference.locres_classical import local_resolution, mask_on_grid, summary_statistics
    from cryomaps.io import read_map, write_map

    start = time.perf_counter()
    half1, half2 = read_map(args.half1), read_map(args.half2)
    mask = read_map(args.mask) if args.mask else None
    locres = local_resolution(
        half1, half2, mask, window=args.window, step=args.step, soft_edge=args.soft_edge, shape=args.shape,
        threshold=args.threshold, background=args.background, device=args.device,
    )
    write_map(args.output, locres, label="cryomaps locres: local FSC resolution (A)")
    inside = None if mask is None else mask_on_grid(mask, half1.grid)
    stats = summary_statistics(locres, inside)
    where = "inside the mask" if mask is not None else "over the map"
    print(
        f"{args.output}: local resolution {where}: median {stats['median']:.2f} Å, "
        f"min {stats['min']:.2f} Å, max {stats['max']:.2f} Å ({time.perf_counter() - start:.1f} s)"
    )
    return 0
