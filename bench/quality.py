"""Sample quality of a model folder, with the metrics that fit its kind, in one table (issue 20).

    python bench/quality.py models/ldm/emoji-uncond [--count 500] [--json out.json]
    python bench/quality.py models/ldm/text-shapes-emoji --count 500
    python bench/quality.py models/ldm/inpainting-emoji --count 500
    python bench/quality.py <model folder> --features inception   # Inception-v3 FID / KID (needs internet once)

The kind comes from the model (ldm_lite.sampling): unconditional, class, text or inpainting. Its
domain (which real images it should match) comes from the `data` section of its config, else
from the training config its model card's reproduce command names (`--base ...`), else from
`--data <training config>`. The held-out real images are that data's validation splits (the
clip-art dataset's test split), rendered at the model's size; the floor compares `count` real
training images of the same mix with them. The sampler, steps, eta and guidance scale are fixed
per kind (SETTINGS, printed) so that figures compare across runs.

- every kind but inpainting: FID, KID, precision and recall (k = 3) of `count` samples against
  the held-out images, in the feature space of the project's feature net (models/evaluation/
  feature-net), next to the real-vs-real floor (train vs held-out). Text and class models draw
  their prompts / classes from the held-out items, so the samples aim at the held-out mix.
- text models also: CLIP score and R-precision (1 of 100 held-out captions) on the contrastive
  model (models/evaluation/contrastive), next to the ceiling the real held-out images reach.
- inpainting models: `count` held-out images with the project's masks (box and stroke, every
  other item), filled by the model, OpenCV's Telea and Navier-Stokes methods and the mean colour
  of the kept pixels: PSNR and SSIM inside the hole, the feature distance of the whole image to
  the original, FID of the completed images against their originals (LDM paper, Sec. 4.5), the
  first stage's own reconstruction of the hole for reference, and which baselines the model loses
  to (then it must not be shown as a result).

`--features inception` computes FID and KID on Inception-v3 features with clean-fid or
torch-fidelity (whichever is installed; pip install clean-fid), which download their weights on
first use: offline it stops with one line saying so."""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from ldm_lite.data.masks import random_mask  # noqa: E402
from ldm_lite.evaluation.contrastive import clip_score, load_contrastive_model, r_precision  # noqa: E402
from ldm_lite.evaluation.distribution_metrics import fid, kid, precision_recall  # noqa: E402
from ldm_lite.evaluation.feature_net import EVALUATION_MODELS, load_feature_net  # noqa: E402
from ldm_lite.evaluation.inpainting_metrics import BASELINES, hole_psnr, hole_ssim, inpainting_scores  # noqa: E402
from ldm_lite.sampling import (command_line_errors, decode_latents, downsampling_factor, inpaint,  # noqa: E402
                               is_caption_model, is_inpainting_model, load_for_sampling, sample_images)
from ldm_lite.util import instantiate_from_config, tensor_to_pil  # noqa: E402

SETTINGS: dict[str, dict[str, Any]] = {
    "unconditional": {"sampler": "ddim", "steps": 50, "eta": 1.0, "scale": 1.0},
    "class": {"sampler": "ddim", "steps": 50, "eta": 1.0, "scale": 3.0},
    "text": {"sampler": "ddim", "steps": 50, "eta": 1.0, "scale": 3.0},
    "inpainting": {"sampler": "ddim", "steps": 50, "eta": 1.0, "scale": 1.0},
}  # DDIM with eta = 1: the shipped models' cards advise stochastic sampling
DATASET_CLASSES = ("EmojiDataset", "ShapesDataset", "ClipartDataset", "MNISTDataset", "FashionMNISTDataset")
FEATURE_NET_DOMAINS = ("EmojiDataset", "ShapesDataset", "ClipartDataset")  # what the feature net was trained on
MASK_KINDS = ("box", "stroke")
K_NEAREST = 3
DISTRACTORS = 99


class QualityError(ValueError):
    """Bad input to the bench; the message says what to do."""


def model_kind(model: torch.nn.Module) -> str:
    if is_inpainting_model(model):
        return "inpainting"
    if is_caption_model(model):
        return "text"
    if getattr(model, "conditioning_key", None) is None:
        return "unconditional"
    if getattr(model, "cond_stage_key", None) in ("class_label", "class"):
        return "class"
    raise QualityError(f"models conditioned on '{model.cond_stage_key}' ({model.conditioning_key}) are not "
                       "supported: bench/quality.py measures unconditional, class, text and inpainting models")


