"""Curation of map-model pairs into training pairs (the struc2mapGAN recipe, improved).

For every manifest entry, in manifest order:

1. Read the model (waters and hydrogens dropped by default) and the experimental map.
2. Box: a grid of ``voxel_size`` Å covering the model's bounding box plus ``cushion`` Å on every
   side (:meth:`cryomaps.io.Grid.around`); the map is resampled onto it trilinearly.
3. Mask: voxels whose centre lies within ``mask_radius`` Å of an atom and inside the experimental
   map's box (voxels with no experimental data are never "protein").
4. Input: the model rendered on the box with the ``render`` options (a
   :class:`cryomaps.render.DensityModelConfig`; molmap at 2.0 Å by default, as published),
   min-max scaled to [0, 1] (:func:`cryomaps.render.network_input`, which generation uses too).
5. Target: the resampled map times the mask, normalised so that the background stays exactly 0:

   - ``percentile`` (default): divided by the ``percentile``-th percentile (99.9) of the values
     inside the mask and clipped to [0, 1]. Negative density under the model becomes 0, rare
     bright spikes saturate at 1, and the scale does not depend on the box size.
   - ``published_minmax``: min-max over the whole box, as in the published code; where the map had
     negative values the background becomes ≈ 0.3 instead of 0.

6. Scores and filters (every failed filter is recorded, joined by "; ", in the report):

   - correlation: Pearson correlation between the resampled experimental map (before masking and
     normalisation) and the model rendered at the map's resolution (the manifest's reported
     resolution, else ``filters.correlation_fallback_resolution`` = 4 Å; a number in
     ``filters.correlation_resolution`` overrides both; never finer than 2 voxels), over the voxels
     of the mask. Inside the mask, the empty background, where both maps are ≈ 0 by construction,
     cannot inflate it; at the map's resolution, a good 6 Å map is not penalised for lacking 2 Å
     detail. Rejected when below ``filters.min_correlation`` (0.65).
   - fraction of atoms inside the map's box (between its first and last voxel centres); rejected
     when the fraction outside exceeds ``filters.max_fraction_outside``.
   - nucleic acids present; unknown residues (UNK, UNL, UNX); backbone-only models (more than
     ``filters.max_backbone_only_fraction`` of the non-glycine amino-acid residues have only
     N/CA/C/O/OXT atoms, which covers CA-only traces).
   - sequence redundancy: each chain of at least ``filters.min_chain_residues`` amino acids is
     aligned (gemmi, global, BLOSUM62 with strict gap penalties) with each chain of every pair
     accepted before it; identity is counted over the shorter sequence. Above ``filters.max_sequence_identity`` (30 %) the
     later pair is rejected, naming the kept one. Pairs rejected for other reasons never claim a
     group.

Unreadable or missing files give a rejected row with the problem, never an exception; a local
file that does not match the SHA-256 its manifest gives stops the run before anything is written.
Accepted pairs are written as ``OUT/NAME.npz`` (:mod:`cryomaps.data.curated`), listed in
``OUT/curated.csv`` with their manifest split; every pair gets a row of ``OUT/curation_report.csv``.

At scale (:func:`curate_entries`, :mod:`cryomaps.data.curation_store`): steps 1-6 except
redundancy run per pair, in ``workers`` processes, each writing its ``NAME.npz`` (when the pair
passes the per-pair filters) and its record ``OUT/records/NAME.json``. A pair whose record matches
the current settings and files is reused, not curated again. The redundancy filter, which depends
on every earlier pair, then runs on the records in manifest order, so the outputs do not depend on
``workers``; the files of pairs it rejects are removed. With ``shard=i/n`` only the shard's rows
are curated and reported in ``curation_report.shard-i-of-n.csv`` (decision ``candidate`` for pairs
that pass the per-pair filters); a run with ``merge=True`` then applies the redundancy filter to the
records of all rows and writes the same ``curated.csv`` and ``curation_report.csv`` as an unsharded
run.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cryomaps.config import to_plain
from cryomaps.data.curated import (
    INDEX_COLUMNS,
    INDEX_NAME,
    CuratedPair,
    write_curated_pair,
)
from cryomaps.data.curation_store import (
    PairRecord,
    Shard,
    fingerprint,
    map_in_order,
    read_record,
    worker_pool,
    write_record,
)
from cryomaps.data.manifest import ManifestEntry, sha256_mismatch
from cryomaps.errors import InputError
from cryomaps.io import DensityMap, Grid, Structure, read_map, read_structure, resample_map
from cryomaps.io.atomic import write_csv_atomically
from cryomaps.metrics import atom_mask, correlation_about_mean
from cryomaps.render import DensityModelConfig, min_max, network_input, render_structure_array

REPORT_NAME = "curation_report.csv"
REPORT_COLUMNS = (
    "name", "emdb_id", "pdb_id", "split", "reported_resolution_A", "map_voxel_size_A", "voxel_size_A",
    "box_shape", "n_atoms", "fraction_inside", "correlation", "correlation_resolution_A", "decision", "reason",
    "file",
)
NORMALISATIONS = ("percentile", "published_minmax")
# Keys of the ``curate`` config that say how to run, not how to curate (not part of the options).
RUN_KEYS = ("data_root", "workers", "shard", "merge")
UNKNOWN_RESIDUES = frozenset({"UNK", "UNL", "UNX"})
BACKBONE_ATOMS = frozenset({"N", "CA", "C", "O", "OXT"})
# Gap penalties of the redundancy alignment. With gemmi's BLOSUM62 defaults (open -10, extend -1)
# unrelated chains of the example pairs reach 30 % identity through gap-riddled alignments; with
# these, unrelated chains stay below 20 % while haemoglobin α/β keep their 44 %.
GAP_OPEN, GAP_EXTEND = -20, -2


PUBLISHED_INPUT = DensityModelConfig(model="molmap", resolution=2.0)
"""The published recipe's input: molmap at 2.0 Å (Gaussian σ = 0.225·resolution), point sampled."""


