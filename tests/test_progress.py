"""LDM_LITE_PROGRESS: live bars by default, one summary line or nothing in headless runs
(ldm_lite/progress.py), and the output cleaner for committed notebooks."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
import torch

from ldm_lite.progress import SummaryProgress, progress_bar, progress_mode
from ldm_lite.samplers.ddim import DDIMSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from clean_notebook_outputs import clean_outputs  # noqa: E402
from run_notebooks import HEADLESS_ENVIRONMENT, headless_environment  # noqa: E402


def test_summary_mode_prints_one_line(monkeypatch, capsys):
    monkeypatch.setenv("LDM_LITE_PROGRESS", "summary")
    bar = progress_bar(total=5, desc="train")
    assert isinstance(bar, SummaryProgress)
    for _ in range(5):
        bar.update(1)
    bar.set_postfix({"loss": "0.1000"}, refresh=False)
    bar.close()
    bar.close()
    output = capsys.readouterr()
    assert output.out.count("\n") == 1 and output.out.startswith("train: 5 steps in ") and "loss 0.1000" in output.out
    assert output.err == ""
    assert list(progress_bar(range(3), desc="loop")) == [0, 1, 2]
    assert capsys.readouterr().out.startswith("loop: 3 steps in ")


def test_off_mode_and_disable_print_nothing(monkeypatch, capsys):
    monkeypatch.setenv("LDM_LITE_PROGRESS", "off")
    assert list(progress_bar(range(4), desc="x")) == [0, 1, 2, 3]
    monkeypatch.setenv("LDM_LITE_PROGRESS", "summary")
    assert list(progress_bar(range(2), desc="x", disable=True)) == [0, 1]
    output = capsys.readouterr()
    assert output.out == "" and output.err == ""


def test_mode_default_and_bad_value(monkeypatch):
    monkeypatch.delenv("LDM_LITE_PROGRESS", raising=False)
    assert progress_mode() == "auto"
    monkeypatch.setenv("LDM_LITE_PROGRESS", "loud")
    with pytest.raises(ValueError, match="LDM_LITE_PROGRESS"):
        progress_mode()


def test_verbose_sampler_in_summary_mode(monkeypatch, capsys):
    monkeypatch.setenv("LDM_LITE_PROGRESS", "summary")
    alphas_cumprod = torch.linspace(0.999, 0.01, 100)
    sampler = DDIMSampler(lambda x, t, c: 0.1 * x, alphas_cumprod, verbose=True)
    sampler.sample((1, 2, 4, 4), steps=5, seed=0)
    assert capsys.readouterr().out.startswith("ddim sampler: 5 steps in ")


def test_headless_environment_sets_and_restores(monkeypatch):
    for name in HEADLESS_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LDM_LITE_PROGRESS", "off")  # a value the caller set is kept
    import os

    with headless_environment():
        assert os.environ["LDM_LITE_PROGRESS"] == "off" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ and os.environ["LDM_LITE_PROGRESS"] == "off"


def test_clean_outputs_removes_bars_only():
    cell = nbformat.v4.new_code_cell("fit(config)")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="Setting learning rate\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "train:   0%|          | 0/3300 [00:00<?, ?it/s]"}),
        nbformat.v4.new_output("stream", name="stderr",
                               text="ddim sampler:  50%|#  | 1/2 [00:00<?, 3.1it/s]\rddim sampler: 100%|##| 2/2\n"),
        nbformat.v4.new_output("stream", name="stdout", text="done\n"),
        nbformat.v4.new_output("stream", name="stdout", text="\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "<Figure size 640x480 with 1 Axes>",
                                                     "image/png": "iVBORw0KGgo="}),
    ]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    assert clean_outputs(notebook) == 2
    assert [output.get("text", output.get("data", {}).get("text/plain")) for output in cell.outputs] == [
        "Setting learning rate\n", "done\n", "\n", "<Figure size 640x480 with 1 Axes>"]
    assert clean_outputs(notebook) == 0
