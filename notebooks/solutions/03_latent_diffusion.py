"""Worked solutions to the exercises of notebook 03 (latent diffusion).

    cd notebooks && python solutions/03_latent_diffusion.py                    # full: the notebook's sizes, ~12 min on a busy 2-core CPU
    cd notebooks && LDM_LITE_SMOKE=1 python solutions/03_latent_diffusion.py   # tiny sizes: checks that it runs (< 1 min)
    cd notebooks && python solutions/03_latent_diffusion.py 3 6                 # only exercises 3 and 6

One section per exercise, each printing its answer. Exercises 2 and 5 train the notebook's demo (the
emoji config, 200 steps of batch 32) with one change each and compare it with the demo as it is; the
others use the shipped `models/ldm/emoji-uncond` and its first stage. In smoke mode the demos train a
few steps of batch 4 and samples are few, so their numbers mean nothing; the code paths are the full
run's. Only facts that hold at any size and seed are asserted. Pictures and runs go to
outputs/solutions/03/ (outputs/smoke/solutions/03/ in smoke mode)."""
from __future__ import annotations

import os
import shutil
import sys
import time

import numpy as np
import torch
from torch import nn

from omegaconf import OmegaConf

from ldm_lite.config import load_config
from ldm_lite.data.emoji import EmojiDataset
from ldm_lite.evaluation import fid, load_feature_net
from ldm_lite.modules.attention import AttentionBlock
from ldm_lite.pretrained import REPOSITORY_ROOT, load_or_train
from ldm_lite.sampling import sample_images
from ldm_lite.train import fit, read_metrics
from ldm_lite.util import count_params, instantiate_from_config, save_image_grid, seed_everything

from common import SMOKE, output_folder, section  # notebooks/solutions/common.py

demo_steps = 4 if SMOKE else 200          # the notebook's training-loop demo (section 5)
demo_batch_size = 4 if SMOKE else 32
noising_images = 8 if SMOKE else 64       # exercise 1: emoji whose decoded correlation is followed
t_stride = 50 if SMOKE else 20            # exercise 1: timesteps tried
sample_count = 4 if SMOKE else 64         # exercises 2 and 4: samples per setting (FID needs dozens)
ddpm_step_counts = (2, 5) if SMOKE else (10, 50, 200)
compare_steps = 5 if SMOKE else 20        # exercise 4: DDIM against DDPM at this many steps
loss_latents = 8 if SMOKE else 128        # exercise 5: validation latents per timestep
CONFIG = "configs/latent-diffusion/lite_emoji_uncond.yaml"
OUT = output_folder("03")
_cache: dict[str, object] = {}


def validation_images(count: int | None = None) -> torch.Tensor:
    """`count` validation emoji spread over the split (all 156 when None), NCHW in [-1, 1]."""
    dataset = _cache.setdefault("validation", EmojiDataset(size=32, split="validation"))
    picks = range(len(dataset)) if count is None else np.linspace(0, len(dataset) - 1, count).round().astype(int)
    return torch.stack([torch.as_tensor(dataset[int(index)]["image"]) for index in picks]).permute(0, 3, 1, 2)


def shipped_model() -> torch.nn.Module:
    if "shipped" not in _cache:
        _cache["shipped"] = load_or_train("ldm", "emoji-uncond", CONFIG, max_steps=20 if SMOKE else None).eval()
    return _cache["shipped"]


def emoji_config(changes: dict[str, object] | None = None):
    """The shipped model's config with `changes` (dotted key -> value). The keys may be absent from the YAML
    (beta_schedule, min_snr_gamma, norm_num_groups take their defaults there), so they are set, not overridden."""
    config = load_config([REPOSITORY_ROOT / CONFIG])
    for key, value in (changes or {}).items():
        OmegaConf.update(config, key, value, merge=False)
    return config


