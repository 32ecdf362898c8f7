"""A generator's map at a requested resolution: the one code path of ``cryomaps generate --resolution R``
and of the evaluation report's ``generator`` method (:mod:`cryomaps.workflows.report`).

- A resolution-conditioned generator is conditioned on R.
- The generator's raw output is taken to be a map at its output resolution d_g
  (:func:`output_resolution`) and, when R is coarser, low-pass filtered from d_g to R with the filter
  that made the coarser reference maps (:func:`cryomaps.signal.low_pass_to_resolution`, Gaussian
  σ = 0.225·√(R² − d_g²)). A finer R, or none, leaves the output as it is (it cannot be sharpened).
  - An unconditioned generator: d_g = :data:`UNCONDITIONED_OUTPUT_RESOLUTION`.
  - A conditioned generator trained through that filter (``task.output_resolution``,
    :class:`cryomaps.tasks.struc2map.Struc2MapTask`): the d_g its weights' metadata records.
  - A conditioned generator trained to output maps at R directly: none (never filtered).
"""

from __future__ import annotations

from cryomaps.inference.generate import TilingOptions, generate_map
from cryomaps.io import DensityMap, Structure
from cryomaps.models.weights import LoadedNetwork
from cryomaps.signal import filtered_map

UNCONDITIONED_OUTPUT_RESOLUTION = 3.2
"""Å: the resolution an unconditioned generator's output is taken to have. The bundled generator's
training targets are mostly 3.2 Å maps, as are its two held-out pairs. On those pairs filtered to 5, 8
and 12 Å, filtering its output from 3.2 Å scores at least as well as treating the output as sharp
(σ = 0.225·R) in 22 of the 24 cells of SSIM, Pearson and both ChimeraX correlations (the other two:
corr. about zero on EMD-21457 at 5 and 8 Å, lower by 0.007 and 0.001)."""


def output_resolution(loaded: LoadedNetwork) -> float | None:
    """Å: the resolution the generator's raw output is taken to have (module docstring), ``None`` for
    a conditioned generator that outputs maps at the requested resolution itself."""
    if not loaded.network.resolution_conditioned:
        return UNCONDITIONED_OUTPUT_RESOLUTION
    stored = loaded.metadata.get("output_resolution")
    return None if stored is None else float(stored)


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
    if not filters_output(loaded, resolution):
        return generated
    return filtered_map(generated, output_resolution(loaded), resolution)
