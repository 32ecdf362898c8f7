"""Evaluation reports: generated and simulated maps scored against the experimental maps of a manifest.

For each map-model pair (model read without waters and hydrogens) every method makes a map on the
experimental map's grid, and :func:`cryomaps.metrics.evaluate_maps` scores it against the
experimental map with the model's atoms (:data:`METRICS`). Methods (:func:`check_methods`):

- ``generator``: the struc2map generator at the pair's resolution (the reported one, or
  ``target_resolution``) made as ``cryomaps generate --resolution`` makes it
  (:func:`cryomaps.workflows.generation.generate_at_resolution`: a resolution-conditioned generator
  is conditioned on it, and the output is low-pass filtered to it from the generator's output
  resolution), bundled weights unless a weights file or checkpoint is given;
- ``molmap_<d>A`` (e.g. ``molmap_2A``, ``molmap_4.5A``): ChimeraX-style molmap at d Å;
- ``molmap_reported``: molmap at the pair's resolution (reported, or ``target_resolution``);
- ``peng``: the Peng electron potential with the model's B-factors, point sampled.

With ``target_resolution`` R (Å), every experimental map is first low-pass filtered from its
reported resolution d₀ to R with :func:`cryomaps.signal.filtered_map` (Gaussian
σ = 0.225·√(R² − d₀²), the filter that made the coarser training targets), and the pair is then
evaluated at R; a pair without a reported resolution, or reported coarser than R, is skipped with
its reason.

A method that cannot make a map for a pair (``molmap_reported`` without a reported resolution, or
any input error) is recorded with its reason instead of stopping the report. Outputs in the report
folder, each written atomically:

- ``metrics.csv``: one row per pair and method (:data:`ROW_COLUMNS` then :data:`METRICS`); a skipped
  method has ``status`` ``skipped``, its ``reason`` and empty metric cells;
- ``summary.csv``: per method and metric, the number of pairs scored, mean and median;
- ``slices_<pair>.png``: central slices of the experimental map and of each method's map;
- ``fsc_<pair>.png``: FSC of each method's map against the experimental map;
- ``boxplots.png``: one panel per metric, one box per method, across pairs.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryomaps.config import check_integer_setting, check_positive_number
from cryomaps.data.manifest import ManifestEntry, filter_split, read_manifest
from cryomaps.errors import CryomapsError, InputError
from cryomaps.inference.generate import TilingOptions
from cryomaps.io import DensityMap, Structure, read_map, read_structure
from cryomaps.io.atomic import write_csv_atomically
from cryomaps.io.weights import bundled_weights_path
from cryomaps.models.weights import LoadedNetwork, load_network
from cryomaps.metrics.evaluation import evaluate_maps
from cryomaps.metrics.figures import save_central_slices, save_fsc_curves, save_metric_boxplots
from cryomaps.metrics.fsc import fourier_shell_correlation
from cryomaps.render import render_structure_array
from cryomaps.signal import filtered_map
from cryomaps.workflows.generation import check_generator, generate_at_resolution

METRICS = ("ssim", "pearson", "corr_about_zero", "corr_about_mean", "masked_corr", "fsc_0.5_A", "fsc_0.143_A")
"""The columns of :func:`cryomaps.metrics.evaluate_maps` with ``model_coords`` (resolutions in Å)."""
ROW_COLUMNS = ("pair", "emdb_id", "split", "reported_resolution_A", "resolution_A", "method", "status", "reason")
SUMMARY_COLUMNS = ("method", "metric", "n_pairs", "mean", "median")
NAMED_METHODS = ("generator", "molmap_reported", "peng")
MOLMAP_AT_RESOLUTION = re.compile(r"^molmap_(\d+(?:\.\d+)?)A$")
METHOD_CHOICES = "generator, molmap_<d>A (e.g. molmap_2A), molmap_reported, peng"


class MethodUnavailable(Exception):
    """A method cannot make a map for one pair; the message is the reason recorded in the report."""


@dataclass(frozen=True)
class ReportOptions:
    """How the report is made (see ``configs/evaluate.yaml``).

    Attributes:
        methods: method names, checked by :func:`check_methods`, in report order.
        generator_ckpt: generator weights or checkpoint; ``None``: the bundled weights.
        mask_radius: Å around atoms for the masked correlation.
        remove_waters, remove_hydrogens: how models are read.
        tiling: how the generator runs over a map.
        target_resolution: Å; evaluate at this resolution, the experimental maps low-pass filtered
            to it (module docstring); ``None``: at each pair's reported resolution.
    """

    methods: tuple[str, ...]
    generator_ckpt: Path | None = None
    mask_radius: float = 3.0
    remove_waters: bool = True
    remove_hydrogens: bool = True
    tiling: TilingOptions = field(default_factory=TilingOptions)
    target_resolution: float | None = None

    @classmethod
    def from_config(cls, config) -> "ReportOptions":
        """Options from the composed ``evaluate`` config; raises InputError for unknown methods."""
        methods = [config.methods] if isinstance(config.methods, str) else list(config.methods)
        target = config.get("target_resolution")
        return cls(
            methods=check_methods([str(method) for method in methods]),
            generator_ckpt=None if config.generator_ckpt is None else Path(config.generator_ckpt),
            mask_radius=float(config.mask_radius),
            remove_waters=bool(config.remove_waters),
            remove_hydrogens=bool(config.remove_hydrogens),
            tiling=tiling_from_config(config.tiling),
            target_resolution=None if target is None else check_positive_number("target_resolution", target, "Å"),
        )


@dataclass
class Pair:
    """One map-model pair, read: the experimental map, the model and the resolution (Å) it is
    evaluated at (the manifest's, or the target resolution it was filtered to; ``None``: unknown).
    ``unavailable`` says why no method can run on it (empty when they can)."""

    label: str
    experimental: DensityMap
    structure: Structure
    resolution: float | None
    unavailable: str = ""


@dataclass
class MethodResult:
    """One method on one pair: its map and scores, or the reason it was skipped."""

    method: str
    density_map: DensityMap | None = None
    scores: dict[str, float] | None = None
    skipped_reason: str = ""


@dataclass
class Report:
    """What :func:`write_report` wrote: the methods, the metrics.csv rows and the summary.csv rows."""

    out_dir: Path
    methods: tuple[str, ...]
    rows: list[dict]
    summary: list[dict]


TILING_LIMITS = {"tile_size": (8, 256), "overlap": (0, None), "batch_size": (1, 4096)}
"""Inclusive bounds of the config's integer ``tiling`` settings (those of ``cryomaps generate``'s options)."""

CONFIG_TILING_NAMES = {key: f"tiling.{key}" for key in TILING_LIMITS}
"""How the config spells the tiling settings in messages."""


def tiling_from_config(tiling) -> TilingOptions:
    """The composed config's ``tiling`` group as :class:`TilingOptions`; raises InputError naming the
    first setting that is not an integer within :data:`TILING_LIMITS`."""
    for key, (low, high) in TILING_LIMITS.items():
        check_integer_setting(CONFIG_TILING_NAMES[key], tiling[key], low, high)
    return TilingOptions(tile_size=tiling.tile_size, overlap=tiling.overlap, batch_size=tiling.batch_size, device=tiling.device)


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """``methods`` as a tuple after checking each name; raises InputError naming the first bad one."""
    if not methods:
        raise InputError(None, f"no methods given (choose from {METHOD_CHOICES})")
    for method in methods:
        if method not in NAMED_METHODS and molmap_resolution(method) is None:
            raise InputError(None, f"unknown method {method!r} (choose from {METHOD_CHOICES})")
    duplicates = sorted({method for method in methods if list(methods).count(method) > 1})
    if duplicates:
        raise InputError(None, f"method(s) listed twice: {', '.join(duplicates)}")
    return tuple(methods)


def molmap_resolution(method: str) -> float | None:
    """The resolution (Å) of a ``molmap_<d>A`` method name, or ``None`` for other names."""
    match = MOLMAP_AT_RESOLUTION.match(method)
    if match is None or not float(match.group(1)) > 0:
        return None
    return float(match.group(1))


def report_from_config(config, progress: Callable[[str], None] | None = print) -> Report:
    """Make the report described by a composed ``evaluate`` config (manifest, split, out, methods...)."""
    options = ReportOptions.from_config(config)
    for key in ("manifest", "out"):
        if config[key] is None:
            raise InputError(None, f"{key}=... is required (e.g. manifest=M.csv out=DIR)")
    entries = read_manifest(config.manifest, data_root=config.data_root)
    if config.split is not None:
        entries = filter_split(entries, config.split)
    if not entries:
        where = "" if config.split is None else f" in split {config.split!r}"
        raise InputError(config.manifest, f"no pairs to evaluate{where}")
    return write_report(entries, config.out, options, progress)


def write_report(
    entries: Sequence[ManifestEntry],
    out_dir: str | os.PathLike,
    options: ReportOptions,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Score every method on every pair and write the tables and figures into ``out_dir``.

    Args:
        entries: the pairs; their map and model must be local files.
        out_dir: the report folder (created if missing).
        options: methods and how they run.
        progress: called with one line per pair as it is done.
    """
    check_local_files(entries)
    generator = load_generator(options.generator_ckpt, options.tiling) if "generator" in options.methods else None
    check_target_resolution(entries, options.target_resolution)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, entry in enumerate(entries, start=1):
        started = time.perf_counter()
        pair = load_pair(entry, options)
        results = [run_method(method, pair, generator, options) for method in options.methods]
        save_pair_figures(out_dir, pair, results)
        rows.extend(metrics_rows(entry, pair, results))
        if progress is not None:
            seconds = time.perf_counter() - started
            progress(f"[{number}/{len(entries)}] {entry.label}: {_outcomes(results)} ({seconds:.1f} s)")
    summary = summarise(rows, options.methods)
    write_csv(out_dir / "metrics.csv", rows, ROW_COLUMNS + METRICS)
    write_csv(out_dir / "summary.csv", summary, SUMMARY_COLUMNS)
    save_boxplots(out_dir / "boxplots.png", rows)
    return Report(out_dir, options.methods, rows, summary)


