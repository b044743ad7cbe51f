"""Shared fixtures: the repository root and a runner for the command-line entry points."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*arguments: str, cwd: Path = ROOT, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python <arguments>` in the repository root and capture its output."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, *arguments], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=environment)


@pytest.fixture
def root() -> Path:
    return ROOT
