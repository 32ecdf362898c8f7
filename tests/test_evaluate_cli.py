"""``cryomaps evaluate`` on small maps written to a temporary folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryomaps import cli
from cryomaps.io import DensityMap, write_map

METRIC_KEYS = ["ssim", "pearson", "corr_about_zero", "corr_about_mean", "fsc_0.5_A", "fsc_0.143_A"]

PDB_TEXT = """\
ATOM      1  N   GLY A   1       6.000   7.000   8.000  1.00 20.00           N
ATOM      2  CA  GLY A   1       7.400   7.200   8.300  1.00 20.00           C
ATOM      3  C   GLY A   1       8.100   8.500   8.000  1.00 20.00           C
ATOM      4  O   GLY A   1       9.300   8.600   8.200  1.00 20.00           O
END
"""


def blob(shape, centre, width) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return np.exp(-np.sum((grid - np.asarray(centre)) ** 2, axis=-1) / (2 * width**2)).astype(np.float32)


@pytest.fixture
def map_pair(tmp_path):
    """A reference map and a slightly different prediction on a shifted, finer grid."""
    ref = DensityMap(blob((16, 16, 16), (8, 8, 8), 2.0), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    pred = DensityMap(blob((20, 20, 20), (10.5, 10, 10), 3.0), (0.8, 0.8, 0.8), (-1.0, -1.0, -1.0))
    return write_map(tmp_path / "pred.mrc", pred), write_map(tmp_path / "ref.mrc", ref)


def test_evaluate_prints_a_table_and_writes_plain_json_keys(map_pair, tmp_path, capsys):
    pred_path, ref_path = map_pair
    out = tmp_path / "scores.json"
    status = cli.main(["evaluate", "--pred", str(pred_path), "--ref", str(ref_path), "--json", str(out)])
    assert status == 0
    table = capsys.readouterr().out
    for key in METRIC_KEYS:
        assert key in table
    scores = json.loads(out.read_text())
    assert list(scores) == ["pred_path", "ref_path", "model_path"] + METRIC_KEYS
    assert scores["ref_path"] == str(ref_path) and scores["model_path"] is None
    assert 0.5 < scores["corr_about_zero"] <= 1.0
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_evaluate_without_ref_is_a_one_line_error(map_pair, capsys):
    pred_path, _ = map_pair
    assert cli.main(["evaluate", "--pred", str(pred_path)]) == 2
    assert "--ref are required" in capsys.readouterr().err


MODEL_KEYS = ("masked_corr", "map_model_fsc_0.5_A", "map_model_fsc_0.143_A", "ref_map_model_fsc_0.5_A")


def run_with_model(map_pair, tmp_path) -> dict:
    """Run ``evaluate --model`` with molmap at 3 Å and return the JSON scores."""
    pred_path, ref_path = map_pair
    model_path = tmp_path / "model.pdb"
    model_path.write_text(PDB_TEXT)
    out = tmp_path / "scores.json"
    argv = ["evaluate", "--pred", str(pred_path), "--ref", str(ref_path), "--model", str(model_path)]
    assert cli.main(argv + ["--model-density", "molmap", "--model-resolution", "3", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_evaluate_passes_the_model_and_reference_grid_to_the_renderer(map_pair, tmp_path, monkeypatch, capsys):
    import cryomaps.render

    calls = []

    def recording_renderer(structure, grid, model, resolution):
        calls.append((structure.n_atoms, grid.shape, model, resolution))
        return np.ones(grid.shape, dtype=np.float32)

    monkeypatch.setattr(cryomaps.render, "render_structure_array", recording_renderer)
    scores = run_with_model(map_pair, tmp_path)
    assert calls == [(4, (16, 16, 16), "molmap", 3.0)]
    table = capsys.readouterr().out
    for key in MODEL_KEYS:
        assert key in scores and key in table


def test_evaluate_with_the_real_renderer(map_pair, tmp_path):
    scores = run_with_model(map_pair, tmp_path)
    assert all(key in scores for key in MODEL_KEYS)
