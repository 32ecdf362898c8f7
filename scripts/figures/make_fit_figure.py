"""README figure: EMD-3488 with 5NI1 moved away (15° + 5 Å), then fitted back by ``cryomaps fit``.

Left: a central z-slab of the map with the atoms within 2 Å of the slab before the fit (red) and
after (blue) over the deposited ones (white). Right: masked correlation per macro-cycle of
``cryomaps refine --refine adp`` from B = 60 Å² everywhere.

    python scripts/figures/make_fit_figure.py [--out scripts/figures/fit_refine_emd3488.png]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np


def main() -> None:
    from cryomaps.data_root import find_data_root
    from cryomaps.fit import FitOptions, fit_local
    from cryomaps.fit.pose import random_rotation, rmsd
    from cryomaps.fit.refine import RefineOptions, masked_correlation, refine
    from cryomaps.io import read_map, read_structure
    from cryomaps.metrics.figures import _new_figure, _save_png

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="scripts/figures/fit_refine_emd3488.png")
    args = parser.parse_args()
    pair = find_data_root() / "pairs/EMD-3488_hemoglobin"
    structure = read_structure(pair / "5ni1.cif")
    density_map = read_map(pair / "emd_3488.mrc")
    centre = structure.coords.mean(axis=0)
    rng = np.random.default_rng(1)
    start = (structure.coords - centre) @ random_rotation(rng, 15.0).T + centre + np.array([5.0, 0.0, 0.0])
    fit = fit_local(structure, density_map, FitOptions(resolution=3.2), coords=start)
    flat = replace(structure, b_factors=np.full(structure.n_atoms, 60.0))
    refined = refine(flat, density_map, RefineOptions(resolution=3.2, modes=("adp",), cycles=4, iterations=6))

    figure = _new_figure(10.0, 4.4, 110)
    slab, scores = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    k = density_map.data.shape[2] // 2
    z = density_map.origin[2] + k * density_map.voxel_size[2]
    extent = [density_map.origin[0], density_map.origin[0] + density_map.grid.extent[0],
              density_map.origin[1], density_map.origin[1] + density_map.grid.extent[1]]
    plane = density_map.data[:, :, k].T
    slab.imshow(plane, origin="lower", cmap="gray", extent=extent, vmin=np.percentile(plane, 1), vmax=np.percentile(plane, 99.7))
    for coords, colour, label in ((structure.coords, "white", "deposited"), (start, "red", f"start ({rmsd(start, structure.coords):.1f} Å)"),
                                  (fit.coords, "deepskyblue", f"fitted ({rmsd(fit.coords, structure.coords):.2f} Å)")):
        near = np.abs(coords[:, 2] - z) < 2.0
        slab.scatter(coords[near, 0], coords[near, 1], s=3, c=colour, label=label)
    slab.set_title(f"EMD-3488 z = {z:.0f} Å, 5NI1 fit: score {fit.score_before:.2f} → {fit.score_after:.2f}", fontsize=9)
    slab.legend(fontsize=7, loc="upper right")
    slab.set_xlabel("x (Å)")
    slab.set_ylabel("y (Å)")
    values = [refined.correlation_before] + [cycle["correlation"] for cycle in refined.cycles]
    scores.plot(range(len(values)), values, marker="o", label="cryomaps refine --refine adp")
    deposited = masked_correlation(structure, density_map, RefineOptions(resolution=3.2))
    scores.axhline(deposited, color="gray", linestyle="--", label="deposited B")
    pearson = np.corrcoef(refined.b_factors, structure.b_factors)[0, 1]
    scores.set_title(f"ADP from B = 60: Pearson with deposited B {pearson:.3f}", fontsize=9)
    scores.set_xticks(range(len(values)))
    scores.set_xlabel("macro-cycle")
    scores.set_ylabel("masked map-model correlation")
    scores.legend(fontsize=7)
    scores.grid(alpha=0.3)
    figure.tight_layout()
    print(f"wrote {_save_png(figure, args.out)}")


if __name__ == "__main__":
    main()
