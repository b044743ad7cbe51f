"""Images from files: a list of paths (`ImagePathsDataset`, used by the original datasets too)
and any folder of images (`ImageFolderDataset`) with optional captions and class subfolders."""
from __future__ import annotations

import csv
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


CAPTION_COLUMNS: tuple[str, ...] = ("text", "caption")  # Hugging Face imagefolder's usual caption column first


def class_names(root: str | Path) -> list[str]:
    """The classes of a folder: its subfolders' names, sorted, when every image lies in a subfolder;
    else an empty list (the folder is unlabelled)."""
    root = Path(root)
    parts = [path.relative_to(root).parts for path in list_images(root)]
    if not parts or any(len(part) == 1 for part in parts):
        return []
    return sorted({part[0] for part in parts})


def _read_metadata(metadata: Path) -> list[dict[str, Any]]:
    """The rows of a Hugging Face imagefolder `metadata.jsonl` / `metadata.csv` (each names its image in `file_name`)."""
    if metadata.suffix == ".csv":
        with open(metadata, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        columns = list(rows[0]) if rows else []
        if rows and "file_name" not in columns:
            raise ValueError(f"{metadata} has no file_name column (columns: {', '.join(columns)}): name each image "
                             "in a file_name column, as Hugging Face's imagefolder does")
        return rows
    rows = []
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row["file_name"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{metadata} line {number}: expected {{\"file_name\": ..., \"text\": ...}}, "
                             f"got {line[:80]!r}") from None
        rows.append(row)
    return rows


def _read_captions(root: Path, paths: Sequence[Path]) -> list[str | None]:
    """Caption per image, from the first source that has one:
    1. `metadata.jsonl` / `metadata.csv` anywhere under `root` (Hugging Face's imagefolder layout):
       `file_name` relative to the metadata file's folder, the caption in a `text` or `caption` column;
    2. `captions.jsonl` at `root`: {"file": relative path or name, "caption": ...};
    3. a `.txt` file with the image's stem beside the image (`cat.png` + `cat.txt`);
    else None."""
    known: dict[str, str] = {}
    for metadata in sorted(p for p in root.rglob("metadata.*") if p.suffix in (".jsonl", ".csv")):
        for row in _read_metadata(metadata):
            column = next((name for name in CAPTION_COLUMNS if row.get(name) not in (None, "")), None)
            if column is not None:
                image = (metadata.parent / str(row["file_name"])).relative_to(root)
                known[image.as_posix()] = str(row[column]).strip()
    jsonl = root / "captions.jsonl"
    if jsonl.exists():
        for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                known.setdefault(Path(record["file"]).as_posix(), str(record["caption"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{jsonl} line {number}: expected {{\"file\": ..., \"caption\": ...}}, got {line[:80]!r}") from None
    captions: list[str | None] = []
    for path in paths:
        caption = known.get(path.relative_to(root).as_posix(), known.get(path.name))
        text_file = path.with_suffix(".txt")
        if caption is None and text_file.exists():
            caption = text_file.read_text(encoding="utf-8").strip()
        captions.append(caption)
    return captions


def _sizes_range(sizes: Sequence[tuple[int, int]]) -> str:
    """"40x30" or "16x16..300x200" (width x height, smallest and largest area)."""
    ordered = sorted(set(sizes), key=lambda size: (size[0] * size[1], size))
    first, last = (f"{width}x{height}" for width, height in (ordered[0], ordered[-1]))
    return first if first == last else f"{first}..{last}"


class ImageFolderDataset(ImagePathsDataset):
    """Every png/jpg/jpeg/webp image under `root` (recursive), for training on your own images.

    - Captions (`caption`) from a Hugging Face imagefolder `metadata.jsonl` / `metadata.csv`
      (`file_name` + `text` or `caption`), a `captions.jsonl` at `root`, or a `.txt` beside each image.
      When only some images have one, the others get the empty caption.
    - When every image lies in a subfolder of `root`, those subfolders are classes: `class_label`
      by sorted subfolder name, `human_label` the name; the train split prints the mapping.
    - `required_keys` ("caption", "class_label"): refuse a folder that lacks them for any image.
      `n_classes`: refuse a folder with another number of class folders (the model's class count).
    - Split: a file goes to validation by a hash of its relative path (`validation_fraction`);
      with two or more images both splits get at least one, and each class keeps a training image.
    - Images of other sizes are resized (shorter side) and cropped, other modes converted to RGB;
      one line per split says how many. Unreadable files are skipped with one warning that counts
      them, and refused when they are more than `max_unreadable_fraction` of the split.
    - `preload=True` decodes everything once (resized to `size`) and keeps uint8 arrays in memory.
      `preload=False` reads files per item (for large folders)."""

    def __init__(
        self,
        root: str | Path | None,
        size: int | None = None,
        split: str = "train",
        crop: str = "center",
        flip_probability: float = 0.0,
        validation_fraction: float = 0.1,
        preload: bool = True,
        interpolation: str = "bicubic",
        required_keys: Sequence[str] = (),
        n_classes: int | None = None,
        max_unreadable_fraction: float = 0.5,
    ) -> None:
        self.split = check_split(split)
        if root is None or str(root) == "":
            raise ValueError("no image folder given: set root to a folder of png/jpg/jpeg/webp images "
                             "(with main.py: data.params.train.params.root=<folder>)")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist; pass root=<a folder of png/jpg/jpeg/webp images>")
        unknown = sorted(set(required_keys) - {"caption", "class_label"})
        if unknown:
            raise ValueError(f"required_keys can hold 'caption' and 'class_label', got {unknown}")
        all_paths = list_images(self.root)
        if not all_paths:
            raise ValueError(f"no images found under {self.root} (looked recursively for {', '.join(IMAGE_EXTENSIONS)}): "
                             "put your images there, in one subfolder per class if they have classes")
        self.class_names = class_names(self.root)
        has_classes = bool(self.class_names)
        folder_of = {path: path.relative_to(self.root).parts[0] for path in all_paths} if has_classes else {}
        if "class_label" in required_keys:
            self._check_classes(all_paths, n_classes)
        split_paths = self._split(all_paths, validation_fraction, folder_of)
        paths, arrays = self._readable(split_paths, size, crop, interpolation, preload, max_unreadable_fraction)
        self.arrays: list[np.ndarray] | None = arrays if preload else None
        captions = dict(zip(all_paths, _read_captions(self.root, all_paths)))
        if "caption" in required_keys:
            missing = [path for path in paths if captions[path] is None]
            if missing:
                raise ValueError(f"{len(missing)} of {len(paths)} images in the {self.split} split of {self.root} have no "
                                 f"caption (first: {missing[0].relative_to(self.root)}): add a <image>.txt beside each "
                                 "image, or a metadata.jsonl / metadata.csv with file_name and text columns")
        elif any(caption is not None for caption in captions.values()):
            captions = {path: caption or "" for path, caption in captions.items()}  # batches need the key in every item
        if self.split == "train" and has_classes:
            self._describe_classes(all_paths, folder_of)
        extras = []
        for path in paths:
            extra: dict[str, Any] = {}
            if captions[path] is not None:
                extra["caption"] = captions[path]
            if has_classes:
                extra.update(class_label=self.class_names.index(folder_of[path]), human_label=folder_of[path])
            extras.append(extra)
        super().__init__(paths, size, crop, flip_probability, interpolation, extras)

    def _check_classes(self, paths: list[Path], n_classes: int | None) -> None:
        """Class labels need every image in a class subfolder, and as many folders as the model has classes."""
        if not self.class_names:
            loose = [path for path in paths if len(path.relative_to(self.root).parts) == 1]
            raise ValueError(f"class labels come from subfolders, but {len(loose)} image(s) lie directly in {self.root} "
                             f"(first: {loose[0].name}): move each image into a subfolder named after its class")
        if len(self.class_names) < 2:
            raise ValueError(f"{self.root} has one class folder ({self.class_names[0]}): a class-conditional model "
                             "needs two or more; train an unconditional model on it instead")
        if n_classes is not None and n_classes != len(self.class_names):
            raise ValueError(f"{self.root} has {len(self.class_names)} class folders but the model has n_classes={n_classes}: "
                             f"set model.params.cond_stage_config.params.n_classes={len(self.class_names)}")

    def _describe_classes(self, paths: list[Path], folder_of: dict[Path, str]) -> None:
        """Print the label of each class folder (train split only), and warn about classes of one image."""
        counts = {name: 0 for name in self.class_names}
        for path in paths:
            counts[folder_of[path]] += 1
        listed = [f"{label} {name} ({counts[name]})" for label, name in enumerate(self.class_names)]
        if len(listed) > 12:
            listed = listed[:10] + ["...", listed[-1]]
        print(f"ImageFolderDataset: {len(self.class_names)} classes (class_label name (files)): {', '.join(listed)}")
        single = [name for name, count in counts.items() if count == 1]
        if single:
            warnings.warn(f"{len(single)} class folder(s) hold a single image (first: {single[0]}): the model can only "
                          "copy it; add images to it or merge it into another class", stacklevel=3)

    def _split(self, paths: list[Path], validation_fraction: float, folder_of: dict[Path, str]) -> list[Path]:
        keys = [p.relative_to(self.root).as_posix() for p in paths]
        validation = [in_validation(key, validation_fraction) for key in keys]
        if len(paths) >= 2 and validation_fraction > 0 and (all(validation) or not any(validation)):
            # tiny folders: the hash put everything on one side; move the first file by key order across
            validation[0] = not validation[0]
        trained_classes = {folder_of[path] for path, held_out in zip(paths, validation) if folder_of and not held_out}
        for index, path in enumerate(paths):  # every class keeps at least one training image
            if folder_of and folder_of[path] not in trained_classes:
                validation[index] = False
                trained_classes.add(folder_of[path])
        return [p for p, v in zip(paths, validation) if v == (self.split == "validation")]

    def _readable(
        self, paths: list[Path], size: int | None, crop_mode: str, interpolation: str, preload: bool,
        max_unreadable_fraction: float,
    ) -> tuple[list[Path], list[np.ndarray]]:
        """Keep the files that open (fully decoded when preloading); warn once about the rest, refuse
        the folder past `max_unreadable_fraction`, and say once how many images were resized or converted."""
        if not paths:
            raise ValueError(f"the {self.split} split of {self.root} holds no image: add images (two or more in all), "
                             "and for a validation split set validation_fraction above 0")
        kept, arrays, bad = [], [], []
        first_error = ""
        sizes: list[tuple[int, int]] = []
        modes: list[str] = []
        for path in paths:
            try:
                with Image.open(path) as image:
                    image_size, mode = image.size, image.mode
                    if not preload:
                        image.verify()
                if preload:
                    array = load_image(path)
                    if size is not None:
                        array = resize_shorter_side(array, size, interpolation)
                        array = crop(array, size, "center") if crop_mode == "center" else array
                    arrays.append(array)
                kept.append(path)
                sizes.append(image_size)
                modes.append(mode)
            except Exception as error:
                bad.append(path)
                first_error = first_error or f"{type(error).__name__}: {error}"
        if not kept:
            raise ValueError(f"no readable images in the {self.split} split of {self.root} ({len(bad)} unreadable, "
                             f"first: {bad[0]}: {first_error})")
        if len(bad) > max_unreadable_fraction * len(paths):
            raise ValueError(f"{len(bad)} of {len(paths)} image files in the {self.split} split of {self.root} cannot be "
                             f"read (first: {bad[0].name}: {first_error}): more than {max_unreadable_fraction:.0%}, "
                             "so the folder looks wrong (Git LFS pointers? another format renamed?); fix or remove them")
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable or corrupt image file(s) under {self.root} (first: {bad[0]})", stacklevel=3)
        notes = []
        other_sizes = [image_size for image_size in sizes if size is not None and image_size != (size, size)]
        if other_sizes:
            target = f"{size}x{size} (shorter side, then {crop_mode} crop)" if crop_mode != "none" else f"shorter side {size}"
            notes.append(f"{len(other_sizes)} resized from {_sizes_range(other_sizes)} to {target}")
        other_modes = sorted({mode for mode in modes if mode != "RGB"})
        if other_modes:
            count = sum(mode != "RGB" for mode in modes)
            notes.append(f"{count} converted to RGB (from {', '.join(other_modes)})")
        if notes:
            print(f"ImageFolderDataset ({self.split}, {len(kept)} images): {'; '.join(notes)}")
        return kept, arrays

    def _load(self, index: int) -> np.ndarray:
        return self.arrays[index] if self.arrays is not None else super()._load(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self._load(index)
        if self.arrays is not None and self.size is not None:  # already resized (and center-cropped)
            image = np.ascontiguousarray(maybe_flip(crop(image, self.size, self.crop), self.flip_probability))
            return {"image": to_float_image(image), **self.extras[index]}
        return super().__getitem__(index)
