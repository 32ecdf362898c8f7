"""Pure math on map tensors (no files, no training): Fourier-space filters (:mod:`.lowpass`), Fourier
shells, the FSC and its one crossing rule (:mod:`.fourier_shells`), the raised cosine (:mod:`.windows`),
the windowed local FSC (:mod:`.local_fsc`) and the spectral resolution estimate (:mod:`.resolution`)."""

from cryomaps.signal.lowpass import degradation_sigma, filtered_map, gaussian_low_pass, low_pass_patches, low_pass_to_resolution

__all__ = ["degradation_sigma", "filtered_map", "gaussian_low_pass", "low_pass_patches", "low_pass_to_resolution"]
