"""``cryomaps demo``: the main job on the built-in example, with no download and no GPU.

Writes the example peptide (an ideal α-helix built by code), turns it into a map with the same
code path as ``cryomaps generate`` (bundled generator) and, for comparison, ``cryomaps simulate``
(molmap-style at 2 Å), and draws their central slices to a PNG.
"""

from __future__ import annotations

from cryomaps.commands import options

HELP = "run the main job on the built-in example peptide (map file + PNG of its slices)"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo_output", type=options.output_folder, help="output folder (created if needed)")


def run(args) -> int:
    from pathlib import Path

    from cryomaps.cli import main as cli_main
    from cryomaps.io import read_map
    from cryomaps.io.example import write_example_peptide
    from cryomaps.metrics.figures import save_central_slices

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = out / "example_helix.pdb"
    write_example_peptide(model)
    print(f"wrote {model} (built-in example: ideal α-helical peptide)")

    maps = {}
    for name, command in demo_commands(model, out).items():
        print("$ cryomaps " + " ".join(command))
        status = cli_main(command)
        if status:
            return status
        maps[name] = read_map(command[command.index("-o") + 1])
    (first_name, first), *others = maps.items()
    figure = save_central_slices(out / "example_slices.png", first, dict(others), reference_name=first_name)
    print(f"wrote {figure} (central x, y and z slices)")
    return 0


def demo_commands(model, out) -> dict[str, list[str]]:
    """The CLI calls the demo makes, by the name of the map they produce."""
    return {
        "generated": ["generate", str(model), "-o", str(out / "example_generated.mrc")],
        "molmap 2 Å": ["simulate", str(model), "-o", str(out / "example_molmap_2A.mrc"), "--model", "molmap", "--resolution", "2.0"],
    }
