"""Worked solutions to the exercises of notebook 08 (evaluating generative models).

    python notebooks/solutions/08_evaluation.py                     # full sizes (~10-15 min on 2 cores)
    LDM_LITE_SMOKE=1 python notebooks/solutions/08_evaluation.py    # tiny sizes: checks that it runs

Uses the project's own evaluation networks (models/evaluation/: the feature net for FID, KID and
precision/recall, the contrastive model for CLIP score and R-precision), the clip-art test split as
the notebook does, and the shipped `emoji-uncond` and `text-shapes-emoji` models. Figures are in
the feature net's units: comparable with each other, not with the paper's Inception FIDs. Facts
that hold at any size are asserted. Pictures go to outputs/solutions/08/ (outputs/smoke/solutions/08/ in smoke mode)."""
from __future__ import annotations


import numpy as np
import torch
from PIL import Image, ImageFilter

from ldm_lite.data import ClipartDataset, EmojiDataset
from ldm_lite.evaluation import clip_score, fid, load_contrastive_model, load_feature_net, precision_recall, r_precision
from ldm_lite.pretrained import REPOSITORY_ROOT, load_or_train
from ldm_lite.sampling import sample_images
from ldm_lite.util import save_image_grid

from common import SMOKE, output_folder, section  # notebooks/solutions/common.py

