"""``cryomaps curate``: turn the map-model pairs of a manifest into curated training pairs."""

from __future__ import annotations

HELP = "mask, box, resample, normalise and filter the map-model pairs of a manifest into training pairs"


def add_arguments(parser) -> None:
    """Declare the options of ``cryomaps curate``."""
    parser.add_argument("manifest", help="manifest CSV (see data_manifests/README.md); maps and models must be local")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides of configs/curate.yaml, e.g. normalisation=published_minmax workers=4 shard=0/8 merge=true",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for NAME.npz, records/, curated.csv and curation_report.csv"
    )


def run(args) -> int:
    """Curate, write the outputs and print the summary table.

    Exit status 1 when nothing was accepted (a shard's run: 0, its pairs are only candidates).
    """
    from cryomaps.config import compose_config
    from cryomaps.data.curate import CurationOptions, curate_entries, format_summary
    from cryomaps.data.curation_store import parse_merge, parse_shard, parse_workers
    from cryomaps.data.manifest import read_manifest

    config = compose_config("curate", args.overrides)
    options = CurationOptions.from_config(config)
    workers, shard, merge = parse_workers(config.workers), parse_shard(config.shard), parse_merge(config.merge, config.shard)
    entries = read_manifest(args.manifest, data_root=config.data_root, check_sha256=False)  # checked per curated pair
    results = curate_entries(entries, args.out, options, workers=workers, shard=shard, merge=merge, manifest=args.manifest)
    print("\n".join(format_summary(results)))
    return 0 if shard is not None or any(result.accepted for result in results) else 1
