"""`cryomaps generate` with the bundled_generator generator: geometry, no seams, clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from cryomaps.cli import main as cli_main
from cryomaps.errors import InputError
from cryomaps.inference.generate import TilingOptions, generate_map
from cryomaps.inference.tiling import seam_ratio, tile_boundary_planes
from cryomaps.io import read_map, read_structure
from cryomaps.io.weights import bundled_weights_path
from cryomaps.models.weights import generator_input_config
from cryomaps.render import DensityModelConfig


def test_bundled_weights_are_small_plain_and_carry_their_input_recipe(bundled_generator):
    assert bundled_weights_path("generator").stat().st_size < 3_000_000
    content = torch.load(bundled_weights_path("generator"), weights_only=True)
    assert set(content) == {"format", "kind", "hyperparameters", "metadata", "state_dict"}
    assert bundled_generator.metadata["input"] == {"model": "molmap", "resolution": 2.0, "sampling": "point"}
    assert bundled_generator.metadata["voxel_size"] == 1.0
    recipe = generator_input_config(bundled_generator.metadata)
    assert recipe == DensityModelConfig(model="molmap", resolution=2.0) and recipe.to_dict() == bundled_generator.metadata["input"]


def test_bad_input_recipe_in_weights_metadata_is_one_line_naming_the_option():
    with pytest.raises(InputError) as raised:
        generator_input_config({"input": {"model": "molmap", "resolution": 2.0, "sampling": "cubic"}, "voxel_size": 1.0})
    assert "input.sampling=cubic" in str(raised.value) and "\n" not in str(raised.value)


def test_blended_tiles_leave_no_seams_on_a_generated_map(small_model, bundled_generator):
    """Mean |Δ| across tile faces within 1.2x of elsewhere, inside the molecule (the issue's check)."""
    structure = read_structure(small_model, remove_waters=True, remove_hydrogens=True)
    tiling = TilingOptions(tile_size=32, overlap=16, mode="blend")
    generated = generate_map(structure, bundled_generator.network, bundled_generator.metadata, padding=8.0, tiling=tiling)
    volume = torch.from_numpy(generated.data)
    molecule = volume > 0.1 * volume.max()
    planes = [tile_boundary_planes(n, tiling.tile_size, tiling.overlap, "blend", tiling.face_padding) for n in volume.shape]
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


def test_generation_does_not_import_curation():
    """The input recipe comes from the renderer and the weights' metadata, not from the curation code."""
    code = "import sys, cryomaps.inference.generate; print(sorted(m for m in sys.modules if m.startswith('cryomaps.data')))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "cryomaps.data.curate" not in completed.stdout, completed.stdout
