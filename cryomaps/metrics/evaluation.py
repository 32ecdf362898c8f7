"""One call that scores a predicted map against a reference map with every applicable metric."""

from __future__ import annotations

from cryomaps.metrics.correlation import masked_correlation
from cryomaps.metrics.fsc import fourier_shell_correlation, map_model_fsc
from cryomaps.metrics.masks import soft_atom_mask
from cryomaps.metrics.published import chimerax_correlation, struc2mapgan_pearson, struc2mapgan_ssim
from cryomaps.metrics.volumes import align_to_reference, as_density_map

FSC_THRESHOLDS = {"0.5": 0.5, "0.143": 0.143}


def evaluate_maps(pred, ref, model_coords=None, model_map=None, mask_radius: float = 3.0) -> dict[str, float]:
    """Score ``pred`` against ``ref``.

    ``pred`` is resampled trilinearly onto ``ref``'s grid (:func:`align_to_reference`) for every
    metric except the ChimeraX correlations, which interpolate the original ``pred`` at ``ref``'s
    voxels themselves.

    Args:
        pred: the map to score (DensityMap; an array or tensor is taken to lie on ``ref``'s grid).
        ref: the reference map (DensityMap, or array with 1 Å voxels).
        model_coords: optional (N, 3) atom positions (Å) of the model fitted in ``ref``.
        model_map: optional map rendered from that model (DensityMap on any grid, or array/tensor
            on ``ref``'s grid).
        mask_radius: Å around atoms for the masked correlation and the map-model FSC mask.

    Returns:
        Plain floats, keyed (resolutions in Å):
        ``ssim``, ``pearson`` (struc2mapGAN preprocessing), ``corr_about_zero``,
        ``corr_about_mean`` (ChimeraX, 1 % contour of ``ref``), ``fsc_0.5_A``, ``fsc_0.143_A``
        (pred vs ref); with ``model_coords``: ``masked_corr``; with ``model_map``:
        ``map_model_fsc_0.5_A``, ``map_model_fsc_0.143_A`` (pred vs model) and
        ``ref_map_model_fsc_0.5_A``, ``ref_map_model_fsc_0.143_A`` (ref vs model, for scale),
        inside a soft mask around the atoms when ``model_coords`` is also given.
    """
    ref_map = as_density_map(ref)
    pred_map = as_density_map(pred, ref_map.grid)
    aligned = align_to_reference(pred_map, ref_map)
    chimerax = chimerax_correlation(ref_map, pred_map)
    scores = {
        "ssim": struc2mapgan_ssim(aligned, ref_map),
        "pearson": struc2mapgan_pearson(aligned, ref_map),
        "corr_about_zero": chimerax.about_zero,
        "corr_about_mean": chimerax.about_mean,
    }
    if model_coords is not None:
        scores["masked_corr"] = masked_correlation(aligned, ref_map, model_coords, mask_radius)
    scores.update(_resolutions("fsc", fourier_shell_correlation(aligned, ref_map)))
    if model_map is not None:
        mask = None if model_coords is None else soft_atom_mask(model_coords, ref_map.grid, mask_radius)
        model_on_ref = align_to_reference(as_density_map(model_map, ref_map.grid), ref_map)
        scores.update(_resolutions("map_model_fsc", map_model_fsc(aligned, model_on_ref, mask)))
        scores.update(_resolutions("ref_map_model_fsc", map_model_fsc(ref_map, model_on_ref, mask)))
    return scores


def _resolutions(prefix: str, curve) -> dict[str, float]:
    """``{prefix}_{threshold}_A`` resolutions (Å) of an FSC curve at the standard thresholds."""
    return {f"{prefix}_{name}_A": curve.resolution_at(value) for name, value in FSC_THRESHOLDS.items()}
