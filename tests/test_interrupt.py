"""Checkpoints never lose work: SIGKILL at any time leaves only complete checkpoints, and the run
resumes at the saved step; SIGTERM saves last.ckpt at the current step before exiting."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, run_cli

SLOW_TOY = ["--base", "tests/configs/toy.yaml", "-t", "--max_steps", "100000", "model.params.step_delay=0.02",
            "lightning.callbacks.checkpoint.params.every_n_train_steps=3", "lightning.trainer.val_check_interval=0",
            "lightning.callbacks.image_logger.params.batch_frequency=0"]


def start(logroot: Path) -> subprocess.Popen:
    environment = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "main.py", *SLOW_TOY, "-l", str(logroot), "-n", "killed"], cwd=ROOT,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def all_checkpoints_load(folder: Path) -> dict[str, int]:
    """Every *.ckpt present loads completely; returns {name: global_step}."""
    steps = {}
    for path in folder.glob("*.ckpt"):
        try:
            steps[path.name] = torch.load(path, weights_only=True)["global_step"]
        except FileNotFoundError:  # replaced between glob and open: fine, it was renamed over
            continue
    return steps


def wait_for_step(checkpoints: Path, step: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.stderr.read()
        if checkpoints.is_dir() and max(all_checkpoints_load(checkpoints).values(), default=0) >= step:
            return
        time.sleep(0.05)
    raise TimeoutError(f"no checkpoint of step {step} within {timeout} s")


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    process = start(tmp_path)
    try:
        logdir = _wait_for_logdir(tmp_path, process)
        checkpoints = logdir / "checkpoints"
        wait_for_step(checkpoints, 9, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    saved = all_checkpoints_load(checkpoints)  # raises if any file was left truncated
    last_step = saved["last.ckpt"]
    assert last_step >= 9
    resumed = run_cli("main.py", "-r", str(logdir), "-t", "--max_steps", str(last_step + 4))
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {last_step}" in resumed.stdout
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == last_step + 4
    assert not list(checkpoints.glob(".*.tmp"))


@pytest.mark.slow
def test_sigterm_saves_last_checkpoint(tmp_path):
    process = start(tmp_path)
    try:
        logdir = _wait_for_logdir(tmp_path, process)
        wait_for_step(logdir / "checkpoints", 3, process)
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143  # 128 + SIGTERM, as a program killed by it
    assert "Traceback" not in stderr and "error:" not in stderr
    saved = torch.load(logdir / "checkpoints" / "last.ckpt", weights_only=True)
    assert f"received SIGTERM: saved {logdir / 'checkpoints' / 'last.ckpt'} at step {saved['global_step']}" in stderr
    # The checkpoint holds the step reached when the signal came, beyond the periodic one.
    assert saved["global_step"] > 3


def _wait_for_logdir(root: Path, process: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.stderr.read()
        runs = list(root.iterdir())
        if runs:
            return runs[0]
        time.sleep(0.05)
    raise TimeoutError("the run made no log dir")
