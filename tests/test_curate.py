"""Curation: the eight shared pairs, filters, overlay of input and target, file format, command."""

from __future__ import annotations

import csv
import itertools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cryomaps.data.curate import (
    REPORT_NAME,
    CurationOptions,
    FilterOptions,
    curate_entries,
    model_facts,
    normalise_target,
    redundancy_reason,
)
from cryomaps.data.curated import CuratedPair, read_curated_index, read_curated_pair, write_curated_pair
from cryomaps.data.manifest import ManifestEntry, read_manifest
from cryomaps.errors import CryomapsError
from cryomaps.io import Grid, Structure

MANIFEST = Path(__file__).resolve().parents[1] / "data_manifests" / "example_pairs.csv"


@pytest.fixture(scope="module")
def curated_examples(example_entries, tmp_path_factory):
    """The eight shared pairs curated with the defaults: (output folder, results, seconds)."""
    out = tmp_path_factory.mktemp("curated")
    start = time.perf_counter()
    results = curate_entries(example_entries, out)
    return out, results, time.perf_counter() - start


def _report_rows(folder: Path) -> list[dict]:
    with open(folder / REPORT_NAME, newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_shared_pair_has_a_report_row_with_correlation_and_decision(curated_examples, example_entries):
    out, results, seconds = curated_examples
    rows = _report_rows(out)
    assert [row["name"] for row in rows] == [entry.label for entry in example_entries]
    for row in rows:
        assert -1.0 <= float(row["correlation"]) <= 1.0, row
        assert row["decision"] in ("accepted", "rejected")
        assert (row["decision"] == "rejected") == bool(row["reason"]), row
        assert row["box_shape"] and row["voxel_size_A"] == "1"
    accepted = {row["name"] for row in rows if row["decision"] == "accepted"}
    assert {row.name for row in read_curated_index(out)} == accepted
    assert len(accepted) >= 4
    assert seconds < 60


def test_pair_that_does_not_fit_its_map_is_rejected_by_correlation(curated_examples):
    _, results, _ = curated_examples
    lowres = next(r for r in results if r.entry.label == "EMD-5170_actin_filament_lowres")
    assert any(reason.startswith("correlation") for reason in lowres.reasons)


def test_model_shifted_by_5_angstrom_is_rejected_by_correlation(example_entries, curated_examples, tmp_path):
    import gemmi

    entry = next(e for e in example_entries if e.emdb_id == "EMD-6374")
    original = next(r for r in curated_examples[1] if r.entry is entry)
    assert original.accepted
    structure = gemmi.read_structure(str(entry.model_path))
    structure.setup_entities()
    structure[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(5.0, 0.0, 0.0)))
    shifted_path = tmp_path / "shifted.pdb"
    structure.write_pdb(str(shifted_path))
    shifted = replace(entry, name="shifted_by_5A", model_path=shifted_path, model_sha256=None)

    (result,) = curate_entries([shifted], tmp_path / "out")
    assert not result.accepted
    assert any(reason.startswith("correlation") for reason in result.reasons)
    row = _report_rows(tmp_path / "out")[0]
    assert row["decision"] == "rejected" and "correlation" in row["reason"]
    assert float(row["correlation"]) < 0.65 < original.record.correlation


def test_curated_input_and_target_overlay_better_than_any_one_voxel_shift(curated_examples):
    out, _, _ = curated_examples
    for row in read_curated_index(out):
        pair = read_curated_pair(row.path)
        aligned = np.corrcoef(pair.input.ravel(), pair.target.ravel())[0, 1]
        for shift in itertools.product((-1, 0, 1), repeat=3):
            if shift == (0, 0, 0):
                continue
            moved = np.roll(pair.target, shift, axis=(0, 1, 2))
            assert np.corrcoef(pair.input.ravel(), moved.ravel())[0, 1] < aligned, (row.name, shift)


