"""Samplers for diffusion models: DDPM ancestral, DDIM, PLMS and DPM-Solver++(2M), with
classifier-free guidance and inpainting by mask blending. All share one call:

    sampler = make_sampler("ddim", latent_diffusion)          # or DDIMSampler(model_fn, alphas_cumprod, "eps")
    latents = sampler.sample((4, 4, 32, 32), cond=c, unconditional_cond=uc, guidance_scale=5.0, steps=50, seed=0)
"""
from __future__ import annotations

from typing import Any

import torch

from ldm_lite.samplers.base import Sampler
from ldm_lite.samplers.ddim import DDIMSampler
from ldm_lite.samplers.ddpm import DDPMSampler
from ldm_lite.samplers.dpm_solver import DPMSolverSampler
from ldm_lite.samplers.plms import PLMSSampler

SAMPLERS: dict[str, type[Sampler]] = {
    "ddim": DDIMSampler,
    "plms": PLMSSampler,
    "dpm": DPMSolverSampler,
    "ddpm": DDPMSampler,
}


def make_sampler(name: str, model: torch.nn.Module, **kwargs: Any) -> Sampler:
    """The sampler called `name` ("ddim", "plms", "dpm", "ddpm") for a LatentDiffusion `model`."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler '{name}': choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name].from_model(model, **kwargs)


__all__ = ["Sampler", "DDIMSampler", "DDPMSampler", "PLMSSampler", "DPMSolverSampler", "SAMPLERS", "make_sampler"]
