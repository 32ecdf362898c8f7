"""``cryomaps train [key=value ...]``: train a task from the Hydra configs (configs/train.yaml)."""

from __future__ import annotations

HELP = "train a network (Hydra overrides, e.g. task=struc2map model=s2m_small trainer.max_epochs=3)"


def add_arguments(parser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra config overrides")
    parser.add_argument("--cfg", action="store_true", help="print the composed configuration and exit")


def run(args) -> int:
    return compose_and_run("train", args)


def compose_and_run(config_name: str, args) -> int:
    """Compose ``config_name`` with the overrides; print it (``--cfg``) or run it."""
    import os

    from omegaconf import OmegaConf

    from cryomaps.config import compose_config

    config = compose_config(config_name, args.overrides)
    if args.cfg:
        print(OmegaConf.to_yaml(config))
        return 0
    missing = missing_settings(OmegaConf.to_container(config, resolve=False))
    if missing:
        from cryomaps.errors import InputError

        raise InputError(None, f"required setting(s) not given: {', '.join(missing)} (add them as key=value)")
    from cryomaps.tasks.training import run_finetuning, run_training

    run_dir = run_finetuning(config) if config_name == "finetune" else run_training(config)
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
        print(f"run folder: {run_dir}")
    return 0


def missing_settings(settings, prefix: str = "") -> list[str]:
    """Dotted keys of the mandatory values (``???``) left unset in an unresolved config container."""
    if isinstance(settings, dict):
        return [key for name, value in settings.items() for key in missing_settings(value, f"{prefix}{name}.")]
    if isinstance(settings, list):
        return [key for index, value in enumerate(settings) for key in missing_settings(value, f"{prefix}{index}.")]
    return [prefix.rstrip(".")] if settings == "???" else []
