"""Pure math on map tensors: Fourier-space filters, the windowed local FSC (no files, no training)."""

from cryomaps.signal.lowpass import degradation_sigma, gaussian_low_pass, low_pass_to_resolution

__all__ = ["degradation_sigma", "gaussian_low_pass", "low_pass_to_resolution"]
