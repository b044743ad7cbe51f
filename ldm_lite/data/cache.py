"""The on-disk cache for prepared dataset arrays (`$LDM_LITE_CACHE`, default `~/.cache/ldm_lite`).

Files are `.npz` archives written atomically (temporary file in the same folder + rename), so a
reader never sees half a file, even with several processes building the same cache at once."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


def cache_dir() -> Path:
    """The cache folder: `$LDM_LITE_CACHE`, default `~/.cache/ldm_lite`."""
    return Path(os.environ.get("LDM_LITE_CACHE", Path.home() / ".cache" / "ldm_lite")).expanduser()


def save_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
    """Write `arrays` to `path` (.npz) through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def cached_arrays(name: str, build: Callable[[], dict[str, np.ndarray]], force: bool = False) -> dict[str, np.ndarray]:
    """Load `<cache_dir>/<name>.npz`, building and saving it with `build()` when absent."""
    path = cache_dir() / f"{name}.npz"
    if force or not path.exists():
        save_npz_atomically(path, **build())
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}
