"""Images for validation logging: central slices to W&B when it is the logger, else PNG files."""

from __future__ import annotations

from pathlib import Path

import torch

from cryomaps.metrics.figures import central_slices_image, save_central_slices


def log_slice_panel(module, key: str, volumes: dict[str, torch.Tensor]) -> None:
    """Log central x/y/z slices of named (X, Y, Z) volumes, the first being the reference.

    With a W&B logger the panel goes to W&B as an image; otherwise it is written as
    ``<log_dir>/images/<key>_epoch<NNN>.png`` next to the CSV logs.
    """
    arrays = {name: volume.detach().float().cpu().numpy() for name, volume in volumes.items()}
    (reference_name, reference), *others = arrays.items()
    others = dict(others)
    logger = module.logger
    if logger is None:
        return
    if type(logger).__name__ == "WandbLogger":
        image = central_slices_image(reference, others, reference_name=reference_name)
        logger.log_image(key=key, images=[image], step=module.global_step)
        return
    log_dir = Path(logger.log_dir or module.trainer.default_root_dir) / "images"
    log_dir.mkdir(parents=True, exist_ok=True)
    name = key.replace("/", "_") + f"_epoch{module.current_epoch:03d}.png"
    save_central_slices(log_dir / name, reference, others, reference_name=reference_name)
