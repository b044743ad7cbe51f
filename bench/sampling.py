"""Sampling overhead: ldm_lite's DDIM loop against diffusers' DDIMScheduler driving the same UNet.

    python bench/sampling.py                                    # a random lite-sized text UNet (GPU)
    python bench/sampling.py --small                            # a random small UNet, minutes on a 2-core CPU
    python bench/sampling.py --model models/ldm/text-shapes-emoji --device cuda
    python bench/sampling.py --dpm_match --model models/ldm/text-shapes-emoji

16 samples, 50 DDIM steps, classifier-free guidance (one batched pass of 2 x 16). Both loops call
the same UNet through the same timing wrapper; the bench prints, for each, the wall time and the
fraction spent outside the UNet (the sampler's own cost; target <= 5 %).

`--dpm_match` answers: how many DPM-Solver++(2M) steps reach the accuracy of DDIM with 50 steps?
Accuracy is measured against the solution of the same ODE from the same x_T with many steps
(DDIM-1000 ≈ the exact probability-flow ODE solution), as the RMSE of the decoded images. Run it on
a trained model: with a random UNet the numbers say little."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ldm_lite.samplers import DDIMSampler, DPMSolverSampler
from ldm_lite.util import default_device, instantiate_from_config

BATCH, STEPS, SCALE = 16, 50, 5.0
RANDOM_UNET = {  # about the size of the shipped lite text model: 32x32x4 latents, MiniLM context (384)
    "target": "ldm_lite.modules.unet.UNetModel",
    "params": {"image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 64, "num_res_blocks": 1,
               "attention_resolutions": [2, 4], "channel_mult": [1, 2, 2], "num_head_channels": 32,
               "use_spatial_transformer": True, "context_dim": 384, "transformer_depth": 1},
}


class TimedUNet:
    """model_fn(x, t, context) that accumulates the wall time spent inside the UNet."""

    def __init__(self, unet: torch.nn.Module, device: torch.device):
        self.unet, self.device, self.seconds, self.calls = unet, device, 0.0, 0

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        self.synchronize()
        start = time.perf_counter()
        out = self.unet(x, t, context=context)
        self.synchronize()
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def load_unet(model: str | None, device: torch.device, small: bool = False):
    """(UNet, alphas_cumprod, latent shape, cond, null cond): from a model folder, or random."""
    if model is not None:
        from ldm_lite.sampling import latent_shape, load_for_sampling, make_conditions

        loaded = load_for_sampling(Path(model), device=device).model
        cond, null = make_conditions(loaded, BATCH, ["a red circle"], guidance_scale=SCALE)
        return loaded.model.diffusion_model, loaded.alphas_cumprod, latent_shape(loaded, BATCH), cond, null
    torch.manual_seed(0)
    config = {"target": RANDOM_UNET["target"], "params": dict(RANDOM_UNET["params"])}
    size, tokens = 32, 77
    if small:
        config["params"].update(image_size=16, model_channels=32, channel_mult=[1, 2], attention_resolutions=[2])
        size, tokens = 16, 16
    unet = instantiate_from_config(config).to(device).eval()
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    cond = torch.randn(BATCH, tokens, 384, device=device)
    return unet, torch.cumprod(1 - betas, 0), (BATCH, 4, size, size), cond, torch.zeros(1, tokens, 384, device=device)


@torch.no_grad()
def run_ldm_lite(timed: TimedUNet, alphas_cumprod, shape, cond, null, x_T) -> torch.Tensor:
    sampler = DDIMSampler(timed, alphas_cumprod, "eps", device=x_T.device)
    return sampler.sample(shape, cond=cond, unconditional_cond=null, guidance_scale=SCALE, steps=STEPS, x_T=x_T)


@torch.no_grad()
def run_diffusers(timed: TimedUNet, alphas_cumprod, shape, cond, null, x_T) -> torch.Tensor:
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=len(alphas_cumprod), trained_betas=_betas(alphas_cumprod),
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
    scheduler.set_timesteps(STEPS, device=x_T.device)
    context = torch.cat([null.expand_as(cond), cond])
    x = x_T
    for t in scheduler.timesteps:
        out = timed(torch.cat([x, x]), t.expand(2 * shape[0]), context)
        unconditional, conditional = out.chunk(2)
        x = scheduler.step(unconditional + SCALE * (conditional - unconditional), t, x, eta=0.0).prev_sample
    return x


def _betas(alphas_cumprod: torch.Tensor) -> list[float]:
    alphas_cumprod = alphas_cumprod.double().cpu()
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    return (1 - alphas_cumprod / previous).tolist()


def time_loop(name, loop, unet, device, alphas_cumprod, shape, cond, null, repeats) -> torch.Tensor:
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    loop(TimedUNet(unet, device), alphas_cumprod, shape, cond, null, x_T)  # warm-up
    best = None
    for _ in range(repeats):
        timed = TimedUNet(unet, device)
        timed.synchronize()
        start = time.perf_counter()
        result = loop(timed, alphas_cumprod, shape, cond, null, x_T)
        timed.synchronize()
        total = time.perf_counter() - start
        if best is None or total < best[0]:
            best = (total, timed.seconds, timed.calls)
    total, inside, calls = best
    print(f"{name:>10}: {total:7.3f} s for {calls} UNet calls, outside the UNet {total - inside:6.3f} s "
          f"= {100 * (total - inside) / total:5.2f} %")
    return result


# ---------------------------------------------------------------------------------------------
# DPM-Solver++ steps needed to match DDIM-50. Run on a trained model (the shipped text model):
#     python bench/sampling.py --dpm_match --model models/ldm/text-shapes-emoji
@torch.no_grad()
def dpm_steps_to_match_ddim(model_folder: str, device: torch.device, ddim_steps: int = STEPS,
                            candidates: tuple[int, ...] = (10, 20, 30, 50, 75, 100, 150), reference_steps: int = 1000,
                            batch_size: int = 8, scale: float = SCALE) -> dict[str, float]:
    """Error (RMSE of decoded images against the many-step ODE solution from the same x_T, with
    guidance) of DDIM-`ddim_steps` and of DPM-Solver++(2M) at each candidate step count; returns
    them and the fewest DPM steps whose error is at most DDIM's."""
    from ldm_lite.sampling import decode_latents, latent_shape, load_for_sampling, make_conditions

    model = load_for_sampling(Path(model_folder), device=device).model
    cond, null = make_conditions(model, batch_size, ["a red circle", "a blue star on a green square"],
                                 guidance_scale=scale)
    shape = latent_shape(model, batch_size)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)

    def images(sampler_class, steps):
        sampler = sampler_class.from_model(model)
        with model.ema_scope():
            latents = sampler.sample(shape, cond=cond, unconditional_cond=null, guidance_scale=scale, steps=steps,
                                     x_T=x_T)
        return decode_latents(model, latents)

    reference = images(DDIMSampler, reference_steps)
    errors = {f"ddim-{ddim_steps}": (images(DDIMSampler, ddim_steps) - reference).pow(2).mean().sqrt().item()}
    for steps in candidates:
        errors[f"dpm-{steps}"] = (images(DPMSolverSampler, steps) - reference).pow(2).mean().sqrt().item()
    matching = [steps for steps in candidates if errors[f"dpm-{steps}"] <= errors[f"ddim-{ddim_steps}"]]
    errors["dpm_steps_to_match"] = float(min(matching)) if matching else float("nan")
    for name, value in errors.items():
        print(f"{name:>20}: {value:.4f}")
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: a random lite-sized text UNet)")
    parser.add_argument("--device", default=None, help="default: the best available")
    parser.add_argument("--small", action="store_true", help="a small random UNet (16x16 latents), for CPUs")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per loop (the fastest is reported)")
    parser.add_argument("--dpm_match", action="store_true", help="DPM-Solver++ steps needed to match DDIM-50")
    parser.add_argument("--scale", type=float, default=SCALE, help="guidance scale of --dpm_match")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else default_device()
    if args.dpm_match:
        if args.model is None:
            parser.error("--dpm_match needs --model (a trained model folder)")
        print(f"guidance scale {args.scale}")
        dpm_steps_to_match_ddim(args.model, device, scale=args.scale)
        return
    unet, alphas_cumprod, shape, cond, null = load_unet(args.model, device, args.small)
    print(f"{BATCH} samples, {STEPS} DDIM steps, guidance {SCALE} (UNet batch {2 * BATCH}), latents {tuple(shape[1:])}, "
          f"device {device}, torch threads {torch.get_num_threads()}")
    ours = time_loop("ldm_lite", run_ldm_lite, unet, device, alphas_cumprod, shape, cond, null, args.repeats)
    theirs = time_loop("diffusers", run_diffusers, unet, device, alphas_cumprod, shape, cond, null, args.repeats)
    print(f"max |ldm_lite - diffusers| = {(ours - theirs).abs().max().item():.2e} (same x_T, same UNet)")


if __name__ == "__main__":
    main()
