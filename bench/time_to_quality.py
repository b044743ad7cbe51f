"""Time to quality: ldm_lite's training recipe against the diffusers peer recipe, FID against
training minutes, on the same cached latents of the same first stage (issue 20, item 6).

Both recipes train an unconditional latent diffusion model on the 8x8x4 latents of the shipped
`kl-f4-emoji32` first stage (emoji training split and its mirror images, encoded once; each step
draws z from the cached posterior and multiplies it by the same scale factor 1 / std):

- ldm_lite: `LatentDiffusion` built from `configs/latent-diffusion/lite_emoji_uncond.yaml` (its
  UNet, noise schedule, AdamW at its learning rate x batch 32, 100 warm-up steps and a cosine decay
  to 10%, EMA 0.999), trained through the model's own `p_losses`, optimizer and EMA. The results of
  2026-12-03 were made with that config's earlier recipe (lr 2.56e-4, betas 0.0015 -> 0.0195);
- peer: diffusers' `UNet2DModel` with the same parameter count (2,796,740: 64 x [1, 2] channels,
  one ResBlock per level, attention at 4x4), `DDPMScheduler` (1000 linear betas 1e-4..0.02) and
  the settings of diffusers' `train_unconditional.py` example: AdamW lr 1e-4, betas (0.95, 0.999),
  weight decay 1e-6, batch 16, 500 warm-up steps and cosine decay, gradient clipping at 1, EMA
  with warm-up (inv_gamma 1, power 3/4, max decay 0.9999).

One after the other in the same process, each for the same training time, measured as process CPU
time with one thread (so that other work on the machine does not change the figures); sampling and
scoring are left off the clock. At fixed points both are sampled the same way: `--count` latents
with ldm_lite's DDIM sampler (50 steps, eta = 1, the quality bench's setting for unconditional
models) on their EMA weights, decoded by the same first stage, and scored by FID on the project's
feature net against the held-out emoji (validation split). The goal: ldm_lite reaches the peer's
final FID in at most half the peer's time.

Usage: python bench/time_to_quality.py [--minutes 10] [--evaluations 5] [--count 500] [--out FILE]"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from ldm_lite.data.emoji import EmojiDataset  # noqa: E402
from ldm_lite.evaluation.distribution_metrics import fid  # noqa: E402
from ldm_lite.evaluation.feature_net import load_feature_net  # noqa: E402
from ldm_lite.lr_schedule import WarmupCosine  # noqa: E402
from ldm_lite.samplers.ddim import DDIMSampler  # noqa: E402
from ldm_lite.util import instantiate_from_config  # noqa: E402

CONFIG = REPOSITORY_ROOT / "configs/latent-diffusion/lite_emoji_uncond.yaml"
SAMPLING_STEPS, SAMPLING_ETA = 50, 1.0
ModelFunction = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


class CachedLatents:
    """The first stage's posterior (mean, std) of every training image and its mirror image."""

    def __init__(self, first_stage: torch.nn.Module, batch_size: int = 256) -> None:
        images = torch.from_numpy(EmojiDataset(size=32, split="train").images).permute(0, 3, 1, 2).float() / 127.5 - 1
        images = torch.cat([images, images.flip(-1)])
        means, stds = [], []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                posterior = first_stage.encode(images[start : start + batch_size])
                means.append(posterior.mean)
                stds.append(posterior.std)
        self.mean, self.std = torch.cat(means), torch.cat(stds)
        self.scale_factor = 1.0 / float(self.draw(torch.arange(len(self.mean)), torch.Generator().manual_seed(0)).std())

    def draw(self, indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(self.mean[indices].shape, generator=generator)
        return self.mean[indices] + self.std[indices] * noise

    def batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(0, len(self.mean), (batch_size,), generator=generator)
        return self.draw(indices, generator) * self.scale_factor


class Recipe:
    """A model, its optimizer step and a sampler-ready EMA view."""

    name = ""
    batch_size = 0

    def train_step(self, latents: torch.Tensor) -> float:
        raise NotImplementedError

    def ema_model_function(self) -> tuple[ModelFunction, torch.Tensor]:
        """(model_fn(x_t, t, cond) on the EMA weights, alphas_cumprod of the training schedule)."""
        raise NotImplementedError


class LdmLiteRecipe(Recipe):
    name = "ldm_lite"

    def __init__(self, planned_steps: int) -> None:
        config = OmegaConf.load(CONFIG)
        self.batch_size = int(config.data.params.batch_size)
        config.model.params.first_stage_config.params.ckpt_path = str(
            REPOSITORY_ROOT / config.model.params.first_stage_config.params.ckpt_path)
        self.model = instantiate_from_config(config.model)
        self.model.learning_rate = float(config.model.base_learning_rate) * self.batch_size  # main.py's --scale_lr
        self.optimizer = self.model.configure_optimizers()[0]
        trainer = config.lightning.trainer
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, WarmupCosine(
            int(trainer.lr_warmup_steps), planned_steps, str(trainer.lr_schedule), float(trainer.lr_min_ratio)))
        self.model.train()

    def train_step(self, latents: torch.Tensor) -> float:
        t = self.model.sample_timesteps(latents.shape[0])
        loss, _ = self.model.p_losses(latents, None, t)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.model.on_train_batch_end()
        return loss.item()

    def ema_model_function(self) -> tuple[ModelFunction, torch.Tensor]:
        network = copy.deepcopy(self.model.model).eval()
        self.model.model_ema.copy_to(network)
        return (lambda x, t, cond: network(x, t)), self.model.alphas_cumprod


