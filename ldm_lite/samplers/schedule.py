"""Which training timesteps a sampler visits, and the noise levels it moves between.

A sampler with S steps visits S of the T training timesteps, from the noisiest down. As in the
original DDIM code, timesteps are picked on a grid starting at 0 and then shifted by +1, so the
last step goes from t = 1 to the noise level of t = 0: its target is `alphas_cumprod[0]`, not 1
(the final latent keeps a tiny amount of noise, sigma about 0.03 for the usual schedules)."""
from __future__ import annotations

import numpy as np
import torch


def check_steps(steps: int, num_timesteps: int) -> int:
    """Reject a step count a sampler cannot take (it needs 1 <= steps <= T)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise ValueError(f"steps must be an integer, got {steps!r}")
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps={steps} is out of range: choose 1 <= steps <= {num_timesteps} "
                         "(the number of training timesteps T)")
    return int(steps)


def make_ddim_timesteps(method: str, steps: int, num_timesteps: int) -> np.ndarray:
    """The S training timesteps of a DDIM-style sampler, ascending.

    - "uniform": every c = T // S-th timestep, 0, c, 2c, ... (exactly S of them; the original's
      `range(0, T, c)` yields one more when T is not a multiple of S), then +1.
    - "quad": floor((linspace(0, sqrt(0.8 T), S))**2), then +1 (denser near t = 0).

    The +1 offset is the original's. When it would push the last timestep past T - 1 (only
    uniform with S = T, where the original indexes out of range), the offset is left out and the
    grid is 0, 1, ..., T - 1; its last step goes from t = 0 to alphas_cumprod[0], changing nothing."""
    steps = check_steps(steps, num_timesteps)
    if method == "uniform":
        grid = np.arange(steps) * (num_timesteps // steps)
    elif method == "quad":
        grid = (np.linspace(0, np.sqrt(num_timesteps * 0.8), steps) ** 2).astype(np.int64)
    else:
        raise ValueError(f"unknown timestep selection '{method}': use 'uniform' or 'quad'")
    if grid[-1] + 1 < num_timesteps:
        grid = grid + 1
    return grid.astype(np.int64)


def step_alphas(alphas_cumprod: torch.Tensor, timesteps: np.ndarray) -> tuple[list[float], list[float]]:
    """alpha-bar at each selected timestep and at the one visited after it (descending order).

    Returns `(alphas, alphas_prev)` aligned with `timesteps[::-1]`; the target of the last step
    is `alphas_cumprod[0]`, as in the original."""
    alphas_cumprod = alphas_cumprod.double().cpu()
    descending = timesteps[::-1]
    alphas = [float(alphas_cumprod[t]) for t in descending]
    alphas_prev = alphas[1:] + [float(alphas_cumprod[0])]
    return alphas, alphas_prev


def ddim_sigma(alpha: float, alpha_prev: float, eta: float) -> float:
    """sigma_t of DDIM (Song et al. 2021, Eq. 16) scaled by eta:
    eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev).
    eta = 1 gives the DDPM posterior standard deviation sqrt(beta-tilde_t); eta = 0 is deterministic."""
    if alpha_prev == alpha:
        return 0.0
    return eta * ((1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)) ** 0.5
