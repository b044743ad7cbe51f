"""Worked solutions to the exercises of notebook 05 (samplers).

    python notebooks/solutions/05_sampling.py                     # full sizes (~30 min on 2 cores)
    LDM_LITE_SMOKE=1 python notebooks/solutions/05_sampling.py    # tiny sizes: checks that it runs

Uses the shipped text models `text-shapes-emoji` and (exercise 1) `text2img-clipart64`, as the notebook does. One function per exercise;
facts that hold at any size are asserted, the rest is printed and explained. Grids go to
outputs/solutions/05/ (outputs/smoke/solutions/05/ in smoke mode)."""
from __future__ import annotations


import numpy as np
import torch

from ldm_lite.data import ShapesDataset, shapes_match
from ldm_lite.data.clipart import HELDOUT_PROMPTS
from ldm_lite.evaluation.solver_error import per_sample_rmse, solver_errors
from ldm_lite.pretrained import REPOSITORY_ROOT, load_or_train
from ldm_lite.samplers import make_sampler
from ldm_lite.samplers.ddim import DDIMSampler
from ldm_lite.samplers.ddpm import DDPMSampler
from ldm_lite.samplers.reference import ReferenceSampler, grid_start
from ldm_lite.sampling import decode_latents, latent_shape, make_conditions, sample_latents
from ldm_lite.util import save_image_grid

from common import SMOKE, output_folder, section  # notebooks/solutions/common.py

step_counts = [2, 4, 8] if SMOKE else [5, 10, 20, 50, 100, 200]
reference_steps = 32 if SMOKE else 400  # PLMS steps of the reference ODE solutions of exercises 1-2
n_prompts = 4 if SMOKE else 30
distance_prompts = 2 if SMOKE else 8   # exercises 1-2: six references per model
guidance_steps = 4 if SMOKE else 20     # DPM-Solver++ steps of exercise 3
guidance_prompts = 4 if SMOKE else 60
ddpm_prompts = 0 if SMOKE else 16       # exercise 4 with the real model (1000 steps each): full mode only
guidance_scale = 3.0
seed = 0
OUT = output_folder("05")
REL = OUT.relative_to(REPOSITORY_ROOT)  # where the pictures go, as printed
torch.set_grad_enabled(False)


class Prompts:
    """Held-out shapes captions, their conditions and one fixed z_T per caption (as the notebook)."""

    def __init__(self, model: torch.nn.Module, count: int, scale: float = guidance_scale) -> None:
        self.model = model
        self.dataset = ShapesDataset(split="validation", length=count, seed=1)
        self.captions = [self.dataset.caption(index) for index in range(count)]
        self.cond, self.null = make_conditions(model, count, self.captions, guidance_scale=scale)
        self.shape = latent_shape(model, count)
        self.x_T = torch.randn(self.shape, generator=torch.Generator().manual_seed(seed + 1)).to(model.device)

    def sample(self, sampler: str = "ddim", steps: int = 20, eta: float = 0.0, scale: float = guidance_scale,
               custom: object = None) -> torch.Tensor:
        null = self.null if scale != 1.0 else None
        if custom is not None:  # a sampler object built here (e.g. quad spacing)
            with self.model.ema_scope():
                latents = custom.sample(self.shape, cond=self.cond, unconditional_cond=null, guidance_scale=scale,
                                        steps=steps, eta=eta, x_T=self.x_T, seed=seed)
        else:
            latents = sample_latents(self.model, self.shape, sampler, steps=steps, eta=eta, cond=self.cond,
                                     unconditional_cond=null, guidance_scale=scale, x_T=self.x_T, seed=seed)
        return decode_latents(self.model, latents)

    def judged(self, images: torch.Tensor) -> float:
        return float(shapes_match(images, self.dataset.attributes).mean())