# ----------------------------------------------------------------------------- the domain

def find_data_config(config: DictConfig, folder: Path, data_option: Path | None) -> tuple[DictConfig, str]:
    """The `data` section that defines the model's domain, and where it was found."""
    if data_option is not None:
        if not data_option.is_file():
            raise QualityError(f"--data {data_option} does not exist: give a training config with a data section")
        loaded = OmegaConf.load(data_option)
        if "data" not in loaded:
            raise QualityError(f"--data {data_option} has no data section")
        return loaded.data, str(data_option)
    if "data" in config:
        return config.data, "the model's config"
    card = folder / "README.md"
    match = re.search(r"--base\s+(\S+\.yaml)", card.read_text()) if card.is_file() else None
    if match and (REPOSITORY_ROOT / match.group(1)).is_file():
        loaded = OmegaConf.load(REPOSITORY_ROOT / match.group(1))
        if "data" in loaded:
            return loaded.data, f"{match.group(1)} (named in {card})"
    raise QualityError(f"cannot tell which data {folder} models: its config has no data section and its README.md "
                       "names no training config (--base ...); pass --data <training config>")


def dataset_leaves(node: Any) -> list[dict[str, Any]]:
    """The {target, params} configs of the datasets (emoji, shapes, clip art, digits) inside a data
    split's config, through wrappers such as MixtureDataset and InpaintingDataset."""
    node = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if isinstance(node, dict):
        if str(node.get("target", "")).rsplit(".", 1)[-1] in DATASET_CLASSES:
            return [node]
        return [leaf for value in node.values() for leaf in dataset_leaves(value)]
    if isinstance(node, list):
        return [leaf for value in node for leaf in dataset_leaves(value)]
    return []


@dataclass
class RealSet:
    """Real images (NCHW in [-1, 1], 3 channels), captions and class labels of one dataset split."""
    name: str
    images: torch.Tensor
    captions: list[str]
    labels: np.ndarray


def load_split(leaf: dict[str, Any], held_out: bool) -> RealSet:
    """The dataset of `leaf` with its held-out split (validation; test for clip art) or its whole
    training split (no length limit, no flips)."""
    class_name = leaf["target"].rsplit(".", 1)[-1]
    params = {key: value for key, value in leaf.get("params", {}).items() if key not in ("length", "flip_probability")}
    params["split"] = ("test" if class_name == "ClipartDataset" else "validation") if held_out else "train"
    dataset = instantiate_from_config({"target": leaf["target"], "params": params})
    items = [dataset[index] for index in range(len(dataset))]
    images = torch.from_numpy(np.stack([np.asarray(item["image"], dtype=np.float32) for item in items]))
    images = images[..., None] if images.ndim == 3 else images
    images = images.permute(0, 3, 1, 2).contiguous()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1).contiguous()
    return RealSet(f"{class_name} {params['split']}", images, [str(item.get("caption", "")) for item in items],
                   np.asarray([int(item.get("class_label", -1)) for item in items]))


