"""Networks only (no training logic, no file parsing): the struc2map U-Net++ generator, its
discriminator and the CryoRes local-resolution network, plus factories and the published init.

Spatial tensors are (B, C, X, Y, Z), indexed (x, y, z).
"""

from cryomaps.models.cryores import (
    CryoResNet,
    CryoResOutput,
    global_resolution_bins,
    local_resolution_map,
    relative_resolution_bins,
    soft_argmax,
)
from cryomaps.models.discriminator import Discriminator3d
from cryomaps.models.initialization import init_published_weights
from cryomaps.models.registry import build_cryores, build_discriminator, build_generator, build_network
from cryomaps.models.unetpp import UNetPlusPlus3d

__all__ = [
    "CryoResNet",
    "CryoResOutput",
    "Discriminator3d",
    "UNetPlusPlus3d",
    "build_cryores",
    "build_discriminator",
    "build_generator",
    "build_network",
    "global_resolution_bins",
    "init_published_weights",
    "local_resolution_map",
    "relative_resolution_bins",
    "soft_argmax",
]