def train_demo(tag: str, changes: dict[str, object] | None = None) -> tuple[torch.nn.Module, np.ndarray]:
    """The notebook's section-5 demo with `changes` (cached per tag): the model and its training losses."""
    if tag in _cache:
        return _cache[tag]
    config = emoji_config(changes)
    trainer = config.lightning.trainer
    trainer.max_steps = demo_steps
    trainer.log_every_n_steps = 1
    trainer.val_check_interval = 0
    trainer.lr_warmup_steps = max(1, demo_steps // 10)
    config.data.params.batch_size = demo_batch_size
    config.lightning.callbacks.image_logger.params.batch_frequency = 0
    config.lightning.callbacks.checkpoint.params.every_n_train_steps = 0
    logdir = OUT / "logs" / tag
    shutil.rmtree(logdir, ignore_errors=True)
    start = time.perf_counter()
    model = fit(config, logdir=logdir, progress=False)
    losses = np.asarray(read_metrics(logdir / "metrics.csv")["train/loss_simple"][1])
    described = ", ".join(f"{key.split('.')[-1]}={value}" for key, value in (changes or {}).items())
    print(f"demo [{tag}]{' with ' + described if described else ''}: {demo_steps} steps in "
          f"{time.perf_counter() - start:.0f} s")
    _cache[tag] = (model, losses)
    return _cache[tag]


def fid_to_validation(images: torch.Tensor) -> float | None:
    """FID of `images` against the 156 held-out emoji on the project's feature net (None in smoke mode)."""
    if SMOKE:
        return None
    if "features" not in _cache:
        network = load_feature_net(verbose=False).model
        _cache["features"] = (network, network.features(validation_images()))
    network, real_features = _cache["features"]
    return fid(network.features(images), real_features)


def describe_fid(value: float | None) -> str:
    return "FID skipped (smoke mode: too few samples)" if value is None else f"FID {value:6.1f}"


GRAIN = 0.25  # mean |neighbour difference| above which an image is grain or a mosaic (about 1% of real emoji)


def grain_fraction(images: torch.Tensor) -> float:
    """Fraction of images whose mean |difference| between adjacent pixels exceeds GRAIN."""
    per_image = (images.diff(dim=-1).abs().mean((1, 2, 3)) + images.diff(dim=-2).abs().mean((1, 2, 3))) / 2
    return (per_image > GRAIN).float().mean().item()


def last_quarter(losses: np.ndarray) -> float:
    return float(np.mean(losses[-max(1, len(losses) // 4):]))


# ----------------------------------------------------------------------------- exercise 1

def decoded_correlations(model: torch.nn.Module, images: torch.Tensor, timesteps: np.ndarray) -> np.ndarray:
    """Mean over images of corr(D(z_t), D(z_0)) in pixel space, for each t (same noise for every t)."""
    torch.manual_seed(0)
    with torch.no_grad():
        z0 = model.get_first_stage_encoding(model.encode_first_stage(images))
        reference = model.decode_first_stage(z0).flatten(1)
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1))
        correlations = []
        for t in timesteps:
            decoded = model.decode_first_stage(model.q_sample(z0, torch.full((len(z0),), int(t)), noise)).flatten(1)
            centred_a = decoded - decoded.mean(1, keepdim=True)
            centred_b = reference - reference.mean(1, keepdim=True)
            correlation = (centred_a * centred_b).sum(1) / (centred_a.norm(dim=1) * centred_b.norm(dim=1))
            correlations.append(correlation.mean().item())
    return np.asarray(correlations)


def exercise_1() -> dict[str, int]:
    section("Exercise 1: linear vs cosine schedule, when does the emoji become unrecognizable?")
    images = validation_images(noising_images)
    timesteps = np.arange(0, 1000, t_stride)
    threshold = 0.5
    answers = {}
    for name, changes in (("linear", {}), ("cosine", {"model.params.beta_schedule": "cosine"})):
        model = instantiate_from_config(emoji_config(changes).model).eval()
        model.set_scale_factor_from_latents(images)
        correlations = decoded_correlations(model, images, timesteps)
        below = np.flatnonzero(correlations < threshold)
        answers[name] = int(timesteps[below[0]]) if len(below) else 1000
        signal = float(model.alphas_cumprod[min(answers[name], 999)].sqrt())
        print(f"{name:6s}: corr(D(z_t), D(z_0)) falls below {threshold} at t = {answers[name]} "
              f"(sqrt(abar_t) = {signal:.3f} there)")
        grid_steps = [0, 100, 250, 500, 750, 999]
        with torch.no_grad():
            z0 = model.get_first_stage_encoding(model.encode_first_stage(images[:4]))
            noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1))
            rows = [model.decode_first_stage(model.q_sample(z0, torch.full((4,), t), noise)) for t in grid_steps]
        path = save_image_grid(torch.stack(rows, dim=1).flatten(0, 1), OUT / f"exercise1_{name}.png", nrow=len(grid_steps))
        print(f"        noising grid (rows: emoji, columns: t = {grid_steps}): {path}")
    assert answers["cosine"] > answers["linear"], "the cosine schedule keeps more signal at every t < 990"
    print(f"Answer: under the linear LDM schedule the emoji is gone by t ~ {answers['linear']}, under the cosine one only\n"
          f"by t ~ {answers['cosine']}: the cosine schedule spends more of the chain on recognizable images. Both cross\n"
          "at about the same signal level sqrt(abar_t) (printed): what decides recognizability is abar_t, and the\n"
          "schedules differ only in the timestep at which they reach it.")
    return answers


# ----------------------------------------------------------------------------- exercise 2

def exercise_2() -> dict[str, dict[str, float]]:
    section("Exercise 2: scale_by_std off (scale_factor 1.0): the SNR the model sees, the loss, the samples")
    model = shipped_model()
    images = validation_images(64)
    with torch.no_grad():
        torch.manual_seed(0)
        raw_std = model.first_stage_model.encode(images).sample().std().item()
    abar = model.alphas_cumprod.double()
    snr = abar / (1 - abar)
    crossing = {name: int((snr * variance >= 1).nonzero().max()) for name, variance in
                (("scaled", 1.0), ("unscaled", raw_std ** 2))}
    print(f"std of the raw latents: {raw_std:.2f}, so the unscaled model sees every SNR multiplied by {raw_std ** 2:.1f}")
    print(f"SNR = 1 at t = {crossing['scaled']} with scaled latents, at t = {crossing['unscaled']} without; "
          f"at t = 999 the unscaled SNR is still {snr[-1].item() * raw_std ** 2:.4f} (scaled: {snr[-1].item():.5f})")
    assert raw_std > 1 and crossing["unscaled"] > crossing["scaled"], "larger latents keep more signal at each t"
    results = {}
    unscaled = {"model.params.scale_by_std": False, "model.params.scale_factor": 1.0}
    for tag, changes in (("baseline", {}), ("unscaled", unscaled)):
        demo, losses = train_demo(tag, changes)
        with torch.no_grad(), demo.ema_scope():
            latents = demo.sample(sample_count, num_steps=ddpm_step_counts[-1], generator=torch.Generator().manual_seed(0))
            samples = demo.decode_first_stage(latents).clamp(-1, 1)
        save_image_grid(samples[:32], OUT / f"exercise2_{tag}.png", nrow=8)
        data_std = 1.0 if tag == "baseline" else raw_std
        results[tag] = {"loss": last_quarter(losses), "latent std": latents.std().item(), "fid": fid_to_validation(samples)}
        print(f"{tag:9s}: scale_factor {float(demo.scale_factor):.4f}, loss_simple last quarter {results[tag]['loss']:.4f}, "
              f"std of sampled latents {results[tag]['latent std']:.2f} (data: {data_std:.2f}), "
              f"{describe_fid(results[tag]['fid'])}")
    baseline, plain = results["baseline"], results["unscaled"]
    print(f"Answer: without scaling the latents are {raw_std:.1f}x too large, so the model sees every SNR x{raw_std ** 2:.1f}:\n"
          f"SNR = 1 moves from t = {crossing['scaled']} to t = {crossing['unscaled']}, the noise stays small against the signal\n"
          "for most of the chain, and the schedule's last steps must destroy the image at once. The training loss (in\n"
          f"units of eps for both) is {plain['loss']:.3f} against {baseline['loss']:.3f}: "
          + ("higher, as a small noise under a large signal is harder to predict.\n" if plain["loss"] > baseline["loss"]
             else "not higher at this budget.\n")
          + "Samples: after 200 steps neither model draws emoji (see the grids, the std of the sampled latents against\n"
          "the data's, and the FIDs above; the notebook's floor is about 20). Which scaling gives the better samples\n"
          "needs the shipped config's 3,500 steps; the paper's choice (Sec. 4.3.2) is the unit-variance one.")
    return results


# ----------------------------------------------------------------------------- exercise 3

def unet_with(attention_resolutions: list[int], norm_num_groups: int = 32) -> nn.Module:
    unet_params = "model.params.unet_config.params"
    config = emoji_config({f"{unet_params}.attention_resolutions": attention_resolutions,
                           f"{unet_params}.norm_num_groups": norm_num_groups})
    return instantiate_from_config(config.model.params.unet_config)


def forward_seconds(unet: nn.Module, batch: int, repeats: int) -> float:
    x, t = torch.randn(batch, 4, 8, 8), torch.randint(0, 1000, (batch,))
    with torch.no_grad():
        unet(x, t)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            unet(x, t)
    return (time.perf_counter() - start) / repeats


def exercise_3() -> dict[str, int]:
    section("Exercise 3: attention at 8x8 too (attention_resolutions [1, 2])")
    unets = {"[2]": unet_with([2]), "[1, 2]": unet_with([1, 2])}
    added = count_params(unets["[1, 2]"]) - count_params(unets["[2]"])
    full_resolution_blocks = [module for module in unets["[1, 2]"].modules()
                              if isinstance(module, AttentionBlock) and module.norm.num_channels == 64]
    per_block = count_params(full_resolution_blocks[0])
    print(f"parameters: {count_params(unets['[2]']):,} -> {count_params(unets['[1, 2]']):,} (+{added:,}): "
          f"{len(full_resolution_blocks)} AttentionBlocks at 8x8 of {per_block:,} each "
          "(GroupNorm 128 + qkv 64x192+192 + proj_out 64x64+64)")
    assert added == sum(count_params(block) for block in full_resolution_blocks)
    tokens = {"4x4": 16, "8x8": 64}
    print(f"attention matrix per head and image: {tokens['4x4'] ** 2} entries at 4x4, {tokens['8x8'] ** 2} at 8x8 "
          f"({tokens['8x8'] ** 2 // tokens['4x4'] ** 2}x); at a 64x64 latent it would be {(64 * 64) ** 2:,}")
    batch, repeats = (8, 2) if SMOKE else (64, 10)
    for name, unet in unets.items():
        print(f"attention_resolutions {name:7s}: forward pass of {batch} latents {1000 * forward_seconds(unet, batch, repeats):.1f} ms")
    print("Answer: the parameters attention adds depend only on the channels (a few % of the UNet here), but its compute\n"
          "and memory grow with the square of the number of pixels, (h w)^2 per head: 16x between 4x4 and 8x8, and at\n"
          "the highest resolution of a large latent it dominates the UNet. That is why the LDM configs put attention\n"
          "only at the lower resolutions (and why working in a small latent space makes attention affordable).")
    return {"added": added, "per_block": per_block}


# ----------------------------------------------------------------------------- exercise 4

def exercise_4() -> dict[str, float | None]:
    section("Exercise 4: DDPM with 10, 50, 200 steps, and DDIM at 20 steps")
    model = shipped_model()
    settings: dict[str, object] = {f"DDPM {steps} steps": ("ddpm", steps) for steps in ddpm_step_counts}
    settings[f"DDPM {compare_steps} steps"] = ("ddpm", compare_steps)
    settings[f"DDIM {compare_steps} steps, eta 0 (the default)"] = ("ddim", 0.0)
    settings[f"DDIM {compare_steps} steps, eta 1"] = ("ddim", 1.0)
    scores, grainy = {}, {}
    real = validation_images()
    print(f"grainy = mean |neighbour difference| above {GRAIN}: {grain_fraction(real):.0%} of the real validation emoji")
    for name, (kind, value) in settings.items():
        start = time.perf_counter()
        if kind == "ddpm":  # the LatentDiffusion's own respaced ancestral sampler, as the notebook's section 6
            with torch.no_grad(), model.ema_scope():
                latents = model.sample(sample_count, num_steps=value, generator=torch.Generator().manual_seed(0))
                images = model.decode_first_stage(latents).clamp(-1, 1)
        else:
            images = sample_images(model, sample_count, sampler="ddim", steps=compare_steps, eta=value, seed=0)
        scores[name], grainy[name] = fid_to_validation(images), grain_fraction(images)
        slug = "".join(character if character.isalnum() else "_" for character in name.split(" (")[0])
        save_image_grid(images[:32], OUT / f"exercise4_{slug}.png", nrow=8)
        print(f"{name:36s} {describe_fid(scores[name])}   grainy {grainy[name]:4.0%}   "
              f"({time.perf_counter() - start:.1f} s for {sample_count} samples)")
    if SMOKE:
        print("Answer: see the full run (smoke mode draws too few samples to compare).")
        return scores
    at_compare = [name for name in settings if name.startswith(("DDPM", "DDIM")) and f" {compare_steps} steps" in name]
    best = min(at_compare, key=scores.get)
    first, last = f"DDPM {ddpm_step_counts[0]} steps", f"DDPM {ddpm_step_counts[-1]} steps"
    print(f"Answer: more DDPM steps help (FID {scores[first]:.1f} at {ddpm_step_counts[0]} steps, {scores[last]:.1f} at "
          f"{ddpm_step_counts[-1]}). At {compare_steps} steps FID ranks '{best}' first. But look at the grids in\n"
          f"{OUT}: with eta 0, {grainy[at_compare[1]]:.0%} of the samples are grainy, over-saturated mosaics (the model card\n"
          f"warns about it), against {grainy[at_compare[0]]:.0%} for DDPM and {grainy[at_compare[2]]:.0%} for DDIM with eta 1.\n"
          "FID on a small feature net does not see everything: look at the samples as well as scoring them.")
    return scores


# ----------------------------------------------------------------------------- exercise 5

def loss_by_timestep(model: torch.nn.Module, buckets: np.ndarray) -> np.ndarray:
    images = validation_images(loss_latents)
    torch.manual_seed(0)
    with torch.no_grad(), model.ema_scope():
        z0 = model.get_first_stage_encoding(model.encode_first_stage(images))
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(2))
        return np.asarray([float(model.p_losses(z0, None, torch.full((len(z0),), int(t)), noise)[1]["val/loss_simple"])
                           for t in buckets])


