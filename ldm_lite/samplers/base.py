"""What every sampler shares: the denoiser interface, conversion of the model output to
(eps, x0), seeded noise, and the reverse loop with mask blending and callbacks.

A sampler is built from
- `model_fn(x_t, t, cond) -> output`: the denoiser (t is a LongTensor of training timesteps),
- `alphas_cumprod`: alpha-bar_t of the training schedule, a 1-D tensor of length T,
- `parameterization`: what the denoiser predicts, "eps" (noise), "x0" (clean sample) or "v"
  (v = sqrt(a_t) eps - sqrt(1 - a_t) x0, Salimans & Ho 2022),
- `clip_denoised`: clamp each predicted x0 to [-1, 1] and re-derive eps from it, for models of
  pixels (Ho et al. 2020 clip x0 in ancestral sampling; GLIDE re-derives eps); latents are not
  bounded, so latent models leave it off,
or from a LatentDiffusion with `Sampler.from_model(model)`.

Noise is drawn from a CPU `torch.Generator` seeded with `seed` and moved to the device, so the
same seed gives the same sample on CPU, CUDA and MPS. Order of draws: x_T (unless given), then
per step the mask-blending noise (inpainting only) followed by what the sampler's `step` draws
(documented there; e.g. DDIM with eta > 0 draws one tensor of the sample's shape)."""
from __future__ import annotations

from typing import Any, Callable

import torch

from ldm_lite.progress import progress_bar
from ldm_lite.samplers.guidance import GuidedDenoiser, ModelFn
from ldm_lite.samplers.inpainting import blend_known_region, renoise
from ldm_lite.samplers.schedule import check_steps, make_ddim_timesteps, step_alphas

Callback = Callable[[int, int, torch.Tensor, torch.Tensor], None]
Denoise = Callable[[torch.Tensor, int, float], tuple[torch.Tensor, torch.Tensor]]