def exercise_1_and_2(model: torch.nn.Module, flagship: torch.nn.Module) -> dict[str, list[float]]:
    section("Exercise 1: order of convergence (slope of log RMSE against log S)")
    prompts = Prompts(model, distance_prompts)
    flagship_cond, flagship_null = make_conditions(flagship, distance_prompts, list(HELDOUT_PROMPTS[:distance_prompts]),
                                                   guidance_scale=guidance_scale)
    flagship_x_T = torch.randn(latent_shape(flagship, distance_prompts), generator=torch.Generator().manual_seed(seed + 3))
    cases = {"text-shapes-emoji": (model, prompts.x_T, prompts.cond, prompts.null),
             "text2img-clipart64": (flagship, flagship_x_T.to(flagship.device), flagship_cond, flagship_null)}
    distances, log_steps = {}, np.log(step_counts)
    for case, (denoiser, x_T, cond, null) in cases.items():
        errors = solver_errors(denoiser, x_T, cond, null, guidance_scale, step_counts, solvers=("ddim", "dpm"),
                               reference_steps=reference_steps)
        for name in ("ddim", "dpm"):
            values = distances[case, name] = [errors[name, steps] for steps in step_counts]
            slope = float(np.polyfit(log_steps, np.log(values), 1)[0])
            tail = float(np.polyfit(log_steps[-3:], np.log(values[-3:]), 1)[0])
            print(f"{case:>18} {name:>5}: " + "  ".join(f"S={steps}: {value:.4f}" for steps, value in zip(step_counts, values))
                  + f"\n{'':>25}slope {slope:+.2f} over all S, {tail:+.2f} over the last three "
                  f"(closer to {'-1' if abs(slope + 1) < abs(slope + 2) else '-2'})")
            assert values[-1] < values[0], f"{case} {name}: more steps come closer to the ODE solution"
    print(f"(reference: PLMS with {reference_steps or 'every'} steps from each grid's start; {distance_prompts} prompts; "
          f"guidance {guidance_scale})")
    print("\nA method of order p has a global error ~ S^-p, a slope of -p. DDIM (Euler on the probability-flow ODE,\n"
          "Song et al. 2021, arXiv:2010.02502) is first order; DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095) is\n"
          "second order once the steps are small enough for its linear model of x0(lambda) to hold and its history\n"
          "is warm; its last step is first order below 15 steps (lower_order_final). With few steps neither method is\n"
          "in its asymptotic regime, and guidance makes the ODE stiffer; on a model whose prediction changes abruptly\n"
          "between distant timesteps (the small shapes model) the second-order term gains little until S is large.")

    section("Exercise 2: quadratic timestep spacing ('quad')")
    quad = DDIMSampler.from_model(model, discretization="quad")
    print("timesteps, 10 steps: uniform", make_sampler("ddim", model).plan(10)[0], "\n                     quad   ",
          quad.plan(10)[0])
    references: dict[int, torch.Tensor] = {}  # the quad grid starts at t = 800 or 801 for every S
    quad_distances = []
    for steps in step_counts:
        start = grid_start(steps, model.num_timesteps, "quad")
        if start not in references:
            references[start] = prompts.sample(steps=reference_steps, custom=ReferenceSampler.from_model(model, start=start))
        quad_distances.append(per_sample_rmse(prompts.sample(steps=steps, custom=quad), references[start]))
    for steps, uniform, quadratic in zip(step_counts, distances["text-shapes-emoji", "ddim"], quad_distances):
        print(f"S = {steps:3d}: RMSE to its own ODE solution, uniform {uniform:.4f}, quad {quadratic:.4f}")
    assert quad_distances[-1] < quad_distances[0]
    better = sum(q < u for q, u in zip(quad_distances, distances["text-shapes-emoji", "ddim"]))
    print(f"\nquad is closer at {better} of {len(step_counts)} step counts.")
    print("'quad' (Song et al. 2021, App. D.2) spends its steps near t = 0, where the image's details are settled,\n"
          "and takes big jumps at high noise; it also starts at t = 801 instead of (S - 1) T / S + 1, so it solves\n"
          "a slightly different problem (each grid is measured against its own start). Whether it pays depends on\n"
          "where the ODE bends most for this model and schedule. The distances above settle it for this model.")
    return {"ddim": distances["text-shapes-emoji", "ddim"], "dpm": distances["text-shapes-emoji", "dpm"],
            "quad": quad_distances}


def chroma(images: torch.Tensor) -> float:
    """Mean (max - min) over RGB of each pixel, in [0, 2]: 0 for greys, large for pure colours."""
    return float((images.max(dim=1).values - images.min(dim=1).values).mean())


