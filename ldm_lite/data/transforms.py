"""Image transforms shared by every dataset: uint8 <-> [-1, 1] floats, resize, crop, flip,
and the deterministic train/validation split rule.

Datasets keep images as uint8 HWC arrays (small, fast to copy) and convert one item at a time
in `__getitem__`. Random choices (random crop, flip) draw from torch's global generator, so
`ldm_lite.util.seed_everything` makes them reproducible and each DataLoader worker gets its own
stream."""
from __future__ import annotations

import zlib
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image

Split = Literal["train", "validation"]
CropMode = Literal["center", "random", "none"]

_RESAMPLE = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
    "area": Image.BOX,
}


def check_split(split: str) -> str:
    """Return `split` if it is "train" or "validation" (also accepts "val"), else raise."""
    if split == "val":
        return "validation"
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    return split


def in_validation(key: str, validation_fraction: float) -> bool:
    """Deterministic split rule: an item goes to validation when the CRC32 hash of its stable
    `key` (a file name, an emoji code, ...) falls in the first `validation_fraction` of the range.
    The same key always lands in the same split, on every machine and Python version."""
    return zlib.crc32(key.encode("utf-8")) / 2**32 < validation_fraction


def to_float_image(image: np.ndarray) -> np.ndarray:
    """uint8 HWC in [0, 255] -> float32 HWC in [-1, 1] (x / 127.5 - 1, as the original)."""
    return (image.astype(np.float32) / 127.5 - 1.0).astype(np.float32)


def to_uint8_image(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """float HWC in [-1, 1] -> uint8 HWC (clipped)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    return np.clip((np.asarray(image) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def _grey_to_uint8(image: Image.Image) -> np.ndarray:
    """A one-band image of more than 8 bits (mode I;16*, I or F) -> uint8 HW, scaled, not clipped.

    I;16 (16-bit PNG and TIFF) spans 0..65535. I (32-bit integers) and F (floats) carry no fixed
    range, so it is read from the values: F within [0, 1] is a fraction, values within 0..255 are
    8-bit levels, within 0..65535 16-bit levels, anything else is stretched from its min to its max."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (low >= 0 and 255 < high <= 65535):
        values = values * (255 / 65535)
    elif image.mode == "F" and low >= 0 and high <= 1:
        values = values * 255
    elif low < 0 or high > 255:
        values = (values - low) * (255 / (high - low))
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def pil_to_rgb_array(image: Image.Image, background: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """Any PIL image (modes 1, L, LA, P, PA, RGB, RGBA, I;16, I, F, CMYK, YCbCr, ...) -> uint8 RGB
    HWC array. Transparency (an alpha band or a transparent colour) is composited on `background`;
    16-bit and float greyscale is scaled to 0..255 (see `_grey_to_uint8`), never clipped."""
    if image.mode.startswith("I") or image.mode == "F":
        return np.repeat(_grey_to_uint8(image)[..., None], 3, axis=-1)
    if "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        image = Image.alpha_composite(canvas, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def resize(image: np.ndarray, height: int, width: int, interpolation: str = "bicubic") -> np.ndarray:
    """Resize a uint8 HWC array to (height, width) with PIL."""
    if interpolation not in _RESAMPLE:
        raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {interpolation!r}")
    if image.shape[0] == height and image.shape[1] == width:
        return image
    squeeze = image.ndim == 3 and image.shape[2] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize((width, height), _RESAMPLE[interpolation]))
    return out[..., None] if squeeze else out


def resize_shorter_side(image: np.ndarray, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """Resize so that the shorter side equals `size`, keeping the aspect ratio."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    return resize(image, max(size, round(height * scale)), max(size, round(width * scale)), interpolation)


def crop(image: np.ndarray, size: int, mode: CropMode = "center") -> np.ndarray:
    """Square crop of side `size`: "center", "random" (torch's generator) or "none" (no crop)."""
    if mode == "none":
        return image
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from an image of {height}x{width}; resize it first")
    if mode == "center":
        top, left = (height - size) // 2, (width - size) // 2
    elif mode == "random":
        top = int(torch.randint(0, height - size + 1, ()).item())
        left = int(torch.randint(0, width - size + 1, ()).item())
    else:
        raise ValueError(f"crop must be 'center', 'random' or 'none', got {mode!r}")
    return image[top : top + size, left : left + size]


def maybe_flip(image: np.ndarray, flip_probability: float) -> np.ndarray:
    """Horizontal flip with probability `flip_probability` (torch's generator)."""
    if flip_probability > 0 and torch.rand(()).item() < flip_probability:
        return image[:, ::-1]
    return image


def resize_crop_flip(
    image: np.ndarray,
    size: int | None,
    crop_mode: CropMode = "center",
    flip_probability: float = 0.0,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """The standard pipeline: shorter side to `size`, square crop, optional flip (uint8 in and out).
    `size=None` keeps the image as it is (only the flip applies)."""
    if size is not None:
        image = crop(resize_shorter_side(image, size, interpolation), size, crop_mode)
    return np.ascontiguousarray(maybe_flip(image, flip_probability))
