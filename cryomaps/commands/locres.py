"""``cryomaps locres``: local-resolution map (Å) of a map.

Two modes:

- single map (``cryomaps locres MAP -o LOCRES --mask-out MASK``): a trained CryoRes network
  (:mod:`cryomaps.inference.locres_network`; the bundled weights unless ``--ckpt``) predicts the
  local resolution and the molecular mask; both are written on the input map's grid.
- half maps (``--half1 H1 --half2 H2``): classical windowed local FSC
  (:mod:`cryomaps.signal.local_fsc`).

Outside the (given or predicted) mask the local resolution is ``--background`` (100 Å).
"""

from __future__ import annotations

from cryomaps.commands import options

HELP = "estimate a local-resolution map (Å): one map with a trained network, or two half maps by windowed FSC"


def add_arguments(parser) -> None:
    parser.add_argument("map", nargs="?", help="single map (.mrc/.map[.gz]) for the trained network")
    parser.add_argument("--half1", help="first half map (.mrc/.map[.gz])")
    parser.add_argument("--half2", help="second half map, on the same grid")
    parser.add_argument("--mask", help="mask on the same grid (values > 0.5 inside); estimates only inside")
    parser.add_argument("-o", "--output", required=True, type=options.output_file, help="output local-resolution map (Å)")
    parser.add_argument("--mask-out", type=options.output_file, help="single-map mode: write the predicted molecular mask here")
    parser.add_argument("--ckpt", help="single-map mode: CryoRes weights file or checkpoint (default: the bundled model)")
    parser.add_argument("--batch-size", type=options.int_range(1, 4096), default=8, help="single-map mode: tiles per network call (8)")
    parser.add_argument("--overlap", type=options.int_range(0), default=None,
                        help="single-map mode: voxels shared by neighbouring tiles (half a tile; a quarter is ~3x faster, with seams)")
    parser.add_argument("--no-flip-average", dest="flip_average", action="store_false",
                        help="single-map mode: skip the second, inverted pass that is averaged in (twice as fast)")
    parser.add_argument("--window", type=options.positive_float, default=25.0, help="window diameter at half weight, Å (25)")
    parser.add_argument("--step", type=options.positive_float, default=None, help="distance between estimates, Å (window/3)")
    parser.add_argument("--soft-edge", type=options.non_negative_float, default=5.0, help="raised-cosine window edge width, Å (5)")
    parser.add_argument("--shape", choices=("sphere", "cube"), default="sphere", help="window shape (sphere)")
    parser.add_argument("--threshold", type=options.float_range(0.0, 1.0, exclusive_minimum=True), default=0.143, help="FSC threshold (0.143)")
    parser.add_argument("--background", type=options.positive_float, default=None,
                        help="value outside the mask, Å (default 100: signal.local_fsc.BACKGROUND_RESOLUTION)")
    parser.add_argument("--png", type=options.output_file, help="also write central slices of the map and its local resolution (PNG)")
    parser.add_argument("--device", default=None, type=options.device, help="torch device (default: cuda when available, else cpu)")


def run(args) -> int:
    import time

    from cryomaps.errors import InputError

    options.check_distinct_paths(
        {"MAP": args.map, "--half1": args.half1, "--half2": args.half2, "--mask": args.mask, "--ckpt": args.ckpt},
        {"-o": args.output, "--mask-out": args.mask_out, "--png": args.png},
    )
    if args.map is not None and args.half1 is None and args.half2 is None:
        return run_single_map(args)
    if args.half1 is None and args.half2 is None:
        raise InputError(None, "give one map, or two half maps with --half1 and --half2")
    if args.half1 is None or args.half2 is None:
        raise InputError(None, "both --half1 and --half2 are needed")
    if args.map is not None:
        raise InputError(args.map, "give either a single map or two half maps, not both")

    if args.mask_out is not None or args.ckpt is not None or args.overlap is not None or not args.flip_average:
        raise InputError(None, "--mask-out, --ckpt, --overlap and --no-flip-average belong to the single-map mode")
    from cryomaps.signal.local_fsc import local_resolution, mask_on_grid, summary_statistics
    from cryomaps.io import read_map, write_map

    start = time.perf_counter()
    half1, half2 = read_map(args.half1), read_map(args.half2)
    for path, half in ((args.half1, half1), (args.half2, half2)):
        options.check_map_informative(half, path, minimum_edge=MINIMUM_EDGE)
    check_window(args, half1)
    mask = read_map(args.mask) if args.mask else None
    background = background_value(args)
    locres = local_resolution(
        half1, half2, mask, window=args.window, step=args.step, soft_edge=args.soft_edge, shape=args.shape,
        threshold=args.threshold, background=background, device=args.device,
    )
    write_map(args.output, locres, label="cryomaps locres: local FSC resolution (A)")
    inside = None if mask is None else mask_on_grid(mask, half1.grid)
    stats = summary_statistics(locres, inside)
    where = "inside the mask" if mask is not None else "over the map"
    print(
        f"{args.output}: local resolution {where}: median {stats['median']:.2f} Å, "
        f"min {stats['min']:.2f} Å, max {stats['max']:.2f} Å ({time.perf_counter() - start:.1f} s)"
    )
    if args.png:
        save_slices(args.png, (half1.data + half2.data) / 2, locres, locres.data < background)
    return 0


