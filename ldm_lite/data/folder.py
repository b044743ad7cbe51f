"""Images from files: a list of paths (`ImagePathsDataset`, used by the original datasets too)
and any folder of images (`ImageFolderDataset`) with optional captions and class subfolders."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from ldm_lite.data.transforms import (
    check_split,
    crop,
    in_validation,
    maybe_flip,
    pil_to_rgb_array,
    resize_crop_flip,
    resize_shorter_side,
    to_float_image,
)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")


def list_images(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """All image files under `root` (recursive, case-insensitive extensions), sorted."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in extensions and p.is_file())


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3). Also reads `.npy` arrays (CHW or HWC, with an
    optional leading 1), the format of the CelebA-HQ files used by the original code."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        array = array.reshape(array.shape[-3:]) if array.ndim == 4 else array
        if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
            array = array.transpose(1, 2, 0)
        if array.ndim == 2:
            array = array[..., None]
        if array.shape[-1] == 1:
            array = np.repeat(array, 3, axis=-1)
        return np.ascontiguousarray(array.astype(np.uint8))
    with Image.open(path) as image:
        return pil_to_rgb_array(image)


class ImagePathsDataset(torch.utils.data.Dataset):
    """Images loaded lazily from `paths`: shorter side resized to `size`, square crop
    ("center"/"random"/"none"), optional horizontal flip; `extras[i]` (a dict) joins item i."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        size: int | None = None,
        crop: str = "center",
        flip_probability: float = 0.0,
        interpolation: str = "bicubic",
        extras: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.size, self.crop, self.flip_probability, self.interpolation = size, crop, flip_probability, interpolation
        self.extras = list(extras) if extras is not None else [{} for _ in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> np.ndarray:
        try:
            return load_image(self.paths[index])
        except Exception as error:
            raise OSError(f"cannot read image {self.paths[index]}: {error}") from error

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = resize_crop_flip(self._load(index), self.size, self.crop, self.flip_probability, self.interpolation)
        return {"image": to_float_image(image), **self.extras[index]}


def _read_captions(root: Path, paths: Sequence[Path]) -> list[str | None]:
    """Caption per image: `captions.jsonl` at `root` ({"file": relative path or name, "caption": ...}),
    else a `.txt` file with the image's stem beside it, else None."""
    from_jsonl: dict[str, str] = {}
    jsonl = root / "captions.jsonl"
    if jsonl.exists():
        for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                from_jsonl[str(Path(record["file"]))] = str(record["caption"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{jsonl} line {number}: expected {{\"file\": ..., \"caption\": ...}}, got {line[:80]!r}") from None
    captions: list[str | None] = []
    for path in paths:
        relative = str(path.relative_to(root))
        caption = from_jsonl.get(relative, from_jsonl.get(path.name))
        text_file = path.with_suffix(".txt")
        if caption is None and text_file.exists():
            caption = text_file.read_text(encoding="utf-8").strip()
        captions.append(caption)
    return captions


class ImageFolderDataset(ImagePathsDataset):
    """Every png/jpg/jpeg/webp image under `root` (recursive).

    - Captions from `root/captions.jsonl` or a `.txt` beside each image give `caption`.
    - When every image lies in a subfolder of `root`, those subfolders are classes: `class_label`
      by sorted subfolder name, `human_label` the name.
    - Split: a file goes to validation by a hash of its relative path (`validation_fraction`);
      with two or more images both splits get at least one.
    - `preload=True` decodes everything once (resized to `size`) and keeps uint8 arrays in memory;
      unreadable or corrupt files are then skipped with one warning that counts them.
      `preload=False` reads files per item (for large folders)."""

    def __init__(
        self,
        root: str | Path,
        size: int | None = None,
        split: str = "train",
        crop: str = "center",
        flip_probability: float = 0.0,
        validation_fraction: float = 0.1,
        preload: bool = True,
        interpolation: str = "bicubic",
    ) -> None:
        self.split, self.root = check_split(split), Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist; pass root=<a folder of png/jpg/jpeg/webp images>")
        all_paths = list_images(self.root)
        if not all_paths:
            raise ValueError(f"no images found under {self.root} (looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
        has_classes = all(len(p.relative_to(self.root).parts) > 1 for p in all_paths)
        class_names = sorted({p.relative_to(self.root).parts[0] for p in all_paths}) if has_classes else []
        self.class_names = class_names
        paths, arrays = self._readable(self._split(all_paths, validation_fraction), size, crop, interpolation, preload)
        self.arrays: list[np.ndarray] | None = arrays if preload else None
        extras = []
        for path, caption in zip(paths, _read_captions(self.root, paths)):
            extra: dict[str, Any] = {}
            if caption is not None:
                extra["caption"] = caption
            if has_classes:
                name = path.relative_to(self.root).parts[0]
                extra.update(class_label=class_names.index(name), human_label=name)
            extras.append(extra)
        super().__init__(paths, size, crop, flip_probability, interpolation, extras)

    def _split(self, paths: list[Path], validation_fraction: float) -> list[Path]:
        keys = [p.relative_to(self.root).as_posix() for p in paths]
        validation = [in_validation(key, validation_fraction) for key in keys]
        if len(paths) >= 2 and validation_fraction > 0 and (all(validation) or not any(validation)):
            # tiny folders: the hash put everything on one side; move the first file by key order across
            validation[0] = not validation[0]
        return [p for p, v in zip(paths, validation) if v == (self.split == "validation")]

    def _readable(
        self, paths: list[Path], size: int | None, crop_mode: str, interpolation: str, preload: bool
    ) -> tuple[list[Path], list[np.ndarray]]:
        """Keep the files that open (fully decoded when preloading); warn once about the rest."""
        kept, arrays, bad = [], [], []
        for path in paths:
            try:
                if preload:
                    image = load_image(path)
                    if size is not None:
                        image = resize_shorter_side(image, size, interpolation)
                        image = crop(image, size, "center") if crop_mode == "center" else image
                    arrays.append(image)
                else:
                    with Image.open(path) as image:
                        image.verify()
                kept.append(path)
            except Exception:
                bad.append(path)
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable or corrupt image file(s) under {self.root} (first: {bad[0]})", stacklevel=3)
        if not kept:
            raise ValueError(f"no readable images in the {self.split} split of {self.root} ({len(bad)} unreadable)")
        return kept, arrays

    def _load(self, index: int) -> np.ndarray:
        return self.arrays[index] if self.arrays is not None else super()._load(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self._load(index)
        if self.arrays is not None and self.size is not None:  # already resized (and center-cropped)
            image = np.ascontiguousarray(maybe_flip(crop(image, self.size, self.crop), self.flip_probability))
            return {"image": to_float_image(image), **self.extras[index]}
        return super().__getitem__(index)
