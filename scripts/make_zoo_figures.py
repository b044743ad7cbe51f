"""The pictures of what the shipped models draw, from the committed weights with fixed seeds.

    python scripts/make_zoo_figures.py            # all figures
    python scripts/make_zoo_figures.py --only card
    python scripts/make_zoo_figures.py --only shapes
    python scripts/make_zoo_figures.py --only curve
    python scripts/make_zoo_figures.py --only zoo

- `models/ldm/text2img-clipart64/heldout_prompts.png`: the flagship's card grid, HELDOUT_PROMPTS (16
  captions of the clip-art test split that no training caption equals) drawn SAMPLES_PER_PROMPT times each.
- `models/ldm/text-shapes-emoji/heldout_captions.png`: its card grid, 12 held-out shapes captions with the
  shapes judge's verdict and 4 held-out emoji captions, SAMPLES_PER_PROMPT samples each.
- `models/ldm/<model>/training_curve.png`: validation loss and a quality metric (FID, or the text model's
  colour + shape accuracy) against training compute, from the card's `training_curve.csv` (CURVES).
- `models/zoo.png`: the README's opening picture, one row per shipped model (text-to-image on held-out
  prompts, text on shapes/emoji, unconditional emoji, digits by class, inpainting of held-out test images).
Settings (sampler, steps, guidance) are constants below, so that a rerun gives the same pictures."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ldm_lite.data.clipart import HELDOUT_PROMPTS  # noqa: E402
from ldm_lite.sampling import inpaint_any_size, load_for_sampling, load_inpainting_pair, sample_images  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "models" / "ldm" / "text2img-clipart64"
SAMPLES_PER_PROMPT, SAMPLER, STEPS, SCALE, SEED = 4, "dpm", 20, 4.0, 0


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW (1 or 3 channels) -> uint8 NHWC RGB."""
    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def save_compact(figure: plt.Figure, output: Path) -> None:
    """Save as a 256-colour PNG: the figures live in git, and every clone carries every version."""
    from PIL import Image

    figure.savefig(output)
    plt.close(figure)
    with Image.open(output) as image:
        compact = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    compact.save(output, optimize=True)


def prompt_grid(titled_samples: list[tuple[str, torch.Tensor]], title: str, output: Path) -> Path:
    """One card grid: each (row title, samples) pair fills half a row of 8, its title above its first sample."""
    columns = 8
    rows = len(titled_samples) * SAMPLES_PER_PROMPT // columns
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.5, rows * 1.75), dpi=100)
    for index, (row_title, samples) in enumerate(titled_samples):
        for sample, image in enumerate(to_pixels(samples)):
            axis = axes.flat[index * SAMPLES_PER_PROMPT + sample]
            axis.imshow(image)
            axis.set_xticks([]), axis.set_yticks([])
            if sample == 0:
                axis.set_title(row_title, fontsize=8, loc="left")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    save_compact(figure, output)
    return output


def flagship_grid(output: Path) -> Path:
    """16 held-out prompts x SAMPLES_PER_PROMPT samples."""
    model = load_for_sampling(FLAGSHIP, device="cpu").model
    titled = [(f"{index + 1}. {prompt}", sample_images(model, SAMPLES_PER_PROMPT, SAMPLER, STEPS, prompts=[prompt],
                                                      guidance_scale=SCALE, seed=SEED + index))
              for index, prompt in enumerate(HELDOUT_PROMPTS)]
    return prompt_grid(titled, f"text2img-clipart64 on 16 held-out prompts ({SAMPLER} {STEPS} steps, guidance {SCALE}, "
                               f"seeds {SEED}-{SEED + len(HELDOUT_PROMPTS) - 1})", output)


