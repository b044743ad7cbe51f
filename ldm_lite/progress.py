"""Progress bars that show live where someone watches, and stay out of notebooks executed headless.

Every bar of the library (the training loop's, a verbose sampler's) is made by `progress_bar`,
which reads the environment variable `LDM_LITE_PROGRESS`:

- `auto` (the default): `tqdm.auto`, i.e. a live widget bar in Jupyter and a text bar in a terminal;
- `summary`: no bar; one line when the loop ends, e.g. `train: 3300 steps in 591.2 s (loss 0.0123)`;
- `off`: nothing at all.

`scripts/run_notebooks.py` (papermill, `make notebooks`, the notebook tests) sets `summary`, and
`HF_HUB_DISABLE_PROGRESS_BARS=1` for the bars of Hugging Face libraries (transformers' "Loading
weights"), before it starts a kernel: a notebook executed headless would otherwise save a bar
frozen at its first frame ("train:   0%|  | 0/3300") as its output. An interactive JupyterLab
session leaves both unset and sees the bars move."""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator

from tqdm import tqdm as plain_tqdm
from tqdm.auto import tqdm as auto_tqdm

ENVIRONMENT_VARIABLE = "LDM_LITE_PROGRESS"
MODES = ("auto", "summary", "off")


def progress_mode() -> str:
    """The mode chosen by LDM_LITE_PROGRESS (`auto` when unset or empty)."""
    mode = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={mode!r}: use one of {', '.join(MODES)}")
    return mode


class SummaryProgress:
    """The part of tqdm's interface the library uses (iteration, `update`, `set_postfix`, `close`),
    without a bar: `close` prints one line with the steps done, the time and the last postfix."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, initial: int = 0,
                 desc: str = "", file: Any = None) -> None:
        self.iterable = iterable
        self.total = total if total is not None or iterable is None else _length(iterable)
        self.n = self.initial = initial
        self.desc = desc
        self.file = file
        self.postfix: dict[str, Any] = {}
        self.start = time.perf_counter()
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable if self.iterable is not None else ():
                yield item
                self.n += 1
        finally:
            self.close()

    def update(self, count: int = 1) -> None:
        self.n += count

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        done = self.n - self.initial
        if done == 0:
            return
        line = f"{self.desc or 'progress'}: {done} steps in {time.perf_counter() - self.start:.1f} s"
        if self.postfix:
            line += " (" + ", ".join(f"{name} {value}" for name, value in self.postfix.items()) + ")"
        print(line, file=self.file or sys.stdout, flush=True)

    def __enter__(self) -> "SummaryProgress":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _length(iterable: Iterable) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, initial: int = 0,
                 desc: str = "", disable: bool = False, **kwargs: Any) -> Any:
    """A progress bar (or its stand-in) for `iterable` or for `total` manual `update`s.

    `disable=True` always gives a silent one; otherwise LDM_LITE_PROGRESS decides (module docstring).
    Other keyword arguments go to tqdm (`dynamic_ncols`, `leave`, ...)."""
    mode = progress_mode()
    if disable or mode == "off":
        return plain_tqdm(iterable, total=total, initial=initial, desc=desc, disable=True)
    if mode == "summary":
        return SummaryProgress(iterable, total=total, initial=initial, desc=desc)
    return auto_tqdm(iterable, total=total, initial=initial, desc=desc, **kwargs)
