"""Random inpainting masks and a wrapper dataset that adds `mask` and `masked_image`.

The paper's inpainting experiments (Sec. 4.5) follow the mask protocol of LaMa (Suvorov et al.,
2021): a mix of random rectangles and thick irregular brush strokes covering a sizeable part of
the image. Convention everywhere: mask = 1 where the image is to be FILLED, 0 where it is kept;
`masked_image = image * (1 - mask)`, i.e. the fill region is set to 0 (mid-gray in [-1, 1])."""
from __future__ import annotations

import math
from typing import Any, Literal, Mapping

import numpy as np
import torch
from PIL import Image, ImageDraw

MaskKind = Literal["box", "stroke", "mixed"]


def random_box_mask(
    height: int, width: int, rng: np.random.Generator, max_boxes: int = 3,
    min_fraction: float = 0.15, max_fraction: float = 0.5,
) -> np.ndarray:  # fmt: skip
    """1 to `max_boxes` axis-aligned rectangles, each side between min and max fraction of the image.
    Returns float32 (H, W, 1) with 1 = fill."""
    mask = np.zeros((height, width), dtype=np.float32)
    for _ in range(int(rng.integers(1, max_boxes + 1))):
        box_height = int(rng.integers(max(1, round(min_fraction * height)), max(2, round(max_fraction * height)) + 1))
        box_width = int(rng.integers(max(1, round(min_fraction * width)), max(2, round(max_fraction * width)) + 1))
        top = int(rng.integers(0, height - box_height + 1))
        left = int(rng.integers(0, width - box_width + 1))
        mask[top : top + box_height, left : left + box_width] = 1.0
    return mask[..., None]


def random_stroke_mask(
    height: int, width: int, rng: np.random.Generator, max_strokes: int = 5, max_vertices: int = 6,
    min_thickness: float = 0.07, max_thickness: float = 0.18,
) -> np.ndarray:  # fmt: skip
    """1 to `max_strokes` brush strokes: polylines with random turns, thickness a fraction of the
    image side, round joints (like a brush). Returns float32 (H, W, 1) with 1 = fill."""
    side = min(height, width)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        thickness = max(1, round(rng.uniform(min_thickness, max_thickness) * side))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        angle = rng.uniform(0, 2 * math.pi)
        points = [(x, y)]
        for _ in range(int(rng.integers(2, max_vertices + 1))):
            angle += rng.uniform(-math.pi / 2, math.pi / 2)
            length = rng.uniform(0.1, 0.35) * side
            x = float(np.clip(x + length * math.cos(angle), 0, width - 1))
            y = float(np.clip(y + length * math.sin(angle), 0, height - 1))
            points.append((x, y))
        draw.line(points, fill=255, width=thickness)
        radius = thickness / 2
        for px, py in points:
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=255)
    return (np.asarray(canvas, dtype=np.float32) / 255.0 > 0.5).astype(np.float32)[..., None]


def random_mask(height: int, width: int, rng: np.random.Generator, kind: MaskKind = "mixed") -> np.ndarray:
    """A box mask, a stroke mask, or (kind="mixed") either with probability 1/2. (H, W, 1), 1 = fill."""
    if kind == "mixed":
        kind = "box" if rng.random() < 0.5 else "stroke"
    if kind == "box":
        return random_box_mask(height, width, rng)
    if kind == "stroke":
        return random_stroke_mask(height, width, rng)
    raise ValueError(f"mask kind must be 'box', 'stroke' or 'mixed', got {kind!r}")


def apply_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The original's masked image: the fill region (mask = 1) set to 0, the rest kept."""
    return (image * (1.0 - mask)).astype(np.float32)


class InpaintingDataset(torch.utils.data.Dataset):
    """Wraps any dataset and adds `mask` (HW1 float32, 1 = fill) and `masked_image` to each item.

    `dataset` is a dataset or a `{target, params}` config (so YAML configs can nest it).
    `deterministic=True` gives item i the same mask every time (seeded by `seed` and i), the
    default for a validation split; otherwise masks are drawn fresh from torch's generator."""

    def __init__(
        self,
        dataset: torch.utils.data.Dataset | Mapping[str, Any],
        kind: MaskKind = "mixed",
        seed: int = 0,
        deterministic: bool | None = None,
    ) -> None:
        if isinstance(dataset, Mapping):
            from ldm_lite.util import instantiate_from_config

            dataset = instantiate_from_config(dataset)
        if kind not in ("box", "stroke", "mixed"):
            raise ValueError(f"mask kind must be 'box', 'stroke' or 'mixed', got {kind!r}")
        self.dataset, self.kind, self.seed = dataset, kind, seed
        self.deterministic = getattr(dataset, "split", "train") == "validation" if deterministic is None else deterministic

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        image = np.asarray(item["image"], dtype=np.float32)
        if self.deterministic:
            rng = np.random.default_rng([self.seed, index])
        else:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        mask = random_mask(image.shape[0], image.shape[1], rng, self.kind)
        item.update(image=image, mask=mask, masked_image=apply_mask(image, mask))
        return item