class DiffusersRecipe(Recipe):
    name = "diffusers"
    batch_size = 16  # train_unconditional.py's default train_batch_size

    def __init__(self, planned_steps: int) -> None:
        from diffusers import DDPMScheduler, UNet2DModel
        from diffusers.optimization import get_cosine_schedule_with_warmup
        from diffusers.training_utils import EMAModel

        self.unet = UNet2DModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(64, 128), attention_head_dim=32,
                                down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                up_block_types=("AttnUpBlock2D", "UpBlock2D"))
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, num_warmup_steps=500, num_training_steps=planned_steps)
        self.ema = EMAModel(self.unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
        self.unet.train()

    def train_step(self, latents: torch.Tensor) -> float:
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],))
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        loss = F.mse_loss(self.unet(noisy, t).sample, noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.step(self.unet.parameters())
        return loss.item()

    def ema_model_function(self) -> tuple[ModelFunction, torch.Tensor]:
        network = copy.deepcopy(self.unet).eval()
        self.ema.copy_to(network.parameters())
        return (lambda x, t, cond: network(x, t).sample), self.noise_scheduler.alphas_cumprod


class Judge:
    """Sample, decode and score FID against the held-out emoji on the project's feature net."""

    def __init__(self, first_stage: torch.nn.Module, latents: CachedLatents, count: int) -> None:
        self.first_stage, self.latents, self.count = first_stage, latents, count
        self.feature_net = load_feature_net().model
        held_out = torch.from_numpy(EmojiDataset(size=32, split="validation").images).permute(0, 3, 1, 2).float() / 127.5 - 1
        self.reference = self.feature_net.features(held_out).numpy()

    @torch.no_grad()
    def fid(self, recipe: Recipe, seed: int) -> float:
        model_function, alphas_cumprod = recipe.ema_model_function()
        sampler = DDIMSampler(model_function, alphas_cumprod, "eps")
        images = []
        for start in range(0, self.count, 250):
            batch = min(250, self.count - start)
            z = sampler.sample((batch, 4, 8, 8), steps=SAMPLING_STEPS, eta=SAMPLING_ETA, seed=seed + start)
            images.append(self.first_stage.decode(z / self.latents.scale_factor).clamp(-1, 1))
        return fid(self.feature_net.features(torch.cat(images)).numpy(), self.reference)


def measure_step_time(make_recipe: Callable[[int], Recipe], latents: CachedLatents, steps: int = 15) -> float:
    """CPU seconds per training step (after 5 steps of warm-up) of a throw-away copy of the recipe."""
    recipe, generator = make_recipe(10_000), torch.Generator().manual_seed(1)
    for _ in range(5):
        recipe.train_step(latents.batch(recipe.batch_size, generator))
    start = time.process_time()
    for _ in range(steps):
        recipe.train_step(latents.batch(recipe.batch_size, generator))
    return (time.process_time() - start) / steps


def train_with_evaluations(make_recipe: Callable[[int], Recipe], latents: CachedLatents, judge: Judge, minutes: float,
                           evaluations: int, seed: int) -> dict[str, list[float]]:
    step_seconds = measure_step_time(make_recipe, latents)
    planned_steps = max(1, int(minutes * 60 / step_seconds))
    torch.manual_seed(seed)
    recipe, generator = make_recipe(planned_steps), torch.Generator().manual_seed(seed)
    checkpoints = [minutes * 60 * (index + 1) / evaluations for index in range(evaluations)]
    history: dict[str, list[float]] = {"minutes": [], "steps": [], "fid": [], "loss": []}
    trained_seconds, step, recent_losses = 0.0, 0, []
    print(f"{recipe.name}: {step_seconds:.3f} CPU s/step at batch {recipe.batch_size}, planned {planned_steps} steps", flush=True)
    for checkpoint in checkpoints:
        start = time.process_time()
        while trained_seconds + (time.process_time() - start) < checkpoint:
            recent_losses = (recent_losses + [recipe.train_step(latents.batch(recipe.batch_size, generator))])[-100:]
            step += 1
        trained_seconds += time.process_time() - start
        score = judge.fid(recipe, seed=1000)
        history["minutes"].append(trained_seconds / 60)
        history["steps"].append(step)
        history["fid"].append(score)
        history["loss"].append(float(np.mean(recent_losses)))
        print(f"{recipe.name}: {trained_seconds / 60:5.2f} CPU min, step {step:5d}, loss {history['loss'][-1]:.4f}, "
              f"FID {score:8.3f}", flush=True)
    return history


def time_to_reach(history: dict[str, list[float]], target: float) -> float | None:
    """Training minutes at which FID first falls to `target` (linear between evaluations), or None."""
    previous_minutes, previous_fid = 0.0, math.inf
    for minutes, score in zip(history["minutes"], history["fid"]):
        if score <= target:
            if math.isinf(previous_fid):
                return minutes
            return previous_minutes + (minutes - previous_minutes) * (previous_fid - target) / (previous_fid - score)
        previous_minutes, previous_fid = minutes, score
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="CPU minutes of training per recipe")
    parser.add_argument("--evaluations", type=int, default=5, help="FID evaluations per recipe, evenly spaced")
    parser.add_argument("--count", type=int, default=500, help="samples per FID evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the histories as JSON")
    options = parser.parse_args()
    if options.minutes <= 0 or options.evaluations < 1 or options.count < 2:
        parser.error("--minutes must be > 0, --evaluations >= 1 and --count >= 2")
    torch.set_num_threads(1)

    first_stage = LdmLiteRecipe(1).model.first_stage_model.eval()
    latents = CachedLatents(first_stage)
    judge = Judge(first_stage, latents, options.count)
    print(f"{len(latents.mean)} cached latents (train split + mirror images), scale factor {latents.scale_factor:.4f}; "
          f"FID of {options.count} DDIM samples ({SAMPLING_STEPS} steps, eta {SAMPLING_ETA}) against "
          f"{len(judge.reference)} held-out emoji; {options.minutes:g} CPU minutes each, 1 thread", flush=True)
    histories = {}
    for make_recipe in (DiffusersRecipe, LdmLiteRecipe):
        name = make_recipe.name
        histories[name] = train_with_evaluations(make_recipe, latents, judge, options.minutes, options.evaluations, options.seed)

    peer, ours = histories["diffusers"], histories["ldm_lite"]
    target = peer["fid"][-1]
    reached = time_to_reach(ours, target)
    print("\nCPU minutes | " + " | ".join(f"{name} FID (step)" for name in histories))
    for index in range(options.evaluations):
        print(f"{peer['minutes'][index]:11.2f} | " + " | ".join(
            f"{histories[name]['fid'][index]:8.3f} ({histories[name]['steps'][index]:5d})" for name in histories))
    if reached is None:
        print(f"ldm_lite does not reach the peer's final FID {target:.3f} within {options.minutes:g} CPU minutes")
    else:
        ratio = reached / peer["minutes"][-1]
        print(f"ldm_lite reaches the peer's final FID {target:.3f} after {reached:.2f} CPU minutes: {ratio:.2f}x the peer's "
              f"{peer['minutes'][-1]:.2f} minutes (goal <= 0.5x: {'met' if ratio <= 0.5 else 'not met'})")
    if options.json:
        options.json.write_text(json.dumps({"options": vars(options) | {"json": str(options.json)}, "histories": histories,
                                            "target_fid": target, "ldm_lite_minutes_to_target": reached}, indent=1))


if __name__ == "__main__":
    main()
