"""``cryomaps curate``: turn the map-model pairs of a manifest into curated training pairs."""

from __future__ import annotations

HELP = "mask, box, resample, normalise and filter the map-model pairs of a manifest into training pairs"


def add_arguments(parser) -> None:
    """Declare the options of ``cryomaps curate``."""
    parser.add_argument("manifest", help="manifest CSV (see data_manifests/README.md); maps and models must be local")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides of configs/curate.yaml, e.g. normalisation=published_minmax"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for NAME.npz, curated.csv and curation_report.csv")


def run(args) -> int:
    """Curate, write the outputs and print the summary table; exit status 1 when nothing was accepted."""
    from cryomaps.config import compose_config
    from cryomaps.data.curate import CurationOptions, curate_entries, format_summary
    from cryomaps.data.manifest import read_manifest

    config = compose_config("curate", args.overrides)
    options = CurationOptions.from_config(config)
    entries = read_manifest(args.manifest, data_root=config.data_root)
    results = curate_entries(entries, args.out, options)
    print("\n".join(format_summary(results)))
    return 0 if any(result.accepted for result in results) else 1
