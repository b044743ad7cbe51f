"""The worked solutions of the notebooks' exercises (notebooks/solutions/NN_*.py) run in smoke mode.

Each file runs as its own process, from the repository root, as `make solutions` runs it; a solution
asserts the facts it states, so a zero exit status means its answers still hold."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.py"))


@pytest.mark.notebooks
@pytest.mark.parametrize("solution", SOLUTIONS, ids=[path.stem for path in SOLUTIONS])
def test_solution_runs_in_smoke_mode(solution):
    environment = dict(os.environ, LDM_LITE_SMOKE="1", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                       PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, str(solution)], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"{solution.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}"
