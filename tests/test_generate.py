"""`cryomaps generate` with the bundled generator: geometry, no seams, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryomaps.cli import main as cli_main
from cryomaps.inference.generate import TilingOptions, generate_map
from cryomaps.models.weights import bundled_weights_path
from cryomaps.inference.tiling import seam_ratio, tile_boundary_planes
from cryomaps.io import read_map, read_structure
from cryomaps.models.weights import load_network


@pytest.fixture(scope="module")
def bundled():
    return load_network(bundled_weights_path("generator"), "generator")


def test_bundled_weights_are_small_plain_and_carry_their_input_recipe(bundled):
    assert bundled_weights_path("generator").stat().st_size < 3_000_000
    content = torch.load(bundled_weights_path("generator"), weights_only=True)
    assert set(content) == {"format", "kind", "hyperparameters", "metadata", "state_dict"}
    assert bundled.metadata["input"]["model"] == "molmap" and bundled.metadata["voxel_size"] == 1.0


def test_blended_tiles_leave_no_seams_on_a_generated_map(structures_dir, bundled):
    """Mean |Δ| across tile faces within 1.2x of elsewhere, inside the molecule (the issue's check)."""
    structure = read_structure(structures_dir / "2va0A_99res.pdb.gz", remove_waters=True, remove_hydrogens=True)
    tiling = TilingOptions(tile_size=32, overlap=16, mode="blend")
    generated = generate_map(structure, bundled.network, bundled.metadata, padding=8.0, tiling=tiling)
    volume = torch.from_numpy(generated.data)
    molecule = volume > 0.1 * volume.max()
    planes = tile_boundary_planes(min(volume.shape), tiling.tile_size, tiling.overlap, "blend")
    assert seam_ratio(volume, planes, mask=molecule) < 1.2


def test_generate_on_a_reference_grid(tmp_path, shared_pairs):
    pair = next(p for p in shared_pairs if p["name"] == "EMD-21457_spike_NTD_segment")
    output = tmp_path / "generated.mrc"
    assert cli_main(["generate", str(pair["model_path"]), "--like", str(pair["map_path"]), "-o", str(output)]) == 0
    generated, reference = read_map(output), read_map(pair["map_path"])
    assert generated.data.shape == reference.data.shape
    np.testing.assert_array_equal(generated.origin, reference.origin)
    np.testing.assert_array_equal(generated.voxel_size, reference.voxel_size)
    correlation = np.corrcoef(generated.data.ravel(), reference.data.ravel())[0, 1]
    assert correlation > 0.3  # the generated density lies where the experimental density is


def test_generate_reports_bad_weights_in_one_line(tmp_path, capsys):
    weights = tmp_path / "not_weights.pt"
    weights.write_text("nope")
    from cryomaps.io.example import write_example_peptide

    write_example_peptide(tmp_path / "helix.pdb")
    assert cli_main(["generate", str(tmp_path / "helix.pdb"), "-o", str(tmp_path / "x.mrc"), "--ckpt", str(weights)]) == 2
    error = capsys.readouterr().err.strip()
    assert "not_weights.pt" in error and "\n" not in error
    assert not (tmp_path / "x.mrc").exists()
