"""``cryomaps generate MODEL -o OUT.mrc``: an experimental-like map from an atomic model (struc2map GAN)."""

from __future__ import annotations

from cryomaps.commands import options

HELP = "generate an experimental-like map from a PDB/mmCIF model with the struc2map generator"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="atomic model (.pdb/.cif, optionally .gz)")
    parser.add_argument("-o", "--output", required=True, type=options.output_file, help="output map (.mrc, .map or .mrc.gz)")
    parser.add_argument("--like", help="write the map on this reference map's grid (voxel size, origin, box) and, "
                        "without --resolution, at that map's estimated resolution")
    parser.add_argument(
        "--resolution", type=options.resolution,
        help="target resolution (Å; default: estimated from the --like map and printed; without --like, the "
        "generator's own output, or 3 Å for a conditioned generator): conditions a resolution-aware generator, "
        "and the output is low-pass filtered from the generator's output resolution d (4.3 Å for the bundled "
        "one) to it with a Gaussian of σ = 0.225·√(resolution² − d²), as cryomaps evaluate target_resolution=R",
    )
    parser.add_argument("--ckpt", help="generator weights (.pt) or training checkpoint (.ckpt); default: the bundled model")
    parser.add_argument("--padding", type=options.padding, default=8.0, help="Å of space around the model (default 8)")
    parser.add_argument("--tiling", choices=["blend", "published"], default="blend",
                        help="blend: overlapping tiles averaged smoothly (default); published: 32³ tiles, 20³ cores, hard stitching")
    parser.add_argument("--tile-size", type=options.int_range(8, 256), default=None,
                        help="tile edge in voxels (blend mode; default 48, measured in the README)")
    parser.add_argument("--overlap", type=options.int_range(0), default=None,
                        help="voxels shared by neighbouring tiles (blend mode; default 16)")
    parser.add_argument("--batch-size", type=options.int_range(1, 4096), default=8, help="tiles per network call")
    parser.add_argument("--device", type=options.device, help="cpu, cuda, cuda:1 … (default: CUDA when available)")
    parser.add_argument("--png", type=options.output_file, help="also write a PNG of the map's central slices")


def run(args) -> int:
    import time

    from cryomaps.inference.generate import TilingOptions, assumed_resolution
    from cryomaps.io import read_map, read_structure, write_map
    from cryomaps.io.weights import bundled_weights_path
    from cryomaps.models.weights import load_network
    from cryomaps.workflows.generation import check_generator, generate_at_resolution, output_resolution

    started = time.perf_counter()
    options.check_distinct_paths({"MODEL": args.model, "--like": args.like, "--ckpt": args.ckpt},
                                 {"-o": args.output, "--png": args.png})
    structure = read_structure(args.model, remove_waters=True, remove_hydrogens=True)
    like = read_map(args.like) if args.like else None
    if like is not None:
        options.check_map_informative(like, args.like, require_variation=False)  # only its grid is used
        options.check_model_in_grid(structure, like.grid, f"the --like map {args.like}")
    args.tile_size = TilingOptions.tile_size if args.tile_size is None else args.tile_size
    args.overlap = TilingOptions.overlap if args.overlap is None else args.overlap
    weights = args.ckpt or bundled_weights_path("generator")
    loaded = load_network(weights, "generator")
    tiling = TilingOptions(args.tile_size, args.overlap, args.tiling, args.batch_size, args.device, progress=True)
    check_generator(loaded, weights, tiling)
    resolution = args.resolution
    if resolution is None and (loaded.network.resolution_conditioned or like is not None):
        resolution, how = assumed_resolution(structure, like)
        print(f"assumed resolution {resolution:.1f} Å ({how})")
    native = output_resolution(loaded)
    if resolution is not None and native is not None and resolution <= native:
        print(f"resolution {resolution:.1f} Å is not coarser than this generator's output ({native:g} Å): "
              "written unfiltered")
    generated = generate_at_resolution(structure, loaded, resolution, args.padding, like, tiling)
    write_map(args.output, generated, label=f"cryomaps generate {structure.n_atoms} atoms")
    print(
        f"wrote {args.output}: {generated.data.shape} voxels of {generated.voxel_size[0]:.3f} Å "
        f"from {structure.n_atoms} atoms in {time.perf_counter() - started:.1f} s (generator: {weights})"
    )
    if args.png:
        from cryomaps.metrics.figures import save_central_slices

        save_central_slices(args.png, generated, {}, reference_name="generated")
        print(f"wrote {args.png}")
    return 0
