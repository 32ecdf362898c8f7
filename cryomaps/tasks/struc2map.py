"""struc2map GAN training (struc2mapGAN method): simulated map → experimental-like map.

Losses (published): generator ``SmoothL1(G(x), y) + λ·BCE(D(G(x)), 1)`` with λ = 0.01;
discriminator ``½[BCE(D(y), 1) + BCE(D(G(x)), 0)]``. NAdam (lr 1e-4, betas 0.9/0.999) for both
networks, each with its own ReduceLROnPlateau fed its *own* validation loss (the published code fed
both losses to both schedulers). Manual optimisation: one discriminator step then one generator
step per batch.

Batches are dicts with ``input`` and ``target`` tensors of shape (B, 1, X, Y, Z) and optionally
``resolution`` (B,) in Å for a resolution-conditioned generator.

Output resolution (``output_resolution`` d_g, a resolution-conditioned generator only): the
generator's raw output is read as a map at d_g and low-pass filtered from d_g to each target's
resolution R before the losses (:func:`cryomaps.signal.low_pass_patches`, the filter that made the
coarser targets), as ``cryomaps generate`` filters it (:mod:`cryomaps.workflows.generation`; d_g is
stored in the weights' metadata). The conditioning then only adapts the content, not the blur, and
a coarser R always gives a blurrier map.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from cryomaps.models import build_discriminator, build_generator, init_published_weights
from cryomaps.signal import low_pass_patches
from cryomaps.tasks.logging import log_slice_panel
from cryomaps.tasks.losses import batch_pearson


class Struc2MapTask(L.LightningModule):
    """GAN training of the U-Net++ generator against the 3-D discriminator.

    Args:
        generator: plain-Python hyperparameters of :func:`cryomaps.models.build_generator`.
        discriminator: hyperparameters of :func:`cryomaps.models.build_discriminator`.
        adversarial_weight: λ, weight of the adversarial BCE in the generator loss.
        smooth_l1_beta: β of the SmoothL1 reconstruction loss (in normalised map units).
        learning_rate: NAdam learning rate of both networks.
        betas: NAdam betas.
        scheduler_factor / scheduler_patience: ReduceLROnPlateau settings (patience in epochs).
        published_init: initialise conv weights N(0, 0.01) as in the published code.
        frozen_prefixes: parameter-name prefixes kept frozen (fine-tuning), e.g. ["generator.nodes.x0_0"].
        metadata: how inputs are prepared (``input`` render options, ``voxel_size`` Å); stored with
            the checkpoint and the exported weights so that generation renders inputs as in training.
        output_resolution: Å, d_g of the module docstring (``None``: the output is used as it is).
    """

    def __init__(
        self,
        generator: dict[str, Any],
        discriminator: dict[str, Any],
        adversarial_weight: float = 0.01,
        smooth_l1_beta: float = 1.0,
        learning_rate: float = 1e-4,
        betas: tuple[float, float] | list[float] = (0.9, 0.999),
        scheduler_factor: float = 0.5,
        scheduler_patience: int = 15,
        published_init: bool = True,
        frozen_prefixes: list[str] | None = None,
        metadata: dict | None = None,
        output_resolution: float | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = build_generator(**generator)
        self.discriminator = build_discriminator(**discriminator)
        if published_init:
            init_published_weights(self)
        freeze_parameters(self, frozen_prefixes or [])
        if output_resolution is not None and not (output_resolution > 0 and self.conditioned):
            raise ValueError("output_resolution needs a resolution-conditioned generator and a value > 0 Å, "
                             f"got {output_resolution} (resolution_conditioning={self.conditioned})")

    def on_fit_start(self) -> None:
        """Record how the training inputs were made (from the DataModule) in the hyperparameters,
        so checkpoints and exported weights carry them to ``cryomaps generate``."""
        datamodule = self.trainer.datamodule
        if hasattr(datamodule, "input_metadata"):
            self.hparams["metadata"] = datamodule.input_metadata()
        if self.hparams.output_resolution is not None:
            self.hparams["metadata"] = {**(self.hparams["metadata"] or {}), "output_resolution": self.hparams.output_resolution}

    @property
    def conditioned(self) -> bool:
        return self.generator.resolution_conditioned

    def forward(self, simulated: torch.Tensor, resolution: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, X, Y, Z) simulated map [+ (B,) resolution in Å] → experimental-like map."""
        return self.generator(simulated, resolution if self.conditioned else None)

    def _generate(self, batch: dict) -> torch.Tensor:
        """The generator's map of the batch, at each target's resolution (module docstring)."""
        generated = self(batch["input"], batch.get("resolution"))
        if self.hparams.output_resolution is None:
            return generated
        voxel_size = self.hparams["metadata"]["voxel_size"]
        return low_pass_patches(generated, voxel_size, self.hparams.output_resolution, batch["resolution"])

    def generator_loss(self, fake: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(total, reconstruction) generator losses for generated and experimental patches."""
        reconstruction = F.smooth_l1_loss(fake, target, beta=self.hparams.smooth_l1_beta)
        fooled = self.discriminator(fake)
        adversarial = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        return reconstruction + self.hparams.adversarial_weight * adversarial, reconstruction

    def discriminator_loss(self, fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        real_logits, fake_logits = self.discriminator(target), self.discriminator(fake.detach())
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        false = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return 0.5 * (real + false)

    def training_step(self, batch: dict, batch_index: int) -> None:
        generator_optimizer, discriminator_optimizer = self.optimizers()
        fake = self._generate(batch)

        loss_d = self.discriminator_loss(fake, batch["target"])
        discriminator_optimizer.zero_grad()
        self.manual_backward(loss_d)
        discriminator_optimizer.step()

        loss_g, reconstruction = self.generator_loss(fake, batch["target"])
        generator_optimizer.zero_grad()
        self.manual_backward(loss_g)
        generator_optimizer.step()

        batch_size = len(batch["input"])
        self.log_dict(
            {"train/loss_g": loss_g, "train/loss_d": loss_d, "train/reconstruction": reconstruction},
            prog_bar=True, batch_size=batch_size,
        )

    def validation_step(self, batch: dict, batch_index: int) -> None:
        fake = self._generate(batch)
        loss_g, reconstruction = self.generator_loss(fake, batch["target"])
        loss_d = self.discriminator_loss(fake, batch["target"])
        pearson = batch_pearson(fake, batch["target"]).mean()
        batch_size = len(batch["input"])
        self.log_dict(
            {"val/loss_g": loss_g, "val/loss_d": loss_d, "val/reconstruction": reconstruction, "val/pearson": pearson},
            prog_bar=True, batch_size=batch_size, sync_dist=True,
        )
        if batch_index == 0:
            self._log_central_slices(batch, fake)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        metrics = self.trainer.callback_metrics
        generator_scheduler, discriminator_scheduler = self.lr_schedulers()
        if "val/loss_g" in metrics:
            generator_scheduler.step(metrics["val/loss_g"])
        if "val/loss_d" in metrics:
            discriminator_scheduler.step(metrics["val/loss_d"])

    def _log_central_slices(self, batch: dict, fake: torch.Tensor) -> None:
        """Central z-slices of input, generated and target patch 0, to whichever logger takes images."""
        volumes = {"input": batch["input"][0, 0], "generated": fake[0, 0], "target": batch["target"][0, 0]}
        log_slice_panel(self, "val/slices", volumes)

    def exported_networks(self) -> dict[str, nn.Module]:
        """Networks written as weights files after training: the generator."""
        return {"generator": self.generator}

    def network_hyperparameters(self, kind: str) -> dict:
        return dict(self.hparams[kind])

    def configure_optimizers(self):
        def nadam(parameters):
            trainable = [p for p in parameters if p.requires_grad]
            return torch.optim.NAdam(trainable, lr=self.hparams.learning_rate, betas=tuple(self.hparams.betas))

        def plateau(optimizer):
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=self.hparams.scheduler_factor, patience=self.hparams.scheduler_patience
            )

        generator_optimizer = nadam(self.generator.parameters())
        discriminator_optimizer = nadam(self.discriminator.parameters())
        return [generator_optimizer, discriminator_optimizer], [plateau(generator_optimizer), plateau(discriminator_optimizer)]


def freeze_parameters(module: nn.Module, prefixes: list[str]) -> int:
    """Set ``requires_grad = False`` on parameters whose names start with any prefix; returns the count.

    Raises:
        ValueError: a prefix matches no parameter (a typo would otherwise silently freeze nothing).
    """
    frozen = 0
    for prefix in prefixes:
        matches = [parameter for name, parameter in module.named_parameters() if name.startswith(prefix)]
        if not matches:
            raise ValueError(f"freeze prefix {prefix!r} matches no parameter")
        for parameter in matches:
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen
