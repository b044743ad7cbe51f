"""How often a conditional model draws what it was asked for (issue 5's quality bars).

    python bench/conditioning_accuracy.py mnist   [--model models/ldm/mnist-class] [--per_class 50]
    python bench/conditioning_accuracy.py shapes  [--model models/ldm/text-shapes-emoji] [--count 200]
    python bench/conditioning_accuracy.py shapes --reconstructions   # the first stage's ceiling

mnist: a small CNN is trained on the real training digits (it must reach >= 98% on the held-out
real digits, printed), then classifies `per_class` generated digits of each class; the score is the
fraction classified as the class that was asked for.
shapes: held-out shapes captions (validation split: configurations never seen in training) are
rendered with guidance and read back by the exact pixel judge `shapes_match`; the score is the
fraction whose colour and shape match the caption (size and position are printed too).
With --reconstructions the judge reads the model's first-stage reconstructions D(E(x)) of the same
held-out images instead: no sample can score higher than the autoencoder lets it."""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ldm_lite.checkpoint import atomic_write
from ldm_lite.data import MNISTDataset, ShapesDataset
from ldm_lite.data.cache import cache_dir
from ldm_lite.data.shapes import SHAPES, SIZES, attribute_matches
from ldm_lite.sampling import load_for_sampling, sample_images


def digit_classifier() -> nn.Module:
    """A small VGG-style CNN (about 0.29M parameters) for 32x32 grey digits."""
    def block(inputs: int, outputs: int) -> list[nn.Module]:
        return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]

    return nn.Sequential(
        *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, 10))


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([torch.as_tensor(dataset[i]["image"]) for i in range(len(dataset))]).permute(0, 3, 1, 2)
    labels = torch.tensor([int(dataset[i]["class_label"]) for i in range(len(dataset))])
    return images.float(), labels