def check_local_files(entries: Sequence[ManifestEntry]) -> None:
    """Raise InputError for the first pair whose map or model is not a local file."""
    for entry in entries:
        for kind, path in (("map", entry.map_path), ("model", entry.model_path)):
            if path is None or not Path(path).is_file():
                raise InputError(path, f"{entry.label}: the {kind} is not a local file (run cryomaps fetch first)")


def load_generator(checkpoint: Path | None, tiling: TilingOptions) -> LoadedNetwork:
    """The generator from ``checkpoint``, or the bundled weights when it is ``None``, checked to run
    with ``tiling`` (:func:`cryomaps.workflows.generation.check_generator`)."""
    if checkpoint is None:
        checkpoint = bundled_weights_path("generator")
        if not checkpoint.is_file():
            raise InputError(
                checkpoint, "bundled generator weights not installed: give generator_ckpt=PATH or leave out generator"
            )
    loaded = load_network(checkpoint, "generator")
    check_generator(loaded, checkpoint, tiling, CONFIG_TILING_NAMES)
    return loaded


def target_unavailable(reported_resolution: float | None, target: float) -> str:
    """Why a map of ``reported_resolution`` Å cannot be evaluated at ``target`` Å ("" when it can)."""
    if reported_resolution is None:
        return f"target_resolution={target:g} needs the map's reported resolution; the manifest gives none"
    if target < reported_resolution:
        return f"target_resolution={target:g} Å is finer than the map's reported {reported_resolution:g} Å"
    return ""


