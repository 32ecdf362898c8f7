"""``cryomaps evaluate manifest=... methods=[...]``: the report on two small shared pairs.

The generator is a tiny randomly initialised U-Net++ (its scores mean nothing; these tests check
the plumbing), run without tile overlap to keep the tests fast.
"""

from __future__ import annotations

import contextlib
import csv
import io

import numpy as np
import pytest

from cryomaps import cli
from cryomaps.data.manifest import read_manifest, write_manifest
from cryomaps.errors import InputError
from cryomaps.workflows.report import METRICS, check_methods

SPIKE, STRUDEL = "EMD-21457_spike_NTD_segment", "strudel_6272_segment"  # 3.2 Å (val); no reported resolution
METHODS = ("generator", "molmap_2A", "molmap_reported", "peng")
PUBLISHED_METRICS = ("ssim", "pearson", "corr_about_zero", "corr_about_mean")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def manifest(example_entries, tmp_path_factory):
    """A manifest of the two small pairs, paths absolute."""
    entries = example_entries
    path = tmp_path_factory.mktemp("manifest") / "two_pairs.csv"
    write_manifest([entry for entry in entries if entry.label in (SPIKE, STRUDEL)], path)
    return path


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    """A weights file of a tiny, randomly initialised generator with the bundled model's metadata."""
    import torch

    from cryomaps.models.weights import save_network
    from cryomaps.models.registry import build_generator

    torch.manual_seed(0)
    hyperparameters = {"preset": "small", "channels": [2, 4]}
    metadata = {
        "input": {"model": "molmap", "resolution": 2.0, "sampling": "point"},
        "voxel_size": 1.0,
        "normalisation": "percentile",
    }
    path = tmp_path_factory.mktemp("weights") / "tiny_generator.pt"
    return save_network(path, "generator", build_generator(**hyperparameters), hyperparameters, metadata=metadata)


