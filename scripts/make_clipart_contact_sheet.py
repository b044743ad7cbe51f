"""A contact sheet of 100 random (image, caption) pairs of the clip-art dataset, so that anyone can
judge its captions: `data/clipart_contact_sheet.png` (10 x 10 images, each with its caption below)
and `data/clipart_contact_sheet.txt` (the same captions, numbered, with source and category).

Usage: python scripts/make_clipart_contact_sheet.py [--count 100] [--seed 0] [--split train]"""
from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ldm_lite.data.clipart import CATEGORIES, ClipartDataset, build_clipart_cache

CELL, SCALE, CAPTION_LINES, COLUMNS = 150, 2, 3, 10


def contact_sheet(images: np.ndarray, captions: list[str]) -> Image.Image:
    """Images enlarged SCALE times in a grid of COLUMNS, each numbered and captioned below."""
    rows = -(-len(images) // COLUMNS)
    line_height = 12
    sheet = Image.new("RGB", (COLUMNS * CELL, rows * (CELL + CAPTION_LINES * line_height)), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for index, (image, caption) in enumerate(zip(images, captions)):
        left, top = (index % COLUMNS) * CELL, (index // COLUMNS) * (CELL + CAPTION_LINES * line_height)
        enlarged = Image.fromarray(image).resize((image.shape[1] * SCALE, image.shape[0] * SCALE), Image.NEAREST)
        sheet.paste(enlarged, (left + (CELL - enlarged.width) // 2, top + 4))
        lines = textwrap.wrap(f"{index + 1}. {caption}", width=24)[:CAPTION_LINES]
        for line_number, line in enumerate(lines):
            draw.text((left + 4, top + CELL - 12 + line_number * line_height), line, fill="black", font=font)
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train", choices=("train", "validation", "test"))
    parser.add_argument("--out", default="data/clipart_contact_sheet")
    args = parser.parse_args()
    dataset = ClipartDataset(size=64, split=args.split)
    picks = np.random.default_rng(args.seed).choice(len(dataset), size=min(args.count, len(dataset)), replace=False)
    captions = [dataset.captions[i] for i in picks]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(dataset.images[picks], captions).save(out.with_suffix(".png"))
    with np.load(build_clipart_cache(64)) as cache:
        counts = json.loads(str(cache["counts"]))
    lines = [f"# {len(picks)} random {args.split} pairs of ClipartDataset(size=64), seed {args.seed}; build counts: {counts}"]
    lines += [f"{n + 1:3d}. {caption}  [{dataset.sources[i]}, {CATEGORIES[int(dataset.labels[i])]}]"
              for n, (i, caption) in enumerate(zip(picks, captions))]
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.txt')}")


if __name__ == "__main__":
    main()