def test_curated_target_background_is_zero_and_in_unit_range(curated_examples):
    out, _, _ = curated_examples
    for row in read_curated_index(out):
        pair = read_curated_pair(row.path)
        assert np.all(pair.target[~pair.mask] == 0)
        assert pair.target.min() >= 0 and pair.target.max() == pytest.approx(1.0)
        assert pair.input.min() == pytest.approx(0.0) and pair.input.max() == pytest.approx(1.0)
        assert pair.metadata["split"] == row.split and np.all(pair.grid.voxel_size == 1.0)
        # the render options in their plain form, which a generator trained on these pairs carries
        assert pair.metadata["curation"]["render"] == {"model": "molmap", "resolution": 2.0, "sampling": "point"}


def test_later_redundant_pair_is_rejected_naming_the_kept_pair(example_entries, tmp_path):
    entry = next(e for e in example_entries if e.emdb_id == "EMD-6374")
    twins = [replace(entry, name="first"), replace(entry, name="second")]
    first, second = curate_entries(twins, tmp_path)
    assert first.accepted
    assert second.reasons == ["sequence identity 100% > 30% with kept pair first"]


def test_unrelated_shared_models_are_not_redundant(example_entries):
    from cryomaps.io import read_structure

    labels = ("EMD-20026_apoferritin_crop", "EMD-3488_hemoglobin", "EMD-5168_actin_filament", "EMD-6374_3JB0-D_segment")
    facts = {e.label: model_facts(read_structure(e.model_path, remove_waters=True), 20) for e in example_entries if e.label in labels}
    kept = []
    for label, fact in facts.items():
        assert redundancy_reason(fact.sequences, kept, FilterOptions()) is None, label
        kept.append((label, fact.sequences))


def test_missing_and_unreadable_files_become_rejected_rows(tmp_path):
    not_a_map = tmp_path / "broken.mrc"
    not_a_map.write_text("not a map")
    model = tmp_path / "helix.pdb"
    from cryomaps.io.example import write_example_peptide

    write_example_peptide(model)
    entries = [
        ManifestEntry("EMD-0001", "1abc", 3.0, True, "train", map_path=tmp_path / "missing.mrc", model_path=model, name="missing"),
        ManifestEntry("EMD-0002", "1abd", 3.0, True, "val", map_path=not_a_map, model_path=model, name="broken"),
        ManifestEntry("EMD-0003", None, None, False, "train", name="not_fetched"),
    ]
    results = curate_entries(entries, tmp_path / "out")
    assert [r.accepted for r in results] == [False, False, False]
    assert "no such file" in results[0].reasons[0]
    assert "not a" in results[1].reasons[0]
    assert "fetch it first" in results[2].reasons[0]
    assert len(_report_rows(tmp_path / "out")) == 3
    assert read_curated_index(tmp_path / "out") == []


def _structure(residue_names, atom_names_per_residue, elements=None) -> Structure:
    names, residues, seqids = [], [], []
    for index, (residue, atoms) in enumerate(zip(residue_names, atom_names_per_residue)):
        names += atoms
        residues += [residue] * len(atoms)
        seqids += [index + 1] * len(atoms)
    n = len(names)
    elements = elements or [name[0] for name in names]
    return Structure(
        coords=np.zeros((n, 3)), atomic_numbers=np.full(n, 6), elements=np.array(elements),
        b_factors=np.zeros(n), occupancies=np.ones(n), chain_ids=np.full(n, "A"),
        residue_names=np.array(residues), residue_seqids=np.array(seqids), atom_names=np.array(names),
        altlocs=np.full(n, ""),
    )