def evaluate(*arguments: str) -> tuple[int, str]:
    """``cryomaps evaluate ARGUMENTS``: exit status and what it printed on stdout."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = cli.main(["evaluate", *arguments])
    return status, printed.getvalue()


@pytest.fixture(scope="module")
def report(manifest, tiny_generator, tmp_path_factory):
    """All four methods on both pairs: (report folder, printed output)."""
    out = tmp_path_factory.mktemp("report") / "new_folder"
    status, printed = evaluate(
        f"manifest={manifest}", f"out={out}", f"methods=[{','.join(METHODS)}]",
        f"generator_ckpt={tiny_generator}", "tiling.overlap=0",
    )
    assert status == 0
    return out, printed


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_metrics_csv_has_one_row_per_pair_and_method_with_every_metric(report):
    out, _ = report
    rows = read_csv(out / "metrics.csv")
    assert [(row["pair"], row["method"]) for row in rows] == [(pair, m) for pair in (SPIKE, STRUDEL) for m in METHODS]
    assert set(METRICS) <= set(rows[0]) and set(PUBLISHED_METRICS) <= set(METRICS)
    for row in rows:
        if row["status"] == "ok":
            assert all(np.isfinite(float(row[metric])) for metric in METRICS)
    assert not list(out.glob("*.part")) and not list(out.glob(".*"))


def test_a_method_that_cannot_run_is_recorded_with_its_reason(report):
    out, printed = report
    rows = {(row["pair"], row["method"]): row for row in read_csv(out / "metrics.csv")}
    skipped = rows[(STRUDEL, "molmap_reported")]
    assert skipped["status"] == "skipped" and "no reported resolution" in skipped["reason"]
    assert all(skipped[metric] == "" for metric in METRICS)
    assert rows[(SPIKE, "molmap_reported")]["status"] == "ok"
    assert sum(row["status"] == "ok" for row in rows.values()) == 7
    assert "molmap_reported skipped" in printed


def test_summary_is_the_mean_and_median_of_the_metrics_columns(report):
    out, printed = report
    rows, summary = read_csv(out / "metrics.csv"), read_csv(out / "summary.csv")
    assert [(row["method"], row["metric"]) for row in summary] == [(m, metric) for m in METHODS for metric in METRICS]
    for line in summary:
        scored = [row for row in rows if row["method"] == line["method"] and row["status"] == "ok"]
        values = [float(row[line["metric"]]) for row in scored]
        assert int(line["n_pairs"]) == len(values) == (1 if line["method"] == "molmap_reported" else 2)
        assert float(line["mean"]) == pytest.approx(np.mean(values), rel=1e-5, abs=1e-6)
        assert float(line["median"]) == pytest.approx(np.median(values), rel=1e-5, abs=1e-6)
    table = printed[printed.index("metric (mean / median)"):]
    assert all(method in table.splitlines()[0] for method in METHODS)
    assert all(f"\n{metric} " in table for metric in METRICS)


def test_figures_are_readable_png_images(report):
    from matplotlib.image import imread

    out, _ = report
    names = ["boxplots.png"] + [f"{kind}_{pair}.png" for kind in ("slices", "fsc") for pair in (SPIKE, STRUDEL)]
    for name in names:
        content = (out / name).read_bytes()
        assert content.startswith(PNG_SIGNATURE), name
        image = imread(out / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0, name


def test_molmap_at_the_reported_resolution_fits_better_than_at_an_absurd_one(manifest, tmp_path):
    out = tmp_path / "report"
    status, _ = evaluate(f"manifest={manifest}", f"out={out}", "split=val", "methods=[molmap_reported,molmap_20A]")
    assert status == 0
    rows = {row["method"]: row for row in read_csv(out / "metrics.csv")}
    assert {row["pair"] for row in rows.values()} == {SPIKE}
    right, blurred = rows["molmap_reported"], rows["molmap_20A"]
    for metric in ("pearson", "masked_corr"):
        assert float(right[metric]) > float(blurred[metric]) + 0.1, metric
    assert float(right["fsc_0.143_A"]) < float(blurred["fsc_0.143_A"]) - 2.0


def test_an_unknown_method_is_a_one_line_error(manifest, tmp_path, capsys):
    status, _ = evaluate(f"manifest={manifest}", f"out={tmp_path}", "methods=[peng,struc2map]")
    error = capsys.readouterr().err
    assert status == 2
    assert error.count("\n") == 1 and "unknown method 'struc2map'" in error and "molmap_<d>A" in error
    assert not list(tmp_path.iterdir())


def test_single_pair_options_are_refused_in_report_mode(manifest, tmp_path, capsys):
    status, _ = evaluate("--pred", str(tmp_path / "p.mrc"), f"manifest={manifest}", f"out={tmp_path}")
    assert status == 2
    assert "--pred" in capsys.readouterr().err


def test_method_names_are_checked():
    assert check_methods(["molmap_4.5A", "peng"]) == ("molmap_4.5A", "peng")
    for bad in (["molmap_0A"], ["molmap_2"], ["peng", "peng"], []):
        with pytest.raises(InputError):
            check_methods(bad)


def test_target_resolution_filters_the_reference_and_evaluates_molmap_there(manifest, tmp_path, data_root):
    """target_resolution=8: the spike map (3.2 Å) is filtered to 8 Å, molmap_reported renders at 8 Å
    and fits that map better than molmap at 3.2 Å does; the pair without a resolution is skipped."""
    from cryomaps.io import DensityMap, read_map, read_structure
    from cryomaps.metrics import evaluate_maps
    from cryomaps.signal import filtered_map
    from cryomaps.render import render_structure

    out = tmp_path / "report"
    status, _ = evaluate(f"manifest={manifest}", f"out={out}", "target_resolution=8", "methods=[molmap_reported,molmap_3.2A]")
    assert status == 0
    rows = {(row["pair"], row["method"]): row for row in read_csv(out / "metrics.csv")}
    matched, native = rows[(SPIKE, "molmap_reported")], rows[(SPIKE, "molmap_3.2A")]
    assert matched["resolution_A"] == "8" and matched["reported_resolution_A"] == "3.2"
    for metric in ("pearson", "corr_about_mean", "masked_corr"):
        assert float(matched[metric]) > float(native[metric]), metric
    skipped = rows[(STRUDEL, "molmap_reported")]
    assert skipped["status"] == "skipped" and "needs the map's reported resolution" in skipped["reason"]
    assert rows[(STRUDEL, "molmap_3.2A")]["status"] == "skipped"

    entry = next(e for e in read_manifest(manifest) if e.label == SPIKE)  # the same score, made by hand
    reference = filtered_map(read_map(entry.map_path), 3.2, 8.0)
    structure = read_structure(entry.model_path, remove_waters=True, remove_hydrogens=True)
    molmap = render_structure(structure, reference.grid, model="molmap", resolution=8.0).numpy()
    expected = evaluate_maps(DensityMap.from_grid(molmap, reference.grid), reference, model_coords=structure.coords)
    assert float(matched["pearson"]) == pytest.approx(expected["pearson"], rel=1e-4)


def test_a_pair_that_cannot_be_filtered_to_target_resolution_is_skipped_and_none_is_one_line(manifest, tmp_path, capsys):
    """A pair without a reported resolution is skipped at a target resolution and the other scored;
    a target finer than every pair's map, or not a positive number, is one line, exit 2, no report."""
    out = tmp_path / "report"
    status, _ = evaluate(f"manifest={manifest}", f"out={out}", "target_resolution=5", "methods=[molmap_2A]")
    assert status == 0
    rows = {row["pair"]: row for row in read_csv(out / "metrics.csv")}
    assert rows[SPIKE]["status"] == "ok" and float(rows[SPIKE]["resolution_A"]) == 5.0
    assert rows[STRUDEL]["status"] == "skipped" and "needs the map's reported resolution" in rows[STRUDEL]["reason"]
    capsys.readouterr()
    for setting, message in (("target_resolution=2", "finer than the map's reported 3.2"),
                             ("target_resolution=-1", "target_resolution must be a positive number")):
        status, _ = evaluate(f"manifest={manifest}", f"out={tmp_path / 'bad'}", "split=val", setting, "methods=[molmap_2A]")
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and message in err[0], err
        assert not (tmp_path / "bad").exists()