def exercise_5() -> dict[str, np.ndarray]:
    section("Exercise 5: min-SNR-gamma weighting (gamma = 5)")
    buckets = np.linspace(0, 999, 6 if SMOKE else 11).round().astype(int)
    baseline, _ = train_demo("baseline")
    weighted, _ = train_demo("min_snr_5", {"model.params.min_snr_gamma": 5.0})
    weights = weighted.snr_weights(torch.as_tensor(buckets)).numpy()
    abar = weighted.alphas_cumprod.numpy()[buckets]
    snr = abar / (1 - abar)
    assert np.allclose(weights, np.minimum(snr, 5) / snr, rtol=1e-4), "eps-loss weight = min(SNR, 5) / SNR"
    assert weights[0] < 0.01 and np.all(weights <= 1 + 1e-6) and weights[-1] == 1.0
    curves = {"uniform": loss_by_timestep(baseline, buckets), "min-SNR 5": loss_by_timestep(weighted, buckets)}
    print(f"{'t':>5} {'SNR':>10} {'weight':>8} {'eps-loss uniform':>17} {'eps-loss min-SNR':>17}")
    for index, t in enumerate(buckets):
        print(f"{t:5d} {snr[index]:10.4f} {weights[index]:8.4f} {curves['uniform'][index]:17.4f} {curves['min-SNR 5'][index]:17.4f}")
    small_t = "higher" if curves["min-SNR 5"][0] > curves["uniform"][0] else "not higher"
    later = int(np.sum(curves["min-SNR 5"][1:] < curves["uniform"][1:]))
    print(f"Answer: in eps units the weight is min(SNR_t, 5) / SNR_t: below 1 only where SNR_t > 5 (the first ~100\n"
          f"timesteps), {weights[0]:.4f} at t = 0. Those nearly clean steps have the largest eps-loss (section 8) but\n"
          "matter least for the picture; min-SNR stops them from dominating the gradient. Here the weighted model's\n"
          f"eps-loss at t = 0 is {small_t} than the uniform one's, and lower at {later} of the other {len(buckets) - 1} "
          "timesteps" + (":\nthe capacity moved to where the picture is decided." if later > (len(buckets) - 1) / 2
                         else ".") + " (After 200 steps the differences are small.)")
    return curves