def test_model_facts_detect_nucleic_acids_unknown_residues_and_backbone_only():
    full = ["N", "CA", "C", "O", "CB", "CG"]
    backbone = ["N", "CA", "C", "O"]
    protein = _structure(["LEU", "GLY", "LYS"], [full, backbone, full])
    facts = model_facts(protein, 2)
    assert (facts.has_nucleic_acids, facts.n_unknown_residues, facts.backbone_only_fraction) == (False, 0, 0.0)
    assert facts.sequences == (("LEU", "GLY", "LYS"),)
    assert model_facts(_structure(["LEU", "DA"], [full, ["P", "OP1"]]), 2).has_nucleic_acids
    assert model_facts(_structure(["UNK", "LEU"], [backbone, full]), 2).n_unknown_residues == 1
    trace = model_facts(_structure(["LEU", "ALA", "LYS"], [["CA"], ["CA"], ["CA"]]), 2)
    assert trace.backbone_only_fraction == 1.0


def test_normalisations_keep_background_zero_or_reproduce_the_published_offset():
    rng = np.random.default_rng(0)
    experimental = rng.normal(size=(12, 10, 8))
    mask = np.zeros(experimental.shape, dtype=bool)
    mask[3:9, 3:7, 2:6] = True
    target = normalise_target(experimental, mask, "percentile", 99.9)
    assert np.all(target[~mask] == 0) and target.min() >= 0 and target.max() == pytest.approx(1.0)
    published = normalise_target(experimental, mask, "published_minmax", 99.9)
    background = published[~mask][0]
    assert np.all(published[~mask] == background) and 0.2 < background < 0.8
    assert published.min() == 0 and published.max() == pytest.approx(1.0)


def test_curated_pair_file_round_trips(tmp_path):
    grid = Grid((4, 5, 6), (1.0, 1.0, 1.5), (-3.0, 2.5, 10.0))
    rng = np.random.default_rng(1)
    pair = CuratedPair(rng.random(grid.shape), rng.random(grid.shape), rng.random(grid.shape) > 0.5, grid, {"name": "x", "n": 3})
    path = write_curated_pair(tmp_path / "x.npz", pair)
    loaded = read_curated_pair(path)
    assert loaded.grid.shape == grid.shape
    np.testing.assert_array_equal(loaded.grid.voxel_size, grid.voxel_size)
    np.testing.assert_array_equal(loaded.grid.origin, grid.origin)
    for name in ("input", "target", "mask"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(pair, name))
    assert loaded.metadata == {"name": "x", "n": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]


def test_config_composes_into_options_with_overrides():
    from cryomaps.config import compose_config

    defaults = CurationOptions.from_config(compose_config("curate"))
    assert defaults == CurationOptions()
    published = CurationOptions.from_config(
        compose_config("curate", ["normalisation=published_minmax", "filters.min_correlation=0.5", "render.model=peng"])
    )
    assert published.normalisation == "published_minmax"
    assert published.filters.min_correlation == 0.5 and published.render.model == "peng"


