"""Procedurally drawn coloured shapes with exact attributes, and the judge that reads them back.

Every image holds one shape (circle, square, triangle, diamond, plus) in one of six well
separated colours, small or large, at one of nine positions, on a plain background. Because the
attributes are known exactly, this dataset is where the conditioning accuracy of a text- or
class-conditional model is measured: generate from a caption, then `shapes_match` the result.

All images come from a finite "universe" of configurations (attributes x a one-pixel jitter of
the position). Each configuration belongs to train or validation by a hash of its description,
so the two splits never share an image, and a seed picks the order (and repeats, if `length`
asks for more than the split holds)."""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from ldm_lite.data.transforms import check_split, in_validation, to_float_image

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "plus")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "yellow": (245, 215, 25),
    "purple": (150, 50, 200),
    "orange": (255, 130, 0),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128)}
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUNDS)

# Geometry as fractions of the image side: shape centres on a 3x3 grid, extents of the two sizes.
GRID_FRACTIONS = (9 / 32, 0.5, 23 / 32)  # centres at 9, 16, 23 px of 32
SIZE_FRACTIONS = {"small": 10 / 32, "large": 0.5}  # 10 and 16 px at 32 px
JITTERS = (-1, 0, 1)  # position jitter in units of (image side / 32) pixels
ATTRIBUTE_KEYS = ("shape", "color", "size", "position")


def shape_caption(shape: str, color: str, size: str, position: str, background: str | None = None) -> str:
    """"a small red circle at the top left" (+ " on a white background" when given)."""
    caption = f"a {size} {color} {shape} at the {position}"
    return caption + (f" on a {background} background" if background else "")


def shape_mask(shape: str, image_size: int, center_x: float, center_y: float, extent: float) -> np.ndarray:
    """Boolean (H, W) mask of one shape, tested at pixel centres (no anti-aliasing, so exact)."""
    coordinates = np.arange(image_size, dtype=np.float32) + 0.5
    dx = np.abs(coordinates[None, :] - center_x)
    dy_signed = coordinates[:, None] - center_y
    dy = np.abs(dy_signed)
    half = extent / 2
    if shape == "circle":
        return dx**2 + dy**2 <= half**2
    if shape == "square":
        return (dx <= half) & (dy <= half)
    if shape == "triangle":  # apex at the top, base at the bottom; half-width grows linearly with depth
        return (dy_signed <= half) & (dx <= (dy_signed + half) / 2)
    if shape == "diamond":
        return dx + dy <= half
    if shape == "plus":
        arm = half * 0.4
        return ((dx <= arm) & (dy <= half)) | ((dy <= arm) & (dx <= half))
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def render_shape(
    shape: str, color: str, size: str, position: str, background: str = "white",
    image_size: int = 32, jitter: tuple[int, int] = (0, 0),
) -> np.ndarray:  # fmt: skip
    """One uint8 (H, W, 3) image of the described shape."""
    if image_size % 32:
        raise ValueError(f"shapes image_size must be a multiple of 32 (32, 64, ...), got {image_size}")
    unit = image_size // 32
    row, column = divmod(POSITIONS.index(position), 3)
    center_x = GRID_FRACTIONS[column] * image_size + jitter[0] * unit
    center_y = GRID_FRACTIONS[row] * image_size + jitter[1] * unit
    mask = shape_mask(shape, image_size, center_x, center_y, SIZE_FRACTIONS[size] * image_size)
    image = np.empty((image_size, image_size, 3), dtype=np.uint8)
    image[:] = BACKGROUNDS[background]
    image[mask] = COLORS[color]
    return image


