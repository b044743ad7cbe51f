"""Rebuild data/inpainting_examples/: <n>.png (64x64 RGB) + <n>_mask.png (L, white = fill) pairs
made from the scikit-image photos and Twemoji that ship offline, with seeded random masks.

Usage: python scripts/make_inpainting_examples.py [--out data/inpainting_examples] [--size 64]"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ldm_lite.data.emoji import emoji_catalog
from ldm_lite.data.masks import random_mask
from ldm_lite.data.photos import load_photo
from ldm_lite.data.transforms import pil_to_rgb_array, resize

# (source, what, mask kind): photos are center squares (fraction of the shorter side), emoji by name
EXAMPLES = [
    ("photo", ("astronaut", 1.0), "box"),
    ("photo", ("chelsea", 0.9), "stroke"),
    ("photo", ("coffee", 0.9), "box"),
    ("photo", ("rocket", 0.8), "stroke"),
    ("emoji", "red apple", "box"),
    ("emoji", "dog face", "stroke"),
]


def photo_square(name: str, fraction: float, size: int) -> np.ndarray:
    photo = load_photo(name)
    side = round(min(photo.shape[:2]) * fraction)
    top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
    return resize(photo[top : top + side, left : left + side], size, size, "area")


def emoji_image(name: str, size: int) -> np.ndarray:
    entry = next(e for e in emoji_catalog() if e["name"] == name)
    with Image.open(entry["path"]) as png:
        return resize(pil_to_rgb_array(png), size, size, "lanczos")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "inpainting_examples")
    parser.add_argument("--size", type=int, default=64, choices=(64, 128))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for number, (source, what, kind) in enumerate(EXAMPLES, start=1):
        image = photo_square(*what, args.size) if source == "photo" else emoji_image(what, args.size)
        seed = number
        mask = random_mask(args.size, args.size, np.random.default_rng(seed), kind)
        while not 0.1 <= mask.mean() <= 0.4:  # keep a visible but not overwhelming hole
            seed += 100
            mask = random_mask(args.size, args.size, np.random.default_rng(seed), kind)
        Image.fromarray(image, "RGB").save(args.out / f"{number}.png", optimize=True)
        Image.fromarray((mask[..., 0] * 255).astype(np.uint8), "L").save(args.out / f"{number}_mask.png", optimize=True)
        print(f"{number}.png  {source}:{what}  mask {kind} covers {mask.mean():.0%}")


if __name__ == "__main__":
    main()
