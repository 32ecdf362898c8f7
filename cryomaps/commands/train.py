"""``cryomaps train [key=value ...]``: train a task from the Hydra configs (configs/train.yaml)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

HELP = "train a network (Hydra overrides, e.g. task=struc2map model=s2m_small trainer.max_epochs=3)"


def add_arguments(parser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra config overrides")
    parser.add_argument("--cfg", action="store_true", help="print the composed configuration and exit")


def run(args) -> int:
    return compose_and_run("train", args)


def compose_and_run(config_name: str, args) -> int:
    """Compose ``config_name`` with the overrides; print it (``--cfg``) or run it.

    A start that fails with a :class:`cryomaps.errors.CryomapsError` leaves no new run folder behind.
    """
    import os

    from omegaconf import OmegaConf

    from cryomaps.config import compose_config

    config = compose_config(config_name, args.overrides)
    check_override_types(config_name, args.overrides, config)
    check_accelerator(config)
    check_input_files(config)
    if args.cfg:
        print(OmegaConf.to_yaml(config))
        return 0
    missing = missing_settings(OmegaConf.to_container(config, resolve=False))
    if missing:
        from cryomaps.errors import InputError

        raise InputError(None, f"required setting(s) not given: {', '.join(missing)} (add them as key=value)")
    from cryomaps.tasks.training import run_finetuning, run_training

    route_lightning_messages()
    from cryomaps.errors import CryomapsError

    new_folders = missing_folders(Path(str(config.run_dir)))
    try:
        run_dir = run_finetuning(config, override_keys(args.overrides)) if config_name == "finetune" else run_training(config)
    except CryomapsError:
        remove_unused_run_folders(new_folders)
        raise
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
        print(f"run folder: {run_dir}")
    return 0


def override_keys(overrides: list[str]) -> list[str]:
    """The dotted keys of ``key=value`` overrides, without Hydra's ``+``/``++``/``~`` prefixes."""
    return [item.split("=", 1)[0].lstrip("+~") for item in overrides if "=" in item]


def missing_folders(run_dir: Path) -> list[Path]:
    """``run_dir`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not run_dir.exists():
        missing.append(run_dir)
        run_dir = run_dir.parent
    return missing


def remove_unused_run_folders(new_folders: list[Path]) -> None:
    """After a failed start, remove the run folders it created if they hold no file but
    ``config.yaml`` (empty folders, such as a logger's ``logs/version_0``, do not count)."""
    if not new_folders or not new_folders[0].is_dir():
        return
    run_dir = new_folders[0]
    if any(path.is_file() and path != run_dir / "config.yaml" for path in run_dir.rglob("*")):
        return  # something was trained or logged: keep it
    (run_dir / "config.yaml").unlink(missing_ok=True)
    for folder in sorted((path for path in run_dir.rglob("*") if path.is_dir()), key=lambda path: len(path.parts), reverse=True):
        folder.rmdir()
    for folder in new_folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


class _CurrentStdoutHandler(logging.StreamHandler):
    """A log handler writing to whatever ``sys.stdout`` is when a record is emitted."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass


def route_lightning_messages() -> None:
    """Send Lightning's information lines ("GPU available ...") to stdout and keep "Seed set to N"
    quiet (the seed is in the run's config), so that a failed run's one-line error is the only line
    on stderr; Lightning's warnings still go through Python's warnings to stderr."""
    import lightning.pytorch  # noqa: F401  (it installs its stderr handlers when first imported)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        if not any(isinstance(handler, _CurrentStdoutHandler) for handler in logger.handlers):
            logger.addHandler(_CurrentStdoutHandler())
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)


def missing_settings(settings, prefix: str = "") -> list[str]:
    """Dotted keys of the mandatory values (``???``) left unset in an unresolved config container."""
    if isinstance(settings, dict):
        return [key for name, value in settings.items() for key in missing_settings(value, f"{prefix}{name}.")]
    if isinstance(settings, list):
        return [key for index, value in enumerate(settings) for key in missing_settings(value, f"{prefix}{index}.")]
    return [prefix.rstrip(".")] if settings == "???" else []


FREE_FORM_KEYS = ("devices",)
"""Settings whose packaged value is a number but which also take words or lists (``devices=auto``)."""


def check_override_types(config_name: str, overrides: list[str], config) -> None:
    """Refuse a ``key=value`` override whose value has the wrong type for the packaged setting.

    The packaged value (composed with the same config-group choices, e.g. ``task=cryores``) gives
    the type: an integer setting takes integers, a number setting numbers, a boolean true/false
    (or an integer, as Lightning's ``fast_dev_run`` does), so ``trainer.max_epochs=abc`` fails
    before anything runs.

    Raises:
        InputError: naming the override, the expected type and the packaged value.
    """
    from omegaconf import OmegaConf

    from cryomaps.config import compose_config, config_dir
    from cryomaps.errors import InputError

    groups = {entry.name for entry in config_dir().iterdir() if entry.is_dir()}
    keyed = list(zip(override_keys(overrides), [item for item in overrides if "=" in item]))
    reference = compose_config(config_name, [item for key, item in keyed if key in groups])
    for key, item in keyed:
        if key in groups or key.rsplit(".", 1)[-1] in FREE_FORM_KEYS:
            continue
        packaged = OmegaConf.select(reference, key, default=None)
        given = OmegaConf.select(config, key, default=None)
        expected = _expected_type(packaged)
        if expected is not None and not _has_type(given, expected):
            raise InputError(None, f"override {item}: {key} must be {expected} (packaged value {packaged})")


def _expected_type(packaged) -> str | None:
    if isinstance(packaged, bool):
        return "true or false"
    if isinstance(packaged, int):
        return "an integer"
    if isinstance(packaged, float):
        return "a number"
    return None


def _has_type(value, expected: str) -> bool:
    import math

    if expected == "true or false":
        return isinstance(value, (bool, int))
    if isinstance(value, bool):
        return False
    if expected == "an integer":
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


INPUT_FILE_KEYS = ("data.manifest", "ckpt", "ckpt_path")
"""Settings that name an input file; checked before Lightning starts (and prints its banner)."""


def check_input_files(config) -> None:
    """Refuse a configured manifest or checkpoint that does not exist, before anything is built."""
    from omegaconf import OmegaConf

    from cryomaps.errors import InputError

    for key in INPUT_FILE_KEYS:
        value = OmegaConf.select(config, key, default=None)
        if value is not None and value != "???" and not Path(str(value)).is_file():
            raise InputError(str(value), f"{key}: no such file")


KNOWN_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def check_accelerator(config) -> None:
    """Refuse an accelerator that Lightning does not know or that this machine lacks."""
    from cryomaps.errors import InputError

    accelerator = config.get("trainer", {}).get("accelerator", "auto")
    if accelerator not in KNOWN_ACCELERATORS:
        raise InputError(None, f"trainer.accelerator must be one of {', '.join(KNOWN_ACCELERATORS)}, got {accelerator!r}")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(None, f"trainer.accelerator={accelerator}: CUDA is not available on this machine (use cpu)")