def exercise_3(model: torch.nn.Module) -> dict[float, tuple[float, float, float]]:
    section(f"Exercise 3: guidance scale, {guidance_steps} DPM-Solver++ steps")
    results, grids = {}, []
    for scale in (1.0, 2.0, 3.0, 5.0, 8.0):
        prompts = Prompts(model, guidance_prompts, scale)
        images = prompts.sample("dpm", guidance_steps, scale=scale)
        clipped = float((images.abs() > 0.99).float().mean())
        results[scale] = (prompts.judged(images), chroma(images), clipped)
        grids.append(images[:8])
        print(f"s = {scale:3g}: judge {results[scale][0]:6.1%}   chroma {results[scale][1]:.3f}   "
              f"pixels at the range limit {clipped:6.1%}")
    save_image_grid(torch.cat(grids), OUT / "exercise3_scales_1_2_3_5_8.png", nrow=8)
    best = max(results, key=lambda scale: results[scale][0])
    assert results[8.0][1] > results[1.0][1], "large guidance saturates the colours"
    print(f"\nbest judge score at s = {best:g}; chroma from s = 1 to 8: {results[1.0][1]:.3f} -> {results[8.0][1]:.3f}")
    print("The score rises while guidance sharpens what the caption asks, then saturates (the model's card found\n"
          "s = 2, 3, 5 and 8 within noise of each other at 50 steps; with 4 captions and 4 steps, smoke mode's\n"
          "scores are noise). Large s extrapolates the prediction\n"
          "beyond anything the model saw: colours are pushed to the edge of the range (chroma and clipped pixels\n"
          "grow), backgrounds and shapes get harsh outlines (Ho & Salimans 2022, arXiv:2207.12598; Saharia et al.\n"
          "2022 counter it with dynamic thresholding, arXiv:2205.11487).")
    return results


