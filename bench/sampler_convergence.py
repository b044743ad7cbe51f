"""The samplers' lesson on a shipped text or unconditional model (issue 21, item 3; notebook 05).

    python bench/sampler_convergence.py models/ldm/text2img-clipart64 [--count 16] [--scale 3]
    python bench/sampler_convergence.py models/ldm/emoji-uncond --count 64

1. Convergence: from the same x_T and prompts, decoded images of DDIM (eta = 0), PLMS and
   DPM-Solver++(2M) at 10, 20 and 50 steps against the dense solution of the same probability-flow
   ODE (Song et al. 2021, arXiv:2011.13456; DDIM with eta = 0 is its Euler-like discretisation,
   arXiv:2010.02502 Sec. 4.3). The S-step grid starts at t = (S - 1) T / S + 1 (the original's
   "uniform" spacing: 901 for S = 10), so the reference for S is `ldm_lite.samplers.reference.ReferenceSampler`:
   PLMS through every timestep from that same start down to t = 1: the same ODE, the same start, only
   finer steps. (A 1,000-step reference from t = 999 adds each grid's start-time gap to every sampler
   alike and hides the order.)
   RMSE in [-1, 1] pixel units, mean over samples (`ldm_lite.evaluation.solver_error`).
   A higher-order solver (PLMS: arXiv:2202.09778; DPM-Solver++(2M): arXiv:2211.01095) should be
   closer at equal steps; printed as "lesson holds" per step count.
2. Drift: with eta = 0 a poorly trained model drifts to saturated mosaics. The mean HSV saturation
   and the high-frequency energy (mean absolute 4-neighbour Laplacian, [0, 1] pixel units) of DDIM-50
   samples at eta = 0 and eta = 1 are printed next to the same figures of held-out images of the
   model's domain (bench/quality.py's choice: the clip-art test split, else the validation split):
   eta = 0 drifts when either figure exceeds the real images' by more than DRIFT_TOLERANCE (25%).
Prompts of a text model are the flagship card's held-out captions (HELDOUT_PROMPTS); an unconditional
model samples without condition or guidance."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from quality import dataset_leaves, find_data_config, load_split, model_kind  # bench/quality.py: kind and domain

from ldm_lite.data.clipart import HELDOUT_PROMPTS
from ldm_lite.evaluation.solver_error import solver_errors
from ldm_lite.sampling import LoadedModel, decode_latents, latent_shape, load_for_sampling, make_conditions
from ldm_lite.samplers import make_sampler
from ldm_lite.samplers.reference import grid_start

STEP_COUNTS = (10, 20, 50)
SOLVERS = ("ddim", "plms", "dpm")


DRIFT_TOLERANCE = 1.25


def drift_figures(images: torch.Tensor) -> tuple[float, float]:
    """(mean HSV saturation, mean absolute Laplacian) of images in [-1, 1]."""
    pixels = (images.clamp(-1, 1) + 1) / 2
    maximum, minimum = pixels.amax(dim=1), pixels.amin(dim=1)
    saturation = torch.where(maximum > 0, (maximum - minimum) / maximum.clamp_min(1e-6), torch.zeros_like(maximum))
    laplacian = (4 * pixels[..., 1:-1, 1:-1] - pixels[..., :-2, 1:-1] - pixels[..., 2:, 1:-1]
                 - pixels[..., 1:-1, :-2] - pixels[..., 1:-1, 2:])
    return saturation.mean().item(), laplacian.abs().mean().item()


def held_out_images(loaded: LoadedModel, count: int, data_option: Path | None) -> torch.Tensor:
    """The first `count` held-out images of the model's domain (of its first dataset)."""
    data, _ = find_data_config(loaded.config, loaded.folder, data_option)
    return load_split(dataset_leaves(data.params.validation)[0], held_out=True).images[:count]


@torch.no_grad()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a text or unconditional model folder")
    parser.add_argument("--count", type=int, default=16, help="samples (prompts cycle)")
    parser.add_argument("--scale", type=float, default=3.0, help="classifier-free guidance scale (text models)")
    parser.add_argument("--data", type=Path, default=None,
                        help="training config whose data section is the model's domain (as bench/quality.py)")
    options = parser.parse_args()
    loaded = load_for_sampling(options.model, device="cpu")
    model = loaded.model
    kind = model_kind(model)
    if kind == "text":
        prompts = [HELDOUT_PROMPTS[index % len(HELDOUT_PROMPTS)] for index in range(options.count)]
        cond, null = make_conditions(model, options.count, prompts, guidance_scale=options.scale)
    elif kind == "unconditional":
        cond, null, options.scale = None, None, 1.0
    else:
        print(f"{options.model} is a {kind} model: give a text or an unconditional one", file=sys.stderr)
        return 2
    shape = latent_shape(model, options.count)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))

    def images(solver: str, steps: int, eta: float = 0.0, seed: int | None = None) -> torch.Tensor:
        sampler = make_sampler(solver, model)
        with model.ema_scope():
            latents = sampler.sample(shape, cond=cond, unconditional_cond=null, guidance_scale=options.scale,
                                     steps=steps, eta=eta, x_T=x_T, seed=seed)
        return decode_latents(model, latents)

    guidance = options.scale if kind == "text" else "none"
    print(f"{options.model}: {options.count} samples, guidance {guidance}, "
          "reference: PLMS through every timestep from the grid's start")
    print(f"{'steps':>5} {'start':>5} " + " ".join(f"{solver:>8}" for solver in SOLVERS) + "   DPM-Solver++ closer than DDIM?")
    for steps in STEP_COUNTS:
        errors = solver_errors(model, x_T, cond, null, options.scale, step_counts=[steps], solvers=SOLVERS)
        verdict = "lesson holds" if errors["dpm", steps] < errors["ddim", steps] else "lesson FAILS"
        print(f"{steps:5d} {grid_start(steps, model.num_timesteps):5d} "
              + " ".join(f"{errors[solver, steps]:8.4f}" for solver in SOLVERS) + f"   {verdict}", flush=True)
    print("\ndrift (DDIM-50): mean HSV saturation, high-frequency energy (mean |Laplacian|)")
    real = drift_figures(held_out_images(loaded, max(options.count, 64), options.data))
    rows = {"held-out images": real, "eta = 0": drift_figures(images("ddim", 50, eta=0.0)),
            "eta = 1": drift_figures(images("ddim", 50, eta=1.0, seed=1))}
    for name, (saturation, energy) in rows.items():
        print(f"{name:>22}: saturation {saturation:.4f} ({saturation / real[0]:.2f}x real)  "
              f"energy {energy:.4f} ({energy / real[1]:.2f}x real)")
    drifts = any(value > DRIFT_TOLERANCE * reference for value, reference in zip(rows["eta = 0"], real))
    print(f"eta = 0 {'DRIFTS' if drifts else 'does not drift'} (tolerance {DRIFT_TOLERANCE:.2f}x the real images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
