"""struc2map training from the CLI: train → generate, weights-only checkpoints, resume, fine-tune."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cryomaps.cli import main as cli_main
from cryomaps.io import read_map, read_structure, sample_map

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model=s2m_small", "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
    "data.batch_size=2", "data.samples_per_volume=2", "data.queue_length=8", "data.val_samples_per_volume=2",
    "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def curated_dir(tmp_path_factory, data_root):
    folder = tmp_path_factory.mktemp("curated")
    manifest = REPO / "data_manifests" / "example_pairs.csv"
    assert cli_main(["curate", str(manifest), "--out", str(folder)]) == 0
    return folder


def train(run_dir: Path, curated_dir: Path, *extra: str) -> int:
    return cli_main(["train", f"run_dir={run_dir}", f"data.curated_dir={curated_dir}", *TINY, *extra])


def test_train_then_generate_on_cpu(tmp_path, curated_dir):
    started = time.perf_counter()
    run_dir = tmp_path / "run"
    assert train(run_dir, curated_dir) == 0
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["metadata"]["input"] == {"model": "molmap", "resolution": 2.0, "sampling": "point"}
    assert (run_dir / "logs" / "version_0" / "metrics.csv").is_file()
    assert list((run_dir / "logs" / "version_0" / "images").glob("*.png"))

    from cryomaps.io.example import write_example_peptide

    model = tmp_path / "helix.pdb"
    write_example_peptide(model)
    output = tmp_path / "generated.mrc"
    assert cli_main(["generate", str(model), "-o", str(output), "--ckpt", str(run_dir / "generator.pt")]) == 0
    generated, atoms = read_map(output), read_structure(model)
    assert np.all(atoms.coords.min(0) > generated.origin)
    assert np.all(atoms.coords.max(0) < generated.origin + np.array(generated.data.shape) * generated.voxel_size)
    values_at_atoms = sample_map(generated, atoms.coords)
    assert values_at_atoms.mean() > generated.data.mean() + generated.data.std()  # density sits on the model
    assert time.perf_counter() - started < 120


# 4 training pairs x 20 patches / 2 per batch = one epoch of 40 batches (80 optimiser steps: D and G),
# a checkpoint every 2 batches.
LONG_EPOCH = ("trainer.limit_train_batches=40", "data.samples_per_volume=20", "data.queue_length=20", "checkpoint.every_n_train_steps=4")


def test_resume_after_a_hard_kill_continues_from_the_last_checkpoint(tmp_path, curated_dir):
    run_dir = tmp_path / "run"
    arguments = [
        sys.executable, "-m", "cryomaps.cli", "train", f"run_dir={run_dir}", f"data.curated_dir={curated_dir}", *TINY,
        *LONG_EPOCH,
    ]
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not _checkpoint_step(last) >= 8:
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    killed_at = _checkpoint_step(last)
    assert killed_at >= 8, "training did not reach its second checkpoint in time"
    assert killed_at < 80, "the run finished before it could be interrupted"

    assert train(run_dir, curated_dir, *LONG_EPOCH, "resume=true") == 0
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == 80 and final["epoch"] == 0
    resumed_metrics = sorted((run_dir / "logs").glob("version_*/metrics.csv"))[-1].read_text().splitlines()
    first_logged_step = int(resumed_metrics[1].split(",")[resumed_metrics[0].split(",").index("step")])
    assert first_logged_step >= killed_at - 4


def _checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["global_step"])
    except Exception:  # absent or being written
        return -1


def test_finetune_loads_weights_and_keeps_frozen_layers(tmp_path, curated_dir):
    base = tmp_path / "base"
    assert train(base, curated_dir) == 0
    tuned = tmp_path / "tuned"
    frozen = "generator.nodes.x0_0"
    assert cli_main([
        "finetune", f"ckpt={base / 'checkpoints' / 'last.ckpt'}", f"run_dir={tuned}", f"data.curated_dir={curated_dir}",
        *TINY, f"freeze=[{frozen}]",
    ]) == 0
    before = torch.load(base / "generator.pt", weights_only=True)["state_dict"]
    after = torch.load(tuned / "generator.pt", weights_only=True)["state_dict"]
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == name.startswith("nodes.x0_0."), name
    state = torch.load(tuned / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 6  # a fresh loop: weights only, not the base run's loop state


def test_bad_overrides_give_one_line(capsys):
    assert cli_main(["train", "model=does_not_exist"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("cryomaps train: error:") and "\n" not in error


@pytest.mark.slow  # two training processes: 15 s of the default run
def test_ddp_config_trains_on_two_cpu_processes(tmp_path, curated_dir):
    """`trainer=ddp` (Lightning DDP, gloo on CPU): two ranks train, rank 0 writes the checkpoint.

    Run as its own process, as users do: Lightning starts the other rank by re-running the command.
    """
    run_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "cryomaps.cli", "train", f"run_dir={run_dir}", f"data.curated_dir={curated_dir}", *TINY,
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 6 and (run_dir / "generator.pt").is_file()


@pytest.mark.slow
def test_wandb_logger_runs_offline(tmp_path, curated_dir):
    run_dir = tmp_path / "wandb_run"
    assert train(run_dir, curated_dir, "logger=wandb") == 0
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.fixture(scope="module")
def tiny_unconditioned_weights(tmp_path_factory):
    """A weights file of a tiny unconditioned generator (channels [2, 4]) with the bundled metadata."""
    from cryomaps.models.registry import build_generator
    from cryomaps.models.weights import save_network

    torch.manual_seed(0)
    hyperparameters = {"preset": "small", "channels": [2, 4], "resolution_conditioning": False}
    metadata = {"input": {"model": "molmap", "resolution": 2.0, "sampling": "point"}, "voxel_size": 1.0}
    path = tmp_path_factory.mktemp("weights") / "tiny_generator.pt"
    return save_network(path, "generator", build_generator(**hyperparameters), hyperparameters, metadata=metadata)


CONDITIONED = ("model.generator.resolution_conditioning=true", "+data.resolution_augmentation={probability:0.5,max_resolution:14.0}")


def test_finetune_can_switch_resolution_conditioning_on(tmp_path, curated_dir, tiny_unconditioned_weights, capsys):
    """The override wins over the checkpoint's stored value; the other stored hyperparameters (channels)
    are kept, the weights load, and the new FiLM layers start as the identity: with no training step the
    conditioned generator gives the unconditioned one's output at any resolution. A tiny run then trains them."""
    from cryomaps.models.weights import load_network

    finetune = ["finetune", f"ckpt={tiny_unconditioned_weights}", f"data.curated_dir={curated_dir}", *TINY, *CONDITIONED]
    assert cli_main([*finetune, f"run_dir={tmp_path / 'untrained'}", "trainer.max_epochs=0"]) == 0
    assert "model.generator.resolution_conditioning=True" in capsys.readouterr().out
    plain = load_network(tiny_unconditioned_weights, "generator").network.eval()
    conditioned = load_network(tmp_path / "untrained" / "generator.pt", "generator").network.eval()
    assert conditioned.embedding is not None and [node.conv1.out_channels for node in conditioned.nodes.values()][0] == 2
    volume = torch.rand(1, 1, 8, 8, 8)
    with torch.no_grad():
        for resolution in (3.0, 12.0):
            assert torch.allclose(conditioned(volume, torch.tensor([resolution])), plain(volume), atol=1e-6)

    assert cli_main([*finetune, f"run_dir={tmp_path / 'trained'}"]) == 0
    trained = torch.load(tmp_path / "trained" / "generator.pt", weights_only=True)["state_dict"]
    assert any(name.endswith("film.weight") and trained[name].abs().sum() > 0 for name in trained)


