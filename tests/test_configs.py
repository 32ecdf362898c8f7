"""Every Hydra config in configs/ composes, and the objects it describes are built (without training).

The configs are composed with Hydra's compose API on the repository's ``configs/`` folder (the
package's ``cryomaps/configs`` links to it): each top-level config, and ``train`` / ``finetune`` with
each option of every config group. The objects are built as the commands build them:

- task and networks (``task``, ``model``): :func:`cryomaps.tasks.training.build_task`;
- datamodule (``data``): :func:`cryomaps.tasks.training.build_datamodule`, i.e. Hydra's
  ``instantiate`` of the ``_target_`` node. Nested ``_target_`` nodes are volume providers, which
  a datamodule calls only when it sets up (that is where maps are rendered or read): they are
  instantiated as partials, and their keywords must bind to the provider's signature;
- ``trainer`` and ``logger``: :func:`~cryomaps.tasks.training.build_trainer` and
  :func:`~cryomaps.tasks.training.build_logger` (a Lightning ``Trainer`` is built, never fitted);
- ``curate`` and ``evaluate``: the options their commands read (``CurationOptions.from_config``,
  ``ReportOptions.from_config``).
"""

from __future__ import annotations

import copy
import functools
import inspect
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf, open_dict

from cryomaps.config import config_dir
from cryomaps.data.curate import CurationOptions
from cryomaps.tasks.training import build_datamodule, build_logger, build_task, build_trainer, task_class
from cryomaps.workflows.report import ReportOptions

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
TOP_LEVEL = sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))
GROUPS = sorted(path.name for path in CONFIG_DIR.iterdir() if path.is_dir())


def group_options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


GROUP_OPTIONS = [(group, option) for group in GROUPS for option in group_options(group)]


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """``configs/<name>.yaml`` composed with ``overrides`` (a fresh copy: callers may change it)."""
    return copy.deepcopy(_composed(name, tuple(overrides)))


@functools.lru_cache
def _composed(name: str, overrides: tuple[str, ...]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory) -> Path:
    """A folder for the run folder and the required file names; nothing is written into it."""
    return tmp_path_factory.mktemp("placeholders")


def compose_with_placeholders(name: str, overrides: list[str], folder: Path) -> DictConfig:
    """``name`` composed with ``overrides``, the run folder in ``folder`` and every required
    (``???``) setting, all of them file names (a manifest, a checkpoint), pointed into ``folder``."""
    overrides = [*overrides, f"run_dir={folder / 'run'}"] if name in ("train", "finetune") else overrides
    config = compose_config(name, overrides)
    missing = [f"{key}={folder / key.rsplit('.', 1)[-1]}" for key in missing_keys(OmegaConf.to_container(config))]
    return compose_config(name, overrides + missing) if missing else config


def missing_keys(tree: dict, prefix: str = "") -> list[str]:
    """Dotted keys of the ``???`` values of a config's plain, unresolved form."""
    keys = []
    for key, value in tree.items():
        if value == "???":
            keys.append(prefix + key)
        elif isinstance(value, dict):
            keys += missing_keys(value, f"{prefix}{key}.")
    return keys