def random_affine(images: torch.Tensor, degrees: float = 12.0, scale: float = 0.12, shift: float = 0.12) -> torch.Tensor:
    """Each image rotated, scaled and shifted at random (shift as a fraction of the half-width);
    the background (-1) fills the borders."""
    count = images.shape[0]
    angle = (torch.rand(count) * 2 - 1) * degrees * torch.pi / 180
    zoom = 1 + (torch.rand(count) * 2 - 1) * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    translation = (torch.rand(count, 2) * 2 - 1) * shift
    theta = torch.stack([torch.stack([cos, -sin, translation[:, 0]], 1), torch.stack([sin, cos, translation[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images + 1, grid, align_corners=False, padding_mode="zeros") - 1


def train_digit_classifier(epochs: int = 30, seed: int = 0) -> tuple[nn.Module, float]:
    """The CNN on the 4,505 real training digits with random affine augmentation; returns it and its
    accuracy on the 495 held-out real digits."""
    torch.manual_seed(seed)
    train_images, train_labels = stack(MNISTDataset(size=32, split="train", rgb=False))
    test_images, test_labels = stack(MNISTDataset(size=32, split="validation", rgb=False))
    model = digit_classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    batches_per_epoch = len(train_images) // 64
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=epochs * batches_per_epoch)
    for _ in range(epochs):
        order = torch.randperm(len(train_images))
        for batch in range(batches_per_epoch):
            index = order[batch * 64:(batch + 1) * 64]
            loss = F.cross_entropy(model(random_affine(train_images[index])), train_labels[index], label_smoothing=0.05)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).float().mean().item()
    return model, accuracy


def cached_digit_classifier() -> tuple[nn.Module, float]:
    """The trained classifier and its held-out accuracy, trained once (minutes on 2 cores) and kept
    in the dataset cache folder."""
    path = cache_dir() / "bench_digit_classifier_v1.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        classifier = digit_classifier()
        classifier.load_state_dict(saved["state_dict"])
        return classifier.eval(), float(saved["accuracy"])
    start = time.perf_counter()
    classifier, accuracy = train_digit_classifier()
    print(f"classifier trained in {time.perf_counter() - start:.0f} s, saved to {path}")
    atomic_write(path, lambda temporary: torch.save({"state_dict": classifier.state_dict(), "accuracy": accuracy}, temporary))
    return classifier, accuracy


def mnist(options: argparse.Namespace) -> None:
    classifier, real_accuracy = cached_digit_classifier()
    print(f"classifier: {real_accuracy:.1%} on held-out real digits")
    classifier = classifier.to(options.device)
    model = load_for_sampling(options.model, device=options.device).model
    correct = torch.zeros(10)
    for digit in range(10):
        images = sample_images(model, options.per_class, steps=options.steps, class_labels=[digit],
                               guidance_scale=options.scale, seed=digit, sampler=options.sampler, eta=options.eta)
        with torch.no_grad():
            correct[digit] = (classifier(images.mean(1, keepdim=True)).argmax(1) == digit).float().sum().cpu()
    per_class = " ".join(f"{digit}:{correct[digit] / options.per_class:.0%}" for digit in range(10))
    print(f"generated digits classified as the asked class: {correct.sum() / (10 * options.per_class):.1%} "
          f"(scale {options.scale}, {options.steps} {options.sampler} steps, eta {options.eta}; per class {per_class})")


def report_shapes(images: torch.Tensor, examples: list[dict]) -> None:
    matches = attribute_matches(images, examples)  # the judge reads each image once
    for keys in (("color", "shape"), ("color",), ("shape",), ("size",), ("position",)):
        score = np.logical_and.reduce([matches[key] for key in keys], axis=0).mean()
        print(f"{'+'.join(keys):12s} match {score:.1%}")
    # Where colour+shape fails: by the asked size and the asked shape.
    correct = matches["color"] & matches["shape"]
    for key, names in (("size", SIZES), ("shape", SHAPES)):
        asked = np.asarray([int(example[key]) for example in examples])
        print(f"color+shape by {key}: " + "  ".join(
            f"{name} {correct[asked == index].mean():.0%}" for index, name in enumerate(names) if (asked == index).any()))


def shapes(options: argparse.Namespace) -> None:
    model = load_for_sampling(options.model, device=options.device).model
    held_out = ShapesDataset(size=32, split="validation", length=options.count, seed=1)
    examples = [held_out[index] for index in range(len(held_out))]
    if options.reconstructions:
        real = torch.stack([torch.as_tensor(example["image"]) for example in examples]).permute(0, 3, 1, 2)
        with torch.no_grad():
            latents = model.get_first_stage_encoding(model.encode_first_stage(real.to(model.device)))
            images = model.decode_first_stage(latents).clamp(-1, 1).cpu()
        report_shapes(images, examples)
        print(f"({options.count} held-out shapes images through the first stage of {options.model})")
        return
    images = torch.cat([
        sample_images(model, len(batch), steps=options.steps, prompts=[example["caption"] for example in batch],
                      guidance_scale=options.scale, seed=start, sampler=options.sampler, eta=options.eta)
        for start in range(0, len(examples), 50) for batch in [examples[start:start + 50]]]).cpu()
    report_shapes(images, examples)
    print(f"({options.count} held-out captions, scale {options.scale}, {options.steps} {options.sampler} steps, eta {options.eta})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["mnist", "shapes"])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--per_class", type=int, default=50)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--sampler", default="ddim", choices=["ddim", "plms", "dpm", "ddpm"])
    parser.add_argument("--eta", type=float, default=1.0, help="DDIM eta (1: stochastic, see the model cards)")
    parser.add_argument("--reconstructions", action="store_true",
                        help="shapes: judge the first stage's reconstructions of the held-out images, not samples")
    parser.add_argument("--device", default="cpu", help="where the model samples (the classifier trains on the CPU)")
    options = parser.parse_args()
    options.model = options.model or {"mnist": "models/ldm/mnist-class", "shapes": "models/ldm/text-shapes-emoji"}[options.task]
    {"mnist": mnist, "shapes": shapes}[options.task](options)


if __name__ == "__main__":
    main()
