"""``cryomaps evaluate``: score maps against reference maps, one pair or a whole manifest.

Single-pair mode: ``cryomaps evaluate --pred P.mrc --ref R.mrc [--model M.cif] [--json OUT.json]``
prints a table and optionally writes the scores as JSON (keys of
:func:`cryomaps.metrics.evaluate_maps`, plus ``pred_path``, ``ref_path``, ``model_path``).

Report mode, chosen by giving Hydra ``key=value`` overrides of ``configs/evaluate.yaml``::

    cryomaps evaluate manifest=M.csv out=DIR [methods=[generator,molmap_2A,molmap_reported,peng]]
                      [split=val] [generator_ckpt=PATH]

makes every method's map of every pair, scores it against the experimental map and writes
metrics.csv, summary.csv and PNG figures into DIR (see :mod:`cryomaps.workflows.report`), then prints
the summary table. ``--pred`` and ``--ref`` are checked in :func:`run` rather than by argparse so
that the two modes share this parser.
"""

from __future__ import annotations

import math
from pathlib import Path

from cryomaps.commands import options

HELP = "score maps against reference maps (SSIM, correlations, FSC): one pair, or a manifest as a report"

# Options of single-pair mode without defaults (attribute -> option), refused in report mode.
SINGLE_PAIR_OPTIONS = {
    "pred": "--pred",
    "ref": "--ref",
    "model": "--model",
    "model_resolution": "--model-resolution",
    "json_path": "--json",
}


def add_arguments(parser) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="report mode: overrides of configs/evaluate.yaml, e.g. manifest=M.csv out=DIR methods=[molmap_2A,peng]",
    )
    parser.add_argument("--pred", type=Path, metavar="P.mrc", help="map to score")
    parser.add_argument("--ref", type=Path, metavar="R.mrc", help="reference (experimental) map")
    parser.add_argument(
        "--model",
        type=Path,
        metavar="M.cif",
        help="atomic model fitted in the reference: adds the masked correlation and map-model FSC",
    )
    parser.add_argument(
        "--model-density",
        choices=("peng", "molmap"),
        default="peng",
        help="how the model map for map-model FSC is rendered (default: peng)",
    )
    parser.add_argument(
        "--model-resolution",
        type=options.resolution,
        metavar="Å",
        help="resolution passed to the renderer for the model map (needed by molmap)",
    )
    parser.add_argument(
        "--mask-radius", type=options.float_range(0.0, 100.0, exclusive_minimum=True, unit="Å"), default=3.0, metavar="Å", help="mask radius around atoms (default: 3)"
    )
    parser.add_argument("--json", type=lambda text: Path(options.output_file(text)), dest="json_path", metavar="OUT.json", help="also write the scores here")


def run(args) -> int:
    """Report mode when ``key=value`` overrides are given, else single-pair mode."""
    if args.overrides:
        return run_report(args)
    return run_single_pair(args)


def run_report(args) -> int:
    """Write the manifest report (:func:`cryomaps.workflows.report.report_from_config`) and print its summary."""
    from cryomaps.config import compose_config
    from cryomaps.errors import InputError
    from cryomaps.workflows.report import format_summary, report_from_config

    given = [option for name, option in SINGLE_PAIR_OPTIONS.items() if getattr(args, name) is not None]
    if given:
        raise InputError(None, f"{', '.join(given)}: single-pair option(s), not for a report (key=value overrides)")
    report = report_from_config(compose_config("evaluate", args.overrides))
    print(format_summary(report.summary, report.methods))
    print(f"report written to {report.out_dir}")
    return 0


def run_single_pair(args) -> int:
    """Score ``--pred`` against ``--ref`` (optionally with ``--model``), print and optionally save the scores."""
    from cryomaps.errors import InputError
    from cryomaps.io import read_map
    from cryomaps.metrics import evaluate_maps
    from cryomaps.io.atomic import write_json_atomically

    if args.pred is None or args.ref is None:
        raise InputError(
            None, "both --pred and --ref are required (or key=value overrides for a report: manifest=M.csv out=DIR)"
        )
    options.check_distinct_paths({"--pred": args.pred, "--ref": args.ref, "--model": args.model}, {"--json": args.json_path})
    pred, ref = read_map(args.pred), read_map(args.ref)
    for path, density in ((args.pred, pred), (args.ref, ref)):
        options.check_map_informative(density, path)
    check_overlap(pred, ref, args.pred, args.ref)
    model_coords = model_map = None
    if args.model is not None:
        model_coords, model_map = _model_inputs(args, ref)
    scores = evaluate_maps(pred, ref, model_coords=model_coords, model_map=model_map, mask_radius=args.mask_radius)
    print(format_table(scores))
    if args.json_path is not None:
        paths = {"pred_path": str(args.pred), "ref_path": str(args.ref), "model_path": _optional_str(args.model)}
        write_json_atomically(args.json_path, {**paths, **scores}, indent=2, non_finite_as_null=True)
        print(f"scores written to {args.json_path}")
    return 0


def _model_inputs(args, ref):
    """Atom coordinates of ``args.model`` and the model map rendered on ``ref``'s grid."""
    from cryomaps.io import read_structure
    from cryomaps.render import render_structure_array

    structure = read_structure(args.model)
    options.check_model_in_grid(structure, ref.grid, f"the --ref map {args.ref}")
    settings = {} if args.model_resolution is None else {"resolution": args.model_resolution}
    model_map = render_structure_array(structure, ref.grid, model=args.model_density, **settings)
    return structure.coords, model_map


def check_overlap(pred, ref, pred_path, ref_path) -> None:
    """Refuse maps whose boxes do not overlap; warn when they share less than half of the reference's box."""
    import numpy as np

    from cryomaps.errors import InputError

    def box(density):
        low = density.origin - density.voxel_size / 2
        return low, low + density.grid.extent

    (pred_low, pred_high), (ref_low, ref_high) = box(pred), box(ref)
    shared = (np.minimum(pred_high, ref_high) - np.maximum(pred_low, ref_low)).clip(min=0)
    fraction = float(shared.prod() / (ref_high - ref_low).prod())
    if fraction == 0.0:
        raise InputError(pred_path, f"its box does not overlap the box of the reference {ref_path}")
    if fraction < 0.5:
        options.warn(f"{pred_path} covers only {100 * fraction:.1f}% of the box of the reference {ref_path}")


def _optional_str(path) -> str | None:
    return None if path is None else str(path)


def format_table(scores: dict[str, float]) -> str:
    """Two aligned columns, metric and value (4 decimals; ``n/a`` for NaN)."""
    width = max(len(name) for name in scores)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 8}"]
    for name, value in scores.items():
        shown = "n/a" if math.isnan(value) else f"{value:.4f}"
        lines.append(f"{name:<{width}}  {shown}")
    return "\n".join(lines)
