"""The reference solution a few-step sampler is measured against.

DDIM with eta = 0, PLMS and DPM-Solver++ all discretise the same probability-flow ODE (Song et al.
2021, arXiv:2011.13456; DDIM is its first-order discretisation, arXiv:2010.02502 Sec. 4.3). Their
error at S steps is the distance to the ODE's exact solution *from the same starting point*: an
S-step grid puts x_T at t = (S - 1) T / S + 1 (901 for S = 10 of T = 1000), not at t = T - 1.
A 1,000-step reference from t = 999 adds that start-time gap to every sampler alike, and at 50 steps
the gap dominates: all solvers then look equally good and their order is hidden.

`ReferenceSampler(start=t0)` solves from t0 down to 1 through every training timestep (the finest
grid the model's discrete schedule allows) with PLMS, a fourth-order linear multistep method (Liu et
al. 2022, arXiv:2202.09778): on a denoiser with a closed-form ODE solution (Gaussian data, see
tests/test_samplers.py) it lands about 50x closer than DDIM through the same timesteps.
`grid_start(S)` is t0 for an S-step grid."""
from __future__ import annotations

from typing import Any

import numpy as np

from ldm_lite.samplers.plms import PLMSSampler
from ldm_lite.samplers.schedule import check_steps, make_ddim_timesteps, step_alphas


def grid_start(steps: int, num_timesteps: int = 1000, discretization: str = "uniform") -> int:
    """The timestep at which an S-step DDIM / PLMS / DPM-Solver++ grid places x_T."""
    return int(make_ddim_timesteps(discretization, steps, num_timesteps)[-1])


class ReferenceSampler(PLMSSampler):
    """PLMS from timestep `start` down to 1 on `steps` evenly spaced timesteps; `steps=None` (the
    default) visits every timestep start, start - 1, ..., 1."""

    name = "reference"

    def __init__(self, *args: Any, start: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not 1 <= start < self.num_timesteps:
            raise ValueError(f"start={start} is out of range: choose 1 <= start < {self.num_timesteps}")
        self.start = int(start)

    def default_steps(self) -> int:
        return self.start

    def plan(self, steps: int) -> tuple[list[int], list[float], list[float]]:
        steps = check_steps(steps, self.start)
        timesteps = np.linspace(self.start, 1, steps).round().astype(np.int64)[::-1]  # ascending, distinct
        alphas, alphas_prev = step_alphas(self.alphas_cumprod, timesteps)
        return [int(t) for t in timesteps[::-1]], alphas, alphas_prev