def test_curate_command_with_overrides_after_out(data_root, tmp_path, capsys):
    from cryomaps.cli import main

    manifest = tmp_path / "two.csv"
    lines = MANIFEST.read_text().splitlines()
    manifest.write_text("\n".join([lines[0]] + [l for l in lines if "EMD-6374" in l or "EMD-3488" in l]) + "\n")
    status = main(["curate", str(manifest), "--out", str(tmp_path / "out"), f"data_root={data_root}", "normalisation=published_minmax"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "EMD-6374_3JB0-D_segment" in printed and "pairs accepted" in printed
    pair = read_curated_pair(read_curated_index(tmp_path / "out")[0].path)
    assert pair.metadata["curation"]["normalisation"] == "published_minmax"
    assert np.all(pair.target[~pair.mask] == pair.target[~pair.mask][0]) and pair.target[~pair.mask][0] > 0


# --- Curation at scale: workers, resume, shards, merge; bad settings ---------------------------------

# Four rows of the shared pairs: two accepted, one rejected by correlation, and a later twin of the
# first that the redundancy filter rejects (row 3, in the other shard than row 0 with shard=i/2).
SCALE_LABELS = ("EMD-6374_3JB0-D_segment", "EMD-2566_mitoribosome_chain9_segment", "EMD-21457_spike_NTD_segment")


def _write_scale_manifest(path: Path, rows: list[str]) -> Path:
    lines = MANIFEST.read_text().splitlines()
    by_label = {line.split(",", 1)[0]: line for line in lines[1:]}
    path.write_text("\n".join([lines[0]] + [by_label[label] if label in by_label else label for label in rows]) + "\n")
    return path


def _twin_row(label: str, twin_name: str) -> str:
    """A manifest row for the same files as ``label`` under another name."""
    lines = MANIFEST.read_text().splitlines()
    return next(line for line in lines if line.startswith(label + ",")).replace(label, twin_name, 1)


@pytest.fixture(scope="module")
def scale_manifest(tmp_path_factory):
    rows = list(SCALE_LABELS) + [_twin_row(SCALE_LABELS[0], "twin_of_6374")]
    return _write_scale_manifest(tmp_path_factory.mktemp("scale") / "four.csv", rows)


@pytest.fixture(scope="module")
def serial_run(scale_manifest, data_root, tmp_path_factory):
    """The four rows curated with workers=1 through the command: the output folder."""
    from cryomaps.cli import main

    out = tmp_path_factory.mktemp("serial") / "out"
    assert main(["curate", str(scale_manifest), "--out", str(out), f"data_root={data_root}"]) == 0
    return out


def _assert_same_curation(first: Path, second: Path) -> None:
    """Same report, index and NAME.npz files with identical arrays and metadata."""
    assert (first / REPORT_NAME).read_text() == (second / REPORT_NAME).read_text()
    assert (first / "curated.csv").read_text() == (second / "curated.csv").read_text()
    assert sorted(p.name for p in first.glob("*.npz")) == sorted(p.name for p in second.glob("*.npz"))
    for path in first.glob("*.npz"):
        with np.load(path) as a, np.load(second / path.name) as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{path.name}:{key}")


def test_scale_manifest_exercises_accepted_rejected_and_redundant_rows(serial_run):
    rows = {row["name"]: row for row in _report_rows(serial_run)}
    assert [rows[label]["decision"] for label in SCALE_LABELS] == ["accepted", "accepted", "rejected"]
    assert rows["twin_of_6374"]["reason"] == f"sequence identity 100% > 30% with kept pair {SCALE_LABELS[0]}"
    assert sorted(p.name for p in serial_run.glob("*.npz")) == sorted(f"{label}.npz" for label in SCALE_LABELS[:2])


def test_two_workers_give_the_same_files_and_report_as_one(serial_run, scale_manifest, data_root, tmp_path):
    from cryomaps.cli import main

    out = tmp_path / "out"
    assert main(["curate", str(scale_manifest), "--out", str(out), f"data_root={data_root}", "workers=2"]) == 0
    _assert_same_curation(serial_run, out)


def test_worker_pool_runs_items_in_other_processes_and_keeps_order():
    import operator
    import os

    from cryomaps.data.curation_store import map_in_order, worker_pool

    with worker_pool(2) as pool:
        pids = list(map_in_order(operator.call, [os.getpid] * 6, pool, max_in_flight=3))
        absolute = list(map_in_order(abs, [-5, 3, -1, 7, -2], pool, max_in_flight=2))
        with pytest.raises(CryomapsError, match="absent.csv: manifest not found"):  # an error in a worker: one line here
            list(map_in_order(read_manifest, ["/absent.csv"], pool, max_in_flight=2))
    assert os.getpid() not in pids
    assert absolute == [5, 3, 1, 7, 2]


def test_shards_then_merge_equal_the_unsharded_run(serial_run, scale_manifest, data_root, tmp_path, capsys):
    from cryomaps.cli import main

    out = tmp_path / "out"
    common = [str(scale_manifest), "--out", str(out), f"data_root={data_root}"]
    assert main(["curate", *common, "shard=1/2"]) == 0
    assert not (out / "curated.csv").exists()
    capsys.readouterr()
    assert main(["curate", *common, "merge=true"]) == 2  # shard 0 has not run yet
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "2 of 4 pairs" in error and SCALE_LABELS[0] in error
    assert main(["curate", *common, "shard=0/2"]) == 0
    with open(out / "curation_report.shard-1-of-2.csv", newline="") as handle:
        second_shard = {row["name"]: row["decision"] for row in csv.DictReader(handle)}
    assert second_shard == {SCALE_LABELS[1]: "candidate", "twin_of_6374": "candidate"}
    capsys.readouterr()
    assert main(["curate", *common, "merge=true"]) == 0
    assert "4 of them reused" in capsys.readouterr().out  # merge curates nothing
    _assert_same_curation(serial_run, out)


def _curated_pairs_of(results) -> list[str]:
    return [result.entry.label for result in results if not result.reused]


def test_rerun_reuses_records_and_changed_settings_or_files_curate_again(example_entries, tmp_path):
    import os
    import shutil

    entries = [e for e in example_entries if e.label in SCALE_LABELS[:2]]
    model_copy = tmp_path / "model.pdb"
    shutil.copy(entries[1].model_path, model_copy)
    entries[1] = replace(entries[1], model_path=model_copy)
    out = tmp_path / "out"
    first = curate_entries(entries, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.suffix in (".npz", ".json")}
    assert len(stamps) == 4  # two NAME.npz, two records

    again = curate_entries(entries, out)
    assert _curated_pairs_of(again) == [] and all(r.reused for r in again)
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.name in stamps} == stamps
    assert [r.report_row() for r in again] == [r.report_row() for r in first]
    assert all(r.reused for r in curate_entries(entries, out, CurationOptions(voxel_size=1)))  # 1 and 1.0 alike

    wider = curate_entries(entries, out, CurationOptions(cushion=4.0))
    assert _curated_pairs_of(wider) == [e.label for e in entries]
    assert all(r.report_row()["box_shape"] != f.report_row()["box_shape"] for r, f in zip(wider, first))

    later = model_copy.stat().st_mtime + 10.0  # same settings, newer model file: only that pair is curated again
    os.utime(model_copy, (later, later))
    assert _curated_pairs_of(curate_entries(entries, out, CurationOptions(cushion=4.0))) == [entries[1].label]


def test_reordered_manifest_restores_the_file_of_a_pair_no_longer_redundant(example_entries, tmp_path):
    entry = next(e for e in example_entries if e.label == SCALE_LABELS[0])
    first, second = replace(entry, name="first"), replace(entry, name="second")
    curate_entries([first, second], tmp_path)
    assert (tmp_path / "first.npz").is_file() and not (tmp_path / "second.npz").exists()
    results = curate_entries([second, first], tmp_path)
    assert [r.accepted for r in results] == [True, False] and all(r.reused for r in results)
    assert (tmp_path / "second.npz").is_file() and not (tmp_path / "first.npz").exists()
    assert [row.name for row in read_curated_index(tmp_path)] == ["second"]


@pytest.mark.parametrize(
    "override, option",
    [
        ("voxel_size=0", "voxel_size=0"),
        ("voxel_size=-1", "voxel_size=-1"),
        ("voxel_size=nan", "voxel_size=nan"),
        ("voxel_size=inf", "voxel_size=inf"),
        ("mask_radius=abc", "mask_radius=abc"),
        ("percentile=150", "percentile=150"),
        ("render.resolution=0", "render.resolution=0"),
        ("render.resolution=abc", "render.resolution=abc"),
        ("render.model=bad", "render.model=bad"),
        ("render.sampling=cubic", "render.sampling=cubic"),
        ("filters.max_sequence_identity=1.5", "filters.max_sequence_identity=1.5"),
        ("filters.min_chain_residues=0", "filters.min_chain_residues=0"),
        ("remove_waters=maybe", "remove_waters=maybe"),
        ("workers=0", "workers=0"),
        ("workers=-1", "workers=-1"),
        ("shard=3/2", "shard=3/2"),
        ("shard=-1/2", "shard=-1/2"),
        ("shard=a/b", "shard=a/b"),
        ("shard=0/0", "shard=0/0"),
        ("merge=maybe", "merge=maybe"),
    ],
)
def test_bad_settings_give_one_line_and_write_nothing(override, option, tmp_path, capsys):
    from cryomaps.cli import main

    out = tmp_path / "out"
    assert main(["curate", str(MANIFEST), "--out", str(out), override]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and option in error, error
    assert not out.exists()


def test_merge_with_a_shard_and_output_that_is_a_file_are_refused(tmp_path, capsys):
    from cryomaps.cli import main

    assert main(["curate", str(MANIFEST), "--out", str(tmp_path / "out"), "merge=true", "shard=0/2"]) == 2
    assert "merge=true" in capsys.readouterr().err
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert main(["curate", str(MANIFEST), "--out", str(a_file)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err and a_file.read_text() == "x"


def test_checksum_mismatch_stops_curate_before_writing(data_root, tmp_path, capsys):
    from cryomaps.cli import main

    entry = read_manifest(MANIFEST, data_root=data_root)[0]
    text = MANIFEST.read_text()
    wrong = "0" * 64
    manifest = tmp_path / "wrong.csv"
    manifest.write_text(text.replace(entry.map_sha256, wrong))
    out = tmp_path / "out"
    assert main(["curate", str(manifest), "--out", str(out), f"data_root={data_root}"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert str(entry.map_path) in error and entry.map_sha256 in error and wrong in error and "map_sha256" in error
    assert not out.exists()


@pytest.mark.slow
def test_eight_shared_pairs_in_three_shards_with_two_workers_equal_the_serial_run(curated_examples, data_root, tmp_path):
    from cryomaps.cli import main

    serial, _, _ = curated_examples
    out = tmp_path / "out"
    common = [str(MANIFEST), "--out", str(out), f"data_root={data_root}", "workers=2"]
    for index in range(3):
        assert main(["curate", *common, f"shard={index}/3"]) == 0
    assert main(["curate", *common, "merge=true"]) == 0
    _assert_same_curation(serial, out)


def test_two_names_giving_the_same_file_are_refused(tmp_path, capsys):
    from cryomaps.cli import main

    manifest = tmp_path / "clash.csv"
    manifest.write_text("name,emdb_id,pdb_id,reported_resolution_A,resolution_certain,split\na/b,EMD-0001,,,no,train\na_b,EMD-0002,,,no,train\n")
    assert main(["curate", str(manifest), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "line 3: 'a_b' and line 2 ('a/b') would share the file a_b.npz" in error and not (tmp_path / "out").exists()


def test_sequence_identity_shortcut_and_cache_agree_with_a_direct_gemmi_alignment(example_entries):
    import gemmi

    from cryomaps.data.curate import GAP_EXTEND, GAP_OPEN, sequence_identity
    from cryomaps.io import read_structure

    entry = next(e for e in example_entries if e.label == "EMD-3488_hemoglobin")
    alpha, beta = model_facts(read_structure(entry.model_path, remove_waters=True), 20).sequences
    scoring = gemmi.AlignmentScoring("b")
    scoring.gapo, scoring.gape = GAP_OPEN, GAP_EXTEND

    def direct(a, b):
        return gemmi.align_string_sequences(list(a), list(b), [], scoring).calculate_identity() / 100.0

    assert sequence_identity(alpha, alpha) == direct(alpha, alpha) == 1.0
    first = sequence_identity(alpha, beta)
    assert first == sequence_identity(alpha, beta) == pytest.approx(direct(alpha, beta), abs=0) and 0.3 < first < 0.6
