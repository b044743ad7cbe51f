"""Reconstruction quality of first-stage model folders, per dataset, and the shapes judge's ceiling.

For each folder: PSNR and SSIM of D(E(x)) (KL: posterior mean; VQ: quantized) on the validation splits of shapes (156
configurations), emoji and MNIST digits (the first 156 of each), and the shapes judge's colour + shape
score on the reconstructions of 400 held-out shapes images (seed 1, as `conditioning_accuracy.py
shapes --reconstructions`): no LDM on that first stage can score higher than this ceiling.

    python bench/first_stage_quality.py models/first_stage_models/kl-f4-shapes-emoji32
    python bench/first_stage_quality.py <folder A> <folder B>      # compare two versions
    python bench/first_stage_quality.py models/first_stage_models/kl-f4-clipart64 --clipart --count 400

`--clipart`: the 64 px models, on the clip-art test split instead (no judge: there are no shapes).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ldm_lite.checkpoint import load_model_folder
from ldm_lite.data.clipart import ClipartDataset
from ldm_lite.data.emoji import EmojiDataset
from ldm_lite.data.mnist import MNISTDataset
from ldm_lite.data.shapes import ShapesDataset, attribute_matches
from ldm_lite.metrics import psnr, ssim
from ldm_lite.models.autoencoder import VQModel
from ldm_lite.models.diffusion import nchw


def images_of(dataset, count: int) -> torch.Tensor:
    """The first `count` images of `dataset` as NCHW in [-1, 1]."""
    return nchw(np.stack([dataset[index]["image"] for index in range(min(count, len(dataset)))]))


@torch.no_grad()
def reconstruct(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """D(E(x)): through the quantizer for a VQ model, from the posterior mean for a KL model."""
    if isinstance(model, VQModel):
        return model.reconstruct(images)[0].clamp(-1, 1)
    return model.decode(model.encode(images).mode()).clamp(-1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="first-stage model folders (config.yaml + model.safetensors)")
    parser.add_argument("--count", type=int, default=156, help="validation images per dataset for PSNR / SSIM")
    parser.add_argument("--judge_count", type=int, default=400, help="held-out shapes images for the judge")
    parser.add_argument("--clipart", action="store_true", help="64 px models: the clip-art test split only")
    options = parser.parse_args()
    if options.clipart:
        images = images_of(ClipartDataset(size=64, split="test"), options.count)
        for folder in options.folders:
            model = load_model_folder(folder).float().eval()
            reconstructions = reconstruct(model, images)
            print(f"{folder}: clip-art test ({len(images)} images) {psnr(reconstructions, images):.2f} dB "
                  f"(SSIM {ssim(reconstructions, images):.3f})")
        return
    datasets = {"shapes": ShapesDataset(size=32, split="validation", length=options.count),
                "emoji": EmojiDataset(size=32, split="validation"), "mnist": MNISTDataset(size=32, split="validation")}
    references = {name: images_of(dataset, options.count) for name, dataset in datasets.items()}
    held_out = ShapesDataset(size=32, split="validation", length=options.judge_count, seed=1)
    examples = [held_out[index] for index in range(len(held_out))]
    judged = images_of(held_out, options.judge_count)
    for folder in options.folders:
        model = load_model_folder(folder).float().eval()
        scores = []
        for name, images in references.items():
            reconstructions = reconstruct(model, images)
            scores.append(f"{name} {psnr(reconstructions, images):.2f} dB (SSIM {ssim(reconstructions, images):.3f})")
        matches = attribute_matches(reconstruct(model, judged), examples)
        ceiling = (matches["color"] & matches["shape"]).mean()
        print(f"{folder}: " + "  ".join(scores) + f"  shapes judge colour+shape {ceiling:.1%} of {len(examples)}")


if __name__ == "__main__":
    main()
