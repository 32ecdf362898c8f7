"""The differentiable density renderer.

High level: :func:`render_structure` (a :class:`cryomaps.io.Structure` on a grid; as a numpy
array without gradients: :func:`render_structure_array`) and :func:`render_density` (tensors;
batched over a leading dimension), configured by :class:`DensityModelConfig` (models ``molmap``
and ``peng``, resolution, sampling; plain-dict form :meth:`DensityModelConfig.to_dict`), and the
struc2map generator's input, :func:`network_input`. Low level: the
``cryomaps::gaussian_sum`` custom op (:func:`gaussian_sum`), a differentiable sum of isotropic
Gaussians with CPU (torch) and CUDA (Triton) implementations. Conventions: Å, arrays indexed
(x, y, z), see :mod:`cryomaps.io.grid`.
"""

from cryomaps.render.density import (
    MOLMAP_SIGMA_FACTOR,
    DensityModelConfig,
    density_cutoff_radii,
    min_max,
    network_input,
    render_density,
    render_structure,
    render_structure_array,
)
from cryomaps.render.form_factors import (
    b_factor_to_variance,
    peng_coefficients,
    variance_to_b_factor,
)
from cryomaps.render.ops import gaussian_sum

__all__ = [
    "MOLMAP_SIGMA_FACTOR",
    "DensityModelConfig",
    "b_factor_to_variance",
    "density_cutoff_radii",
    "gaussian_sum",
    "min_max",
    "network_input",
    "peng_coefficients",
    "render_density",
    "render_structure",
    "render_structure_array",
    "variance_to_b_factor",
]
