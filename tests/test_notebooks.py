"""The notebook track runs headless: papermill in smoke mode, then nbval on the cells whose output is
deterministic (marked `# NBVAL_CHECK_OUTPUT`), against the outputs committed from a full run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
from run_notebooks import KEEP_WIDGET_STATE, run_notebook  # noqa: E402


def cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text())["cells"]


PROGRESS_BAR = re.compile(r"\d+%\||it/s\]")  # tqdm's "42%|" and "[00:01<00:02, 3.1it/s]"
MATH_AND_CODE = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|```.*?```|`[^`]*`", re.S)  # LaTeX (\nabla, \ne) and code may hold "\n"


def output_texts(cell: dict) -> list[str]:
    """The text of a code cell's outputs: streams and the plain-text form of displays and results."""
    texts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            texts.append("".join(output["text"]))
        plain = output.get("data", {}).get("text/plain")
        if plain:
            texts.append("".join(plain))
    return texts


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_structure(notebook):
    all_cells = cells(notebook)
    parameters = [cell for cell in all_cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(parameters) == 1, "exactly one cell tagged 'parameters' (papermill)"
    assert "LDM_LITE_SMOKE" in "".join(parameters[0]["source"])
    first = "".join(all_cells[0]["source"])
    assert all_cells[0]["cell_type"] == "markdown" and "CPU" in first and "GPU" in first, "runtime table at the top"
    assert any("exercise" in "".join(cell["source"]).lower() for cell in all_cells if cell["cell_type"] == "markdown")
    widget_state = json.loads(notebook.read_text()).get("metadata", {}).get("widgets")
    if notebook.name in KEEP_WIDGET_STATE:  # the widgets drawn from their saved state, kept small
        assert widget_state and notebook.stat().st_size < 3_000_000, "run scripts/run_notebooks.py 07 --inplace"
    else:
        assert not widget_state, "widget state is stripped from committed notebooks"
    for index, cell in enumerate(all_cells):
        for text in output_texts(cell):
            assert not PROGRESS_BAR.search(text), (f"cell {index}: a progress bar frozen into a committed output "
                                                   f"({text[:60]!r}): python scripts/clean_notebook_outputs.py")
            assert "\\n" not in text, f"cell {index}: a literal \\n in a committed output ({text[:60]!r})"
        if cell["cell_type"] == "markdown":
            prose = MATH_AND_CODE.sub("", "".join(cell["source"]))
            assert "\\n" not in prose, f"cell {index}: a literal \\n in the text of a markdown cell"
    headings = ["".join(cell["source"]).lstrip() for cell in all_cells if cell["cell_type"] == "markdown"]
    assert any(heading.startswith("## Further reading") for heading in headings), "a 'Further reading' cell"
    assert any(heading.startswith("## Next") for heading in headings), "a 'Next' cell"


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(notebook, monkeypatch):
    monkeypatch.setenv("LDM_LITE_SMOKE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run_notebook(notebook, ROOT / "outputs" / "executed" / notebook.name)


@pytest.mark.notebooks
@pytest.mark.timeout(1600)  # the subprocess's own limit (1500 s) decides, not pytest's default 900 s
def test_nbval_deterministic_outputs():
    environment = dict(os.environ, LDM_LITE_SMOKE="1", HF_HUB_OFFLINE="1", LDM_LITE_PROGRESS="summary",
                       HF_HUB_DISABLE_PROGRESS_BARS="1")  # as scripts/run_notebooks.py runs the kernels
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), *map(str, NOTEBOOKS)],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:]