def background_value(args) -> float:
    """``--background``, or the package's default (Å); imported late: the module loads torch."""
    from cryomaps.signal.local_fsc import BACKGROUND_RESOLUTION

    return BACKGROUND_RESOLUTION if args.background is None else args.background


def run_single_map(args) -> int:
    """Single-map mode: the CryoRes network's local-resolution map and mask, on the input grid."""
    from cryomaps.errors import InputError
    from cryomaps.io import read_map, write_map

    if args.mask is not None:
        raise InputError(args.mask, "--mask is for the half-map mode; the single-map mode predicts its own mask")
    density = read_map(args.map)  # checked before torch and the network are loaded
    options.check_map_informative(density, args.map, minimum_edge=MINIMUM_EDGE)

    from cryomaps.inference.locres_network import predict_local_resolution
    from cryomaps.io.weights import bundled_weights_path
    from cryomaps.models.weights import load_network

    weights = args.ckpt or bundled_weights_path("cryores")
    if args.ckpt is None and not weights.is_file():
        raise InputError(weights, "the bundled trained network is missing; give a CryoRes weights file with --ckpt")
    loaded = load_network(weights, "cryores")
    tile_size = int(loaded.metadata.get("tile_size", 0))
    if args.overlap is not None and not args.overlap < tile_size:
        raise InputError(None, f"--overlap must be smaller than the network's tile size {tile_size}, got {args.overlap}")
    result = predict_local_resolution(
        density, loaded.network, loaded.metadata, overlap=args.overlap, flip_average=args.flip_average,
        batch_size=args.batch_size, device=args.device,
        background=background_value(args),
    )
    write_map(args.output, result.locres, label="cryomaps locres: CryoRes network local resolution (A)")
    if args.mask_out:
        write_map(args.mask_out, result.mask, label="cryomaps locres: CryoRes network molecular mask")
    inside = int(result.mask.data.sum())
    print(
        f"{args.output}: network local resolution inside the predicted mask ({inside} voxels): "
        f"median {result.median:.2f} Å ({result.seconds:.1f} s)"
    )
    if args.png:
        save_slices(args.png, density.data, result.locres, result.mask.data > 0.5)
    return 0


MINIMUM_EDGE = 8
"""Fewest voxels per axis of a map whose local resolution is estimated (either mode)."""


def check_window(args, half_map) -> None:
    """Refuse a window wider than the half maps' box or too narrow to hold two voxels."""
    from cryomaps.errors import InputError
    from cryomaps.io.grid import nyquist_resolution

    extent = float(min(half_map.grid.extent))
    finest = nyquist_resolution(half_map.voxel_size)
    if not finest <= args.window <= extent:
        raise InputError(None, f"--window must lie between 2 voxels ({finest:g} Å) and the map's smallest "
                         f"edge ({extent:g} Å), got {args.window:g} Å")


def save_slices(path, density, locres, inside) -> None:
    """Central slices of the map (x, y, z) and of its local-resolution map inside ``inside`` (PNG)."""
    from cryomaps.metrics.figures import save_local_resolution_slices

    save_local_resolution_slices(path, density, {"local resolution": locres}, inside)
    print(f"slices: {path}")
