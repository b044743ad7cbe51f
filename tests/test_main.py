"""main.py end to end on the toy model: the log-dir layout, resuming, and every bad input."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import run_cli

TOY = "tests/configs/toy.yaml"


def read_steps(logdir: Path) -> list[int]:
    with open(logdir / "metrics.csv") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle) if row["name"] == "train/rec_loss"]


@pytest.mark.slow
def test_train_writes_log_layout_and_resumes(tmp_path):
    result = run_cli("main.py", "--base", TOY, "-t", "--max_steps", "20", "-l", str(tmp_path), "-n", "toyrun")
    assert result.returncode == 0, result.stderr
    assert "Setting learning rate to 8.00e-04" in result.stdout
    (logdir,) = tmp_path.iterdir()
    assert logdir.name.endswith("_toyrun")
    assert (logdir / "checkpoints" / "last.ckpt").is_file()
    assert (logdir / "checkpoints" / "step=000010.ckpt").is_file()
    assert list((logdir / "configs").glob("*-project.yaml"))
    assert list((logdir / "images" / "train").glob("reconstructions_gs-000010_*.png"))
    assert list((logdir / "images" / "val").glob("inputs_gs-000020_*.png"))
    assert (logdir / "loss_curve.png").is_file()
    assert read_steps(logdir)[-1] == 20

    resumed = run_cli("main.py", "-r", str(logdir), "-t", "--max_steps", "40")
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 20" in resumed.stdout
    steps = read_steps(logdir)
    assert steps[-1] == 40 and steps.count(21) == 1  # continued, nothing repeated


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
    """20 steps + 20 resumed steps give the same weights as 40 steps straight through."""
    import torch

    straight = run_cli("main.py", "--base", TOY, "-t", "--max_steps", "40", "-l", str(tmp_path / "a"))
    first = run_cli("main.py", "--base", TOY, "-t", "--max_steps", "20", "-l", str(tmp_path / "b"))
    assert straight.returncode == 0 and first.returncode == 0, first.stderr
    (logdir,) = (tmp_path / "b").iterdir()
    second = run_cli("main.py", "-r", str(logdir / "checkpoints" / "last.ckpt"), "-t", "--max_steps", "40")
    assert second.returncode == 0, second.stderr
    (straight_dir,) = (tmp_path / "a").iterdir()
    load = lambda path: torch.load(path, weights_only=True)["state_dict"]  # noqa: E731
    a, b = load(straight_dir / "checkpoints" / "last.ckpt"), load(logdir / "checkpoints" / "last.ckpt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


@pytest.mark.parametrize("arguments, message", [
    (["--base", "configs/nope.yaml", "-t"], "does not exist"),
    (["--base", TOY, "-t", "model.params.chanels=3"], "override key 'model.params.chanels' does not exist"),
    (["--base", TOY, "-t", "model.target=ldm_lite.models.NoSuchModel"], "unknown target"),
    (["-r", "logs/no_such_run", "-t"], "cannot resume"),
    (["--base", TOY, "-t", "--gpus", "7,"], "GPU 7"),
    (["--base", TOY, "-t", "--gpus", "x"], "not a list of GPU ids"),
])
def test_bad_input_gives_one_clear_line(arguments, message, tmp_path):
    result = run_cli("main.py", *arguments, "-l", str(tmp_path))
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_debug_shows_traceback(tmp_path):
    result = run_cli("main.py", "--base", TOY, "-t", "model.params.chanels=3", "--debug", "-l", str(tmp_path))
    assert result.returncode != 0 and "Traceback" in result.stderr
