"""How far a few-step sampler lands from the solution of the ODE it discretises.

DDIM (eta = 0), PLMS and DPM-Solver++(2M) solve one probability-flow ODE (Song et al. 2021,
arXiv:2011.13456). For S steps the error is measured against `ReferenceSampler`, the same ODE solved
finely from the S-step grid's own start (901 for S = 10 of T = 1000), from the same x_T, prompts and
guidance: the root-mean-square difference of the decoded images in [-1, 1] units, per sample, averaged.
A higher-order solver should have the smaller error at equal steps once the model's prediction varies
smoothly between the grid's timesteps (notebook 05, bench/sampler_convergence.py)."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ldm_lite.samplers import Sampler, make_sampler
from ldm_lite.samplers.reference import ReferenceSampler, grid_start
from ldm_lite.sampling import decode_latents


def per_sample_rmse(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over the batch of each image's RMSE to its reference."""
    return (images - reference).pow(2).mean(dim=(1, 2, 3)).sqrt().mean().item()


@torch.no_grad()
def solver_errors(model: torch.nn.Module, x_T: torch.Tensor, cond: Any, unconditional_cond: Any = None,
                  guidance_scale: float = 1.0, step_counts: Sequence[int] = (10, 20, 50),
                  solvers: Sequence[str] = ("ddim", "plms", "dpm"),
                  reference_steps: int | None = None) -> dict[tuple[str, int], float]:
    """{(solver, S): error} for every solver and step count. `reference_steps`: steps of the reference
    solution (None: every timestep from the grid's start, about 900 model calls)."""
    def decoded(sampler: Sampler, steps: int | None) -> torch.Tensor:
        with model.ema_scope():
            latents = sampler.sample(tuple(x_T.shape), cond=cond, unconditional_cond=unconditional_cond,
                                     guidance_scale=guidance_scale, steps=steps, x_T=x_T)
        return decode_latents(model, latents)

    errors = {}
    for steps in step_counts:
        start = grid_start(steps, model.num_timesteps)
        reference = decoded(ReferenceSampler.from_model(model, start=start), reference_steps)
        for solver in solvers:
            errors[solver, steps] = per_sample_rmse(decoded(make_sampler(solver, model), steps), reference)
    return errors
