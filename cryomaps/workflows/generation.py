"""A generator's map at a requested resolution: the one code path of ``cryomaps generate --resolution R``
and of the evaluation report's ``generator`` method (:mod:`cryomaps.workflows.report`).

- A resolution-conditioned generator is conditioned on R.
- The generator's raw output is taken to be a map at its output resolution d_g
  (:func:`output_resolution`) and, when R is coarser, low-pass filtered from d_g to R with the filter
  that made the coarser reference maps (:func:`cryomaps.signal.low_pass_to_resolution`, Gaussian
  σ = 0.225·√(R² − d_g²)). A finer R, or none, leaves the output as it is (it cannot be sharpened).
  d_g is the one the weights' metadata records (``output_resolution``):
  - the bundled generator's is measured (:func:`measured_output_resolution`: the median FSC-free
    resolution estimate of its raw output on its training pairs);
  - a conditioned generator trained through the filter records the one it was trained with
    (``task.output_resolution``, :class:`cryomaps.tasks.struc2map.Struc2MapTask`).
  Weights that record none: an unconditioned generator is taken to output maps at
  :data:`UNCONDITIONED_OUTPUT_RESOLUTION`; a conditioned one to output maps at R (never filtered).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cryomaps.config import check_positive_number
from cryomaps.data.manifest import ManifestEntry
from cryomaps.errors import InputError
from cryomaps.inference.generate import TilingOptions, estimated_resolution, generate_map
from cryomaps.io import DensityMap, Structure, read_map, read_structure
from cryomaps.models.weights import LoadedNetwork
from cryomaps.signal import filtered_map
from cryomaps.signal.resolution import ResolutionEstimateError

UNCONDITIONED_OUTPUT_RESOLUTION = 3.2
"""Å: the output resolution taken for an unconditioned generator whose weights record none (weights
written before output resolutions were measured; the bundled generator's targets were mostly
3.2 Å maps). The bundled generator records its measured one (4.3 Å: README "Generate")."""


def output_resolution(loaded: LoadedNetwork) -> float | None:
    """Å: the resolution the generator's raw output is taken to have (module docstring): the one its
    weights' metadata records, else :data:`UNCONDITIONED_OUTPUT_RESOLUTION` for an unconditioned
    generator and ``None`` for a conditioned one (it outputs maps at the requested resolution).

    Raises:
        InputError: the recorded one is not a positive number.
    """
    stored = loaded.metadata.get("output_resolution")
    if stored is None:
        return None if loaded.network.resolution_conditioned else UNCONDITIONED_OUTPUT_RESOLUTION
    return check_positive_number("generator weights metadata output_resolution", stored, "Å")


GENERATE_OPTION_NAMES = {"tile_size": "--tile-size", "overlap": "--overlap"}
"""How ``cryomaps generate`` spells the tiling settings in its messages (:func:`check_generator`)."""


def check_generator(loaded: LoadedNetwork, weights, tiling: TilingOptions,
                    option_names: Mapping[str, str] = GENERATE_OPTION_NAMES) -> None:
    """Refuse generator weights without the metadata that prepares their input or with an unusable
    output resolution, and blend tiles the generator cannot take.

    Args:
        loaded: the generator and its weights file's metadata.
        weights: the weights file, named in the messages.
        tiling: how the generator is to run.
        option_names: how the user spelled ``tile_size`` and ``overlap`` (``--tile-size``, or
            ``tiling.tile_size`` in a config).

    Raises:
        InputError: one line naming the weights file or the option.
    """
    missing = [key for key in ("voxel_size", "input") if key not in loaded.metadata]
    if missing:
        raise InputError(weights, f"generator weights lack the metadata {', '.join(missing)}")
    try:
        output_resolution(loaded)
    except InputError as error:
        raise InputError(weights, error.problem) from None
    if tiling.mode != "blend":
        return
    tile_size, overlap, stride = option_names["tile_size"], option_names["overlap"], loaded.network.stride
    if tiling.tile_size < 1 or tiling.tile_size % stride:
        raise InputError(None, f"{tile_size} must be a positive multiple of the generator's stride {stride}, got {tiling.tile_size}")
    if not 0 <= tiling.overlap < tiling.tile_size:
        raise InputError(None, f"{overlap} must be at least 0 and smaller than {tile_size} {tiling.tile_size}, got {tiling.overlap}")


def measured_output_resolution(loaded: LoadedNetwork, pairs: Sequence[ManifestEntry], resolution: float | None = None) -> float:
    """Å: the median over ``pairs`` of the FSC-free resolution estimate
    (:func:`cryomaps.inference.generate.estimated_resolution`) of the generator's raw output on each
    pair's map grid (conditioned on ``resolution`` for a conditioned generator); pairs whose output
    gives no estimate are left out.

    Raises:
        InputError: no pair gives an estimate.
    """
    estimates = []
    for entry in pairs:
        structure = read_structure(entry.model_path, remove_waters=True, remove_hydrogens=True)
        generated = generate_map(structure, loaded.network, loaded.metadata, like=read_map(entry.map_path), resolution=resolution)
        try:
            estimates.append(estimated_resolution(generated, structure))
        except ResolutionEstimateError:
            continue
    if not estimates:
        raise InputError(None, f"none of the {len(pairs)} pairs gives an estimate of the generator's output resolution")
    return float(np.median(estimates))


def filters_output(loaded: LoadedNetwork, resolution: float | None) -> bool:
    """Whether :func:`generate_at_resolution` low-pass filters the generator's output to
    ``resolution``: when the generator has an output resolution and ``resolution`` is coarser."""
    native = output_resolution(loaded)
    return native is not None and resolution is not None and resolution > native


def generate_at_resolution(
    structure: Structure,
    loaded: LoadedNetwork,
    resolution: float | None,
    padding: float = 8.0,
    like: DensityMap | None = None,
    tiling: TilingOptions | None = None,
) -> DensityMap:
    """The generator's map of ``structure`` at ``resolution`` Å (module docstring).

    Args:
        structure: the model.
        loaded: the generator and its weights file's metadata.
        resolution: target resolution (Å); required by a conditioned generator; ``None``: an
            unconditioned generator's output as it is.
        padding: Å of space around the model (ignored with ``like``).
        like: put the map on this map's grid.
        tiling: how the generator runs over the map.
    """
    generated = generate_map(structure, loaded.network, loaded.metadata, padding, like, resolution, tiling)
    return filtered_map(generated, output_resolution(loaded), resolution) if filters_output(loaded, resolution) else generated