class ShapesDataset(torch.utils.data.Dataset):
    """Coloured shapes with captions and exact attributes.

    Items: `image` (HWC float32 in [-1, 1]), `caption`, `class_label` (shape x colour, 30 classes:
    `shape * 6 + color`), `human_label` ("red circle"), and the attribute indices `shape`, `color`,
    `size`, `position`, `background` into SHAPES, COLOR_NAMES, SIZES, POSITIONS, BACKGROUND_NAMES.

    `length=None` gives every configuration of the split once (about 13,100 train / 1,460
    validation with the defaults), in an order fixed by `seed`; a number draws that many
    configurations (with repeats when larger). `shapes`, `colors`, `backgrounds` restrict the
    vocabulary (the split of a configuration does not depend on them). There is no flip option:
    it would swap left and right against the caption."""

    n_classes = len(SHAPES) * len(COLORS)

    def __init__(
        self,
        size: int = 32,
        split: str = "train",
        length: int | None = None,
        seed: int = 0,
        shapes: Sequence[str] = SHAPES,
        colors: Sequence[str] = COLOR_NAMES,
        backgrounds: Sequence[str] = BACKGROUND_NAMES,
        caption_background: bool = False,
        validation_fraction: float = 0.1,
    ) -> None:
        self.split = check_split(split)
        if size % 32 or size <= 0:
            raise ValueError(f"ShapesDataset size must be a positive multiple of 32 (32, 64, ...), got {size}")
        for names, vocabulary, what in ((shapes, SHAPES, "shapes"), (colors, COLORS, "colors"), (backgrounds, BACKGROUNDS, "backgrounds")):
            unknown = [name for name in names if name not in vocabulary]
            if unknown or not names:
                raise ValueError(f"{what} must be a non-empty subset of {tuple(vocabulary)}, got {list(names)}")
        self.size, self.caption_background = size, caption_background

        configurations = [
            configuration
            for configuration in itertools.product(
                [SHAPES.index(s) for s in shapes], [COLOR_NAMES.index(c) for c in colors], range(len(SIZES)),
                range(len(POSITIONS)), [BACKGROUND_NAMES.index(b) for b in backgrounds], JITTERS, JITTERS,
            )
            if in_validation(self._configuration_key(configuration), validation_fraction) == (self.split == "validation")
        ]  # fmt: skip
        if not configurations:
            raise ValueError(f"the {self.split} split is empty for these settings; raise validation_fraction or widen the vocabulary")
        rng = np.random.default_rng([seed, 0 if self.split == "train" else 1])
        if length is None:
            order = rng.permutation(len(configurations))
        else:
            order = rng.integers(0, len(configurations), size=length)
        table = np.asarray(configurations, dtype=np.int64)[order]
        self.attributes = {key: table[:, column] for column, key in enumerate(ATTRIBUTE_KEYS + ("background",))}
        self.jitter = table[:, 5:7]
        self.images = self._render_all()

    @staticmethod
    def _configuration_key(configuration: tuple[int, ...]) -> str:
        shape, color, size, position, background, jitter_x, jitter_y = configuration
        return f"{SHAPES[shape]}|{COLOR_NAMES[color]}|{SIZES[size]}|{POSITIONS[position]}|{BACKGROUND_NAMES[background]}|{jitter_x}|{jitter_y}"

    def _render_all(self) -> np.ndarray:
        images = np.empty((len(self), self.size, self.size, 3), dtype=np.uint8)
        for index in range(len(self)):
            attributes = {key: int(self.attributes[key][index]) for key in self.attributes}
            images[index] = render_shape(
                SHAPES[attributes["shape"]], COLOR_NAMES[attributes["color"]], SIZES[attributes["size"]],
                POSITIONS[attributes["position"]], BACKGROUND_NAMES[attributes["background"]],
                self.size, (int(self.jitter[index, 0]), int(self.jitter[index, 1])),
            )  # fmt: skip
        return images

    def __len__(self) -> int:
        return len(self.jitter)

    def caption(self, index: int) -> str:
        a = {key: int(values[index]) for key, values in self.attributes.items()}
        background = BACKGROUND_NAMES[a["background"]] if self.caption_background else None
        return shape_caption(SHAPES[a["shape"]], COLOR_NAMES[a["color"]], SIZES[a["size"]], POSITIONS[a["position"]], background)

    def __getitem__(self, index: int) -> dict[str, Any]:
        a = {key: int(values[index]) for key, values in self.attributes.items()}
        return {
            "image": to_float_image(self.images[index]),
            "caption": self.caption(index),
            "class_label": a["shape"] * len(COLORS) + a["color"],
            "human_label": f"{COLOR_NAMES[a['color']]} {SHAPES[a['shape']]}",
            **a,
        }


# ----------------------------------------------------------------------------- judge
_TEMPLATE_GRID = 12


def _normalized_occupancy(mask: np.ndarray) -> np.ndarray:
    """Crop a boolean mask to its bounding box and average it onto a fixed 12x12 grid
    (area sampling on a 12x upsampled copy, so any box size maps exactly)."""
    rows, columns = np.nonzero(mask)
    box = mask[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1].astype(np.float32)
    height, width = box.shape
    upsampled = np.repeat(np.repeat(box, _TEMPLATE_GRID, axis=0), _TEMPLATE_GRID, axis=1)
    return upsampled.reshape(_TEMPLATE_GRID, height, _TEMPLATE_GRID, width).mean(axis=(1, 3))


