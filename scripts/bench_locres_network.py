"""Benchmark the CryoRes network against the trivial predictor and the classical local FSC.

On held-out synthetic maps (seeds never used in training; one structure, 5fuu_2494res, never seen
in training; some maps at other voxel sizes than the network's 1 Å), scores inside the true
molecular mask:

- ``network``: RMSE (Å) of the network's global + relative resolution from the full map
  (``estimate``, before its own masking, so that mask errors are scored separately by the IoU);
- ``network_in_both``: the same over voxels inside both the true and the predicted mask;
- ``trivial``: RMSE of the true global resolution (median of the truth inside the mask) everywhere
  (an oracle: a single-map method has to estimate that number);
- ``network_constant``: RMSE of the network's own global resolution (median inside its mask)
  everywhere: what the local head adds over the global estimate;
- ``classical``: RMSE of the windowed local FSC of the two half maps, given the true mask;
- ``mask_iou``: IoU of the predicted and the true mask.

Also times ``cryomaps locres MAP.mrc`` (single-map mode, CPU) on a 220³ map (1rb8_645res at 0.6 Å
voxels). Prints a table and writes ``bench_results/locres_network.json``::

    python scripts/bench_locres_network.py [--ckpt cryomaps/weights/cryores_small.pt] [--skip-timing]

Inference settings (``--overlap``) are chosen on ``--cases validation`` (the same kinds of maps with
other seeds, ``--out`` elsewhere), never on the test maps. Also writes a slice figure of test map
``FIGURE_MAP`` (``--figure``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = [  # (structure, seed, voxel size Å)
    ("helix_bundle", 900001, 1.0),
    ("helix_bundle", 900002, 1.2),
    ("example_peptide", 900003, 1.0),
    ("2va0A_99res.pdb.gz", 900004, 1.0),
    ("1rb8_645res.pdb", 900005, 1.0),
    ("1rb8_645res.pdb", 900006, 0.9),
    ("5fuu_2494res.pdb", 900007, 1.0),
    ("helix_bundle", 900008, 0.8),
    ("example_peptide", 900009, 1.3),
    ("2va0A_99res.pdb.gz", 900010, 1.4),
    ("1rb8_645res.pdb", 900011, 1.1),
    ("5fuu_2494res.pdb", 900012, 1.3),
]
FIGURE_MAP = 4  # 1rb8_645res, 1 Å voxels
VALIDATION = [(structure, seed - 100000, voxel_size) for structure, seed, voxel_size in HELD_OUT]
"""For choosing inference settings (``--cases validation``): the same kinds of maps, other seeds."""
TIMING_SHAPE, TIMING_VOXEL = (220, 220, 220), 0.6


def score_map(
    structure: str, seed: int, voxel_size: float, network, metadata: dict, figure: str | None = None, overlap: int | None = None
) -> dict:
    """Scores (Å, IoU, seconds) of the network, the trivial predictor and the classical estimator on one map;
    with ``figure``, also a PNG of central slices of the map, the truth and both estimates inside the true mask."""
    from cryomaps.signal.local_fsc import local_resolution
    from cryomaps.data.synthetic import synthetic_example
    from cryomaps.inference.locres_network import predict_local_resolution
    from cryomaps.metrics import local_resolution_rmse, mask_iou

    example = synthetic_example(structure, seed, voxel_size=voxel_size)
    truth, inside = example.true_locres.data, example.mask.data > 0.5
    predicted = predict_local_resolution(example.full, network, metadata, overlap=overlap, device="cpu")
    started = time.perf_counter()
    classical = local_resolution(example.half1, example.half2, inside, device="cpu")
    classical_seconds = time.perf_counter() - started
    trivial = np.full_like(truth, np.median(truth[inside]))
    in_both = inside & (predicted.mask.data > 0.5)
    if figure is not None:
        from cryomaps.metrics.figures import save_local_resolution_slices

        estimates = {"truth": truth, "network (one map)": predicted.estimate.data, "local FSC (half maps)": classical}
        save_local_resolution_slices(figure, example.full, estimates, inside)
    return {
        "structure": structure, "seed": seed, "voxel_size": voxel_size, "shape": list(truth.shape),
        "field": example.metadata["field"], "finest_b_factor": round(example.metadata["finest_b_factor"], 1),
        "true_global": float(np.median(truth[inside])), "true_spread": float(truth[inside].std()),
        "network_global": predicted.median,
        "network": local_resolution_rmse(predicted.estimate, truth, inside),
        "network_in_both": local_resolution_rmse(predicted.estimate, truth, in_both),
        "trivial": local_resolution_rmse(trivial, truth, inside),
        "network_constant": local_resolution_rmse(np.full_like(truth, predicted.median), truth, inside),
        "classical": local_resolution_rmse(classical, truth, inside),
        "mask_iou": float(mask_iou(predicted.mask.data, inside)),
        "network_seconds": predicted.seconds, "classical_seconds": classical_seconds,
    }


def time_single_map_command(ckpt: str) -> dict:
    """Wall time (s) of ``cryomaps locres MAP.mrc`` on a 220³ map at 0.6 Å (CPU)."""
    from cryomaps.cli import main as cli_main
    from cryomaps.data.synthetic import synthetic_example
    from cryomaps.io import Grid, resample_map, write_map

    example = synthetic_example("1rb8_645res.pdb", 900100, voxel_size=1.0)
    centre = example.grid.origin + (np.asarray(example.grid.shape) - 1) * example.grid.voxel_size / 2
    origin = centre - (np.asarray(TIMING_SHAPE) - 1) * TIMING_VOXEL / 2
    fine = resample_map(example.full, Grid(TIMING_SHAPE, TIMING_VOXEL, origin))
    with tempfile.TemporaryDirectory() as folder:
        map_path = write_map(Path(folder) / "map.mrc", fine)
        started = time.perf_counter()
        status = cli_main(["locres", str(map_path), "-o", f"{folder}/locres.mrc", "--mask-out", f"{folder}/mask.mrc",
                           "--ckpt", ckpt, "--device", "cpu"])
        seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"cryomaps locres failed with status {status}")
    return {"shape": list(TIMING_SHAPE), "voxel_size": TIMING_VOXEL, "seconds": seconds}


def print_table(rows: list[dict]) -> None:
    columns = ["structure", "voxel_size", "field", "true_global", "network_global", "network", "network_in_both",
               "network_constant", "trivial", "classical", "mask_iou"]
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns))


def main() -> int:
    import torch

    from cryomaps.io.weights import bundled_weights_path
    from cryomaps.models.weights import load_network

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=str(bundled_weights_path("cryores")))
    parser.add_argument("--out", default=str(REPO / "bench_results" / "locres_network.json"))
    parser.add_argument("--figure", default=str(REPO / "scripts" / "figures" / "locres_network.png"),
                        help=f"central slices of held-out map {FIGURE_MAP} ({HELD_OUT[FIGURE_MAP][0]}) and its estimates")
    parser.add_argument("--cases", choices=("test", "validation"), default="test",
                        help="held-out test maps, or validation maps (other seeds) for choosing settings")
    parser.add_argument("--overlap", type=int, default=None, help="tile overlap in voxels (default: the inference default)")
    parser.add_argument("--skip-timing", action="store_true", help="do not time the 220³ single-map command")
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = load_network(args.ckpt, "cryores")
    cases = HELD_OUT if args.cases == "test" else VALIDATION
    figure = args.figure if args.cases == "test" else None
    rows = [score_map(*case, loaded.network, loaded.metadata, figure if index == FIGURE_MAP else None, args.overlap)
            for index, case in enumerate(cases)]
    scores = ("network", "network_in_both", "network_constant", "trivial", "classical", "mask_iou")
    means = {key: float(np.mean([row[key] for row in rows])) for key in scores}
    print_table(rows)
    print("mean | " + " | ".join(f"{key} {value:.2f}" for key, value in means.items()))
    wins = sum(row["network"] < row["trivial"] for row in rows)
    print(f"network RMSE below the trivial predictor's on {wins} of {len(rows)} maps")
    result = {"ckpt": args.ckpt, "cases": args.cases, "overlap": args.overlap, "maps": rows, "mean": means, "maps_network_below_trivial": wins,
              "network_beats_trivial": means["network"] < means["trivial"]}
    if not args.skip_timing:
        result["timing_220"] = time_single_map_command(args.ckpt)
        print(f"cryomaps locres on a 220³ map at 0.6 Å (CPU): {result['timing_220']['seconds']:.1f} s")
    from cryomaps.io.atomic import write_json_atomically

    out = Path(args.out)
    write_json_atomically(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