floor_sizes = (16, 32, 64) if SMOKE else (25, 50, 100, 200, 400)
count = 64 if SMOKE else 200                # images per set for exercise 2
n_samples = 32 if SMOKE else 200            # emoji-uncond samples per setting (exercise 3)
sampler_steps = (2, 5) if SMOKE else (5, 10, 50)
text_prompts = 16 if SMOKE else 100          # held-out emoji captions (exercise 4)
text_steps = 5 if SMOKE else 50
seed = 0
OUT = output_folder("08")
torch.set_grad_enabled(False)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def blurred(images: torch.Tensor, radius: float) -> torch.Tensor:
    pixels = ((images + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return to_tensor(np.stack([np.asarray(Image.fromarray(p).filter(ImageFilter.GaussianBlur(radius))) for p in pixels]))


class Setup:
    """The notebook's data: clip-art train and test splits, the feature net."""

    def __init__(self) -> None:
        self.train, self.test = ClipartDataset(64, "train"), ClipartDataset(64, "test")
        self.features = load_feature_net(verbose=False).model.features
        self.rng = np.random.default_rng(seed)

    def feats(self, images: torch.Tensor) -> np.ndarray:
        return np.concatenate([self.features(images[start:start + 256]).numpy() for start in range(0, len(images), 256)])


def exercise_1(setup: Setup) -> dict[str, float]:
    section("Exercise 1: the bias of FID: real-vs-real FID against 1/N")
    test = to_tensor(setup.test.images)
    train_order = setup.rng.permutation(len(setup.train))
    train_features = setup.feats(to_tensor(setup.train.images[train_order[:max(floor_sizes)]]))
    test_order = setup.rng.permutation(len(test))
    test_features = setup.feats(test[test_order])
    sizes = [n for n in floor_sizes if n <= len(test)]
    values = [fid(train_features[:n], test_features[:n]) for n in sizes]
    for n, value in zip(sizes, values):
        print(f"N = {n:4d} (1/N = {1 / n:.4f}): FID train vs test {value:8.3f}")
    slope, intercept = np.polyfit(1 / np.array(sizes), values, 1)
    fitted = slope / np.array(sizes) + intercept
    r_squared = 1 - np.sum((np.array(values) - fitted) ** 2) / np.sum((np.array(values) - np.mean(values)) ** 2)
    print(f"least-squares line: FID = {slope:.1f} / N + {intercept:.3f}   (R^2 = {r_squared:.3f}); "
          f"FID_inf (1/N -> 0) = {intercept:.3f}")
    assert values[-1] < values[0], "more images, smaller bias"
    print("\nThe bias comes from estimating a mean and a covariance from N vectors: their errors add a positive\n"
          "term to the distance that shrinks like 1/N, so a line in 1/N fits well once N is well above the\n"
          "feature dimension (128). Its intercept is FID_inf, the value with infinitely many images (Chong &\n"
          "Forsyth 2020, arXiv:1911.07023). For two samples of the same distribution it should be near 0; what\n"
          "remains is the real difference between the train and test splits (or, if N is below the dimension,\n"
          "a fit on the wrong side of the asymptote: smoke mode's sizes are).")
    return {"slope": float(slope), "FID_inf": float(intercept), "R2": float(r_squared)}


def exercise_2(setup: Setup) -> dict[float, tuple[float, float]]:
    section("Exercise 2: how much blur does FID notice?")
    order = setup.rng.permutation(len(setup.test))
    sets = min(count, len(order) // 2)
    reference = setup.feats(to_tensor(setup.test.images[order[:sets]]))
    held_out = to_tensor(setup.test.images[order[sets:2 * sets]])
    floors = [fid(setup.feats(to_tensor(setup.train.images[setup.rng.choice(len(setup.train), sets, replace=False)])),
                  reference) for _ in range(3)]
    floors.append(fid(setup.feats(held_out), reference))
    low, high = min(floors), max(floors)
    print(f"{sets} images per set; the floor (four draws of real images against the same reference): "
          f"{low:.3f} to {high:.3f}")
    results = {}
    for radius in (0.25, 0.5, 1.0, 1.5, 2.0, 3.0):
        generated = setup.feats(blurred(held_out, radius))
        precision, recall = precision_recall(reference, generated, k=3)
        results[radius] = (fid(generated, reference), precision)
        print(f"blur radius {radius:4.2f} px: FID {results[radius][0]:8.3f}  precision {precision:.2f}  recall {recall:.2f}")
    noticed = next((radius for radius, (value, _) in results.items() if value > high), None)
    print(f"\nFID leaves the floor's range from radius {noticed} px on." if noticed is not None
          else "\nFID stays inside the floor's range at every radius tried.")
    assert results[3.0][0] > results[0.25][0], "a strong blur moves FID more than a slight one"
    print("The feature net was trained to ignore a slight blur (a 32-px round trip is part of its training, see\n"
          "its card), so up to about a pixel the features, and FID, barely move: a metric sees only what its\n"
          "features see. Precision stays high throughout (a blurred drawing still lies near some real drawing);\n"
          "the damage shows in FID and recall, because the blurred set stops covering the crisp images.")
    return results


def exercise_3(setup: Setup) -> dict[str, tuple[float, float]]:
    section("Exercise 3: eta and the number of steps against precision and recall")
    model = load_or_train("ldm", "emoji-uncond", "configs/latent-diffusion/lite_emoji_uncond.yaml",
                          max_steps=20 if SMOKE else None).eval()
    reference = setup.feats(to_tensor(EmojiDataset(32, "validation").images))
    results, grids = {}, []
    for eta in (0.0, 1.0):
        for steps in sampler_steps:
            samples = torch.cat([sample_images(model, min(100, n_samples - start), "ddim", steps=steps, eta=eta,
                                               seed=seed + start) for start in range(0, n_samples, 100)])
            precision, recall = precision_recall(reference, setup.feats(samples), k=3)
            results[f"eta {eta:g}, {steps} steps"] = (precision, recall)
            grids.append(samples[:8])
            print(f"DDIM eta {eta:g}, {steps:3d} steps: precision {precision:.2f}  recall {recall:.2f}")
    save_image_grid(torch.cat(grids), OUT / "exercise3_eta_steps.png", nrow=8)
    best_precision = max(results, key=lambda key: results[key][0])
    best_recall = max(results, key=lambda key: results[key][1])
    print(f"\nbest precision: {best_precision}; best recall: {best_recall} ({n_samples} samples against the "
          f"{len(reference)} held-out emoji)")
    print("With eta = 0 the sampler follows the ODE and lands where the model's density is high: clean, typical\n"
          "images (precision) but less spread. Fresh noise (eta = 1) lets the chain wander, which covers more of the\n"
          "data (recall) and, with few steps, leaves noise that pushes samples off the real manifold. Few steps\n"
          "blur and simplify (a kind of truncation), which tends to keep precision and lose recall. A short-trained\n"
          "model drifts with eta = 0 (the inpainting-emoji card), which lowers its precision too; emoji-uncond no\n"
          "longer does (its card): measure before you trust the textbook picture.")
    return results


def exercise_4(setup: Setup) -> dict[float, tuple[float, float, float]]:
    section("Exercise 4: guidance against alignment (CLIP score, R-precision) and FID")
    text_model = load_or_train("ldm", "text-shapes-emoji", "configs/latent-diffusion/lite_text_shapes_emoji.yaml",
                               max_steps=20 if SMOKE else None).eval()
    contrastive = load_contrastive_model(verbose=False).model
    emoji = EmojiDataset(32, "validation")
    chosen = np.random.default_rng(seed).choice(len(emoji), min(text_prompts, len(emoji)), replace=False)
    prompts = [emoji[int(i)]["caption"] for i in chosen]
    pool = [emoji[i]["caption"] for i in range(len(emoji))]
    reference = setup.feats(to_tensor(emoji.images))
    results = {}
    for scale in (1.0, 2.0, 3.0, 5.0):
        generated = torch.cat([sample_images(text_model, len(prompts[start:start + 50]), "ddim", steps=text_steps, eta=1.0,
                                             prompts=prompts[start:start + 50], guidance_scale=scale, seed=seed + start)
                               for start in range(0, len(prompts), 50)])
        results[scale] = (clip_score(contrastive, generated, prompts), r_precision(contrastive, generated, prompts, pool),
                          fid(setup.feats(generated), reference))
        print(f"s = {scale:g}: CLIP score {results[scale][0]:.3f}   R-precision {results[scale][1]:6.1%}   "
              f"FID vs the {len(reference)} held-out emoji {results[scale][2]:8.3f}")
    ceiling = clip_score(contrastive, to_tensor(emoji.images[chosen]), prompts)
    print(f"(real emoji with their own captions: CLIP score {ceiling:.3f}; R-precision chance 1%)")
    print("\nThe paper's Fig. 14 (and Ho & Salimans 2022) show the trade-off: guidance raises alignment with the\n"
          "prompt while FID first improves and then worsens, because the samples concentrate on what matches the\n"
          "caption best and lose diversity and natural colours. A small model far from its ceiling can show only\n"
          "the first half (alignment and FID both improve from s = 1): read the numbers above, not the textbook.")
    return results


def exercise_5(setup: Setup) -> dict[str, float]:
    section("Exercise 5: FID against the training images instead of held-out ones")
    model = load_or_train("ldm", "emoji-uncond", "configs/latent-diffusion/lite_emoji_uncond.yaml",
                          max_steps=20 if SMOKE else None).eval()
    train, held_out = EmojiDataset(32, "train"), EmojiDataset(32, "validation")
    size = min(len(held_out), n_samples)  # the splits are in code order (by category): draw at random
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    train_reference = setup.feats(to_tensor(train.images[order[:size]]))
    held_out_reference = setup.feats(to_tensor(held_out.images[rng.permutation(len(held_out))[:size]]))
    copies = setup.feats(to_tensor(train.images[order[size:2 * size]]))  # a memorising "model": other training images
    samples = setup.feats(torch.cat([sample_images(model, min(100, size - start), "ddim", steps=sampler_steps[-1],
                                                   eta=1.0, seed=seed + start) for start in range(0, size, 100)]))
    rows = {"model samples": samples, "training copies": copies}
    results = {}
    print(f"{size} images per set: {'':18s}{'vs training':>13s}{'vs held-out':>13s}")
    for name, generated in rows.items():
        results[name] = (fid(generated, train_reference), fid(generated, held_out_reference))
        print(f"{name:>30s}{results[name][0]:13.3f}{results[name][1]:13.3f}")
    exact = fid(train_reference, train_reference)
    print(f"{'the reference images themselves':>30s}{exact:13.3f}")
    assert exact < 1e-3, "a model that outputs the reference set scores a perfect 0"
    print("\nAgainst the training set, a model that copies training images is measured against the very\n"
          "distribution it copied: it scores like real data, and outputting the reference images themselves\n"
          "scores 0. A held-out reference at least does not reward copying (copies are only as good as any real\n"
          "image there), but no distribution metric punishes it: memorisation is found by looking for nearest\n"
          "training neighbours, as the notebook does. That is why the reference set must never be the training set.")
    return {name: value[0] for name, value in results.items()}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"mode: {'smoke' if SMOKE else 'full'}; pictures in {OUT}")
    setup = Setup()
    exercise_1(setup)
    exercise_2(setup)
    exercise_3(setup)
    exercise_4(setup)
    exercise_5(setup)


if __name__ == "__main__":
    main()