def draw(pools: list[RealSet], counts: list[int], rng: np.random.Generator) -> RealSet:
    """counts[i] items of pools[i]: without replacement while the pool lasts, then again."""
    chosen = []
    for pool, count in zip(pools, counts):
        size = len(pool.images)
        order = np.concatenate([rng.permutation(size) for _ in range(-(-count // size))])[:count] if count else np.array([], int)
        chosen.append((pool, order))
    return RealSet(" + ".join(pool.name for pool in pools),
                   torch.cat([pool.images[torch.from_numpy(order).long()] for pool, order in chosen]),
                   [pool.captions[index] for pool, order in chosen for index in order],
                   np.concatenate([pool.labels[order] for pool, order in chosen]))


def proportional_counts(sizes: list[int], total: int) -> list[int]:
    """`total` split in proportion to `sizes` (largest remainders)."""
    exact = np.asarray(sizes, dtype=np.float64) * total / sum(sizes)
    counts = np.floor(exact).astype(int)
    for index in np.argsort(counts - exact)[: total - counts.sum()]:
        counts[index] += 1
    return counts.tolist()


# ----------------------------------------------------------------------------- generation

def generate(model: torch.nn.Module, kind: str, items: RealSet, count: int, settings: dict[str, Any],
             batch_size: int, seed: int) -> torch.Tensor:
    images = []
    for start in range(0, count, batch_size):
        size = min(batch_size, count - start)
        common = {"sampler": settings["sampler"], "steps": settings["steps"], "eta": settings["eta"], "seed": seed + start}
        if kind == "unconditional":
            batch = sample_images(model, size, **common)
        elif kind == "text":
            batch = sample_images(model, size, prompts=items.captions[start:start + size],
                                  guidance_scale=settings["scale"], **common)
        else:
            batch = sample_images(model, size, class_labels=items.labels[start:start + size].tolist(),
                                  guidance_scale=settings["scale"], **common)
        images.append(batch.cpu())
        print(f"  sampled {start + size}/{count}", flush=True)
    images = torch.cat(images)
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images


def make_masks(count: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """Item i gets a box mask when i is even, a stroke mask when odd, drawn from a generator seeded
    by (seed, i): the same masks on every run and for every method."""
    kinds = [MASK_KINDS[index % 2] for index in range(count)]
    masks = np.stack([random_mask(height, width, np.random.default_rng([seed, index]), kind)
                      for index, kind in enumerate(kinds)])
    return torch.from_numpy(masks).permute(0, 3, 1, 2).contiguous(), kinds


# ----------------------------------------------------------------------------- metrics

class ProjectFeatures:
    """FID, KID and precision/recall on the project's feature net."""
    label = "project feature net"

    def __init__(self, device: str, folder: Path):
        self.net = load_feature_net(folder).model.to(device)

    def scores(self, images: torch.Tensor, reference: torch.Tensor, with_recall: bool = True) -> dict[str, Any]:
        generated, real = self.net.features(images), self.net.features(reference)
        kid_mean, kid_std = kid(generated, real)
        result = {"fid": fid(generated, real), "kid": kid_mean, "kid_std": kid_std}
        if with_recall:
            result["precision"], result["recall"] = precision_recall(real, generated, k=K_NEAREST)
        return result


class InceptionFeatures:
    """FID and KID on Inception-v3 through clean-fid or torch-fidelity (weights downloaded once)."""
    label = "Inception-v3"

    def __init__(self, device: str, folder: Path):
        self.device = device
        self.library = next((name for name in ("cleanfid", "torch_fidelity") if _importable(name)), None)
        if self.library is None:
            raise QualityError("--features inception needs clean-fid or torch-fidelity (pip install clean-fid) "
                               "and internet to download the Inception-v3 weights; neither library is installed")
        try:  # fetch the weights now, before minutes of sampling
            if self.library == "cleanfid":
                from cleanfid.features import build_feature_extractor
                build_feature_extractor("clean", torch.device(device))
            else:
                from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
                FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        except Exception as error:  # noqa: BLE001 - any download failure means the same to the user
            raise QualityError(f"--features inception needs internet to download the Inception-v3 weights "
                               f"({self.library}: {type(error).__name__}); use the default --features project offline") from None

    def scores(self, images: torch.Tensor, reference: torch.Tensor, with_recall: bool = True) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as generated_folder, tempfile.TemporaryDirectory() as real_folder:
            for folder, batch in ((generated_folder, images), (real_folder, reference)):
                for index, image in enumerate(batch):
                    tensor_to_pil(image).save(Path(folder) / f"{index:06d}.png")
            subset = min(1000, len(images), len(reference))
            if self.library == "cleanfid":
                from cleanfid import fid as clean_fid
                return {"fid": float(clean_fid.compute_fid(generated_folder, real_folder, mode="clean",
                                                           device=torch.device(self.device), num_workers=0)),
                        "kid": float(clean_fid.compute_kid(generated_folder, real_folder, mode="clean",
                                                           device=torch.device(self.device), num_workers=0))}
            import torch_fidelity
            metrics = torch_fidelity.calculate_metrics(input1=generated_folder, input2=real_folder, fid=True, kid=True,
                                                       kid_subset_size=subset, cuda=self.device.startswith("cuda"),
                                                       verbose=False)
            return {"fid": float(metrics["frechet_inception_distance"]),
                    "kid": float(metrics["kernel_inception_distance_mean"]),
                    "kid_std": float(metrics["kernel_inception_distance_std"])}


def _importable(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


# ----------------------------------------------------------------------------- tables

def format_value(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name == "kid":
        return f"{value:.3f}"
    if name in ("precision", "recall", "r_precision"):
        return f"{value:.1%}"
    return f"{value:.3f}" if name in ("clip_score", "ssim_hole") else f"{value:.2f}"


ROW_NAMES = {"fid": "FID", "kid": "KID", "precision": f"precision (k={K_NEAREST})",
             "recall": f"recall (k={K_NEAREST})", "clip_score": "CLIP score (w=2.5)",
             "r_precision": f"R-precision (1 of {DISTRACTORS + 1})", "psnr_hole": "PSNR hole dB",
             "ssim_hole": "SSIM hole", "feature_distance": "feature distance"}
HIGHER_IS_BETTER = {"psnr_hole", "ssim_hole"}


def print_distribution_table(metrics: dict[str, dict[str, float]]) -> None:
    print(f"{'metric':28s} {'model':>10s} {'real':>10s}")
    for name, values in metrics.items():
        reference = "floor: train vs held-out" if name in ("fid", "kid", "precision", "recall") else "ceiling: held-out images"
        print(f"{ROW_NAMES[name]:28s} {format_value(name, values['model']):>10s} "
              f"{format_value(name, values['real']):>10s}   ({reference})")


def print_inpainting_table(methods: dict[str, dict[str, dict[str, float]]], floor: dict[str, float]) -> None:
    columns = ("psnr_hole", "ssim_hole", "feature_distance", "fid")
    print(f"{'method':24s} {'masks':7s} " + " ".join(f"{ROW_NAMES[name]:>16s}" for name in columns))
    for method, by_masks in methods.items():
        for masks, values in by_masks.items():
            print(f"{method:24s} {masks:7s} " + " ".join(f"{format_value(name, values.get(name)):>16s}" for name in columns))
    print(f"{'real floor':24s} {'':7s} " + " ".join(f"{format_value(name, floor.get(name)):>16s}" for name in columns)
          + "   (FID: train images vs the originals)")


def losses_to_baselines(methods: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, list[str]]]:
    """{baseline: {metric: [mask sets where the baseline does better than the model]}}."""
    model = methods["model"]
    losses: dict[str, dict[str, list[str]]] = {}
    for baseline, by_masks in methods.items():
        if baseline == "model":
            continue
        for masks, values in by_masks.items():
            for name in ("psnr_hole", "ssim_hole", "feature_distance", "fid"):
                if name not in values or name not in model[masks]:
                    continue
                ours, theirs = model[masks][name], values[name]
                if (ours < theirs) if name in HIGHER_IS_BETTER else (ours > theirs):
                    losses.setdefault(baseline, {}).setdefault(ROW_NAMES[name], []).append(masks)
    return losses


def print_verdict(losses: dict[str, dict[str, list[str]]]) -> None:
    if not losses:
        print("verdict: the model beats every classical baseline on every metric and mask set")
        return
    for baseline, by_metric in losses.items():
        print(f"the model loses to {baseline} on " + "; ".join(f"{metric} ({', '.join(masks)})"
                                                               for metric, masks in by_metric.items()))
    print("verdict: the model does not beat the classical baselines: do not show it as a result")


# ----------------------------------------------------------------------------- main

def run(options: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    features = (InceptionFeatures if options.features == "inception" else ProjectFeatures)(options.device, options.feature_net)
    loaded = load_for_sampling(options.model, device=options.device)
    model, kind = loaded.model, model_kind(loaded.model)
    settings = SETTINGS[kind]
    data, source = find_data_config(loaded.config, loaded.folder, options.data)
    if "validation" not in data.get("params", {}) or "train" not in data.params:
        raise QualityError(f"the data section from {source} needs train and validation splits")
    held_out_leaves, train_leaves = dataset_leaves(data.params.validation), dataset_leaves(data.params.train)
    if not held_out_leaves or len(held_out_leaves) != len(train_leaves):
        raise QualityError(f"the data section from {source} holds no dataset bench/quality.py knows "
                           f"({', '.join(DATASET_CLASSES)}), or its train and validation splits differ")
    held_out = [load_split(leaf, held_out=True) for leaf in held_out_leaves]
    train = [load_split(leaf, held_out=False) for leaf in train_leaves]
    rng = np.random.default_rng(options.seed)
    counts = proportional_counts([len(part.images) for part in held_out], options.count)
    reference = draw(held_out, [len(part.images) for part in held_out], rng)  # every held-out item once
    floor_sample = draw(train, counts, rng)
    setting_text = (f"{settings['sampler'].upper()} {settings['steps']} steps, eta {settings['eta']}"
                    + (f", guidance scale {settings['scale']}" if kind in ("class", "text") else ""))
    print(f"{options.model}: {kind} model; {options.count} items, {setting_text}, seed {options.seed}")
    print(f"domain from {source}: held-out {', '.join(f'{p.name} ({len(p.images)})' for p in held_out)}; "
          f"floor: {', '.join(f'{c} of {p.name}' for c, p in zip(counts, train))}; images "
          f"{tuple(reference.images.shape[-2:])} px, resized to 64 for the evaluation nets")
    outside = [leaf["target"].rsplit(".", 1)[-1] for leaf in held_out_leaves
               if leaf["target"].rsplit(".", 1)[-1] not in FEATURE_NET_DOMAINS]
    if outside and options.features == "project":
        print(f"warning: the feature net was not trained on {', '.join(outside)}: its FID and KID there are rough")
    result: dict[str, Any] = {
        "model": str(options.model), "kind": kind, "count": options.count, "seed": options.seed,
        "settings": settings, "features": features.label, "domain_source": source,
        "held_out": {part.name: len(part.images) for part in held_out},
        "floor_train": {part.name: count for part, count in zip(train, counts)},
    }
    if isinstance(features, ProjectFeatures):
        result["feature_net_held_out_accuracy"] = load_feature_net(options.feature_net, verbose=False).held_out.get("accuracy")

    if kind == "inpainting":
        result["inpainting"] = run_inpainting(model, features, held_out, train, counts, settings, options, rng)
    else:
        items = draw(held_out, counts, rng)  # the prompts / classes, in the held-out mix
        sampling_started = time.perf_counter()
        with torch.no_grad():
            images = generate(model, kind, items, options.count, settings, options.batch_size, options.seed)
        result["sampling_seconds"] = round(time.perf_counter() - sampling_started, 1)
        model_scores = features.scores(images, reference.images)
        floor_scores = features.scores(floor_sample.images, reference.images)
        metrics = {name: {"model": model_scores[name], "real": floor_scores[name]}
                   for name in ("fid", "kid", "precision", "recall") if name in model_scores}
        if "kid_std" in model_scores:  # spread over the KID subsets
            metrics["kid"].update(model_std=model_scores["kid_std"], real_std=floor_scores["kid_std"])
        if kind == "text":
            loaded_contrastive = load_contrastive_model(options.contrastive)
            contrastive = loaded_contrastive.model
            pool = reference.captions
            metrics["clip_score"] = {"model": clip_score(contrastive, images, items.captions),
                                     "real": clip_score(contrastive, items.images, items.captions)}
            metrics["r_precision"] = {
                "model": r_precision(contrastive, images, items.captions, pool, DISTRACTORS, seed=options.seed),
                "real": r_precision(contrastive, items.images, items.captions, pool, DISTRACTORS, seed=options.seed)}
            result["contrastive_held_out"] = loaded_contrastive.held_out.get("per_part")
        print(f"\nmetrics on the {features.label}'s features ({options.count} samples vs {len(reference.images)} "
              "held-out images):")
        print_distribution_table(metrics)
        result["metrics"] = metrics
        if options.save_samples:
            from ldm_lite.util import save_image_grid
            save_image_grid(images[:64], options.save_samples)
            print(f"first 64 samples: {options.save_samples}")
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(f"({result['seconds']:.0f} s in all)")
    return result


def inpaint_items(model: torch.nn.Module, originals: torch.Tensor, masks: torch.Tensor, settings: dict[str, Any],
                  seed: int, batch_size: int) -> torch.Tensor:
    """The model's fills of `originals` (NCHW in [-1, 1]) under `masks`, in batches; batch b is seeded seed + b's start."""
    batches = []
    with torch.no_grad():
        for start in range(0, len(originals), batch_size):
            stop = min(start + batch_size, len(originals))
            batches.append(inpaint(model, originals[start:stop], masks[start:stop], sampler=settings["sampler"],
                                   steps=settings["steps"], eta=settings["eta"], seed=seed + start).cpu())
            print(f"  inpainted {stop}/{len(originals)}", flush=True)
    return torch.cat(batches)


def run_inpainting(model: torch.nn.Module, features: ProjectFeatures | InceptionFeatures, held_out: list[RealSet],
                   train: list[RealSet], counts: list[int], settings: dict[str, Any], options: argparse.Namespace,
                   rng: np.random.Generator) -> dict[str, Any]:
    items = draw(held_out, counts, rng)
    originals = items.images
    masks, kinds = make_masks(options.count, originals.shape[-2], originals.shape[-1], options.seed)
    print(f"masks: {kinds.count('box')} box, {kinds.count('stroke')} stroke (white = fill); mean hole "
          f"{masks.mean():.1%} of the image")
    sampling_started = time.perf_counter()
    completed = {"model": inpaint_items(model, originals, masks, settings, options.seed, options.batch_size)}
    sampling_seconds = time.perf_counter() - sampling_started
    for name, baseline in BASELINES.items():
        completed[name] = baseline(originals, masks)
    reference_fill = None  # the first stage's reconstruction of the hole, for latent models
    if downsampling_factor(model) > 1:
        with torch.no_grad():
            reconstructions = torch.cat([decode_latents(model, model.get_first_stage_encoding(model.encode_first_stage(
                originals[start:start + options.batch_size].to(model.device)))).cpu()
                for start in range(0, options.count, options.batch_size)])
        pasted = originals * (1 - masks) + reconstructions * masks
        reference_fill = {"psnr_hole": float(hole_psnr(pasted, originals, masks)),
                          "ssim_hole": float(hole_ssim(pasted, originals, masks))}
    net = features.net if isinstance(features, ProjectFeatures) else load_feature_net(options.feature_net).model
    by_kind = {kind: torch.tensor([mask_kind == kind for mask_kind in kinds]) for kind in MASK_KINDS}
    methods: dict[str, dict[str, dict[str, float]]] = {}
    for name, images in completed.items():
        methods[name] = {kind: inpainting_scores(net.features, images[chosen], originals[chosen], masks[chosen])
                         for kind, chosen in by_kind.items()}
        methods[name]["all"] = inpainting_scores(net.features, images, originals, masks)
        methods[name]["all"]["fid"] = features.scores(images, originals, with_recall=False)["fid"]
    floor = {"fid": features.scores(draw(train, counts, rng).images, originals, with_recall=False)["fid"]}
    setting_text = f"{settings['sampler'].upper()} {settings['steps']}, eta {settings['eta']}"
    print(f"\nmodel: {setting_text}; feature distance on the project feature net; FID on the {features.label}'s "
          "features, completed images vs their originals (paired sets, as in the LDM paper's inpainting FID; no KID: "
          "its unbiased estimator assumes independent sets)")
    print_inpainting_table(methods, floor)
    if reference_fill is not None:
        print(f"the first stage's own reconstruction D(E(original)) pasted into the hole (all masks): PSNR hole "
              f"{reference_fill['psnr_hole']:.2f} dB, SSIM hole {reference_fill['ssim_hole']:.3f} (the model's fills "
              "pass through the same decoder)")
    losses = losses_to_baselines(methods)
    print_verdict(losses)
    return {"methods": methods, "real_floor": floor, "first_stage_reconstruction": reference_fill, "model_loses_to": losses,
            "sampling_seconds": round(sampling_seconds, 1), "mean_hole_fraction": float(masks.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="model folder (config.yaml + model.safetensors) or training log dir")
    parser.add_argument("--count", type=int, default=500, help="samples (inpainting: held-out items) to measure")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--features", choices=["project", "inception"], default="project")
    parser.add_argument("--data", type=Path, default=None, help="training config whose data section is the domain")
    parser.add_argument("--feature_net", type=Path, default=EVALUATION_MODELS / "feature-net", help="feature net folder")
    parser.add_argument("--contrastive", type=Path, default=EVALUATION_MODELS / "contrastive",
                        help="contrastive model folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--save_samples", type=Path, default=None, help="write a grid of the first 64 samples here")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    with command_line_errors("bench/quality.py", options.debug):
        if options.count < 2 * K_NEAREST + 2:
            raise QualityError(f"--count must be at least {2 * K_NEAREST + 2}, got {options.count}")
        result = run(options)
        if options.json is not None:
            options.json.parent.mkdir(parents=True, exist_ok=True)
            options.json.write_text(json.dumps(result, indent=2) + "\n")
            print(f"wrote {options.json}")


if __name__ == "__main__":
    main()