def output_to_eps_and_x0(output: torch.Tensor, x: torch.Tensor, alpha: float,
                         parameterization: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both predictions from one model output, using x_t = sqrt(a) x0 + sqrt(1 - a) eps (Ho et al. 2020, Eq. 4)."""
    sqrt_alpha, sqrt_one_minus_alpha = alpha ** 0.5, (1 - alpha) ** 0.5
    if parameterization == "eps":
        eps = output
        x0 = (x - sqrt_one_minus_alpha * eps) / sqrt_alpha
    elif parameterization == "x0":
        x0 = output
        eps = (x - sqrt_alpha * x0) / sqrt_one_minus_alpha
    else:  # "v": x0 = sqrt(a) x_t - sqrt(1 - a) v, eps = sqrt(a) v + sqrt(1 - a) x_t
        x0 = sqrt_alpha * x - sqrt_one_minus_alpha * output
        eps = sqrt_alpha * output + sqrt_one_minus_alpha * x
    return eps, x0


def make_generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator("cpu").manual_seed(int(seed))


def standard_normal(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor | None = None,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, I) drawn on the CPU (device-independent for a given generator), then moved."""
    if like is not None:
        shape, device, dtype = like.shape, like.device, like.dtype
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


class Sampler:
    """Base class: subclasses define `plan(steps)` (timesteps and noise levels) and `step(...)`."""

    name = "sampler"
    supports_resampling = False  # RePaint resampling needs a memoryless step (DDPM, DDIM)

    def __init__(self, model_fn: ModelFn, alphas_cumprod: torch.Tensor, parameterization: str = "eps",
                 verbose: bool = False, device: torch.device | str | None = None, clip_denoised: bool = False):
        if parameterization not in ("eps", "x0", "v"):
            raise ValueError(f"unknown parameterization '{parameterization}': use 'eps', 'x0' or 'v'")
        alphas_cumprod = torch.as_tensor(alphas_cumprod).detach().double().cpu()
        if alphas_cumprod.ndim != 1 or not bool(((alphas_cumprod > 0) & (alphas_cumprod < 1)).all()):
            raise ValueError("alphas_cumprod must be a 1-D tensor of values in (0, 1)")
        self.model_fn = model_fn
        self.alphas_cumprod = alphas_cumprod
        self.num_timesteps = len(alphas_cumprod)
        self.parameterization = parameterization
        self.clip_denoised = clip_denoised
        self.verbose = verbose
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    @classmethod
    def from_model(cls, model: torch.nn.Module, **kwargs: Any) -> "Sampler":
        """A sampler driving `model.apply_model` (a LatentDiffusion) with its schedule, parameterization
        and `clip_denoised` (on for pixel-space models)."""
        device = next(model.parameters()).device
        kwargs.setdefault("clip_denoised", bool(getattr(model, "clip_denoised", False)))
        return cls(model.apply_model, model.alphas_cumprod, model.parameterization, device=device, **kwargs)

    # --- what a subclass defines -------------------------------------------------------------
    def plan(self, steps: int) -> tuple[list[int], list[float], list[float]]:
        """Descending timesteps with alpha-bar at each and at the next level: (timesteps, alphas, alphas_prev)."""
        raise NotImplementedError

    def step(self, index: int, x: torch.Tensor, denoise: Denoise, generator: torch.Generator | None,
             state: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """One reverse step from timestep `state["timesteps"][index]`; returns (x_prev, pred_x0)."""
        raise NotImplementedError

    # --- the shared loop -----------------------------------------------------------------------
    def default_steps(self) -> int:
        return 50

    @torch.no_grad()
    def sample(self, shape: tuple[int, ...], cond: Any = None, unconditional_cond: Any = None,
               guidance_scale: float = 1.0, steps: int | None = None, eta: float = 0.0,
               x_T: torch.Tensor | None = None, seed: int | None = None, mask: torch.Tensor | None = None,
               x0_known: torch.Tensor | None = None, callback: Callback | None = None,
               return_intermediates: bool = False, resample_steps: int = 1,
               ) -> torch.Tensor | tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """Run the reverse process from x_T ~ N(0, I) (or the given `x_T`) and return the latents.

        shape: (B, C, H, W). cond / unconditional_cond: what `model_fn` takes (tensor or hybrid dict).
        guidance_scale: classifier-free guidance strength s (1 = off). steps: number of model steps.
        eta: DDIM stochasticity (0 deterministic, 1 DDPM-like). mask, x0_known: inpainting by
        blending (mask = 1 where to fill; see `ldm_lite.samplers.inpainting`). resample_steps:
        RePaint's U (denoise U times per step, re-noising in between; DDPM and DDIM only).
        callback(step_index, total_steps, x_t, pred_x0) after each step. With
        `return_intermediates` also returns {"x_inter": [...], "pred_x0": [...]} (one entry per step)."""
        steps = self.default_steps() if steps is None else check_steps(steps, self.num_timesteps)
        if (mask is None) != (x0_known is None):
            raise ValueError("inpainting needs both mask (1 = fill) and x0_known (the latent to keep)")
        if resample_steps < 1 or (resample_steps > 1 and not self.supports_resampling):
            raise ValueError(f"resample_steps={resample_steps}: must be >= 1, and > 1 only for 'ddpm' or 'ddim'")
        generator = make_generator(seed)
        if x_T is None:
            x = standard_normal(tuple(shape), generator, device=self.device)
        else:
            if tuple(x_T.shape) != tuple(shape):
                raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
            x = x_T
        timesteps, alphas, alphas_prev = self.plan(steps)
        state = {"timesteps": timesteps, "alphas": alphas, "alphas_prev": alphas_prev, "eta": eta}
        guided = GuidedDenoiser(self.model_fn, cond, unconditional_cond, guidance_scale)

        def denoise(x_t: torch.Tensor, t: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
            t_batch = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
            eps, x0 = output_to_eps_and_x0(guided(x_t, t_batch), x_t, alpha, self.parameterization)
            if self.clip_denoised:
                x0 = x0.clamp(-1, 1)
                eps = (x_t - alpha ** 0.5 * x0) / (1 - alpha) ** 0.5
            return eps, x0

        intermediates = {"x_inter": [x], "pred_x0": [x]}
        total = len(timesteps)
        for index in progress_bar(range(total), desc=f"{self.name} sampler", disable=not self.verbose):
            for repeat in range(resample_steps):
                if mask is not None:  # paste the known region, noised to the current level
                    x = blend_known_region(x, x0_known, mask, alphas[index], generator)
                x_prev, pred_x0 = self.step(index, x, denoise, generator, state)
                if repeat < resample_steps - 1:  # RePaint: jump back one step and denoise again
                    x = renoise(x_prev, alphas_prev[index], alphas[index], generator)
            x = x_prev
            if return_intermediates:
                intermediates["x_inter"].append(x)
                intermediates["pred_x0"].append(pred_x0)
            if callback is not None:
                callback(index, total, x, pred_x0)
        if mask is not None:  # the kept region is exactly the known latent
            x = mask * x + (1 - mask) * x0_known.to(x)
        return (x, intermediates) if return_intermediates else x


class DDIMGridSampler(Sampler):
    """A sampler that visits S of the T training timesteps on the DDIM grid, chosen "uniform" or
    "quad" (`schedule.make_ddim_timesteps`): DDIM, PLMS and DPM-Solver++ share it."""

    def __init__(self, *args: Any, discretization: str = "uniform", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.discretization = discretization

    def plan(self, steps: int) -> tuple[list[int], list[float], list[float]]:
        timesteps = make_ddim_timesteps(self.discretization, steps, self.num_timesteps)
        alphas, alphas_prev = step_alphas(self.alphas_cumprod, timesteps)
        return [int(t) for t in timesteps[::-1]], alphas, alphas_prev