def check_target_resolution(entries: Sequence[ManifestEntry], target: float | None) -> None:
    """Raise InputError when ``target`` (Å) is given and no pair can be evaluated at it."""
    if target is None:
        return
    reasons = [target_unavailable(entry.reported_resolution_A, target) for entry in entries]
    if all(reasons):
        others = {0: "", 1: " (and 1 other pair)"}.get(len(entries) - 1, f" (and {len(entries) - 1} other pairs)")
        raise InputError(None, f"no pair can be evaluated: {entries[0].label}: {reasons[0]}{others}")


def load_pair(entry: ManifestEntry, options: ReportOptions) -> Pair:
    """Read one pair's experimental map and model; with ``options.target_resolution``, filter the map to it."""
    structure = read_structure(
        entry.model_path, remove_waters=options.remove_waters, remove_hydrogens=options.remove_hydrogens
    )
    pair = Pair(entry.label, read_map(entry.map_path), structure, entry.reported_resolution_A)
    target = options.target_resolution
    if target is None:
        return pair
    pair.unavailable = target_unavailable(pair.resolution, target)
    if not pair.unavailable:
        pair.experimental = filtered_map(pair.experimental, pair.resolution, target)
        pair.resolution = target
    return pair


def run_method(method: str, pair: Pair, generator: LoadedNetwork | None, options: ReportOptions) -> MethodResult:
    """Make ``method``'s map of ``pair`` and score it, or record why it could not be made."""
    if pair.unavailable:
        return MethodResult(method, skipped_reason=pair.unavailable)
    try:
        density_map = make_method_map(method, pair, generator, options.tiling)
    except (MethodUnavailable, CryomapsError) as reason:
        return MethodResult(method, skipped_reason=" ".join(str(reason).split()))
    scores = evaluate_maps(
        density_map, pair.experimental, model_coords=pair.structure.coords, mask_radius=options.mask_radius
    )
    return MethodResult(method, density_map, scores)


def make_method_map(
    method: str, pair: Pair, generator: LoadedNetwork | None, tiling: TilingOptions
) -> DensityMap:
    """``method``'s map of ``pair.structure`` on the experimental map's grid."""
    if method == "generator":
        return generate_at_resolution(pair.structure, generator, pair.resolution, like=pair.experimental, tiling=tiling)
    if method == "peng":
        return render_on_experimental_grid(pair, model="peng", sampling="point")
    if method == "molmap_reported":
        if pair.resolution is None:
            raise MethodUnavailable("the manifest gives no reported resolution")
        return render_on_experimental_grid(pair, model="molmap", resolution=pair.resolution)
    return render_on_experimental_grid(pair, model="molmap", resolution=molmap_resolution(method))


def render_on_experimental_grid(pair: Pair, **render_options) -> DensityMap:
    """:func:`cryomaps.render.render_structure_array` of the pair's model on its experimental map's grid."""
    grid = pair.experimental.grid
    return DensityMap.from_grid(render_structure_array(pair.structure, grid, **render_options), grid)


def metrics_rows(entry: ManifestEntry, pair: Pair, results: Sequence[MethodResult]) -> list[dict]:
    """The metrics.csv rows of one pair, one per method (metric values None when skipped)."""
    evaluated_at = None if pair.unavailable else pair.resolution
    pair_columns = {"pair": entry.label, "emdb_id": entry.emdb_id, "split": entry.split,
                    "reported_resolution_A": entry.reported_resolution_A, "resolution_A": evaluated_at}
    rows = []
    for result in results:
        status = "skipped" if result.scores is None else "ok"
        scores = {metric: None if result.scores is None else result.scores[metric] for metric in METRICS}
        rows.append({**pair_columns, "method": result.method, "status": status, "reason": result.skipped_reason,
                     **scores})
    return rows


def summarise(rows: Sequence[dict], methods: Sequence[str]) -> list[dict]:
    """Per method and metric: number of pairs with a finite value, their mean and median (NaN if none)."""
    summary = []
    for method in methods:
        for metric in METRICS:
            values = _finite([row[metric] for row in rows if row["method"] == method])
            mean, median = (float(np.mean(values)), float(np.median(values))) if values else (math.nan, math.nan)
            summary.append({"method": method, "metric": metric, "n_pairs": len(values), "mean": mean, "median": median})
    return summary


def format_summary(summary: Sequence[dict], methods: Sequence[str]) -> str:
    """The summary as a table: one row per metric, one ``mean / median`` column per method."""
    width = max(15, *(len(method) for method in methods)) + 2
    by_key = {(row["method"], row["metric"]): row for row in summary}
    lines = ["metric (mean / median)".ljust(24) + "".join(method.ljust(width) for method in methods)]
    pairs = [str(by_key[(method, METRICS[0])]["n_pairs"]) for method in methods]
    lines.append("pairs scored".ljust(24) + "".join(count.ljust(width) for count in pairs))
    for metric in METRICS:
        cells = [_mean_median(by_key[(method, metric)]) for method in methods]
        lines.append(metric.ljust(24) + "".join(cell.ljust(width) for cell in cells))
    return "\n".join(line.rstrip() for line in lines)


def _mean_median(row: dict) -> str:
    """``mean / median`` with 3 decimals, or ``n/a`` when no pair was scored."""
    if row["n_pairs"] == 0:
        return "n/a"
    return f"{row['mean']:.3f} / {row['median']:.3f}"


def write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """Write ``rows`` as CSV atomically; floats with 6 significant digits, None and NaN as empty cells."""
    return write_csv_atomically(path, columns, [{column: _cell(row[column]) for column in columns} for row in rows])


def _cell(value) -> str:
    """One CSV cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def save_pair_figures(out_dir: Path, pair: Pair, results: Sequence[MethodResult]) -> None:
    """slices_<pair>.png (experimental map and each method's map) and fsc_<pair>.png (if any method ran)."""
    maps = {result.method: result.density_map for result in results if result.density_map is not None}
    stem = file_stem(pair.label)
    save_central_slices(out_dir / f"slices_{stem}.png", pair.experimental, maps, reference_name="experimental")
    if maps:
        curves = {method: fourier_shell_correlation(map_, pair.experimental) for method, map_ in maps.items()}
        save_fsc_curves(out_dir / f"fsc_{stem}.png", curves)


def save_boxplots(path: Path, rows: Sequence[dict]) -> None:
    """boxplots.png: one panel per metric, one box per method that scored at least one pair."""
    scored = [row for row in rows if row["status"] == "ok"]
    if scored:
        save_metric_boxplots(path, scored, METRICS)


def file_stem(label: str) -> str:
    """``label`` with every run of characters other than letters, digits, ``.``, ``_`` and ``-`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)


def _finite(values) -> list[float]:
    """The values that are numbers and finite."""
    return [float(value) for value in values if value is not None and math.isfinite(float(value))]


def _outcomes(results: Sequence[MethodResult]) -> str:
    """``method ok`` / ``method skipped (reason)`` for each result, comma separated."""
    return ", ".join(
        f"{result.method} ok" if result.scores is not None else f"{result.method} skipped ({result.skipped_reason})"
        for result in results
    )
