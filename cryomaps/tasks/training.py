"""Run training from a composed Hydra config (``configs/train.yaml``, ``configs/finetune.yaml``).

Layout of a run folder (``run_dir``)::

    config.yaml              the resolved configuration
    checkpoints/last.ckpt    the latest checkpoint (every ``checkpoint.every_n_train_steps``)
    logs/                    CSV logs (metrics.csv) and validation images, or W&B offline files
    <network>.pt             the trained network as a weights file (see cryomaps.models.weights)

Resuming (``resume=true`` or ``ckpt_path=...``) restores weights, optimisers, schedulers and the
loop state. Fine-tuning (:func:`run_finetuning`) loads network weights only, can freeze
parameters, and starts fresh optimisers.
"""

from __future__ import annotations

from pathlib import Path

from cryomaps.config import to_plain
from cryomaps.errors import InputError
from cryomaps.io.atomic import write_text_atomically

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
    """
    plain = to_plain(config)
    task_parameters = dict(plain["task"])
    name = task_parameters.pop("name")
    networks = {**plain["model"], **(model_hyperparameters or {})}
    if frozen_prefixes:
        task_parameters["frozen_prefixes"] = list(frozen_prefixes)
    return task_class(name)(**networks, **task_parameters)


def build_datamodule(config):
    """Instantiate ``config.data`` (a LightningDataModule config with ``_target_``).

    Raises:
        CryomapsError: the one a data provider raised (bad manifest, unreadable map), unwrapped
            from Hydra's instantiation error so that the command prints it as one line.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from cryomaps.errors import CryomapsError

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


def build_trainer(config, run_dir: Path, extra_callbacks: list | None = None):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpoints = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"), filename="step{step:06d}", auto_insert_metric_name=False,
        every_n_train_steps=config.checkpoint.every_n_train_steps, save_last=True, save_top_k=1,
    )
    callbacks = [checkpoints, *(extra_callbacks or [])]
    return L.Trainer(
        **to_plain(config.trainer), default_root_dir=str(run_dir), logger=build_logger(config, run_dir),
        callbacks=callbacks,
    )


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
    import lightning as L

    L.seed_everything(int(config.seed), workers=True)
    run_dir = prepare_run_dir(config)
    task = task if task is not None else build_task(config)
    datamodule = build_datamodule(config)
    trainer = build_trainer(config, run_dir)
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_checkpoint(config, run_dir))
    if trainer.is_global_zero:
        export_weights(task, run_dir)
    return run_dir


def run_finetuning(config) -> Path:
    """Load network weights from ``config.ckpt`` (optionally freezing ``config.freeze``) and train."""
    from cryomaps.models.weights import load_checkpoint_networks

    networks, state_dict = load_checkpoint_networks(config.ckpt)
    task = build_task(config, model_hyperparameters=networks, frozen_prefixes=list(config.freeze))
    missing, unexpected = task.load_state_dict(state_dict, strict=False)
    loaded = len(state_dict) - len(unexpected)
    if unexpected or loaded == 0:
        raise InputError(config.ckpt, f"weights do not fit this task (unexpected keys: {list(unexpected)[:3]})")
    print(f"fine-tuning from {config.ckpt}: {loaded} tensors loaded, {len(missing)} left at initialisation")
    return run_training(config, task=task)


def export_weights(task, run_dir: Path) -> list[Path]:
    """Write each trained network of ``task`` as a plain weights file in ``run_dir``."""
    from cryomaps.models.weights import save_network

    written = []
    for kind, network in task.exported_networks().items():
        path = run_dir / f"{kind}.pt"
        written.append(save_network(path, kind, network, task.network_hyperparameters(kind), task.hparams.get("metadata")))
    return written
