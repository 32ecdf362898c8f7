"""CryoRes training (Dai et al. 2023 method): local resolution and molecular mask from one map.

Batches are dicts of (B, 1, X, Y, Z) tensors: ``map`` (density prepared as at inference by
:func:`cryomaps.data.locres_input.prepare_map`: resampled, cropped, z-scored), ``locres``
(true local resolution, Å; any value outside the mask) and ``mask`` (1 inside the molecule). The
labels of the three heads follow from them:

- global resolution of a sample = median of ``locres`` inside its mask (the published labels used
  the deposited global resolution, which is that median for a map whose local resolution is known);
- relative local resolution = ``locres`` − global, inside the mask, as the index of the nearest of
  the 37 bin centres (clamped to ±5 Å);
- mask = ``mask``.

Loss = L1(global, Å) + λ·CE(relative bins, inside the mask) + BCE(mask logits).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.nn import functional as F

from cryomaps.data.locres_input import InputPreparation
from cryomaps.errors import InputError
from cryomaps.models import build_cryores, local_resolution_map
from cryomaps.tasks.logging import log_slice_panel
from cryomaps.tasks.struc2map import freeze_parameters


LR_SCHEDULES = ("constant", "cosine")


class CryoResTask(L.LightningModule):
    """Supervised training of :class:`cryomaps.models.CryoResNet`.

    Args:
        cryores: plain-Python hyperparameters of :func:`cryomaps.models.build_cryores`.
        relative_weight: λ, weight of the relative-resolution cross-entropy.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_schedule: ``constant``, or ``cosine``: the learning rate decays per step along a half
            cosine to 0 over the run's planned steps (``trainer.max_epochs`` × batches per epoch).
        frozen_prefixes: parameter-name prefixes kept frozen (fine-tuning).
        metadata: how inputs are prepared (keys of
            :class:`cryomaps.data.locres_input.InputPreparation`: voxel size in Å, crop and
            z-score settings, tile size); completed with a readable normalisation and the background
            resolution, and stored with the weights. Defaults when None.
    """

    def __init__(
        self,
        cryores: dict[str, Any],
        relative_weight: float = 1.0,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        lr_schedule: str = "constant",
        frozen_prefixes: list[str] | None = None,
        metadata: dict | None = None,
    ):
        super().__init__()
        if lr_schedule not in LR_SCHEDULES:
            raise InputError(None, f"task.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {lr_schedule!r}")
        self.save_hyperparameters()
        self.hparams["metadata"] = network_metadata(metadata)
        self.cryores = build_cryores(**cryores)
        freeze_parameters(self, frozen_prefixes or [])

    def forward(self, volume: torch.Tensor):
        return self.cryores(volume)

    def labels(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(global (B,) Å, relative bin index (B, X, Y, Z), inside (B, X, Y, Z) bool) from a batch."""
        inside = batch["mask"][:, 0] > 0.5
        global_resolution = global_labels(batch["locres"][:, 0], inside)
        relative = batch["locres"][:, 0] - global_resolution.view(-1, 1, 1, 1)
        bins = self.cryores.relative_bins.to(relative.dtype)
        bin_index = (relative.clamp(-5.0, 5.0)[..., None] - bins).abs().argmin(dim=-1)
        return global_resolution, bin_index, inside

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        output = self(batch["map"])
        global_resolution, bin_index, inside = self.labels(batch)
        global_loss = F.l1_loss(output.global_resolution, global_resolution)
        per_voxel = F.cross_entropy(output.relative_logits, bin_index, reduction="none")
        relative_loss = (per_voxel * inside).sum() / inside.sum().clamp_min(1)
        mask_loss = F.binary_cross_entropy_with_logits(output.mask_logits, batch["mask"].float())
        total = global_loss + self.hparams.relative_weight * relative_loss + mask_loss
        return {"loss": total, "global": global_loss, "relative": relative_loss, "mask": mask_loss, "output": output}

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items() if k != "output"}, prog_bar=True, batch_size=len(batch["map"]))
        return losses["loss"]

    def validation_step(self, batch: dict, batch_index: int) -> None:
        losses = self.losses(batch)
        metrics = {f"val/{k}": v for k, v in losses.items() if k != "output"}
        metrics.update(validation_metrics(losses["output"], batch))
        self.log_dict(metrics, prog_bar=True, batch_size=len(batch["map"]), sync_dist=True)
        if batch_index == 0:
            predicted = local_resolution_map(losses["output"], background_resolution=0.0)
            truth = batch["locres"] * (batch["mask"] > 0.5)
            log_slice_panel(self, "val/locres", {"true": truth[0, 0], "predicted": predicted[0, 0], "map": batch["map"][0, 0]})

    def exported_networks(self) -> dict:
        return {"cryores": self.cryores}

    def network_hyperparameters(self, kind: str) -> dict:
        return dict(self.hparams[kind])

    def configure_optimizers(self):
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_schedule == "constant":
            return optimizer
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def network_metadata(metadata: dict | None) -> dict:
    """Complete plain-Python input-preparation metadata from the configured settings (None: defaults)."""
    preparation = InputPreparation() if metadata is None else InputPreparation.from_metadata(metadata)
    return preparation.to_metadata()


def global_labels(locres: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Global resolution (B,) Å of each sample: median of its local resolution (B, X, Y, Z) inside its mask."""
    return torch.stack([
        sample[voxels].median() if voxels.any() else sample.median() for sample, voxels in zip(locres, inside)
    ])


def validation_metrics(output, batch: dict) -> dict[str, torch.Tensor]:
    """Local-resolution RMSE (Å) inside the true mask, the same for the trivial predictor (the true
    global resolution everywhere), and mask IoU."""
    truth_inside = batch["mask"][:, 0] > 0.5
    predicted_inside = output.mask_logits[:, 0] > 0
    predicted = output.global_resolution.view(-1, 1, 1, 1) + output.relative_resolution[:, 0]
    truth = batch["locres"][:, 0]
    trivial = global_labels(truth, truth_inside)
    count = truth_inside.sum().clamp_min(1)
    rmse = torch.sqrt((((predicted - truth) ** 2) * truth_inside).sum() / count)
    trivial_rmse = torch.sqrt((((trivial.view(-1, 1, 1, 1) - truth) ** 2) * truth_inside).sum() / count)
    union = (truth_inside | predicted_inside).sum().clamp_min(1)
    iou = (truth_inside & predicted_inside).sum() / union
    return {"val/rmse_A": rmse, "val/trivial_rmse_A": trivial_rmse, "val/mask_iou": iou.float()}