@dataclass(frozen=True)
class FilterOptions:
    """Thresholds of the curation filters (fractions in [0, 1])."""

    min_correlation: float = 0.65
    correlation_resolution: float | str = "reported"
    correlation_fallback_resolution: float = 4.0
    max_fraction_outside: float = 0.05
    reject_nucleic_acids: bool = True
    reject_unknown_residues: bool = True
    max_backbone_only_fraction: float = 0.9
    max_sequence_identity: float = 0.30
    min_chain_residues: int = 20

    def __post_init__(self):
        _check_number(self, "min_correlation", low=-1.0, high=1.0, strict_low=False, prefix="filters.")
        if self.correlation_resolution != "reported":
            _check_number(self, "correlation_resolution", low=0.0, unit="Å or 'reported'", prefix="filters.")
        _check_number(self, "correlation_fallback_resolution", low=0.0, unit="Å", prefix="filters.")
        for name in ("max_fraction_outside", "max_backbone_only_fraction", "max_sequence_identity"):
            _check_number(self, name, low=0.0, high=1.0, strict_low=False, prefix="filters.")
        for name in ("reject_nucleic_acids", "reject_unknown_residues"):
            _check_flag(f"filters.{name}", getattr(self, name))
        if isinstance(self.min_chain_residues, bool) or not isinstance(self.min_chain_residues, int) or self.min_chain_residues < 1:
            raise InputError(None, f"filters.min_chain_residues={self.min_chain_residues}: expected a whole number >= 1")


@dataclass(frozen=True)
class CurationOptions:
    """Settings of :func:`curate_entries` (lengths in Å); see the module docstring."""

    voxel_size: float = 1.0
    mask_radius: float = 3.0
    cushion: float = 3.0
    normalisation: str = "percentile"
    percentile: float = 99.9
    remove_waters: bool = True
    remove_hydrogens: bool = True
    render: DensityModelConfig = PUBLISHED_INPUT
    filters: FilterOptions = field(default_factory=FilterOptions)

    def __post_init__(self):
        if self.normalisation not in NORMALISATIONS:
            raise InputError(None, f"normalisation must be one of {', '.join(NORMALISATIONS)}, not {self.normalisation!r}")
        _check_number(self, "voxel_size", low=0.0, unit="Å")
        _check_number(self, "mask_radius", low=0.0, unit="Å")
        _check_number(self, "cushion", low=0.0, strict_low=False, unit="Å")
        _check_number(self, "percentile", low=0.0, high=100.0)
        _check_flag("remove_waters", self.remove_waters)
        _check_flag("remove_hydrogens", self.remove_hydrogens)

    @classmethod
    def from_config(cls, config) -> "CurationOptions":
        """Options from a composed ``curate`` config (its keys except :data:`RUN_KEYS`)."""
        plain = to_plain(config)
        for key in RUN_KEYS:
            plain.pop(key, None)
        render = DensityModelConfig.from_dict(plain.pop("render"), prefix="render.")
        filters = FilterOptions(**plain.pop("filters"))
        return cls(**plain, render=render, filters=filters)

    def to_dict(self) -> dict:
        """Plain (JSON-ready) settings, ``render`` in :meth:`DensityModelConfig.to_dict`'s form:
        stored with every curated pair and fingerprinted for reuse."""
        return {**asdict(self), "render": self.render.to_dict()}


