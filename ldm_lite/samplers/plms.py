"""PLMS: pseudo linear multistep sampling (Liu, Ren, Lin & Zhao 2022, "Pseudo Numerical Methods
for Diffusion Models on Manifolds"), deterministic (eta = 0 only).

Each step is the DDIM eta = 0 update (the paper's "transfer part", Eq. 11) applied with a
combined noise estimate e' (the "gradient part"), the 4th-order Adams-Bashforth formula of Eq. 12
on the eps of the last steps:

    e' = (55 e_t - 59 e_{t+1} + 37 e_{t+2} - 9 e_{t+3}) / 24

Warm-up (as the original LDM code): the first step is a pseudo improved Euler (Heun) step,
e' = (e_t + e(x_euler, t_prev)) / 2, which costs one extra model call; steps 2 and 3 use the
2nd and 3rd order Adams-Bashforth formulas (3 e_t - e_{t+1}) / 2 and
(23 e_t - 16 e_{t+1} + 5 e_{t+2}) / 12."""
from __future__ import annotations

import torch

from ldm_lite.samplers.base import DDIMGridSampler, Denoise


def ddim_deterministic_step(x: torch.Tensor, eps: torch.Tensor, alpha: float,
                            alpha_prev: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DDIM Eq. 12 with sigma = 0: returns (x_prev, x0_pred)."""
    x0 = (x - (1 - alpha) ** 0.5 * eps) / alpha ** 0.5
    return alpha_prev ** 0.5 * x0 + (1 - alpha_prev) ** 0.5 * eps, x0


class PLMSSampler(DDIMGridSampler):
    """PLMS on the DDIM timestep grid; S steps cost S + 1 model calls."""

    name = "plms"

    def step(self, index: int, x: torch.Tensor, denoise: Denoise, generator: torch.Generator | None,
             state: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if state["eta"] != 0:
            raise ValueError(f"PLMS is deterministic: eta must be 0, got {state['eta']}")
        timesteps, alpha, alpha_prev = state["timesteps"], state["alphas"][index], state["alphas_prev"][index]
        previous = state.setdefault("previous_eps", [])  # eps of the last steps, newest last
        eps, _ = denoise(x, timesteps[index], alpha)
        if not previous:  # pseudo improved Euler
            x_euler, _ = ddim_deterministic_step(x, eps, alpha, alpha_prev)
            next_timestep = timesteps[min(index + 1, len(timesteps) - 1)]
            eps_next, _ = denoise(x_euler, next_timestep, alpha_prev)
            eps_combined = (eps + eps_next) / 2
        elif len(previous) == 1:
            eps_combined = (3 * eps - previous[-1]) / 2
        elif len(previous) == 2:
            eps_combined = (23 * eps - 16 * previous[-1] + 5 * previous[-2]) / 12
        else:
            eps_combined = (55 * eps - 59 * previous[-1] + 37 * previous[-2] - 9 * previous[-3]) / 24
        previous.append(eps)
        del previous[:-3]
        return ddim_deterministic_step(x, eps_combined, alpha, alpha_prev)
