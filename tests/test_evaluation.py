"""The evaluation metrics (ldm_lite/evaluation) against hand-computed values and their expected
behaviour, and the shipped evaluation networks (models/evaluation) against their stored numbers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from ldm_lite.evaluation.distribution_metrics import (fid, frechet_distance, gaussian_statistics, kid,
                                                      mmd_squared_unbiased, precision_recall)
from ldm_lite.evaluation.inpainting_metrics import (hole_psnr, hole_ssim, masked_ssim_map, mean_colour_fill,
                                                    opencv_inpaint)
from ldm_lite.metrics import ssim

ROOT = Path(__file__).resolve().parents[1]
FEATURE_NET = ROOT / "models" / "evaluation" / "feature-net"
CONTRASTIVE = ROOT / "models" / "evaluation" / "contrastive"


# ----------------------------------------------------------------------------- FID, KID, precision / recall

def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form():
    # For commuting covariances d^2 = |m1 - m2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    mean_a, mean_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    variances_a, variances_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mean_a, np.diag(variances_a), mean_b, np.diag(variances_b)) == pytest.approx(expected)


def test_frechet_distance_of_full_covariances_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    covariance_a, covariance_b = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mean_a, mean_b = rng.normal(size=5), rng.normal(size=5)
    root = scipy.linalg.sqrtm(covariance_a @ covariance_b).real
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(covariance_a + covariance_b - 2 * root)
    assert frechet_distance(mean_a, covariance_a, mean_b, covariance_b) == pytest.approx(expected, rel=1e-9)


def test_fid_of_identical_sets_is_zero_and_grows_with_a_shift():
    features = np.random.default_rng(1).normal(size=(200, 16))
    assert fid(features, features) == pytest.approx(0.0, abs=1e-8)
    # A shift by 0.5 in every dimension adds |shift|^2 = 16 * 0.25 exactly (same covariance).
    assert fid(features, features + 0.5) == pytest.approx(4.0, rel=1e-9)
    mean, covariance = gaussian_statistics(features)
    assert mean.shape == (16,) and covariance.shape == (16, 16)


def test_kid_by_hand_on_tiny_sets():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[1.0, 1.0], [0.0, 0.0]])
    kernel = lambda u, v: (u @ v / 2 + 1) ** 3  # noqa: E731
    within_x = 2 * kernel(x[0], x[1]) / 2
    within_y = 2 * kernel(y[0], y[1]) / 2
    between = sum(kernel(u, v) for u in x for v in y) / 4
    assert mmd_squared_unbiased(x, y) == pytest.approx(within_x + within_y - 2 * between)
    mean, std = kid(x, y, subset_size=2, subsets=3)
    assert mean == pytest.approx(within_x + within_y - 2 * between) and std == pytest.approx(0.0)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same, _ = kid(a, b, subset_size=100, subsets=20)
    shifted, _ = kid(a, b + 1.0, subset_size=100, subsets=20)
    assert shifted > 0.2 and abs(same) < 0.1 * shifted


def test_precision_recall_by_hand():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    generated = np.array([[0.0], [0.5], [10.0], [10.2]])
    # k = 1: every real ball has radius 1; generated radii 0.5, 0.5, 0.2, 0.2.
    precision, recall = precision_recall(real, generated, k=1)
    assert precision == pytest.approx(2 / 4)  # 0.0 and 0.5 lie in real balls, 10.0 and 10.2 do not
    assert recall == pytest.approx(2 / 4)  # real 0.0 and 1.0 (on the boundary of 0.5's ball) are covered


def test_identical_sets_have_full_precision_and_recall_and_collapse_has_no_recall():
    features = np.random.default_rng(3).normal(size=(150, 12))
    assert precision_recall(features, features) == (1.0, 1.0)
    collapsed = np.repeat(features[:1], 150, axis=0)
    precision, recall = precision_recall(features, collapsed)
    assert precision == 1.0 and recall <= 1 / 150


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="different dimensions"):
        fid(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        kid(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(np.zeros((3, 2)), np.zeros((3, 2)), k=3)


# ----------------------------------------------------------------------------- inpainting

def _images_and_mask() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    original = torch.rand(2, 3, 24, 24, generator=generator) * 2 - 1
    mask = torch.zeros(2, 1, 24, 24)
    mask[:, :, 6:14, 8:18] = 1
    result = original + 0.2 * mask * torch.randn(2, 3, 24, 24, generator=generator)
    return original, result, mask


def test_hole_metrics_see_only_the_hole():
    original, result, mask = _images_and_mask()
    changed_outside = result + (1 - mask) * 0.7  # anything outside the hole, even next to it
    for metric in (hole_psnr, hole_ssim):
        assert torch.allclose(metric(changed_outside, original, mask, reduce=False), metric(result, original, mask, reduce=False))
    squared_error = ((result - original) ** 2 * mask).sum((1, 2, 3)) / (3 * mask.sum((1, 2, 3)))
    assert torch.allclose(hole_psnr(result, original, mask, reduce=False), 10 * torch.log10(4 / squared_error))
    assert hole_ssim(original, original, mask).item() == pytest.approx(1.0)
    assert hole_ssim(result, original, mask).item() < 0.99


def test_masked_ssim_with_a_full_mask_is_plain_ssim_where_the_window_fits():
    original, result, _ = _images_and_mask()
    ssim_map = masked_ssim_map(result, original, torch.ones(2, 1, 24, 24))
    assert ssim_map[:, :, 5:-5, 5:-5].mean().item() == pytest.approx(ssim(result, original).item(), abs=1e-5)


def test_baselines_keep_the_known_pixels_and_fill_the_hole():
    original, _, mask = _images_and_mask()
    flat = torch.zeros_like(original)
    flat[:, 0] = 0.5  # a flat colour image: every method should fill it with that colour
    for method in ("telea", "navier-stokes"):
        filled = opencv_inpaint(flat, mask, method)
        assert torch.equal(filled * (1 - mask), flat * (1 - mask))
        assert torch.allclose(filled, flat, atol=3 / 127.5)  # 8-bit rounding
    filled = mean_colour_fill(original, mask)
    assert torch.equal(filled * (1 - mask), original * (1 - mask))
    kept_mean = (original * (1 - mask)).sum((2, 3)) / (1 - mask).sum((2, 3))
    assert torch.allclose(filled[:, :, 10, 10], kept_mean, atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        opencv_inpaint(original, mask, "patchmatch")


def test_telea_beats_the_mean_colour_on_a_smooth_image():
    ramp = torch.linspace(-1, 1, 24)
    smooth = torch.stack([ramp[None, :].expand(24, 24), ramp[:, None].expand(24, 24), -ramp[None, :].expand(24, 24)])[None]
    mask = torch.zeros(1, 1, 24, 24)
    mask[:, :, 9:14, 9:14] = 1
    telea, mean_colour = opencv_inpaint(smooth, mask, "telea"), mean_colour_fill(smooth, mask)
    assert hole_psnr(telea, smooth, mask) > hole_psnr(mean_colour, smooth, mask)


# ----------------------------------------------------------------------------- the shipped networks

@pytest.fixture(scope="module")
def emoji_validation() -> tuple[torch.Tensor, list[str]]:
    from ldm_lite.data.emoji import EmojiDataset

    dataset = EmojiDataset(size=64, split="validation")
    images = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return images, [dataset.caption_template.format(name=name) for name in dataset.names]


@pytest.mark.skipif(not (FEATURE_NET / "model.safetensors").is_file(), reason="feature net not trained yet")
def test_shipped_feature_net_reproduces_its_stored_emoji_accuracy(emoji_validation, capsys):
    from ldm_lite.data.clipart import emoji_coarse_category
    from ldm_lite.data.emoji import CATEGORIES, EmojiDataset
    from ldm_lite.evaluation.feature_net import FEATURE_CLASSES, load_feature_net

    loaded = load_feature_net(FEATURE_NET)
    assert "held-out accuracy" in capsys.readouterr().out
    dataset = EmojiDataset(size=64, split="validation")
    labels = np.asarray([FEATURE_CLASSES.index(emoji_coarse_category(str(name), CATEGORIES[int(category)]))
                         for name, category in zip(dataset.names, dataset.labels)])
    images, _ = emoji_validation
    accuracy = float((loaded.model.predict(images).numpy() == labels).mean())
    assert accuracy == pytest.approx(loaded.held_out["per_part"]["emoji validation"], abs=1e-4)
    assert (FEATURE_NET / "model.safetensors").stat().st_size <= 5 * 2**20


@pytest.mark.skipif(not (FEATURE_NET / "model.safetensors").is_file(), reason="feature net not trained yet")
def test_feature_net_fid_separates_degraded_and_collapsed_sets(emoji_validation):
    """Held-out emoji vs 156 random training emoji is the floor; the same training emoji blurred
    (Gaussian, sigma 2 px at 64 px: the net learnt to ignore the slight blur of a 32-px round trip)
    or colour-shifted score clearly worse, and one image repeated has no recall."""
    from ldm_lite.data.emoji import EmojiDataset
    from ldm_lite.evaluation.feature_net import load_feature_net

    net = load_feature_net(FEATURE_NET, verbose=False).model
    reference, _ = emoji_validation
    train = EmojiDataset(size=64, split="train")
    chosen = np.random.default_rng(0).permutation(len(train))[:156]
    other_real = torch.from_numpy(train.images[chosen]).permute(0, 3, 1, 2).float() / 127.5 - 1
    profile = torch.exp(-torch.arange(-4.0, 5.0) ** 2 / 8)
    kernel = (profile[:, None] * profile[None, :] / profile.sum() ** 2).expand(3, 1, 9, 9)
    blurred = F.conv2d(F.pad(other_real, (4, 4, 4, 4), mode="replicate"), kernel, groups=3)
    shifted = (other_real + torch.tensor([0.15, -0.1, -0.15])[None, :, None, None]).clamp(-1, 1)
    features = {name: net.features(images) for name, images in
                (("reference", reference), ("real", other_real), ("blurred", blurred), ("shifted", shifted))}
    floor = fid(features["real"], features["reference"])
    assert fid(features["blurred"], features["reference"]) > 1.3 * floor
    assert fid(features["shifted"], features["reference"]) > 2 * floor
    assert kid(features["shifted"], features["reference"])[0] > kid(features["real"], features["reference"])[0] + 0.5
    assert fid(features["reference"], features["reference"]) == pytest.approx(0.0, abs=1e-6)
    assert precision_recall(features["reference"], features["reference"]) == (1.0, 1.0)
    collapsed = features["real"][:1].repeat(156, 1)
    assert precision_recall(features["reference"], collapsed)[1] <= 0.02


@pytest.mark.skipif(not (CONTRASTIVE / "model.safetensors").is_file(), reason="contrastive model not trained yet")
def test_shipped_contrastive_model_reproduces_its_stored_emoji_r_precision(emoji_validation, capsys):
    from ldm_lite.evaluation.contrastive import clip_score, load_contrastive_model, r_precision

    loaded = load_contrastive_model(CONTRASTIVE)
    assert "R-precision" in capsys.readouterr().out
    images, captions = emoji_validation
    stored = loaded.held_out["per_part"]["emoji validation"]
    assert r_precision(loaded.model, images, captions, captions) == pytest.approx(stored["r_precision"], abs=1e-4)
    assert clip_score(loaded.model, images, captions) == pytest.approx(stored["clip_score"], abs=1e-3)
    shuffled = captions[1:] + captions[:1]  # every image with another emoji's caption
    assert clip_score(loaded.model, images, shuffled) < stored["clip_score"]
    assert (CONTRASTIVE / "model.safetensors").stat().st_size <= 5 * 2**20


# ----------------------------------------------------------------------------- bench/quality.py

def _quality_bench():
    import importlib.util
    import sys

    if "quality_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("quality_bench", ROOT / "bench" / "quality.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["quality_bench"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["quality_bench"]


@pytest.mark.skipif(not (FEATURE_NET / "model.safetensors").is_file(), reason="feature net not trained yet")
def test_quality_bench_on_the_inpainting_model(capsys):
    """A few held-out emoji through the shipped inpainting model and the three baselines: every
    method gets every metric, and the verdict line says whether the model beats them."""
    import argparse

    bench = _quality_bench()
    options = argparse.Namespace(model=ROOT / "models" / "ldm" / "inpainting-emoji", count=8, batch_size=8, seed=0,
                                 device="cpu", features="project", data=None, feature_net=FEATURE_NET,
                                 contrastive=CONTRASTIVE, save_samples=None)
    result = bench.run(options)
    output = capsys.readouterr().out
    assert result["kind"] == "inpainting" and result["held_out"] == {"EmojiDataset validation": 156}
    methods = result["inpainting"]["methods"]
    assert set(methods) == {"model", "opencv telea", "opencv navier-stokes", "mean colour fill"}
    for by_masks in methods.values():
        assert set(by_masks) == {"box", "stroke", "all"} and set(by_masks["all"]) == {
            "psnr_hole", "ssim_hole", "feature_distance", "fid"}
    assert "verdict:" in output and "DDIM 50" in output and "held-out accuracy" in output


def test_quality_bench_masks_alternate_and_repeat():
    bench = _quality_bench()
    masks, kinds = bench.make_masks(6, 32, 32, seed=0)
    again, _ = bench.make_masks(6, 32, 32, seed=0)
    assert kinds == ["box", "stroke"] * 3 and torch.equal(masks, again) and masks.shape == (6, 1, 32, 32)
    assert bench.proportional_counts([1475, 156], 500) == [452, 48]


@pytest.mark.skipif(any(__import__("importlib").util.find_spec(name) for name in ("cleanfid", "torch_fidelity")),
                    reason="an Inception library is installed")
def test_quality_bench_inception_features_offline_say_so_in_one_line():
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, str(ROOT / "bench" / "quality.py"), "models/ldm/emoji-uncond",
                                "--features", "inception"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "internet" in lines[0] and "clean-fid" in lines[0]


def test_feature_net_classes_follow_the_clipart_categories():
    from ldm_lite.data.clipart import CATEGORIES
    from ldm_lite.evaluation.feature_net import FEATURE_CLASSES

    assert FEATURE_CLASSES == CATEGORIES + ("shape",)