def shapes_grid(output: Path) -> Path:
    """text-shapes-emoji's card grid: 12 held-out shapes captions (configurations never trained on),
    each titled with the shapes judge's verdict (colour + shape right in how many of 4), and 4 held-out
    emoji captions, SAMPLES_PER_PROMPT samples each, DDIM 50 steps with eta 1 and guidance 3 (the card's
    settings)."""
    from ldm_lite.data import EmojiDataset, ShapesDataset, shapes_match

    model = load_for_sampling(ROOT / "models" / "ldm" / "text-shapes-emoji", device="cpu").model
    shapes = ShapesDataset(size=32, split="validation", length=12, seed=0)
    emoji = EmojiDataset(size=32, split="validation")
    items = [shapes[index] for index in range(len(shapes))]
    prompts = [str(item["caption"]) for item in items] + [str(emoji[index]["caption"]) for index in range(0, 4 * 39, 39)]
    titled = []
    for index, prompt in enumerate(prompts):
        samples = sample_images(model, SAMPLES_PER_PROMPT, "ddim", 50, eta=1.0, prompts=[prompt], guidance_scale=3.0,
                                seed=SEED + index)
        verdict = (f" ({int(shapes_match(samples, [items[index]] * SAMPLES_PER_PROMPT).sum())}/{SAMPLES_PER_PROMPT})"
                   if index < len(items) else "")
        titled.append((f"{index + 1}. {prompt}{verdict}", samples))
    return prompt_grid(titled, "text-shapes-emoji on held-out captions (DDIM 50 steps, eta 1, guidance 3; in brackets: "
                               "colour + shape right, by the shapes judge)", output)


@dataclass(frozen=True)
class Curve:
    """What a card's training curve shows: the validation loss's data and one quality metric."""
    loss_data: str
    metric: str  # the column of training_curve.csv
    metric_label: str
    metric_data: str


# The models whose card plots its metric against training compute
CURVES = {
    FLAGSHIP: Curve("the 156 validation images", "fid", "FID (project features)",
                    "bench/quality.py: 400 samples vs the 400 test images"),
    ROOT / "models" / "ldm" / "emoji-uncond": Curve("128 validation emoji", "fid", "FID (project features)",
                                                    "bench/quality.py: 500 samples vs the 156 validation emoji"),
    ROOT / "models" / "ldm" / "text-shapes-emoji": Curve(
        "4 validation batches of 32 (shapes + emoji)", "colour_shape_accuracy", "colour + shape right (%)",
        "bench/conditioning_accuracy.py: 400 held-out captions"),
}


def training_curve(folder: Path) -> Path:
    """A model's validation loss and quality metric against cumulative CPU core-hours, from its
    `training_curve.csv` (step, cpu_hours, val_loss_simple_ema, the metric's column, empty where
    not measured) -> training_curve.png."""
    import csv

    curve = CURVES[folder]
    with open(folder / "training_curve.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    hours = [float(row["cpu_hours"]) for row in rows]
    compute_label = "training compute (CPU core-hours)"
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10.5, 3.4), dpi=100)
    loss_axis.plot(hours, [float(row["val_loss_simple_ema"]) for row in rows], "o-")
    loss_axis.set(xlabel=compute_label, ylabel="validation loss_simple (EMA)", title=f"denoising loss on {curve.loss_data}")
    loss_axis.title.set_fontsize(10)
    measured = [(hour, float(row[curve.metric]), int(row["step"])) for hour, row in zip(hours, rows) if row[curve.metric]]
    metric_axis.plot([hour for hour, _, _ in measured], [value for _, value, _ in measured], "s-", color="tab:red")
    for hour, value, step in measured:
        metric_axis.annotate(f"step {step:,}", (hour, value), textcoords="offset points", xytext=(-30, 6), fontsize=8)
    metric_axis.set(xlabel=compute_label, ylabel=curve.metric_label, title=curve.metric_data)
    metric_axis.title.set_fontsize(10)
    figure.suptitle(folder.name, fontsize=10)
    figure.tight_layout()
    output = folder / "training_curve.png"
    save_compact(figure, output)
    return output