# ----------------------------------------------------------------------------- exercise 6

def exercise_6() -> dict[str, float]:
    section("Exercise 6: the UNet with norm_num_groups=8")
    shipped = shipped_model().model.diffusion_model
    unets = {32: unet_with([2]), 8: unet_with([2], norm_num_groups=8)}
    states = {groups: unet.state_dict() for groups, unet in unets.items()}
    same_layout = states[32].keys() == states[8].keys() and all(states[32][k].shape == states[8][k].shape for k in states[32])
    print(f"same state-dict keys and shapes: {same_layout}; parameters {count_params(unets[32]):,} and {count_params(unets[8]):,}")
    assert same_layout and count_params(unets[32]) == count_params(unets[8])
    for groups, unet in unets.items():
        sizes = sorted({layer.num_channels // layer.num_groups for layer in unet.modules() if isinstance(layer, nn.GroupNorm)})
        print(f"norm_num_groups={groups:2d}: channels per group {sizes}")
        unet.load_state_dict(shipped.state_dict())  # strict: the shipped weights fit both
    x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 250, 500, 900])
    with torch.no_grad():
        outputs = {groups: unet(x, t) for groups, unet in unets.items()}
    difference = (outputs[32] - outputs[8]).abs().max().item()
    print(f"same shipped weights, same input: max |output difference| between 32 and 8 groups = {difference:.3f}")
    assert difference > 1e-3, "the grouping changes the normalisation, so the function"
    print("Answer: none of the trace's numbers change (shapes, parameter counts): a GroupNorm has one weight and one bias\n"
          "per channel whatever the grouping, so the state dict keeps its keys and shapes and a checkpoint loads\n"
          "either way. What changes is the function: mean and variance are taken over 8-32 channels per group\n"
          "instead of 2-8, so the same weights give other outputs, and a model must be trained with the grouping\n"
          "it is used with.")
    return {"difference": difference}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    seed_everything(0)
    start = time.perf_counter()
    print(f"mode: {'smoke' if SMOKE else 'full'}; pictures and runs in {OUT}")
    exercises = (exercise_1, exercise_2, exercise_3, exercise_4, exercise_5, exercise_6)
    chosen = {int(argument) for argument in sys.argv[1:]} or set(range(1, len(exercises) + 1))
    for number, exercise in enumerate(exercises, start=1):
        if number in chosen:
            exercise()
    print(f"\nall exercises in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