def _check_number(
    options, name: str, low: float, high: float = math.inf, strict_low: bool = True, unit: str = "", prefix: str = ""
) -> None:
    """Check that field ``name`` of the frozen ``options`` is a finite number above ``low`` (or at
    least ``low`` when not ``strict_low``) and at most ``high``, and store it as a float (so that
    ``voxel_size=1`` and the default 1.0 curate, and fingerprint, alike); else a one-line InputError
    naming ``prefix + name``."""
    value = getattr(options, name)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if is_number and (value > low if strict_low else value >= low) and value <= high:
        object.__setattr__(options, name, float(value))
        return
    option = prefix + name
    bounds = [f"{'>' if strict_low else '>='} {low:g}"] + ([f"<= {high:g}"] if high < math.inf else [])
    raise InputError(None, f"{option}={value}: expected a finite number {' and '.join(bounds)}{f' ({unit})' if unit else ''}")


def _check_flag(option: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InputError(None, f"{option}={value}: expected true or false")


@dataclass(frozen=True)
class ModelFacts:
    """What the filters need to know about a model.

    Attributes:
        n_atoms: atoms kept for rendering.
        has_nucleic_acids: any nucleotide residue.
        n_unknown_residues: residues named UNK, UNL or UNX.
        backbone_only_fraction: fraction of non-glycine amino-acid residues with backbone atoms only.
        sequences: distinct amino-acid sequences (3-letter names) of chains long enough to compare.
    """

    n_atoms: int
    has_nucleic_acids: bool
    n_unknown_residues: int
    backbone_only_fraction: float
    sequences: tuple[tuple[str, ...], ...]


@dataclass
class PairMeasurement:
    """Everything measured on one pair; ``problem`` is set when the pair could not be processed."""

    map_voxel_size: np.ndarray | None = None
    facts: ModelFacts | None = None
    fraction_inside: float | None = None
    correlation: float | None = None
    correlation_resolution: float | None = None
    pair: CuratedPair | None = None
    problem: str | None = None

    def record(self, fingerprint_hex: str, reasons: list[str], file: str | None) -> PairRecord:
        """The array-free summary of this measurement (see :class:`PairRecord`)."""
        grid = None if self.pair is None else self.pair.grid
        return PairRecord(
            fingerprint=fingerprint_hex,
            reasons=reasons,
            sequences=None if self.facts is None else [list(chain) for chain in self.facts.sequences],
            file=file,
            map_voxel_size=None if self.map_voxel_size is None else [float(v) for v in self.map_voxel_size],
            voxel_size=None if grid is None else [float(v) for v in grid.voxel_size],
            box_shape=None if grid is None else [int(n) for n in grid.shape],
            n_atoms=None if self.facts is None else int(self.facts.n_atoms),
            fraction_inside=self.fraction_inside,
            correlation=self.correlation,
            correlation_resolution=self.correlation_resolution,
        )


@dataclass
class CurationResult:
    """The outcome for one manifest entry: ``reasons`` is empty for an accepted pair.

    Attributes:
        entry: the manifest row.
        record: what curating the pair found (:class:`PairRecord`).
        reasons: every failed filter, redundancy included (when ``final``).
        file: the pair's ``NAME.npz`` when accepted.
        final: ``False`` in a shard's report, where redundancy is not decided yet.
        reused: the record came from an earlier run with the same fingerprint (not curated again).
    """

    entry: ManifestEntry
    record: PairRecord
    reasons: list[str]
    file: Path | None = None
    final: bool = True
    reused: bool = False

    @property
    def accepted(self) -> bool:
        return self.final and not self.reasons

    @property
    def decision(self) -> str:
        """``accepted``, ``rejected``, or ``candidate`` (passes the per-pair filters of a shard)."""
        if self.reasons:
            return "rejected"
        return "accepted" if self.final else "candidate"

    def report_row(self) -> dict:
        """The row of ``curation_report.csv`` (numbers formatted, empty when not measured)."""
        entry, record = self.entry, self.record
        return {
            "name": entry.label,
            "emdb_id": entry.emdb_id,
            "pdb_id": entry.pdb_id or "",
            "split": entry.split,
            "reported_resolution_A": _format_number(entry.reported_resolution_A, "g"),
            "map_voxel_size_A": _format_vector(record.map_voxel_size),
            "voxel_size_A": _format_vector(record.voxel_size),
            "box_shape": "" if record.box_shape is None else "x".join(map(str, record.box_shape)),
            "n_atoms": "" if record.n_atoms is None else record.n_atoms,
            "fraction_inside": _format_number(record.fraction_inside, ".4f"),
            "correlation": _format_number(record.correlation, ".4f"),
            "correlation_resolution_A": _format_number(record.correlation_resolution, "g"),
            "decision": self.decision,
            "reason": "; ".join(self.reasons),
            "file": "" if self.file is None else self.file.name,
        }


def curate_entries(
    entries: list[ManifestEntry],
    out_dir,
    options: CurationOptions | None = None,
    workers: int = 1,
    shard: Shard | None = None,
    merge: bool = False,
    manifest: str | Path | None = None,
) -> list[CurationResult]:
    """Curate ``entries`` (a whole manifest, in order) into ``out_dir``; see the module docstring.

    Args:
        entries: every row of the manifest, in manifest order (also with ``shard``).
        out_dir: output folder, created when there is something to write.
        options: curation settings (defaults: :class:`CurationOptions`).
        workers: processes curating pairs at the same time (1: in this process).
        shard: curate only this shard's rows and write ``curation_report.<shard>.csv``.
        merge: curate nothing; join the records that the shards wrote (every row must have one
            made with these settings) into ``curated.csv`` and ``curation_report.csv``.
        manifest: the manifest file, named in checksum errors.

    Returns:
        One :class:`CurationResult` per curated row (the shard's rows with ``shard``), in
        manifest order.

    Raises:
        InputError: ``out_dir`` is a file; a local file does not match its SHA-256 (raised before
            anything is written); with ``merge``, a row has no matching record.
    """
    options = options or CurationOptions()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a folder")
    _check_file_names(entries, manifest)
    selected = entries if shard is None else shard.select(entries)
    with worker_pool(workers) as pool:
        run = _CurationRun(out_dir, options, manifest, pool, max_in_flight=2 * workers)
        records, reused = run.records(selected, may_curate=not merge)
        if shard is not None:
            results = [CurationResult(e, r, list(r.reasons), final=False, reused=u) for e, r, u in zip(selected, records, reused)]
            out_dir.mkdir(parents=True, exist_ok=True)
            write_csv_atomically(out_dir / shard_report_name(shard), REPORT_COLUMNS, [r.report_row() for r in results])
            return results
        results = judge_redundancy(selected, records, reused, options.filters, out_dir)
        run.restore_files([result for result in results if result.accepted and not result.file.is_file()])
    _remove_files_of_rejected(results, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomically(out_dir / REPORT_NAME, REPORT_COLUMNS, [result.report_row() for result in results])
    write_csv_atomically(out_dir / INDEX_NAME, INDEX_COLUMNS, [_index_row(r) for r in results if r.accepted])
    return results


def _check_file_names(entries: list[ManifestEntry], manifest) -> None:
    """Refuse two rows whose names give the same ``NAME.npz`` (and record) file."""
    first_with: dict[str, ManifestEntry] = {}
    for entry in entries:
        stem = _safe_file_name(entry.label)
        earlier = first_with.setdefault(stem, entry)
        if earlier is not entry:
            raise InputError(
                manifest, f"line {entry.line}: {entry.label!r} and line {earlier.line} ({earlier.label!r}) would share the file {stem}.npz"
            )


def shard_report_name(shard: Shard) -> str:
    """``curation_report.shard-i-of-n.csv``."""
    return f"{Path(REPORT_NAME).stem}.{shard.report_suffix}.csv"


class _CurationRun:
    """Curates pairs through a worker pool (or in process), reusing records with a matching fingerprint."""

    def __init__(self, out_dir: Path, options: CurationOptions, manifest, pool, max_in_flight: int):
        self.out_dir, self.options, self.manifest = out_dir, options, manifest
        self.pool, self.max_in_flight = pool, max_in_flight
        self.settings = options.to_dict()

    def records(self, entries: list[ManifestEntry], may_curate: bool) -> tuple[list[PairRecord], list[bool]]:
        """The record of every entry (stored ones when their fingerprint matches) and whether it was reused."""
        prints = [fingerprint(entry, self.settings) for entry in entries]
        records = [read_record(self.out_dir, _safe_file_name(entry.label)) for entry in entries]
        reused = [record is not None and record.fingerprint == print_ for record, print_ in zip(records, prints)]
        missing = [index for index, ok in enumerate(reused) if not ok]
        if missing and not may_curate:
            raise InputError(
                self.out_dir,
                f"{len(missing)} of {len(entries)} pairs (first: {entries[missing[0]].label}) have no curation record "
                "made with these settings and files: run every shard with the same manifest and overrides before merge=true",
            )
        fresh = self.curate([entries[index] for index in missing], [prints[index] for index in missing])
        for index, record in zip(missing, fresh):
            records[index] = record
        return records, reused

    def restore_files(self, results: list[CurationResult]) -> None:
        """Curate again the accepted pairs whose reused record outlived their ``NAME.npz``
        (removed when an earlier run found the pair redundant)."""
        self.curate([result.entry for result in results], [result.record.fingerprint for result in results])

    def curate(self, entries: list[ManifestEntry], prints: list[str]) -> list[PairRecord]:
        """Check the files' SHA-256 (all before writing anything), then curate each pair."""
        if not entries:
            return []
        check = functools.partial(sha256_mismatch, manifest=self.manifest)
        for problem in map_in_order(check, entries, self.pool, self.max_in_flight):
            if problem is not None:
                raise InputError(*problem)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        work = functools.partial(curate_pair, options=self.options, out_dir=self.out_dir)
        return list(map_in_order(work, list(zip(entries, prints)), self.pool, self.max_in_flight))


def curate_pair(job: tuple[ManifestEntry, str], options: CurationOptions, out_dir: Path) -> PairRecord:
    """Curate one pair (``job`` = entry and fingerprint) in ``out_dir``: write ``NAME.npz`` when it
    passes the per-pair filters, then its record; returns the record. Runs in worker processes."""
    entry, fingerprint_hex = job
    stem = _safe_file_name(entry.label)
    measurement = measure_pair(entry, options)
    reasons = filter_reasons(measurement, options.filters)
    file = None if reasons else write_curated_pair(out_dir / f"{stem}.npz", measurement.pair).name
    record = measurement.record(fingerprint_hex, reasons, file)
    write_record(out_dir, stem, record)
    return record


def judge_redundancy(
    entries: list[ManifestEntry], records: list[PairRecord], reused: list[bool], filters: FilterOptions, out_dir: Path
) -> list[CurationResult]:
    """Final results: each pair's per-pair reasons plus redundancy with the pairs accepted before
    it, in manifest order (pairs rejected for other reasons never claim a group)."""
    kept: list[tuple[str, tuple]] = []
    results = []
    for entry, record, was_reused in zip(entries, records, reused):
        reasons = list(record.reasons)
        sequences = None if record.sequences is None else tuple(tuple(chain) for chain in record.sequences)
        if sequences is not None:
            redundancy = redundancy_reason(sequences, kept, filters)
            reasons += [redundancy] if redundancy else []
        result = CurationResult(entry, record, reasons, reused=was_reused)
        if result.accepted:
            result.file = out_dir / record.file
            kept.append((entry.label, sequences))
        results.append(result)
    return results


def _remove_files_of_rejected(results: list[CurationResult], out_dir: Path) -> None:
    """Remove ``NAME.npz`` of rejected pairs (redundant ones, or left by a run with other settings)."""
    for result in results:
        if not result.accepted:
            (out_dir / f"{_safe_file_name(result.entry.label)}.npz").unlink(missing_ok=True)


def measure_pair(entry: ManifestEntry, options: CurationOptions) -> PairMeasurement:
    """Read, box, render and score one pair; input problems end up in ``problem``, not raised."""
    measurement = PairMeasurement()
    try:
        structure = _read_model(entry, options)
        measurement.facts = model_facts(structure, options.filters.min_chain_residues)
        density = _read_experimental_map(entry)
    except InputError as error:
        measurement.problem = str(error)
        return measurement
    measurement.map_voxel_size = density.voxel_size
    measurement.fraction_inside = fraction_of_atoms_inside(structure.coords, density.grid)
    box = Grid.around(structure.coords, options.voxel_size, padding=options.cushion)
    experimental = resample_map(density, box).data.astype(np.float64)
    mask = _model_mask(structure.coords, box, density.grid, options.mask_radius)
    if not mask.any():
        measurement.problem = "the model does not overlap the map"
        return measurement
    network_input_map = network_input(structure, box, options.render)
    measurement.correlation_resolution = correlation_resolution(entry, options)
    reference_config = replace(options.render, resolution=measurement.correlation_resolution)
    reference = render_structure_array(structure, box, reference_config).astype(np.float64)
    # Pearson; NaN when either side is constant
    measurement.correlation = correlation_about_mean(reference[mask], experimental[mask])
    target = normalise_target(experimental, mask, options.normalisation, options.percentile)
    measurement.pair = CuratedPair(network_input_map, target, mask, box, _metadata(entry, measurement, options))
    return measurement


def _read_model(entry: ManifestEntry, options: CurationOptions) -> Structure:
    if entry.model_path is None:
        raise InputError(None, "no local model (fetch it first)")
    return read_structure(entry.model_path, remove_waters=options.remove_waters, remove_hydrogens=options.remove_hydrogens)


def _read_experimental_map(entry: ManifestEntry) -> DensityMap:
    if entry.map_path is None:
        raise InputError(None, "no local map (fetch it first)")
    return read_map(entry.map_path)


def fraction_of_atoms_inside(coords: np.ndarray, grid: Grid) -> float:
    """Fraction of atoms (N, 3) Å lying between the first and last voxel centres of ``grid``."""
    return float(grid.within_sampled_box(coords).mean())


def _model_mask(coords: np.ndarray, box: Grid, map_grid: Grid, radius: float) -> np.ndarray:
    """Bool (x, y, z) mask on ``box``: within ``radius`` Å of an atom and inside the map's box."""
    return atom_mask(coords, box, radius) & inside_grid(box, map_grid)


def inside_grid(box: Grid, other: Grid) -> np.ndarray:
    """Bool (x, y, z) array on ``box``: voxel centres within the voxel-centre extent of ``other``."""
    per_axis = []
    for axis in range(3):
        index = (box.axis_coordinates(axis) - other.origin[axis]) / other.voxel_size[axis]
        per_axis.append((index >= 0) & (index <= other.shape[axis] - 1))
    return per_axis[0][:, None, None] & per_axis[1][None, :, None] & per_axis[2][None, None, :]


def correlation_resolution(entry: ManifestEntry, options: CurationOptions) -> float:
    """Resolution (Å) of the simulated map that the experimental map is correlated with.

    The configured or reported resolution, never finer than the Nyquist limit of the curated grid
    (2 voxels), which cannot hold finer detail.
    """
    filters = options.filters
    if filters.correlation_resolution != "reported":
        resolution = float(filters.correlation_resolution)
    else:
        resolution = entry.reported_resolution_A or filters.correlation_fallback_resolution
    return max(resolution, 2.0 * options.voxel_size)


def normalise_target(experimental: np.ndarray, mask: np.ndarray, method: str, percentile: float) -> np.ndarray:
    """The target: ``experimental`` (x, y, z) masked by ``mask`` and normalised (see module docstring).

    ``percentile`` keeps the background at 0 and maps the ``percentile``-th percentile of the masked
    values to 1, clipping to [0, 1] (all zeros if that percentile is not positive);
    ``published_minmax`` min-max scales the masked box.
    """
    masked = np.where(mask, experimental, 0.0)
    if method == "published_minmax":
        return min_max(masked)
    scale = float(np.percentile(experimental[mask], percentile))
    if scale <= 0:
        return np.zeros(masked.shape, dtype=np.float32)
    return np.clip(masked / scale, 0.0, 1.0).astype(np.float32)


def model_facts(structure: Structure, min_chain_residues: int) -> ModelFacts:
    """Composition facts and chain sequences of ``structure`` (see :class:`ModelFacts`)."""
    residues = residue_table(structure)
    amino_acids = [r for r in residues if _residue_info(r[1])[0]]
    side_chain_expected = [r for r in amino_acids if r[1] != "GLY"]
    backbone_only = sum(1 for r in side_chain_expected if r[2] <= BACKBONE_ATOMS)
    return ModelFacts(
        n_atoms=structure.n_atoms,
        has_nucleic_acids=any(_residue_info(r[1])[1] for r in residues),
        n_unknown_residues=sum(1 for r in residues if r[1] in UNKNOWN_RESIDUES),
        backbone_only_fraction=backbone_only / len(side_chain_expected) if side_chain_expected else 0.0,
        sequences=chain_sequences(amino_acids, min_chain_residues),
    )


def residue_table(structure: Structure) -> list[tuple[str, str, frozenset]]:
    """Residues in file order as (chain id, residue name, names of its non-hydrogen atoms).

    A residue is a run of consecutive atoms sharing chain, sequence number and residue name.
    """
    chain, seqid, name = structure.chain_ids, structure.residue_seqids, structure.residue_names
    changes = (chain[1:] != chain[:-1]) | (seqid[1:] != seqid[:-1]) | (name[1:] != name[:-1])
    starts = np.flatnonzero(np.concatenate([[True], changes]))
    stops = np.append(starts[1:], structure.n_atoms)
    heavy = ~np.isin(structure.elements, ("H", "D"))
    return [
        (str(chain[start]), str(name[start]), frozenset(structure.atom_names[start:stop][heavy[start:stop]]))
        for start, stop in zip(starts, stops)
    ]


@functools.lru_cache(maxsize=None)
def _residue_info(name: str) -> tuple[bool, bool]:
    """(is amino acid, is nucleic acid) for a residue name, from gemmi's residue tables."""
    import gemmi

    info = gemmi.find_tabulated_residue(name)
    if info is None:
        return False, False
    return bool(info.is_amino_acid()), bool(info.is_nucleic_acid())


def chain_sequences(amino_acids: list[tuple[str, str, frozenset]], min_length: int) -> tuple[tuple[str, ...], ...]:
    """Distinct per-chain amino-acid sequences (3-letter names) of at least ``min_length`` residues."""
    by_chain: dict[str, list[str]] = {}
    for chain_id, name, _ in amino_acids:
        by_chain.setdefault(chain_id, []).append(name)
    distinct = dict.fromkeys(tuple(names) for names in by_chain.values() if len(names) >= min_length)
    return tuple(distinct)


@functools.lru_cache(maxsize=1 << 18)
def sequence_identity(first: tuple[str, ...], second: tuple[str, ...]) -> float:
    """Identity (fraction) of a global BLOSUM62 alignment (gemmi, gap penalties :data:`GAP_OPEN`,
    :data:`GAP_EXTEND`) of two 3-letter sequences, counted over the shorter one.

    Identical sequences give 1.0 without aligning, and results are cached: the redundancy filter
    compares every pair with every kept pair, and large manifests repeat the same chains often.
    """
    if first == second:
        return 1.0
    import gemmi

    scoring = gemmi.AlignmentScoring("b")
    scoring.gapo, scoring.gape = GAP_OPEN, GAP_EXTEND
    result = gemmi.align_string_sequences(list(first), list(second), [], scoring)
    return result.calculate_identity() / 100.0


def redundancy_reason(sequences, kept: list[tuple[str, tuple]], filters: FilterOptions) -> str | None:
    """Why a pair with chain ``sequences`` is redundant with a kept pair, or ``None``.

    Args:
        sequences: the pair's chain sequences (:attr:`ModelFacts.sequences`).
        kept: (name, sequences) of the pairs accepted so far, in order.
        filters: gives ``max_sequence_identity``.
    """
    for name, kept_chains in kept:
        identities = [sequence_identity(a, b) for a in sequences for b in kept_chains]
        if identities and max(identities) > filters.max_sequence_identity:
            return (
                f"sequence identity {max(identities):.0%} > {filters.max_sequence_identity:.0%} "
                f"with kept pair {name}"
            )
    return None


def filter_reasons(measurement: PairMeasurement, filters: FilterOptions) -> list[str]:
    """The failed filters of a measured pair (excluding redundancy), as short phrases."""
    reasons = [measurement.problem] if measurement.problem else []
    facts = measurement.facts
    if facts is not None:
        if filters.reject_nucleic_acids and facts.has_nucleic_acids:
            reasons.append("nucleic acids present")
        if filters.reject_unknown_residues and facts.n_unknown_residues:
            reasons.append(f"{facts.n_unknown_residues} unknown residue(s) (UNK/UNL/UNX)")
        if facts.backbone_only_fraction > filters.max_backbone_only_fraction:
            reasons.append(
                f"backbone-only model ({facts.backbone_only_fraction:.0%} of residues "
                f"> {filters.max_backbone_only_fraction:.0%})"
            )
    if measurement.fraction_inside is not None and 1.0 - measurement.fraction_inside > filters.max_fraction_outside:
        reasons.append(
            f"{1.0 - measurement.fraction_inside:.1%} of atoms outside the map "
            f"> {filters.max_fraction_outside:.1%}"
        )
    correlation = measurement.correlation
    if correlation is not None and not correlation >= filters.min_correlation:
        reasons.append(f"correlation {correlation:.3f} < {filters.min_correlation:g}")
    return reasons


def format_summary(results: list[CurationResult]) -> list[str]:
    """A fixed-width table of the results (one line per pair) and a totals line."""
    columns = (
        "name", "reported_resolution_A", "box_shape", "n_atoms", "fraction_inside", "correlation",
        "correlation_resolution_A", "decision", "reason",
    )
    headers = ("pair", "res (Å)", "box (voxels)", "atoms", "inside", "corr", "corr at (Å)", "decision", "reason")
    rows = [headers] + [tuple(str(result.report_row()[c]) for c in columns) for result in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    if results and not results[0].final:
        n_candidates = sum(result.decision == "candidate" for result in results)
        lines.append(f"{n_candidates} of {len(results)} pairs pass the per-pair filters (redundancy is decided by merge=true)")
    else:
        lines.append(f"{sum(result.accepted for result in results)} of {len(results)} pairs accepted")
    n_reused = sum(result.reused for result in results)
    if n_reused:
        lines.append(f"{n_reused} of them reused from an earlier run with the same settings and files")
    return lines


def _metadata(entry: ManifestEntry, measurement: PairMeasurement, options: CurationOptions) -> dict:
    """JSON facts stored with a curated pair."""
    return {
        "name": entry.label,
        "emdb_id": entry.emdb_id,
        "pdb_id": entry.pdb_id,
        "reported_resolution_A": entry.reported_resolution_A,
        "split": entry.split,
        "map_path": str(entry.map_path),
        "model_path": str(entry.model_path),
        "map_voxel_size_A": measurement.map_voxel_size.tolist(),
        "n_atoms": measurement.facts.n_atoms,
        "fraction_inside": measurement.fraction_inside,
        "correlation": measurement.correlation,
        "correlation_resolution_A": measurement.correlation_resolution,
        "curation": options.to_dict(),
    }


def _index_row(result: CurationResult) -> dict:
    entry = result.entry
    return {
        "name": entry.label,
        "emdb_id": entry.emdb_id,
        "pdb_id": entry.pdb_id or "",
        "reported_resolution_A": _format_number(entry.reported_resolution_A, "g"),
        "split": entry.split,
        "file": result.file.name,
    }


def _safe_file_name(label: str) -> str:
    """``label`` with characters other than letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", label)


def _format_number(value, spec: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _format_vector(values) -> str:
    """Voxel sizes as "1.05" when isotropic, else "1.1x1.1x1.2" (Å)."""
    if values is None:
        return ""
    values = [float(v) for v in values]
    parts = [f"{v:.4g}" for v in values]
    return parts[0] if len(set(parts)) == 1 else "x".join(parts)
