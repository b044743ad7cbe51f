"""Remove progress-bar outputs from notebooks, keeping every other output as it is.

    python scripts/clean_notebook_outputs.py                      # every notebooks/NN_*.ipynb
    python scripts/clean_notebook_outputs.py notebooks/02_autoencoder.ipynb
    python scripts/clean_notebook_outputs.py --check              # only report; exit status 1 if any is found

A notebook executed headless saves a progress bar as it was when the kernel first drew it: a
display output "train:   0%|          | 0/3300 [00:00<?, ?it/s]" (tqdm's widget bar, whose text
is all that is left once the widget state is stripped) or stream text full of carriage returns.
Neither tells a reader anything. This script drops display outputs whose only text is a bar, and
the bar lines of stream outputs (a stream left empty is dropped). It never executes anything.
`scripts/run_notebooks.py --inplace` applies it after a run; since that script also hides the bars
(LDM_LITE_PROGRESS=summary, see ldm_lite/progress.py), this is the safety net for bars made by
other libraries."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
# "42%|" (tqdm's percentage and bar) or "[00:01<00:02, 3.1it/s]" / "?it/s]" / "s/it]" (its rate)
PROGRESS_PATTERN = re.compile(r"\d+%\||(it/s|s/it)\]")


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def clean_stream(text: str) -> str:
    """The stream text without its progress-bar lines (and without the carriage-return frames of one)."""
    if not PROGRESS_PATTERN.search(text):
        return text
    kept = []
    for line in text.split("\n"):
        frames = [frame for frame in line.split("\r") if frame]
        if frames and any(PROGRESS_PATTERN.search(frame) for frame in frames):
            non_bar = [frame for frame in frames if not PROGRESS_PATTERN.search(frame)]
            if not non_bar:
                continue
            line = non_bar[-1]
        kept.append(line)
    cleaned = "\n".join(kept)
    return "" if not cleaned.strip() else cleaned


def is_progress_display(output: dict) -> bool:
    """A display / execute_result output that is a bar: its text is one, and it holds no image or html."""
    data = output.get("data", {})
    text = _text(data.get("text/plain", ""))
    if not text or not PROGRESS_PATTERN.search(text):
        return False
    return set(data) <= {"text/plain", "application/vnd.jupyter.widget-view+json"}


def clean_outputs(notebook: nbformat.NotebookNode) -> int:
    """Remove the progress-bar outputs of every code cell in place; returns how many outputs changed."""
    changed = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                text = _text(output.text)
                cleaned = clean_stream(text)
                if cleaned != text:
                    changed += 1
                    if not cleaned:
                        continue
                    output.text = cleaned
            elif output.output_type in ("display_data", "execute_result") and is_progress_display(output):
                changed += 1
                continue
            kept.append(output)
        cell.outputs = kept
    return changed


def clean_file(path: Path, check: bool = False) -> int:
    """Clean one notebook file (unless `check`); returns the number of outputs changed (or to change)."""
    notebook = nbformat.read(path, as_version=4)
    changed = clean_outputs(notebook)
    if changed and not check:
        nbformat.write(notebook, path)
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebook files (default: notebooks/NN_*.ipynb)")
    parser.add_argument("--check", action="store_true", help="only report, change nothing; exit 1 if a bar is found")
    options = parser.parse_args()
    paths = options.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    total = 0
    for path in paths:
        changed = clean_file(path, check=options.check)
        total += changed
        if changed:
            print(f"{path}: {changed} progress-bar output(s) {'found' if options.check else 'removed'}")
    if not total:
        print("no progress-bar outputs")
    return 1 if options.check and total else 0


if __name__ == "__main__":
    sys.exit(main())
