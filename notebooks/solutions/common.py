"""What every worked solution shares: smoke mode, where its pictures go, and section headings.

The solutions run as scripts (`python notebooks/solutions/NN_*.py`), so this folder is on sys.path
and they import it as `common`."""
from __future__ import annotations

import os
from pathlib import Path

from ldm_lite.pretrained import REPOSITORY_ROOT

SMOKE = os.environ.get("LDM_LITE_SMOKE", "0") == "1"  # tiny sizes: checks that a solution runs


def output_folder(notebook: str) -> Path:
    """outputs/solutions/NN (outputs/smoke/solutions/NN in smoke mode)."""
    return REPOSITORY_ROOT / "outputs" / ("smoke/solutions" if SMOKE else "solutions") / notebook


def section(title: str) -> None:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}")
