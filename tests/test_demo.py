"""The main job on the built-in example: `cryomaps demo` writes maps that overlay the peptide and a PNG."""

from __future__ import annotations

from cryomaps.cli import main as cli_main
from cryomaps.io import read_map, read_structure, sample_map

def test_demo_writes_generated_and_simulated_maps_and_a_png(tmp_path):
    assert cli_main(["demo", "--out", str(tmp_path)]) == 0
    peptide = read_structure(tmp_path / "example_helix.pdb")
    for name in ("example_generated.mrc", "example_molmap_2A.mrc"):
        density = read_map(tmp_path / name)
        at_atoms = sample_map(density, peptide.coords)
        assert at_atoms.mean() > density.data.mean() + 2 * density.data.std(), name
    png = (tmp_path / "example_slices.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert not list(tmp_path.glob("*.part"))
