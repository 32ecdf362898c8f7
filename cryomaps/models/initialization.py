"""Weight initialisation of the published struc2mapGAN training."""

from __future__ import annotations

from torch import nn

PUBLISHED_CONV_WEIGHT_STD = 0.01


def init_published_weights(module: nn.Module) -> None:
    """Initialise every ``Conv3d`` in ``module`` in place: weights N(0, 0.01), biases 0.

    This is the struc2mapGAN rule for both generator and discriminator. Linear layers, PReLU slopes
    and (affine) norms keep PyTorch's defaults, as in the published training code.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv3d):
            nn.init.normal_(layer.weight, mean=0.0, std=PUBLISHED_CONV_WEIGHT_STD)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
