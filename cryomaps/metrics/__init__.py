"""Map-comparison metrics: the struc2mapGAN ones reproduced exactly, and better-founded ones.

- Published (:mod:`cryomaps.metrics.published`): :func:`struc2mapgan_ssim`,
  :func:`struc2mapgan_pearson`, :func:`chimerax_correlation` (about zero and about mean).
- Correlations and masks: :func:`masked_correlation`, :func:`atom_mask`, :func:`soft_atom_mask`,
  :func:`mask_iou`.
- Resolution: :func:`fourier_shell_correlation`, :func:`map_model_fsc` (:class:`FSCCurve` with
  crossings in Å), :func:`local_resolution_rmse`.
- :func:`evaluate_maps`: all of the above for one predicted/reference pair, as plain floats.
- Figures live in :mod:`cryomaps.metrics.figures` (imports matplotlib lazily).

Maps are (x, y, z) arrays or :class:`cryomaps.io.DensityMap`; lengths are in Å.
"""

from cryomaps.metrics.correlation import correlation_about_mean, correlation_about_zero, masked_correlation
from cryomaps.metrics.evaluation import evaluate_maps
from cryomaps.metrics.fsc import FSCCurve, fourier_shell_correlation, map_model_fsc
from cryomaps.metrics.local_resolution import local_resolution_rmse
from cryomaps.metrics.masks import atom_mask, mask_iou, soft_atom_mask
from cryomaps.metrics.published import (
    ChimeraXCorrelation,
    chimerax_correlation,
    contour_level_enclosing,
    struc2mapgan_pearson,
    struc2mapgan_preprocess,
    struc2mapgan_ssim,
)
from cryomaps.metrics.volumes import align_to_reference

__all__ = [
    "ChimeraXCorrelation",
    "FSCCurve",
    "align_to_reference",
    "atom_mask",
    "chimerax_correlation",
    "contour_level_enclosing",
    "correlation_about_mean",
    "correlation_about_zero",
    "evaluate_maps",
    "fourier_shell_correlation",
    "local_resolution_rmse",
    "map_model_fsc",
    "mask_iou",
    "masked_correlation",
    "soft_atom_mask",
    "struc2mapgan_pearson",
    "struc2mapgan_preprocess",
    "struc2mapgan_ssim",
]