def matching_task(group: str, option: str) -> str:
    """The task whose own default for ``group`` is of the same kind as ``option``: the same
    ``_target_`` for data, the same networks for model (a generator config cannot build CryoRes)."""
    wanted = config_kind(OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml"))
    matches = [task for task in group_options("task") if task_default_kind(task, group) == wanted]
    assert len(matches) == 1, f"{group}={option} suits the tasks {matches}"
    return matches[0]


@functools.lru_cache
def task_default_kind(task: str, group: str):
    return config_kind(compose_config("train", [f"task={task}"])[group])


def config_kind(node) -> object:
    return node.get("_target_") or tuple(sorted(node))


def overrides_for(group: str, option: str) -> list[str]:
    """``group=option`` plus what it needs: its task for model and data, a CPU for the multi-GPU
    trainer when this machine has no GPU (the strategy and the other settings stay as configured)."""
    overrides = [f"{group}={option}"]
    if group in ("model", "data"):
        overrides.insert(0, f"task={matching_task(group, option)}")
    if group == "trainer" and compose_config("train", overrides).trainer.accelerator == "gpu" and not torch.cuda.is_available():
        overrides += ["trainer.accelerator=cpu", "trainer.devices=1"]
    return overrides


def build_datamodule_without_data(config: DictConfig):
    """The datamodule of ``config.data``, its nested ``_target_`` providers as partials that are
    checked to bind to their callables (calling them would render or read the training maps)."""
    for node in nested_target_nodes(config.data):
        keywords = {key: value for key, value in node.items() if not str(key).startswith("_")}
        inspect.signature(get_method(node._target_)).bind(**keywords)
        with open_dict(node):
            node._partial_ = True
    return build_datamodule(config)


def nested_target_nodes(node: DictConfig) -> list[DictConfig]:
    """The ``_target_`` nodes inside ``node`` (not ``node`` itself)."""
    found = []
    for key in node:
        child = node[key]
        if isinstance(child, DictConfig):
            found += ([child] if "_target_" in child else []) + nested_target_nodes(child)
    return found


def check_task(config: DictConfig) -> None:
    task = build_task(config)
    assert isinstance(task, task_class(config.task.name))
    for network in config.model:
        assert isinstance(getattr(task, network), torch.nn.Module) and sum(p.numel() for p in getattr(task, network).parameters()) > 0


def check_datamodule(config: DictConfig) -> None:
    module = build_datamodule_without_data(config)
    assert isinstance(module, L.LightningDataModule) and type(module) is get_method(config.data._target_)
    assert module.patch_options.patch_size == config.data.patch_size


def check_trainer(config: DictConfig, tmp_path: Path) -> None:
    trainer = build_trainer(config, tmp_path / "run")
    assert isinstance(trainer, L.Trainer) and trainer.max_epochs == config.trainer.max_epochs


def check_logger(config: DictConfig, tmp_path: Path) -> None:
    logger = build_logger(config, tmp_path / "run")
    assert type(logger).__name__.lower().startswith(config.logger.kind)


def test_the_package_reads_the_configs_tested_here():
    assert config_dir().resolve() == CONFIG_DIR.resolve()


def test_every_config_file_is_covered():
    """A new top-level config needs a builder in this file; a new group option is found by itself."""
    assert TOP_LEVEL == ["curate", "evaluate", "finetune", "train"]
    covered = {f"{name}.yaml" for name in TOP_LEVEL} | {f"{group}/{option}.yaml" for group, option in GROUP_OPTIONS}
    assert {path.relative_to(CONFIG_DIR).as_posix() for path in CONFIG_DIR.rglob("*.yaml")} == covered


@pytest.mark.parametrize("group, option", GROUP_OPTIONS, ids=[f"{group}={option}" for group, option in GROUP_OPTIONS])
def test_train_composes_with_every_group_option_and_builds_its_objects(group, option, placeholders, tmp_path):
    config = compose_with_placeholders("train", overrides_for(group, option), placeholders)
    if group in ("task", "model"):
        check_task(config)
    if group in ("task", "data"):
        check_datamodule(config)
    if group == "trainer":
        check_trainer(config, tmp_path)
    if group == "logger":
        check_logger(config, tmp_path)


@pytest.mark.parametrize("group, option", GROUP_OPTIONS, ids=[f"{group}={option}" for group, option in GROUP_OPTIONS])
def test_finetune_composes_with_every_group_option_as_train_does(group, option, placeholders):
    """finetune is train plus ckpt and freeze: the objects it describes are train's (built above)."""
    overrides = overrides_for(group, option)
    finetune = OmegaConf.to_container(compose_with_placeholders("finetune", overrides, placeholders))
    train = OmegaConf.to_container(compose_with_placeholders("train", overrides, placeholders))
    assert finetune.pop("ckpt") == str(placeholders / "ckpt") and finetune.pop("freeze") == []
    assert finetune == train


@pytest.mark.parametrize("name", ["train", "finetune"])
def test_training_configs_with_their_defaults_build_every_object(name, placeholders, tmp_path):
    config = compose_with_placeholders(name, [], placeholders)
    check_task(config)
    check_datamodule(config)
    check_trainer(config, tmp_path)
    check_logger(config, tmp_path)


def test_curate_config_gives_curation_options():
    config = compose_config("curate", [])
    options = CurationOptions.from_config(config)
    assert options.voxel_size == config.voxel_size and options.filters.min_correlation == config.filters.min_correlation
    assert options.render.resolution == config.render.resolution


def test_evaluate_config_gives_report_options():
    config = compose_config("evaluate", [])
    options = ReportOptions.from_config(config)
    assert options.methods == tuple(config.methods) and options.tiling.tile_size == config.tiling.tile_size