def test_an_unconditioned_generator_at_target_resolution_is_the_map_generate_writes(manifest, tiny_generator, tmp_path):
    """target_resolution=8: the report scores the unconditioned generator's output low-pass filtered to 8 Å,
    the map ``cryomaps generate --resolution 8`` writes, which is the unfiltered output blurred by a
    Gaussian of σ = 0.225·√(8² − 3.2²) Å (oracle: scipy's spatial Gaussian, zero outside the box)."""
    from scipy.ndimage import gaussian_filter

    from cryomaps.io import read_map, read_structure
    from cryomaps.metrics import evaluate_maps
    from cryomaps.signal import filtered_map

    out = tmp_path / "report"
    status, _ = evaluate(f"manifest={manifest}", f"out={out}", "split=val", "target_resolution=8",
                         "methods=[generator]", f"generator_ckpt={tiny_generator}", "tiling.overlap=0")
    assert status == 0
    (row,) = read_csv(out / "metrics.csv")
    entry = next(e for e in read_manifest(manifest) if e.label == SPIKE)
    plain, coarse = tmp_path / "plain.mrc", tmp_path / "coarse.mrc"
    for path, extra in ((plain, ["--resolution", "3.2"]), (coarse, ["--resolution", "8"])):  # 3.2 Å: unfiltered
        arguments = ["generate", str(entry.model_path), "-o", str(path), "--like", str(entry.map_path),
                     "--ckpt", str(tiny_generator), "--overlap", "0", "--device", "cpu", *extra]
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(arguments) == 0
    plain_map, coarse_map = read_map(plain), read_map(coarse)
    def blurred(sigma):  # sigma in Å; the sampled spatial kernel differs from the Fourier one by < 1e-3
        return gaussian_filter(plain_map.data.astype(np.float64), sigma / plain_map.voxel_size, mode="constant", truncate=6.0)

    expected = blurred(0.225 * np.sqrt(8.0**2 - 3.2**2))
    assert np.abs(coarse_map.data - expected).max() < 1e-3 * np.abs(expected).max()
    assert np.abs(coarse_map.data - blurred(0.225 * 8.0)).max() > 1e-2 * np.abs(expected).max()  # not σ = 0.225·R

    reference = filtered_map(read_map(entry.map_path), 3.2, 8.0)
    structure = read_structure(entry.model_path, remove_waters=True, remove_hydrogens=True)
    scores = evaluate_maps(coarse_map, reference, model_coords=structure.coords)
    for metric in PUBLISHED_METRICS:
        assert float(row[metric]) == pytest.approx(scores[metric], abs=1e-4), metric
