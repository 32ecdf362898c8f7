"""Regenerate ``scripts/figures/generate_resolutions.png``: EMD-21457 (held out) filtered to 5, 8 and
12 Å next to ``cryomaps generate --resolution R`` of its model and molmap at R, central z-slices.

The maps are made as ``cryomaps evaluate ... target_resolution=R`` makes them (the shared data
must be in place). Run from anywhere::

    python scripts/figures/make_resolution_figure.py
"""

from __future__ import annotations

from pathlib import Path

from cryomaps.data.manifest import read_manifest
from cryomaps.data_root import find_data_root
from cryomaps.io import DensityMap, read_map, read_structure
from cryomaps.io.weights import bundled_weights_path
from cryomaps.metrics.figures import central_slices
from cryomaps.models.weights import load_network
from cryomaps.render import render_structure_array
from cryomaps.signal import filtered_map
from cryomaps.workflows.generation import generate_at_resolution

REPO = Path(__file__).resolve().parents[2]
DESTINATION = REPO / "scripts" / "figures" / "generate_resolutions.png"
PAIR = "EMD-21457_spike_NTD_segment"
RESOLUTIONS = (5.0, 8.0, 12.0)


def main() -> int:
    entry = next(e for e in read_manifest(REPO / "data_manifests" / "example_pairs.csv", data_root=find_data_root()) if e.name == PAIR)
    structure = read_structure(entry.model_path, remove_waters=True, remove_hydrogens=True)
    experimental = read_map(entry.map_path)
    generator = load_network(bundled_weights_path("generator"), "generator")
    rows = {}
    for resolution in RESOLUTIONS:
        molmap = render_structure_array(structure, experimental.grid, model="molmap", resolution=resolution)
        maps = {
            "experimental": filtered_map(experimental, entry.reported_resolution_A, resolution),
            "generator": generate_at_resolution(structure, generator, resolution, like=experimental),
            "molmap": DensityMap.from_grid(molmap, experimental.grid),
        }
        rows[f"{resolution:g} Å"] = {name: central_slices(density.data)[2] for name, density in maps.items()}
    save_grid(DESTINATION, rows)
    print(f"wrote {DESTINATION}")
    return 0


def save_grid(path: Path, rows: dict) -> None:
    """One row per resolution, one column per map; each slice on its own grey scale, x down, y across."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = list(next(iter(rows.values())))
    figure = Figure(figsize=(2.2 * len(columns), 2.2 * len(rows)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for row, (label, slices) in enumerate(rows.items()):
        for column, name in enumerate(columns):
            axis = axes[row][column]
            axis.imshow(slices[name], cmap="gray")
            axis.set_title(f"{name}, {label}", fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    raise SystemExit(main())