_template_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _templates(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy grids of every shape at both sizes as rendered at this image size, sharp and
    slightly blurred (thresholded at half height, like the judge does), and at a high resolution;
    returns (templates (T, 12, 12), shape index per template)."""
    if image_size not in _template_cache:
        grids, labels = [], []
        for shape_index, shape in enumerate(SHAPES):
            masks = [shape_mask(shape, 256, 128, 128, 192.0)]
            for size in SIZES:
                sharp = shape_mask(shape, image_size, image_size / 2, image_size / 2, SIZE_FRACTIONS[size] * image_size)
                blurred = 0.25 * sharp + 0.75 * ndimage.uniform_filter(sharp.astype(np.float32), 3, mode="nearest")
                masks += [sharp, blurred > 0.5]
            grids += [_normalized_occupancy(mask) for mask in masks]
            labels += [shape_index] * len(masks)
        _template_cache[image_size] = (np.stack(grids), np.asarray(labels))
    return _template_cache[image_size]


def _nearest(value: np.ndarray, palette: np.ndarray) -> int:
    return int(np.argmin(((palette - value) ** 2).sum(axis=-1)))


def judge_shapes(images: torch.Tensor | np.ndarray) -> list[dict[str, Any]]:
    """Read shape, colour, size, position and background back from NCHW images in [-1, 1].

    Pixel analysis, robust to mild noise and blur: the background is the median border colour;
    foreground pixels are those farther from it than half the way to the shape's colour; the
    largest connected foreground blob is the shape. Colour = nearest palette colour of the blob's
    median pixel; shape = nearest template of the blob's bounding-box occupancy grid; size = box
    extent against the midpoint of the two sizes; position = box centre on the 3x3 grid.
    Returns one dict per image with attribute indices (as in ShapesDataset items) plus
    `found` (False when no shape could be seen; the other entries are then -1)."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"judge_shapes expects NCHW RGB images in [-1, 1], got shape {images.shape}")
    pixels = np.clip((images.transpose(0, 2, 3, 1) + 1.0) * 127.5, 0, 255)  # NHWC in [0, 255]
    image_size = pixels.shape[1]
    palette = np.asarray(list(COLORS.values()), dtype=np.float32)
    background_palette = np.asarray(list(BACKGROUNDS.values()), dtype=np.float32)
    templates, template_shapes = _templates(image_size)
    size_threshold = image_size * (SIZE_FRACTIONS["small"] + SIZE_FRACTIONS["large"]) / 2
    results = []
    for image in pixels:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        background = np.median(border, axis=0)
        distance = np.linalg.norm(image - background, axis=-1)
        rough = distance > 50.0
        if not rough.any():
            results.append({"found": False, **{key: -1 for key in ATTRIBUTE_KEYS + ("background",)}})
            continue
        color_value = np.median(image[rough], axis=0)
        foreground = distance > 0.5 * np.linalg.norm(color_value - background)
        labels, count = ndimage.label(foreground)
        if count == 0:
            results.append({"found": False, **{key: -1 for key in ATTRIBUTE_KEYS + ("background",)}})
            continue
        blob = labels == (1 + int(np.argmax(ndimage.sum_labels(foreground, labels, range(1, count + 1)))))
        rows, columns = np.nonzero(blob)
        extent = max(rows.max() - rows.min() + 1, columns.max() - columns.min() + 1)
        center_y = (rows.min() + rows.max() + 1) / 2 / image_size
        center_x = (columns.min() + columns.max() + 1) / 2 / image_size
        grid_row = int(np.argmin([abs(center_y - f) for f in GRID_FRACTIONS]))
        grid_column = int(np.argmin([abs(center_x - f) for f in GRID_FRACTIONS]))
        occupancy = _normalized_occupancy(blob)
        blob_distance = distance[blob]
        core = image[blob][blob_distance >= np.quantile(blob_distance, 0.5)]  # away from blurred edges
        shape = int(template_shapes[np.argmin(((templates - occupancy) ** 2).sum(axis=(1, 2)))])
        results.append({
            "found": True,
            "shape": shape,
            "color": _nearest(np.median(core, axis=0), palette),
            "size": int(extent > size_threshold),
            "position": grid_row * 3 + grid_column,
            "background": _nearest(background, background_palette),
        })  # fmt: skip
    return results


def _attribute_column(attributes: Mapping[str, Any] | Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    if isinstance(attributes, Mapping):  # a collated batch: {"shape": tensor, ...}
        values = attributes[key]
        return np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values).reshape(-1)
    return np.asarray([int(item[key]) for item in attributes])


def attribute_matches(
    images: torch.Tensor | np.ndarray,
    attributes: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    keys: Sequence[str] = ATTRIBUTE_KEYS,
) -> dict[str, np.ndarray]:
    """Per key, a per-image bool: does the judged image have its target attribute? The images are
    judged once for all keys. `attributes` is a collated batch (dict of tensors) or a list of dicts."""
    judged = judge_shapes(images)
    matches = {}
    for key in keys:
        target = _attribute_column(attributes, key)
        if len(target) != len(judged):
            raise ValueError(f"{len(judged)} images but {len(target)} '{key}' attributes")
        matches[key] = np.asarray([result[key] for result in judged]) == target
    return matches


def shapes_match(
    images: torch.Tensor | np.ndarray,
    attributes: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    keys: Sequence[str] = ("shape", "color"),
) -> np.ndarray:
    """Per-image bool: does the judged image match its target attributes on every key in `keys`
    (default shape and colour)? `attributes` is a collated batch (dict of tensors) or a list of dicts."""
    matches = attribute_matches(images, attributes, keys)
    return np.logical_and.reduce([*matches.values()], axis=0) if matches else np.ones(len(images), dtype=bool)
