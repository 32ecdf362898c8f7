"""Probe one held-out cell of the README's "A map at any resolution" table: how far the generator's
output can be moved towards molmap's score there by the choices around the network.

For one pair and target resolution R (the experimental map filtered from its reported resolution
to R, as ``cryomaps evaluate ... target_resolution=R`` does), this prints and writes to JSON the
Pearson and ChimeraX correlations of:

- the bundled generator's raw output filtered to R from several assumed output resolutions d_g
  (the shipped d_g is measured, README "Generate"; a larger d_g filters less);
- blends (1 − w)·generator + w·molmap at R, each scaled to unit standard deviation, w from 0 to 1;
- the generator with other tile sizes and overlaps, and with its tile grid shifted by 8 steps of
  stride/8 voxels: the lowest and highest score over the shifts, and the score of their average
  map (each tile's InstanceNorms see only that tile, so where tiles fall changes the map's low
  frequencies);
- molmap at R − 1, R and R + 1 Å.

The shared data must be in place. Run from the repository::

    python scripts/probe_generator_resolution.py [--pair EMD-3488_hemoglobin] [--resolution 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cryomaps.data.manifest import read_manifest
from cryomaps.data_root import find_data_root
from cryomaps.inference.generate import TilingOptions, generate_map
from cryomaps.io import DensityMap, Grid, read_map, read_structure
from cryomaps.io.maps import resample_map
from cryomaps.io.atomic import write_json_atomically
from cryomaps.io.weights import bundled_weights_path
from cryomaps.metrics.evaluation import evaluate_maps
from cryomaps.models.weights import load_network
from cryomaps.render import render_structure_array
from cryomaps.signal import filtered_map

REPO = Path(__file__).resolve().parents[1]
ASSUMED_OUTPUT_RESOLUTIONS = (3.2, 4.3, 5.0, 5.5, 6.0)
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
SHIFTED_TILINGS = ((48, 16), (32, 16))
"""(tile size, overlap) in voxels run with their tile grid shifted by 8 steps of stride/8 voxels."""
TILINGS = ((48, 32), (64, 16))
"""(tile size, overlap) run once."""
SCORES = ("pearson", "corr_about_mean")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="EMD-3488_hemoglobin", help="manifest name in data_manifests/example_pairs.csv")
    parser.add_argument("--resolution", type=float, default=8.0, help="target resolution R (Å)")
    parser.add_argument("--json", default="bench_results/probe_generator_resolution.json")
    args = parser.parse_args()
    entry = next(e for e in read_manifest(REPO / "data_manifests" / "example_pairs.csv", data_root=find_data_root()) if e.name == args.pair)
    structure = read_structure(entry.model_path, remove_waters=True, remove_hydrogens=True)
    experimental = read_map(entry.map_path)
    target = filtered_map(experimental, entry.reported_resolution_A, args.resolution)
    generator = load_network(bundled_weights_path("generator"), "generator")
    d_g = generator.metadata["output_resolution"]
    if args.resolution <= d_g:
        parser.error(f"--resolution must be coarser than the generator's output resolution {d_g:g} Å")
    raw = generate_map(structure, generator.network, generator.metadata, like=experimental)

    def scores(density: np.ndarray) -> dict[str, float]:
        result = evaluate_maps(DensityMap.from_grid(density.astype(np.float32), target.grid), target)
        return {name: result[name] for name in SCORES}

    def molmap(resolution: float) -> np.ndarray:
        return render_structure_array(structure, target.grid, model="molmap", resolution=resolution)

    assumed_resolutions = sorted({*ASSUMED_OUTPUT_RESOLUTIONS, d_g})  # the shipped d_g among them
    filtered = {assumed: filtered_map(raw, assumed, args.resolution).data for assumed in assumed_resolutions if assumed < args.resolution}
    shipped = filtered[d_g]
    matched = molmap(args.resolution)
    rows = [{"map": f"generator, d_g = {assumed:g} Å", **scores(data)} for assumed, data in filtered.items()]
    rows += [
        {"map": f"blend w = {w:g}", **scores((1 - w) * shipped / shipped.std() + w * matched / matched.std())}
        for w in BLEND_WEIGHTS
    ]
    for size, overlap in SHIFTED_TILINGS:
        stride = size - overlap
        outputs = [shifted_tiles_output(structure, generator, experimental, TilingOptions(size, overlap), shift)
                   for shift in range(0, stride, stride // 8)]
        shifted = [scores(filtered_map(output, d_g, args.resolution).data) for output in outputs]
        average = DensityMap.from_grid(np.mean([output.data for output in outputs], axis=0), experimental.grid)
        rows += [
            {"map": f"tiles {size}/{overlap}, shift 0", **shifted[0]},
            {"map": f"tiles {size}/{overlap}, 8 shifts: lowest", **{name: min(row[name] for row in shifted) for name in SCORES}},
            {"map": f"tiles {size}/{overlap}, 8 shifts: highest", **{name: max(row[name] for row in shifted) for name in SCORES}},
            {"map": f"tiles {size}/{overlap}, average map", **scores(filtered_map(average, d_g, args.resolution).data)},
        ]
    rows += [
        {"map": f"tiles {size}/{overlap}", **scores(filtered_map(generate_map(
            structure, generator.network, generator.metadata, like=experimental,
            tiling=TilingOptions(tile_size=size, overlap=overlap)), d_g, args.resolution).data)}
        for size, overlap in TILINGS
    ]
    rows += [{"map": f"molmap {r:g} Å", **scores(molmap(r))} for r in (args.resolution - 1, args.resolution, args.resolution + 1)]
    print(f"{args.pair}, target filtered from {entry.reported_resolution_A:g} to {args.resolution:g} Å")
    print(f"{'map':<34}" + "".join(f"{name:>18}" for name in SCORES))
    for row in rows:
        print(f"{row['map']:<34}" + "".join(f"{row[name]:>18.3f}" for name in SCORES))
    write_json_atomically(Path(args.json), {"pair": args.pair, "resolution": args.resolution, "rows": rows})
    print(f"wrote {args.json}")
    return 0


def shifted_tiles_output(structure, generator, experimental: DensityMap, tiling: TilingOptions, shift: int) -> DensityMap:
    """The generator's raw output on ``experimental``'s grid with its tile grid moved by ``shift``
    voxels along each axis: generated on the 1 Å grid of the map extended by ``shift`` voxels at
    the low faces, then resampled onto the map's grid (as :func:`generate_map` with ``like``)."""
    fine = experimental.grid.resampled_isotropic(float(generator.metadata["voxel_size"]))
    extended = Grid(tuple(n + shift for n in fine.shape), fine.voxel_size, fine.origin - shift * fine.voxel_size)
    like = DensityMap.from_grid(np.zeros(extended.shape, np.float32), extended)
    generated = generate_map(structure, generator.network, generator.metadata, like=like, tiling=tiling)
    return resample_map(generated, experimental.grid)


if __name__ == "__main__":
    raise SystemExit(main())
