"""``cryomaps finetune ckpt=PATH [key=value ...]``: train from a checkpoint's weights (configs/finetune.yaml)."""

from __future__ import annotations

from cryomaps.commands.train import add_arguments, compose_and_run

HELP = "fine-tune from a checkpoint's weights (ckpt=PATH, optional freeze=[prefixes]) on new data"

__all__ = ["HELP", "add_arguments", "run"]


def run(args) -> int:
    return compose_and_run("finetune", args)
