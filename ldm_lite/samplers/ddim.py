"""DDIM: denoising diffusion implicit models (Song, Meng & Ermon 2021).

One step from timestep t to the next selected timestep (Eq. 12):

    x_prev = sqrt(a_prev) * x0_pred                      "predicted x0"
           + sqrt(1 - a_prev - sigma_t^2) * eps_pred     "direction pointing to x_t"
           + sigma_t * z,  z ~ N(0, I)                   "random noise"

with x0_pred = (x_t - sqrt(1 - a_t) eps_pred) / sqrt(a_t) and sigma_t from Eq. 16 times eta.
eta = 0 is deterministic; eta = 1 with every timestep (S = T) is DDPM ancestral sampling."""
from __future__ import annotations

import torch

from ldm_lite.samplers.base import DDIMGridSampler, Denoise, standard_normal
from ldm_lite.samplers.schedule import ddim_sigma


class DDIMSampler(DDIMGridSampler):
    """DDIM on S of the T training timesteps, chosen "uniform" or "quad" (see `schedule.py`).

    Noise: when eta > 0, one N(0, I) draw per step (also on steps whose sigma is 0)."""

    name = "ddim"
    supports_resampling = True

    def step(self, index: int, x: torch.Tensor, denoise: Denoise, generator: torch.Generator | None,
             state: dict) -> tuple[torch.Tensor, torch.Tensor]:
        alpha, alpha_prev = state["alphas"][index], state["alphas_prev"][index]
        eps, x0 = denoise(x, state["timesteps"][index], alpha)
        sigma = ddim_sigma(alpha, alpha_prev, state["eta"])
        x_prev = alpha_prev ** 0.5 * x0 + (1 - alpha_prev - sigma ** 2) ** 0.5 * eps  # Eq. 12
        if state["eta"] > 0:
            x_prev = x_prev + sigma * standard_normal(x.shape, generator, like=x)
        return x_prev, x0
