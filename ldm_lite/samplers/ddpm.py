"""DDPM ancestral sampling (Ho, Jain & Abbeel 2020), all T timesteps.

Each step samples the posterior q(x_{t-1} | x_t, x0) with x0 replaced by the model's prediction:

    mean     = sqrt(a_{t-1}) beta_t / (1 - a_t) * x0_pred + sqrt(alpha_t) (1 - a_{t-1}) / (1 - a_t) * x_t   (Eq. 7)
    variance = beta-tilde_t = (1 - a_{t-1}) / (1 - a_t) * beta_t                                           (Eq. 7)
    x_{t-1}  = mean + sqrt(beta-tilde_t) z,  z ~ N(0, I), no noise at t = 0                               (Eq. 11)

with alpha_t = 1 - beta_t, a_t = alpha-bar_t and a_{-1} = 1, so the last step returns x0_pred.
(For an eps model, `mean` equals Eq. 11's (x_t - beta_t / sqrt(1 - a_t) eps) / sqrt(alpha_t).)"""
from __future__ import annotations

import torch

from ldm_lite.samplers.base import Denoise, Sampler, standard_normal


class DDPMSampler(Sampler):
    """Ancestral sampling over every training timestep T-1, ..., 0 (`steps` must be T or None).

    Noise: one N(0, I) draw per step (also at t = 0, where it is multiplied by 0)."""

    name = "ddpm"
    supports_resampling = True

    def default_steps(self) -> int:
        return self.num_timesteps

    def plan(self, steps: int) -> tuple[list[int], list[float], list[float]]:
        if steps != self.num_timesteps:
            raise ValueError(f"DDPM ancestral sampling visits all {self.num_timesteps} timesteps, got steps={steps}: "
                             "for fewer steps use the 'ddim' sampler (eta=1 is its DDPM-like variant)")
        timesteps = list(range(self.num_timesteps - 1, -1, -1))
        alphas = [float(self.alphas_cumprod[t]) for t in timesteps]
        return timesteps, alphas, alphas[1:] + [1.0]

    def step(self, index: int, x: torch.Tensor, denoise: Denoise, generator: torch.Generator | None,
             state: dict) -> tuple[torch.Tensor, torch.Tensor]:
        alpha, alpha_prev = state["alphas"][index], state["alphas_prev"][index]
        _, x0 = denoise(x, state["timesteps"][index], alpha)
        beta = 1 - alpha / alpha_prev
        mean = (alpha_prev ** 0.5 * beta / (1 - alpha)) * x0 + ((1 - beta) ** 0.5 * (1 - alpha_prev) / (1 - alpha)) * x
        variance = (1 - alpha_prev) / (1 - alpha) * beta
        noise = standard_normal(x.shape, generator, like=x)
        return mean + variance ** 0.5 * noise, x0