def zoo_rows() -> list[tuple[str, np.ndarray]]:
    """(label, 8 images) for each shipped model that exists, images resized to 64 px."""
    rows: list[tuple[str, torch.Tensor]] = []
    models = ROOT / "models" / "ldm"
    if FLAGSHIP.is_dir():
        model = load_for_sampling(FLAGSHIP, device="cpu").model
        shown = ("a yellow heart", "a cat face", "the flag of Brazil", "a loudly crying face")  # its best (card: all 16)
        prompts = [prompt for prompt in shown for _ in range(2)]
        images = sample_images(model, 8, SAMPLER, STEPS, prompts=prompts, guidance_scale=SCALE, seed=SEED)
        rows.append(("text2img-clipart64, the 4 held-out prompts it draws best of its card's 16 (2 each): "
                     + ", ".join(shown), images))
    model = load_for_sampling(models / "text-shapes-emoji", device="cpu").model
    prompts = ["a large red circle at the center", "a small blue square at the top left", "an emoji of red apple",
               "an emoji of dog face"] * 2
    rows.append(("text-shapes-emoji: " + "; ".join(prompts[:4]),
                 sample_images(model, 8, SAMPLER, STEPS, prompts=prompts, guidance_scale=SCALE, seed=SEED)))
    model = load_for_sampling(models / "emoji-uncond", device="cpu").model
    rows.append(("emoji-uncond: unconditional", sample_images(model, 8, "ddim", 50, eta=1.0, seed=SEED)))
    model = load_for_sampling(models / "mnist-class", device="cpu").model
    rows.append(("mnist-class: digits 0-7", sample_images(model, 8, "ddim", 50, class_labels=list(range(8)),
                                                          guidance_scale=3.0, seed=SEED)))
    model = load_for_sampling(models / "inpainting-emoji", device="cpu").model
    examples = ROOT / "data" / "inpainting_examples"
    pairs = []
    for number in (5, 6, 1, 2):  # two emoji, then two photos
        image, mask = load_inpainting_pair(examples / f"{number}.png", examples / f"{number}_mask.png")
        filled = inpaint_any_size(model, image, mask, steps=50, seed=SEED)
        pairs += [image * (1 - mask) + mask, filled]
    rows.append(("inpainting-emoji (the mechanics only; loses to OpenCV's fills): masked input, filled; "
                 "two emoji, two photos (out of its domain)", torch.cat(pairs)))
    return [(label, to_pixels(torch.nn.functional.interpolate(images.float().cpu(), size=64, mode="nearest")))
            for label, images in rows]


def zoo_picture(output: Path) -> Path:
    rows = zoo_rows()
    figure, axes = plt.subplots(len(rows), 8, figsize=(12, len(rows) * 1.7), dpi=100)
    for row, (label, images) in enumerate(rows):
        for column, image in enumerate(images[:8]):
            axes[row, column].imshow(image)
            axes[row, column].set_xticks([]), axes[row, column].set_yticks([])
        axes[row, 0].set_title(label, fontsize=9, loc="left")
    figure.suptitle("What the ldm-lite model zoo draws (scripts/make_zoo_figures.py, fixed seeds)", fontsize=11)
    figure.tight_layout()
    save_compact(figure, output)
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["card", "shapes", "curve", "zoo"], default=None)
    options = parser.parse_args()
    torch.set_grad_enabled(False)
    if options.only in (None, "card"):
        if not (FLAGSHIP / "config.yaml").is_file():
            print(f"{FLAGSHIP} does not exist yet: train it (models/README.md) before its card's grid", file=sys.stderr)
            return 1
        print("wrote", flagship_grid(FLAGSHIP / "heldout_prompts.png"))
    if options.only in (None, "shapes"):
        print("wrote", shapes_grid(ROOT / "models" / "ldm" / "text-shapes-emoji" / "heldout_captions.png"))
    if options.only in (None, "curve"):
        for folder in CURVES:
            if (folder / "training_curve.csv").is_file():
                print("wrote", training_curve(folder))
    if options.only in (None, "zoo"):
        print("wrote", zoo_picture(ROOT / "models" / "zoo.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