def test_finetune_with_an_override_the_weights_cannot_fit_is_one_line(tmp_path, curated_dir, tiny_unconditioned_weights, capsys):
    run_dir = tmp_path / "run"
    status = cli_main(["finetune", f"ckpt={tiny_unconditioned_weights}", f"run_dir={run_dir}",
                       f"data.curated_dir={curated_dir}", *TINY, "+model.generator.channels=[4,8]"])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(error) == 1
    assert "do not fit the networks as changed by the override(s) model.generator.channels" in error[0]
    assert "(2, 1, 3, 3, 3) in the checkpoint, (4, 1, 3, 3, 3) here" in error[0]
    assert not run_dir.exists()


def test_a_task_setting_the_task_refuses_is_one_line_and_leaves_no_run_folder(
    tmp_path, curated_dir, tiny_unconditioned_weights, capsys
):
    """An output resolution for an unconditioned generator; a freeze prefix that matches nothing."""
    cases = {
        "output_resolution needs a resolution-conditioned generator": ["train", "task.output_resolution=3.2"],
        "freeze prefix 'generator.no_such_layer' matches no parameter": [
            "finetune", f"ckpt={tiny_unconditioned_weights}", "freeze=[generator.no_such_layer]"],
    }
    for expected, (command, *bad) in cases.items():
        run_dir = tmp_path / command
        status = cli_main([command, f"run_dir={run_dir}", f"data.curated_dir={curated_dir}", *TINY, *bad])
        error = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(error) == 1, error
        assert f"invalid task or model settings: {expected}" in error[0]
        assert not run_dir.exists()