def exercise_4(model: torch.nn.Module) -> dict[str, float]:
    section("Exercise 4: DDIM with eta = 1 and all 1000 steps against DDPM")
    alphas_cumprod = model.alphas_cumprod.double().cpu()
    ddpm, ddim = DDPMSampler.from_model(model), DDIMSampler.from_model(model)
    t_ddpm, a_ddpm, prev_ddpm = ddpm.plan(1000)
    t_ddim, a_ddim, prev_ddim = ddim.plan(1000)
    assert t_ddpm == t_ddim and a_ddpm == a_ddim, "the same 1000 timesteps, the same noise levels"
    assert prev_ddpm[:-1] == prev_ddim[:-1] and prev_ddpm[-1] == 1.0 and prev_ddim[-1] == float(alphas_cumprod[0])
    print(f"same timesteps 999..0; the last step goes to alpha-bar = 1 for DDPM (it returns x0) and to "
          f"alpha-bar_0 = {float(alphas_cumprod[0]):.5f} for DDIM")

    # The same process on a cheap stand-in denoiser (any eps-function will do): both samplers draw x_T, then
    # one N(0, I) per step, in the same order, so from one seed they follow the same chain.
    def toy(x: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        return torch.tanh(x) * (t.float() / 1000).view(-1, 1, 1, 1)

    runs = {}
    for name, cls in (("ddpm", DDPMSampler), ("ddim", DDIMSampler)):
        sampler = cls(toy, model.alphas_cumprod, "eps")
        runs[name] = sampler.sample((4, 4, 8, 8), steps=1000, eta=1.0, seed=seed, return_intermediates=True)
    (x_ddpm, inter_ddpm), (x_ddim, inter_ddim) = runs["ddpm"], runs["ddim"]
    before_last = max(float((a - b).abs().max()) for a, b in zip(inter_ddpm["x_inter"][:-1], inter_ddim["x_inter"][:-1]))
    last = float((x_ddpm - x_ddim).abs().max())
    print(f"stand-in denoiser: largest difference along the chain before the last step {before_last:.1e}, "
          f"after it {last:.3f}")
    assert before_last < 1e-3 < last, "identical chains up to the last step, which differs"
    scores = {}
    if ddpm_prompts:
        prompts = Prompts(model, ddpm_prompts)
        images = {name: prompts.sample(name, 1000, eta=1.0) for name in ("ddpm", "ddim")}
        scores = {name: prompts.judged(value) for name, value in images.items()}
        print(f"text model, {ddpm_prompts} captions: judge DDPM {scores['ddpm']:.1%}, DDIM(1000, eta 1) "
              f"{scores['ddim']:.1%}; RMSE between the two {per_sample_rmse(images['ddpm'], images['ddim']):.4f}")
    else:
        print("(smoke mode: the 1000-step samples of the real model are skipped; the full run compares their judge scores)")
    print("\nWith eta = 1, sigma_t^2 equals DDPM's posterior variance beta-tilde_t, and the DDIM update (Eq. 12) equals\n"
          "DDPM's posterior mean plus that noise: one process. In ldm-lite both also draw their noise in the same\n"
          "order (x_T, then one draw per step), so from one seed they walk the same chain; only the last step\n"
          "differs: DDPM returns the predicted x0, DDIM (following the original code) stops at alpha-bar_0 < 1 and\n"
          "keeps sqrt(1 - alpha-bar_0) ~ 0.03 of predicted noise. In implementations that draw in another order\n"
          "(e.g. the noise before the model call) the same seed gives different samples of the same distribution.")
    return {"before last": before_last, "last": last, **scores}


def laplacian_detail(images: torch.Tensor) -> float:
    """Mean absolute Laplacian over the pixels: the amount of fine detail."""
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(torch.nn.functional.conv2d(images, kernel, groups=3).abs().mean())


def exercise_5(model: torch.nn.Module) -> dict[str, list[float]]:
    section("Exercise 5: straight-line instead of spherical interpolation of z_T")
    steps = 4 if SMOKE else 20
    fractions = np.linspace(0, 1, 5 if SMOKE else 8)
    generator = torch.Generator().manual_seed(seed + 2)
    noise_a, noise_b = (torch.randn(latent_shape(model, 1), generator=generator) for _ in range(2))

    def slerp(fraction: float) -> torch.Tensor:
        theta = torch.arccos((noise_a * noise_b).sum() / (noise_a.norm() * noise_b.norm()))
        return (torch.sin((1 - fraction) * theta) * noise_a + torch.sin(fraction * theta) * noise_b) / torch.sin(theta)

    paths = {"slerp": torch.cat([slerp(float(f)) for f in fractions]),
             "straight line": torch.cat([(1 - float(f)) * noise_a + float(f) * noise_b for f in fractions])}
    cond, null = make_conditions(model, len(fractions), ["an emoji of red apple"], guidance_scale=guidance_scale)
    results, grids = {}, []
    for name, path in paths.items():
        images = decode_latents(model, sample_latents(model, tuple(path.shape), "ddim", steps=steps, cond=cond,
                                                      unconditional_cond=null, guidance_scale=guidance_scale,
                                                      x_T=path.to(model.device)))
        grids.append(images)
        norms = [round(float(z.norm()), 2) for z in path]
        detail = [round(laplacian_detail(image[None]), 3) for image in images]
        results[name] = norms
        results[f"{name} detail"] = detail
        print(f"{name:>13}: norms {norms}\n{'':>13}  image detail (mean |Laplacian|) {detail}")
    save_image_grid(torch.cat(grids), OUT / "exercise5_slerp_vs_line.png", nrow=len(fractions))
    middle = len(fractions) // 2
    expected = float(np.sqrt(noise_a.numel()))
    assert results["straight line"][middle] < results["slerp"][middle], "the straight line passes too close to 0"
    print(f"\nz_T has {noise_a.numel()} dimensions, so its norm concentrates near sqrt(d) = {expected:.1f}. Half-way, the\n"
          f"straight line has norm ~ sqrt(d/2) = {expected / np.sqrt(2):.1f}: a noise too weak for t = T, i.e. an input "
          "the model never\nsaw at the first step. It removes noise that is not there, and the middle frames come out "
          "smoother, with\nless detail (middle frame: line "
          f"{results['straight line detail'][middle]:.3f}, slerp {results['slerp detail'][middle]:.3f}); slerp keeps "
          f"the norm and every frame looks like\na sample ({REL}/exercise5_slerp_vs_line.png, top: "
          "slerp, bottom: line).")
    return results


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"mode: {'smoke' if SMOKE else 'full'}; pictures in {OUT}")
    model = load_or_train("ldm", "text-shapes-emoji", "configs/latent-diffusion/lite_text_shapes_emoji.yaml",
                          max_steps=20 if SMOKE else None).eval()
    flagship = load_or_train("ldm", "text2img-clipart64", "configs/latent-diffusion/lite_text2img_clipart64.yaml",
                             max_steps=20 if SMOKE else None).eval()
    exercise_1_and_2(model, flagship)
    exercise_3(model)
    exercise_4(model)
    exercise_5(model)


if __name__ == "__main__":
    main()
