"""DPM-Solver++(2M) (Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++", Algorithm 2):
a second-order multistep solver of the diffusion ODE in data-prediction (x0) form.

With alpha_t = sqrt(a_t), sigma_t = sqrt(1 - a_t) and the half log-SNR lambda_t = log(alpha_t / sigma_t),
one step from s = t_{i-1} to t = t_i with h = lambda_t - lambda_s is

    x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) D

where D = x0_pred(s) for the first-order (DDIM-equivalent) step, and for the second-order step
D = (1 + 1 / (2 r)) x0_pred(s) - 1 / (2 r) x0_pred(previous),  r = h_previous / h.
It reuses the previous step's prediction, so each step costs one model call."""
from __future__ import annotations

import math

import torch

from ldm_lite.samplers.base import DDIMGridSampler, Denoise


def half_log_snr(alpha_cumprod: float) -> float:
    """lambda = log(sqrt(a) / sqrt(1 - a))."""
    return 0.5 * (math.log(alpha_cumprod) - math.log1p(-alpha_cumprod))


class DPMSolverSampler(DDIMGridSampler):
    """DPM-Solver++(2M) on the DDIM timestep grid (deterministic, eta must be 0).

    The first step is first order (no previous prediction yet); with `lower_order_final` and
    fewer than 15 steps the last one is too, which stabilises very short runs."""

    name = "dpm"

    def __init__(self, *args, lower_order_final: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.lower_order_final = lower_order_final

    def default_steps(self) -> int:
        return 20

    def step(self, index: int, x: torch.Tensor, denoise: Denoise, generator: torch.Generator | None,
             state: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if state["eta"] != 0:
            raise ValueError(f"DPM-Solver++(2M) is deterministic: eta must be 0, got {state['eta']}")
        alpha_s, alpha_t = state["alphas"][index], state["alphas_prev"][index]
        _, x0 = denoise(x, state["timesteps"][index], alpha_s)
        lambda_s, lambda_t = half_log_snr(alpha_s), half_log_snr(alpha_t)
        h = lambda_t - lambda_s
        last = index == len(state["timesteps"]) - 1
        previous = state.get("previous")  # (x0_pred, h) of the last step
        first_order = (previous is None or previous[1] == 0 or h == 0
                       or (last and self.lower_order_final and len(state["timesteps"]) < 15))
        if first_order:
            data_estimate = x0
        else:
            r = previous[1] / h
            data_estimate = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous[0]
        state["previous"] = (x0, h)
        sigma_ratio = ((1 - alpha_t) / (1 - alpha_s)) ** 0.5
        x_t = sigma_ratio * x - alpha_t ** 0.5 * math.expm1(-h) * data_estimate
        return x_t, x0
