"""``cryomaps fetch``: download the EMDB maps and PDB models of a manifest."""

from __future__ import annotations

from cryomaps.commands import options

HELP = "download the EMDB maps and PDB models of a manifest (cached, checksummed, resumable)"


def add_arguments(parser) -> None:
    """Declare the options of ``cryomaps fetch``."""
    parser.add_argument("manifest", help="manifest CSV (see data_manifests/README.md)")
    parser.add_argument(
        "--out", required=True, type=options.output_folder, help="folder for maps/, models/, manifest.csv, fetch_report.csv, checksums.json"
    )
    parser.add_argument(
        "--emdb-url",
        help="map URL template with fields {emdb_id} {emdb_number} "
        "(default: the wwPDB archive, .../emdb/structures/{emdb_id}/map/emd_{emdb_number}.map.gz)",
    )
    parser.add_argument(
        "--pdb-url",
        help="model URL template with fields {pdb_id} {pdb_id_upper} {pdb_mid}, e.g. the flat "
        "https://files.rcsb.org/download/{pdb_id}.cif.gz "
        "(default: the wwPDB archive, .../divided/mmCIF/{pdb_mid}/{pdb_id}.cif.gz)",
    )
    parser.add_argument("--split", choices=("train", "val", "test"), help="fetch only the entries of this split")
    parser.add_argument("--workers", type=options.int_range(1, 64), default=4, help="parallel transfers (default: %(default)s)")
    parser.add_argument("--retries", type=options.int_range(0, 100), default=3, help="retries of a failed transfer (default: %(default)s)")
    parser.add_argument(
        "--backoff", type=options.float_range(0.0, 3600.0, unit="s"), default=1.0, help="seconds before the first retry, doubled for each next one"
    )
    parser.add_argument("--timeout", type=options.float_range(0.0, 3600.0, exclusive_minimum=True, unit="s"), default=60.0, help="socket timeout in seconds (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    """Fetch, print the summary; exit status 1 when any entry failed."""
    from cryomaps.data.fetch import FetchOptions, fetch_manifest
    from cryomaps.data.manifest import filter_split, read_manifest

    entries = read_manifest(args.manifest)
    if args.split:
        entries = filter_split(entries, args.split)
    templates = {"emdb_url": args.emdb_url, "pdb_url": args.pdb_url}
    options = FetchOptions(
        **{key: template for key, template in templates.items() if template},
        workers=args.workers,
        retries=args.retries,
        backoff_s=args.backoff,
        timeout_s=args.timeout,
        progress=not args.no_progress,
    )
    summary = fetch_manifest(entries, args.out, options)
    print("\n".join(summary.lines()))
    return 1 if summary.failed else 0
