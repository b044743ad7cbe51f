"""Worked solutions to the exercises of notebook 01 (data).

    python notebooks/solutions/01_data.py                     # full sizes (exercise 6 trains: ~15-35 min on a CPU)
    LDM_LITE_SMOKE=1 python notebooks/solutions/01_data.py    # tiny sizes: checks that it runs

One function per exercise; each prints what it finds and why. Facts that hold at any size are
asserted. Grids go to outputs/solutions/01/ (outputs/smoke/solutions/01/ in smoke mode)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ldm_lite.config import load_config
from ldm_lite.data.emoji import EmojiDataset
from ldm_lite.data.folder import ImageFolderDataset
from ldm_lite.data.masks import random_stroke_mask
from ldm_lite.data.photos import PhotosDataset
from ldm_lite.data.shapes import ShapesDataset, attribute_matches
from ldm_lite.pretrained import REPOSITORY_ROOT
from ldm_lite.util import save_image_grid

from common import SMOKE, output_folder, section  # notebooks/solutions/common.py

n_judge = 100 if SMOKE else 1000          # shapes images per degradation level (exercise 3)
n_masks = 50 if SMOKE else 500            # stroke masks per thickness (exercise 5)
own_per_class = 12 if SMOKE else 200      # emoji per class folder (exercise 6, as section 9)
own_autoencoder_steps = 800               # full mode only: make own-autoencoder STEPS= (when it is missing)
own_ldm_steps = 2 if SMOKE else 1500      # make own-ldm KIND=text STEPS=
sample_steps = 5 if SMOKE else 50
OUT = output_folder("01")


def as_batch(items: list[dict]) -> torch.Tensor:
    return torch.stack([torch.as_tensor(item["image"]).permute(2, 0, 1) for item in items])


def exercise_1() -> list[str]:
    section("Exercise 1: captions 'a 32-pixel icon of {name}'")
    icons = EmojiDataset(size=32, split="train", caption_template="a 32-pixel icon of {name}")
    items = [icons[index] for index in range(8)]
    captions = [item["caption"] for item in items]
    for caption in captions:
        print(" ", caption)
    save_image_grid(as_batch(items), OUT / "exercise1_icons.png", nrow=8)
    assert all(caption.startswith("a 32-pixel icon of ") for caption in captions)
    assert [item["name"] for item in items] == [EmojiDataset(size=32, split="train")[i]["name"] for i in range(8)]
    print("`caption_template` is a format string with {name}; the images, names and splits do not change, only the\n"
          f"text a text-conditional model would learn to read (grid: {OUT.relative_to(REPOSITORY_ROOT)}/"
          "exercise1_icons.png).")
    return captions


def exercise_2() -> dict[str, int]:
    section("Exercise 2: a tiny vocabulary: circle and square, red and blue")
    vocabulary = dict(shapes=["circle", "square"], colors=["red", "blue"])
    splits = {split: ShapesDataset(split=split, **vocabulary) for split in ("train", "validation")}
    counts = {split: len(dataset) for split, dataset in splits.items()}
    total = 2 * 2 * 2 * 9 * 3 * 3 * 3  # shapes x colours x sizes x positions x backgrounds x jitter x jitter
    captions = {split: {dataset.caption(index) for index in range(len(dataset))} for split, dataset in splits.items()}
    keys = {split: {tuple(int(values[index]) for values in dataset.attributes.values()) + tuple(dataset.jitter[index])
                    for index in range(len(dataset))} for split, dataset in splits.items()}
    print(f"train {counts['train']} configurations, validation {counts['validation']} (of {total}: 2 shapes x 2 colours x "
          "2 sizes x 9 positions x 3 backgrounds x 3 x 3 jitters)")
    print(f"distinct captions: train {len(captions['train'])}, validation {len(captions['validation'])} "
          f"(of {2 * 2 * 2 * 9}); in both: {len(captions['train'] & captions['validation'])}")
    assert counts["train"] + counts["validation"] == total
    assert not keys["train"] & keys["validation"], "a configuration is in one split only"
    print("Each configuration (with its background and jitter) goes to validation when the CRC32 hash of its\n"
          "description falls in the first 10% of the range, so the split is about 90/10 and the same on every\n"
          "machine. Captions leave out background and jitter, so almost every validation caption also has\n"
          "drawings in training: validation tests new drawings, not new sentences.")
    return counts


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-x**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius,) * 4, mode="replicate")
    horizontal = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(horizontal, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def exercise_3() -> dict[str, dict]:
    section("Exercise 3: degrade the shapes until the judge breaks")
    dataset = ShapesDataset(size=32, split="validation", length=n_judge, seed=0)
    images = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    keys = ("shape", "color", "size", "position")
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(images.shape, generator=generator)
    results = {}
    for kind, levels in (("blur sigma (px)", (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)), ("noise std", (0.0, 0.1, 0.2, 0.3, 0.5, 0.8))):
        print(f"\n{kind:>16} " + " ".join(f"{key:>9}" for key in keys) + "  all four")
        results[kind] = {}
        for level in levels:
            degraded = gaussian_blur(images, level) if kind.startswith("blur") else (images + level * noise).clamp(-1, 1)
            matches = attribute_matches(degraded, dataset.attributes, keys)
            rates = {key: float(value.mean()) for key, value in matches.items()}
            rates["all"] = float(np.logical_and.reduce(list(matches.values())).mean())
            results[kind][level] = rates
            print(f"{level:>16g} " + " ".join(f"{rates[key]:9.1%}" for key in keys) + f"  {rates['all']:8.1%}")
        order = sorted(keys, key=lambda key: next((i for i, level in enumerate(levels)
                                                    if results[kind][level][key] < 0.9), len(levels)))
        print("order in which they fall below 90%: " + " < ".join(
            key if any(results[kind][level][key] < 0.9 for level in levels) else f"{key} (never)" for key in order))
    clean = results["blur sigma (px)"][0.0]["all"]
    assert clean >= 0.98, "the judge reads clean shapes"
    assert results["blur sigma (px)"][3.0]["all"] < clean and results["noise std"][0.8]["all"] < clean
    print("(chance: shape 1/5, colour 1/6, size 1/2, position 1/9)")
    print("\nThe judge thresholds each pixel's distance from the background colour, keeps the largest blob, and reads\n"
          "shape from the blob's box occupancy, size from the box, position from its centre, colour from its mean.\n"
          "Blur rounds the outline first, so shape fails first (a blurred triangle or plus looks like a blob),\n"
          "then the colour mixes with the background; the centre, i.e. the position, survives any blur. Noise\n"
          "pushes background pixels past the threshold: specks join the blob or become the largest blob, so\n"
          "shape and position fail early, and size falls to chance. That is why the judge is trusted on samples\n"
          "that are a little blurry or noisy (the notebook's check), not on arbitrary ones.")
    return results


def exercise_4() -> list[str]:
    section("Exercise 4: a folder of photos with a caption .txt beside each")
    folder = Path(tempfile.mkdtemp(prefix="ldm_lite_own_photos_"))
    written = {}
    try:
        for name in ("astronaut", "chelsea", "coffee"):
            for index in range(4):
                item = PhotosDataset(size=48, split="train", length=4, names=[name], seed=index)[index]
                path = folder / f"{name}_{index}.png"
                Image.fromarray(np.round((item["image"] + 1) * 127.5).astype(np.uint8)).save(path)
                caption = f"a photo crop of {name}, number {index}"
                path.with_suffix(".txt").write_text(caption + "\n")
                written[path.name] = caption
        loaded = {split: ImageFolderDataset(folder, size=32, split=split, validation_fraction=0.25)
                  for split in ("train", "validation")}
        captions = [loaded[split][index]["caption"] for split in loaded for index in range(len(loaded[split]))]
        print(f"{len(loaded['train'])} train + {len(loaded['validation'])} validation images; item keys "
              f"{sorted(loaded['train'][0])}; first captions: {captions[:3]}")
        assert sorted(captions) == sorted(written.values()), "every caption is read back from its .txt"
        assert loaded["train"][0]["image"].shape == (32, 32, 3)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("The .txt beside an image is its caption (stripped); images are resized (shorter side) and centre-\n"
          "cropped to `size`; the split is by a hash of the file path, so adding files never moves old ones.")
    return captions


def exercise_5() -> dict[float, float]:
    section("Exercise 5: stroke thickness and the fraction of pixels to fill")
    fractions = {}
    for factor in (0.5, 1.0, 1.5, 2.0, 3.0):
        rng = np.random.default_rng(0)  # the same strokes for every thickness: only their width changes
        masks = [random_stroke_mask(64, 64, rng, min_thickness=0.07 * factor, max_thickness=0.18 * factor)
                 for _ in range(n_masks)]
        fractions[factor] = float(np.mean([mask.mean() for mask in masks]))
        print(f"thickness x {factor:3.1f} ({0.07 * factor:.3f}-{0.18 * factor:.3f} of the side): "
              f"{fractions[factor]:6.1%} of the pixels to fill")
    values = list(fractions.values())
    assert all(later >= earlier for earlier, later in zip(values, values[1:])), "thicker strokes cover more"
    print(f"Doubling the thickness takes the filled fraction from {fractions[1.0]:.1%} to {fractions[2.0]:.1%}, "
          f"{fractions[2.0] / fractions[1.0]:.2f}x, not 2x: a stroke's\narea grows about linearly with its width, but "
          "strokes overlap each other and are cut by the image border more\noften as they widen, so the fraction "
          "saturates (it cannot pass 100%).")
    return fractions


def make_emoji_folder(folder: Path) -> list[str]:
    """Section 9's folder: three categories as class folders, each emoji's caption in a .txt beside it."""
    classes = {"Smileys & Emotion": "smileys", "Flags": "flags", "Food & Drink": "food"}
    shutil.rmtree(folder, ignore_errors=True)
    emoji = EmojiDataset(size=32, split="train")
    counts = dict.fromkeys(classes.values(), 0)
    captions = []
    for index in range(len(emoji)):
        item = emoji[index]
        name = classes.get(item["human_label"])
        if name is None or counts[name] >= own_per_class:
            continue
        path = folder / name / f"{counts[name]:03}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round((item["image"] + 1) * 127.5).astype(np.uint8)).save(path)
        path.with_suffix(".txt").write_text(item["caption"] + "\n")
        captions.append(item["caption"])
        counts[name] += 1
    return captions


def train_text_model(folder: Path) -> Path:
    """Full mode: section 9's commands with KIND=text. Smoke mode: the same config in-process, on the
    shipped 32 px first stage, for a few steps (two Python start-ups per command cost a minute)."""
    exported = REPOSITORY_ROOT / "outputs" / "models" / "ldm" / "course-emoji-text"
    relative = folder.relative_to(REPOSITORY_ROOT)
    if not SMOKE:
        own = f"DATA={relative} SIZE=32 NAME=course-emoji PYTHON={sys.executable}"
        first_stage = REPOSITORY_ROOT / "outputs" / "models" / "first_stage_models" / "course-emoji-kl-f4"
        commands = [] if (first_stage / "model.safetensors").exists() else [
            f"make own-autoencoder {own} STEPS={own_autoencoder_steps}"]
        commands.append(f"make own-ldm {own} KIND=text STEPS={own_ldm_steps}")
        for command in commands:
            print("$", command)
            result = subprocess.run(command, shell=True, cwd=REPOSITORY_ROOT, capture_output=True, text=True)
            lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
            print("\n".join(lines[-6:]))
            if result.returncode != 0:
                raise RuntimeError(f"'{command}' failed with exit status {result.returncode}")
        return exported
    from ldm_lite.pretrained import export_model
    from ldm_lite.train import fit

    exported = REPOSITORY_ROOT / "outputs" / "smoke" / "models" / "ldm" / "course-emoji-text"
    config = load_config([REPOSITORY_ROOT / "configs" / "latent-diffusion" / "folder_text.yaml"], [
        f"data.params.train.params.root={folder}", "data.params.train.params.size=32", "model.params.image_size=8",
        f"model.params.first_stage_config.params.folder={REPOSITORY_ROOT / 'models/first_stage_models/kl-f4-emoji32'}",
        "data.params.batch_size=8"])
    config.lightning.trainer.max_steps = own_ldm_steps
    config.lightning.trainer.val_check_interval = 0
    config.lightning.callbacks.image_logger.params.batch_frequency = 0
    logdir = REPOSITORY_ROOT / "outputs" / "smoke" / "logs" / "solutions_01_course-emoji-text"
    shutil.rmtree(logdir, ignore_errors=True)
    model = fit(config, logdir=logdir, progress=False)
    print(f"(smoke mode: folder_text.yaml trained in-process for {own_ldm_steps} steps on the shipped kl-f4-emoji32)")
    return export_model(model, config, exported)


def exercise_6() -> dict[str, float]:
    section("Exercise 6: section 9's second command with KIND=text: which captions does it follow?")
    from ldm_lite.checkpoint import load_model_folder
    from ldm_lite.evaluation import load_contrastive_model
    from ldm_lite.sampling import sample_images

    folder = REPOSITORY_ROOT / ("outputs/smoke/own-emoji" if SMOKE else "outputs/own-emoji")
    captions = make_emoji_folder(folder)
    model = load_model_folder(train_text_model(folder)).eval()
    if not SMOKE:
        command = [sys.executable, "scripts/txt2img.py", "-r", "outputs/models/ldm/course-emoji-text", "--prompt",
                   captions[0], "--scale", "3", "--n_samples", "4", "--n_iter", "1", "--outdir",
                   "outputs/solutions/01/txt2img"]
        print("$", " ".join(command))
        print(subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True).stdout.strip()[-300:])
    pool = sorted(set(captions))
    rng = np.random.default_rng(0)
    asked = [pool[i] for i in rng.choice(len(pool), min(len(pool), 12 if SMOKE else 60), replace=False)]
    with torch.no_grad():
        generated = sample_images(model, len(asked), steps=sample_steps, prompts=asked, guidance_scale=3.0, seed=0, eta=1.0)
    save_image_grid(generated, OUT / "exercise6_text_samples.png", nrow=12)
    contrastive = load_contrastive_model(verbose=False).model
    pool_embeddings = contrastive.text_embeddings(pool)

    def followed(images: torch.Tensor) -> np.ndarray:
        # is the asked caption the best-matching one among all the folder's captions?
        similarities = contrastive.image_embeddings(images) @ pool_embeddings.T
        return np.array([pool[int(best)] == caption for best, caption in zip(similarities.argmax(1), asked)])

    emoji = {item["caption"]: item["image"] for item in EmojiDataset(size=32, split="train")}
    real = torch.stack([torch.as_tensor(emoji[caption]).permute(2, 0, 1) for caption in asked])
    generated_hits, real_hits = followed(generated), followed(real)
    print(f"{len(asked)} of the folder's {len(pool)} captions asked; the asked caption ranks first among all "
          f"{len(pool)} for\n  the samples: {generated_hits.mean():.0%}   the real training emoji (ceiling): "
          f"{real_hits.mean():.0%}   chance: {1 / len(pool):.1%}")
    print("followed:", [caption for caption, hit in zip(asked, generated_hits) if hit][:10] or "none")
    print("\nWith about 500 captions, 1,500 steps at batch 16 show each caption about 50 times. Expect the model to\n"
          "learn each category's look (flags: a striped rectangle; smileys: a yellow disc) and to follow only the\n"
          "captions whose emoji has one salient colour or shape (in smoke mode, 2 steps, any hit is chance). The\n"
          "contrastive model's score of the real emoji, its ceiling, shows how much a perfect generator could get.")
    return {"generated": float(generated_hits.mean()), "real": float(real_hits.mean())}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"mode: {'smoke' if SMOKE else 'full'}; pictures in {OUT}")
    exercise_1()
    exercise_2()
    exercise_3()
    exercise_4()
    exercise_5()
    exercise_6()


if __name__ == "__main__":
    main()
