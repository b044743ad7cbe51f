"""Execute the notebook track headless with papermill and print each notebook's time.

    python scripts/run_notebooks.py                  # all notebooks, mode from LDM_LITE_SMOKE (1 = smoke)
    python scripts/run_notebooks.py 02 05            # only the notebooks whose names start with these
    python scripts/run_notebooks.py --inplace        # write the outputs back into notebooks/ (after a full run)

Executed copies go to outputs/executed/. With --inplace, widget state and progress-bar outputs are
stripped (scripts/clean_notebook_outputs.py) so that the committed notebooks carry their outputs
(pictures, numbers) but no frozen bars, except the widget state of the notebooks in KEEP_WIDGET_STATE:
there the widgets are the lesson, and the saved state lets JupyterLab and nbviewer draw them (inert, with
their last values) where no kernel runs.

The kernels run headless: LDM_LITE_PROGRESS=summary (the library's bars print one line when they
end instead of drawing; ldm_lite/progress.py) and HF_HUB_DISABLE_PROGRESS_BARS=1 (no transformers
"Loading weights" bar). A value already set in the environment is kept."""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

import nbformat
import papermill

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clean_notebook_outputs import clean_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "outputs" / "executed"
# What a kernel started here inherits: no progress bars frozen into the saved outputs.
HEADLESS_ENVIRONMENT = {"LDM_LITE_PROGRESS": "summary", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
KEEP_WIDGET_STATE = ("07_interactive_sampler.ipynb",)


@contextlib.contextmanager
def headless_environment() -> Iterator[None]:
    """Set HEADLESS_ENVIRONMENT's variables that are unset, for the kernels started inside; restore after."""
    added = [name for name in HEADLESS_ENVIRONMENT if name not in os.environ]
    os.environ.update({name: HEADLESS_ENVIRONMENT[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def strip_widget_state(path: Path) -> None:
    """Remove saved widget models and views (elsewhere than KEEP_WIDGET_STATE they are tqdm bars)."""
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
    nbformat.write(notebook, path)


def run_notebook(notebook: Path, output: Path) -> float:
    """Execute one notebook (cwd = notebooks/) into `output`; returns the seconds it took."""
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with headless_environment():
        papermill.execute_notebook(str(notebook), str(output), cwd=str(NOTEBOOKS), kernel_name="python3",
                                   progress_bar=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose names start with these")
    parser.add_argument("--inplace", action="store_true",
                        help="write outputs back into notebooks/ (a notebook that fails is left as it was)")
    options = parser.parse_args()
    notebooks = sorted(path for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")
                       if not options.prefixes or path.name.startswith(tuple(options.prefixes)))
    mode = "smoke" if os.environ.get("LDM_LITE_SMOKE", "1") == "1" else "full"
    os.environ["LDM_LITE_SMOKE"] = "1" if mode == "smoke" else "0"
    failures = 0
    total = 0.0
    for notebook in notebooks:
        output = EXECUTED / notebook.name  # copied over the notebook only when it ran through (--inplace)
        try:
            seconds = run_notebook(notebook, output)
            total += seconds
            print(f"{notebook.name:40s} {mode:5s} {seconds:7.1f} s", flush=True)
            if options.inplace:
                if notebook.name not in KEEP_WIDGET_STATE:
                    strip_widget_state(output)
                clean_file(output)
                shutil.copyfile(output, notebook)
        except papermill.PapermillExecutionError as error:
            failures += 1
            print(f"{notebook.name:40s} {mode:5s} FAILED: {error.ename}: {error.evalue}", flush=True)
    print(f"{'total':40s} {mode:5s} {total:7.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
