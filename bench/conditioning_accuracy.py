"""How often a conditional model draws what it was asked for (issue 5's quality bars).

    python bench/conditioning_accuracy.py mnist   [--model models/ldm/mnist-class] [--per_class 50]
    python bench/conditioning_accuracy.py shapes  [--model models/ldm/text-shapes-emoji] [--count 200]

mnist: a small CNN is trained on the real training digits (it must reach >= 98% on the held-out
real digits, printed), then classifies `per_class` generated digits of each class; the score is the
fraction classified as the class that was asked for.
shapes: held-out shapes captions (validation split: configurations never seen in training) are
rendered with guidance and read back by the exact pixel judge `shapes_match`; the score is the
fraction whose colour and shape match the caption (size and position are printed too)."""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from ldm_lite.data import MNISTDataset, ShapesDataset, shapes_match
from ldm_lite.sampling import load_for_sampling, sample_images


def digit_classifier() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(128, 10))


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([torch.as_tensor(dataset[i]["image"]) for i in range(len(dataset))]).permute(0, 3, 1, 2)
    labels = torch.tensor([int(dataset[i]["class_label"]) for i in range(len(dataset))])
    return images.float(), labels


def train_digit_classifier(epochs: int = 12, seed: int = 0) -> tuple[nn.Module, float]:
    """A CNN on the 4,505 real training digits, with random shifts of up to 2 px; returns it and
    its accuracy on the 495 held-out real digits."""
    torch.manual_seed(seed)
    train_images, train_labels = stack(MNISTDataset(size=32, split="train", rgb=False))
    test_images, test_labels = stack(MNISTDataset(size=32, split="validation", rgb=False))
    model = digit_classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(train_images) // 64)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    for _ in range(epochs):
        order = torch.randperm(len(train_images))
        for start in range(0, len(order) - 63, 64):
            index = order[start:start + 64]
            shift = torch.randint(-2, 3, (2,)).tolist()
            images = torch.roll(train_images[index], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(images), train_labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).float().mean().item()
    return model, accuracy


def mnist(options: argparse.Namespace) -> None:
    start = time.perf_counter()
    classifier, real_accuracy = train_digit_classifier()
    print(f"classifier: {real_accuracy:.1%} on held-out real digits ({time.perf_counter() - start:.0f} s to train)")
    model = load_for_sampling(options.model, device="cpu").model
    correct = torch.zeros(10)
    for digit in range(10):
        images = sample_images(model, options.per_class, steps=options.steps, class_labels=[digit],
                               guidance_scale=options.scale, seed=digit, sampler=options.sampler, eta=options.eta)
        with torch.no_grad():
            correct[digit] = (classifier(images.mean(1, keepdim=True)).argmax(1) == digit).float().sum()
    per_class = " ".join(f"{digit}:{correct[digit] / options.per_class:.0%}" for digit in range(10))
    print(f"generated digits classified as the asked class: {correct.sum() / (10 * options.per_class):.1%} "
          f"(scale {options.scale}, {options.steps} {options.sampler} steps, eta {options.eta}; per class {per_class})")


def shapes(options: argparse.Namespace) -> None:
    model = load_for_sampling(options.model, device="cpu").model
    held_out = ShapesDataset(size=32, split="validation", length=options.count, seed=1)
    examples = [held_out[index] for index in range(len(held_out))]
    images = torch.cat([
        sample_images(model, len(batch), steps=options.steps, prompts=[example["caption"] for example in batch],
                      guidance_scale=options.scale, seed=start, sampler=options.sampler, eta=options.eta)
        for start in range(0, len(examples), 50) for batch in [examples[start:start + 50]]])
    for keys in (("color", "shape"), ("color",), ("shape",), ("size",), ("position",)):
        score = shapes_match(images, examples, keys=keys).mean()
        print(f"{'+'.join(keys):12s} match {score:.1%}")
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
    options = parser.parse_args()
    options.model = options.model or {"mnist": "models/ldm/mnist-class", "shapes": "models/ldm/text-shapes-emoji"}[options.task]
    {"mnist": mnist, "shapes": shapes}[options.task](options)


if __name__ == "__main__":
    main()
