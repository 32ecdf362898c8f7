"""Run training from a composed Hydra config (``configs/train.yaml``, ``configs/finetune.yaml``).

Layout of a run folder (``run_dir``)::

    config.yaml              the resolved configuration
    checkpoints/last.ckpt    the latest checkpoint (every ``checkpoint.every_n_train_steps``)
    logs/                    CSV logs (metrics.csv) and validation images, or W&B offline files
    <network>.pt             the trained network as a weights file (see cryomaps.io.weights)

Resuming (``resume=true`` or ``ckpt_path=...``) restores weights, optimisers, schedulers and the
loop state. Fine-tuning (:func:`run_finetuning`) loads network weights only, can freeze
parameters, and starts fresh optimisers; the networks are built with the checkpoint's
hyperparameters, except those given as ``model.<network>.<key>=...`` overrides (e.g.
``model.generator.resolution_conditioning=true`` adds FiLM layers, which start as the identity).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from pathlib import Path

import lightning as L

from cryomaps.config import check_integer_setting, check_positive_number, to_plain
from cryomaps.errors import CryomapsError, InputError
from cryomaps.io.atomic import write_text_atomically
from cryomaps.models.weights import load_checkpoint_networks, save_network

TASK_CLASSES = {
    "struc2map": ("cryomaps.tasks.struc2map", "Struc2MapTask"),
    "cryores": ("cryomaps.tasks.cryores", "CryoResTask"),
}


def task_class(name: str):
    """The LightningModule class of a task name (``struc2map`` or ``cryores``)."""
    import importlib

    if name not in TASK_CLASSES:
        raise InputError(None, f"unknown task {name!r}; choose one of {sorted(TASK_CLASSES)}")
    module_name, class_name = TASK_CLASSES[name]
    return getattr(importlib.import_module(module_name), class_name)


def build_task(config, model_hyperparameters: dict | None = None, frozen_prefixes: list[str] | None = None):
    """The LightningModule described by ``config.task`` and ``config.model`` (plain hyperparameters).

    Args:
        model_hyperparameters: network hyperparameters to use instead of ``config.model`` (fine-tuning
            takes them from the checkpoint so the architecture matches its weights).
    Raises:
        InputError: the task or a network refuses a setting (one line with its reason).
    """
    plain = to_plain(config)
    task_parameters = dict(plain["task"])
    name = task_parameters.pop("name")
    if "learning_rate" in task_parameters:
        check_positive_number("task.learning_rate", task_parameters["learning_rate"])
    networks = {**plain["model"], **(model_hyperparameters or {})}
    if frozen_prefixes:
        task_parameters["frozen_prefixes"] = list(frozen_prefixes)
    try:
        return task_class(name)(**networks, **task_parameters)
    except (TypeError, ValueError) as error:  # a setting the task or a network refuses
        raise InputError(None, f"invalid task or model settings: {' '.join(str(error).split())}") from None


def build_datamodule(config):
    """Instantiate ``config.data`` (a LightningDataModule config with ``_target_``).

    Raises:
        CryomapsError: the one a data provider raised (bad manifest, unreadable map), unwrapped
            from Hydra's instantiation error so that the command prints it as one line.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(config.data, _convert_="all")
    except InstantiationException as error:
        if isinstance(error.__cause__, CryomapsError):
            raise error.__cause__ from None
        raise


def build_logger(config, run_dir: Path):
    if config.logger.kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="logs")
    if config.logger.kind == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(
            project=config.logger.project, entity=config.logger.entity, offline=config.logger.offline,
            save_dir=str(run_dir), config=to_plain(config),
        )
    raise InputError(None, f"unknown logger.kind {config.logger.kind!r}; choose csv or wandb")


def check_patch_size(task, datamodule) -> None:
    """Refuse training patches the task's networks cannot take: their edge must be a multiple of
    each network's stride (``network.stride``, voxels)."""
    size = datamodule.patch_options.patch_size
    strides = [network.stride for network in task.children() if isinstance(getattr(network, "stride", None), int)]
    stride = math.lcm(*strides) if strides else 1
    if size % stride:
        raise InputError(None, f"data.patch_size must be a multiple of the network stride {stride}, got {size}")


def build_trainer(config, run_dir: Path, extra_callbacks: list | None = None):
    """The Lightning Trainer of ``config.trainer``, checkpointing into ``run_dir/checkpoints``.

    Raises:
        InputError: ``checkpoint.every_n_train_steps`` is not an integer ≥ 0 (0: no step checkpoints), or a ``trainer``
            setting is one Lightning does not know or refuses (one line naming it).
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import ModelCheckpoint

    steps = check_integer_setting("checkpoint.every_n_train_steps", config.checkpoint.every_n_train_steps, 0)
    checkpoints = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"), filename="step{step:06d}", auto_insert_metric_name=False,
        every_n_train_steps=steps, save_last=True, save_top_k=1,
    )
    callbacks = [checkpoints, *(extra_callbacks or [])]
    settings = to_plain(config.trainer)
    try:
        return L.Trainer(**settings, default_root_dir=str(run_dir), logger=build_logger(config, run_dir), callbacks=callbacks)
    except TypeError as error:  # a key the Trainer does not take
        unknown = sorted(key for key in settings if key not in inspect.signature(L.Trainer).parameters)
        if not unknown:
            raise
        raise InputError(None, f"trainer.{unknown[0]} is not a Lightning Trainer setting ({error})") from None
    except (MisconfigurationException, ValueError) as error:
        raise InputError(None, f"trainer settings refused by Lightning: {str(error).strip().splitlines()[0]}") from None


def resume_checkpoint(config, run_dir: Path) -> str | None:
    """The checkpoint to continue from: ``ckpt_path``, or ``run_dir/checkpoints/last.ckpt`` with ``resume``."""
    if config.ckpt_path:
        path = Path(config.ckpt_path)
        if not path.is_file():
            raise InputError(path, "checkpoint to resume from does not exist")
        return str(path)
    last = run_dir / "checkpoints" / "last.ckpt"
    if config.resume:
        if not last.is_file():
            print(f"resume=true but {last} does not exist yet: starting a new run")
            return None
        return str(last)
    return None


def prepare_run_dir(config) -> Path:
    """Create ``config.run_dir`` and write the resolved config into it."""
    from omegaconf import OmegaConf

    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(run_dir / "config.yaml", OmegaConf.to_yaml(config, resolve=True))
    return run_dir


def run_training(config, task=None) -> Path:
    """Train (or resume) as configured; returns the run folder."""
    L.seed_everything(int(config.seed), workers=True)
    run_dir = prepare_run_dir(config)
    task = task if task is not None else build_task(config)
    datamodule = build_datamodule(config)
    check_patch_size(task, datamodule)
    trainer = build_trainer(config, run_dir)
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_checkpoint(config, run_dir))
    if trainer.is_global_zero:
        export_weights(task, run_dir)
    return run_dir


def run_finetuning(config, overridden_keys: Sequence[str] = ()) -> Path:
    """Load network weights from ``config.ckpt`` (optionally freezing ``config.freeze``) and train.

    Args:
        overridden_keys: dotted keys given as overrides (``model.generator.resolution_conditioning``);
            a ``model.<network>.<key>`` among them replaces the checkpoint's stored value.
    Raises:
        InputError: the weights hold a network the task does not train, or do not fit the networks
            so built (one line naming the first misfit).
    """
    L.seed_everything(int(config.seed), workers=True)  # what the weights do not set starts the same every run
    stored, state_dict = load_checkpoint_networks(config.ckpt)
    foreign = sorted(set(stored) - set(config.model))
    if foreign:
        raise InputError(config.ckpt, f"holds the network(s) {', '.join(foreign)}, which task={config.task.name} does not "
                                      f"train (it trains {', '.join(config.model)}; choose the task of these weights)")
    changed = overridden_network_settings(config, stored, overridden_keys)
    networks = {kind: {**hyperparameters, **changed.get(kind, {})} for kind, hyperparameters in stored.items()}
    task = build_task(config, model_hyperparameters=networks, frozen_prefixes=list(config.freeze))
    missing = load_fitting_weights(task, state_dict, config.ckpt, changed)
    settings = "".join(f", model.{kind}.{key}={value}" for kind, values in changed.items() for key, value in values.items())
    print(f"fine-tuning from {config.ckpt}{settings}: {len(state_dict)} tensors loaded, "
          f"{len(missing)} left at initialisation")
    return run_training(config, task=task)


def overridden_network_settings(config, stored: dict, overridden_keys: Sequence[str]) -> dict[str, dict]:
    """``{network: {key: value}}`` of the ``model.<network>.<key>`` overrides of networks that the
    checkpoint stores, with the composed config's values (plain Python)."""
    plain = to_plain(config.model)
    changed: dict[str, dict] = {}
    for dotted in overridden_keys:
        parts = dotted.split(".")
        if len(parts) == 3 and parts[0] == "model" and parts[1] in stored:
            changed.setdefault(parts[1], {})[parts[2]] = plain[parts[1]][parts[2]]
    return changed


def load_fitting_weights(task, state_dict: dict, checkpoint, changed: dict[str, dict]) -> list[str]:
    """Load ``state_dict`` into ``task``; returns the names of the task's tensors it did not set.

    Raises:
        InputError: a tensor has no place in the task or a different shape there, or nothing loads.
    """
    own = task.state_dict()
    unexpected = [name for name in state_dict if name not in own]
    misshapen = [name for name in state_dict if name in own and own[name].shape != state_dict[name].shape]
    because = "" if not changed else f" as changed by the override(s) {', '.join(_dotted(changed))}"
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        raise InputError(checkpoint, f"weights do not fit the networks{because}: no place for {unexpected[0]}{more}")
    if misshapen:
        name = misshapen[0]
        raise InputError(checkpoint, f"weights do not fit the networks{because}: {name} is "
                         f"{tuple(state_dict[name].shape)} in the checkpoint, {tuple(own[name].shape)} here")
    if not state_dict:
        raise InputError(checkpoint, "holds no weights")
    task.load_state_dict(state_dict, strict=False)
    return [name for name in own if name not in state_dict]


def _dotted(changed: dict[str, dict]) -> list[str]:
    return [f"model.{kind}.{key}" for kind, values in changed.items() for key in values]


def export_weights(task, run_dir: Path) -> list[Path]:
    """Write each trained network of ``task`` as a plain weights file in ``run_dir``."""
    written = []
    for kind, network in task.exported_networks().items():
        path = run_dir / f"{kind}.pt"
        written.append(save_network(path, kind, network, task.network_hyperparameters(kind), task.hparams.get("metadata")))
    return written
