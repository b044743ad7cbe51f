"""Fast tests of the samplers on analytic denoisers (no trained model needed)."""
import numpy as np
import pytest
import torch

from ldm_lite.samplers import SAMPLERS, DDIMSampler, DDPMSampler, PLMSSampler, make_sampler
from ldm_lite.samplers.guidance import guided_model_output
from ldm_lite.samplers.schedule import make_ddim_timesteps

T = 1000
SHAPE = (2, 3, 4, 4)


def linear_alphas_cumprod(num_timesteps: int = T) -> torch.Tensor:
    """The original LDM "linear" schedule: betas = linspace(sqrt(0.00085), sqrt(0.012))**2."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, num_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def smooth_eps(x, t, cond=None):
    """A fixed smooth function of (x, t, cond) standing in for a UNet."""
    out = torch.tanh(1.3 * x + 0.2) * torch.cos(t.to(x.dtype) / 200)[:, None, None, None]
    return out if cond is None else out + 0.5 * cond


def point_mass_eps(target, alphas_cumprod):
    """The exact eps-prediction when the data is the single point `target`."""
    def eps(x, t, cond=None):
        alpha = alphas_cumprod[t].to(x)[:, None, None, None]
        return (x - alpha.sqrt() * target) / (1 - alpha).sqrt()
    return eps


# --- timestep selection -------------------------------------------------------------------------
def test_uniform_timesteps_have_the_original_plus_one_offset():
    assert make_ddim_timesteps("uniform", 50, T).tolist() == list(range(1, 1000, 20))
    assert make_ddim_timesteps("uniform", 4, 10).tolist() == [1, 3, 5, 7]


def test_quad_timesteps():
    expected = (np.linspace(0, np.sqrt(T * 0.8), 10) ** 2).astype(int) + 1
    assert make_ddim_timesteps("quad", 10, T).tolist() == expected.tolist()
    assert make_ddim_timesteps("quad", 10, T)[-1] == 801


def test_many_steps_stay_in_range():
    assert make_ddim_timesteps("uniform", T, T).tolist() == list(range(T))  # S = T: no offset
    assert make_ddim_timesteps("uniform", 600, T).tolist() == list(range(1, 601))
    assert make_ddim_timesteps("quad", T, T)[-1] == 801


@pytest.mark.parametrize("steps", [0, -3, T + 1])
def test_out_of_range_steps_are_rejected(steps):
    with pytest.raises(ValueError, match="steps"):
        make_ddim_timesteps("uniform", steps, T)
    with pytest.raises(ValueError, match="steps"):
        DDIMSampler(smooth_eps, linear_alphas_cumprod()).sample(SHAPE, steps=steps, seed=0)


def test_ddim_with_every_timestep_runs():
    alphas_cumprod = linear_alphas_cumprod(100)
    sampler = DDIMSampler(smooth_eps, alphas_cumprod)
    assert sampler.plan(100)[0] == list(range(99, -1, -1))
    assert sampler.plan(100)[2][-1] == float(alphas_cumprod[0])  # as the original: last target is alphas_cumprod[0]
    assert torch.isfinite(sampler.sample(SHAPE, steps=100, eta=1.0, seed=0)).all()


# --- determinism and seeds ----------------------------------------------------------------------
def test_ddim_eta0_is_deterministic_given_x_T():
    sampler = DDIMSampler(smooth_eps, linear_alphas_cumprod())
    x_T = torch.randn(SHAPE)
    assert torch.equal(sampler.sample(SHAPE, x_T=x_T, steps=10), sampler.sample(SHAPE, x_T=x_T.clone(), steps=10))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_seed_reproducibility(name):
    alphas_cumprod = linear_alphas_cumprod(50)
    sampler = SAMPLERS[name](smooth_eps, alphas_cumprod)
    eta = 1.0 if name in ("ddim", "ddpm") else 0.0
    first = sampler.sample(SHAPE, steps=None if name == "ddpm" else 10, eta=eta, seed=7)
    again = sampler.sample(SHAPE, steps=None if name == "ddpm" else 10, eta=eta, seed=7)
    other = sampler.sample(SHAPE, steps=None if name == "ddpm" else 10, eta=eta, seed=8)
    assert torch.equal(first, again) and not torch.allclose(first, other)


def test_seed_gives_the_noise_of_a_cpu_generator():
    sampler = DDIMSampler(smooth_eps, linear_alphas_cumprod())
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    assert torch.equal(sampler.sample(SHAPE, steps=5, seed=5), sampler.sample(SHAPE, steps=5, x_T=x_T))


def test_ddim_every_step_eta1_equals_ddpm_ancestral():
    """Same noise -> same result: DDIM eta = 1 over all T steps is DDPM with posterior variance beta-tilde.
    DDPM's last step (t = 0, target a = 1) returns x0_pred; DDIM's last target is alphas_cumprod[0]
    so we compare DDPM's output with DDIM's last x0 prediction, and every state before it."""
    alphas_cumprod = linear_alphas_cumprod(100)
    x_T = torch.randn(SHAPE, dtype=torch.float64)
    ddpm, ddpm_steps = DDPMSampler(smooth_eps, alphas_cumprod).sample(SHAPE, x_T=x_T, seed=3, return_intermediates=True)
    ddim, ddim_steps = DDIMSampler(smooth_eps, alphas_cumprod).sample(
        SHAPE, x_T=x_T, steps=100, eta=1.0, seed=3, return_intermediates=True)
    for ours, theirs in zip(ddim_steps["x_inter"][:-1], ddpm_steps["x_inter"][:-1]):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ddim_steps["pred_x0"][-1], ddpm, rtol=1e-9, atol=1e-9)
    assert (ddim_steps["x_inter"][50] - x_T).abs().max() > 0.1  # it did move


# --- parameterizations and exactness --------------------------------------------------------------
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_point_mass_data_is_recovered_exactly(name):
    """For data = one point, the exact denoiser predicts x0 = that point at every step."""
    alphas_cumprod = linear_alphas_cumprod(100)
    target = torch.randn(SHAPE, dtype=torch.float64)
    sampler = SAMPLERS[name](point_mass_eps(target, alphas_cumprod), alphas_cumprod)
    predictions = []
    sampler.sample(SHAPE, steps=None if name == "ddpm" else 7, seed=0,
                   callback=lambda i, n, x, x0: predictions.append(x0))
    assert len(predictions) == (100 if name == "ddpm" else 7)
    torch.testing.assert_close(predictions[-1].double(), target)


@pytest.mark.parametrize("parameterization", ["x0", "v"])
def test_x0_and_v_models_sample_like_the_eps_model(parameterization):
    alphas_cumprod = linear_alphas_cumprod()

    def other_model(x, t, cond=None):
        alpha = alphas_cumprod[t].to(x)[:, None, None, None]
        eps = smooth_eps(x, t)
        x0 = (x - (1 - alpha).sqrt() * eps) / alpha.sqrt()
        return x0 if parameterization == "x0" else alpha.sqrt() * eps - (1 - alpha).sqrt() * x0

    x_T = torch.randn(SHAPE, dtype=torch.float64)
    for name in ("ddim", "plms", "dpm"):
        expected = SAMPLERS[name](smooth_eps, alphas_cumprod).sample(SHAPE, x_T=x_T, steps=8)
        got = SAMPLERS[name](other_model, alphas_cumprod, parameterization).sample(SHAPE, x_T=x_T, steps=8)
        torch.testing.assert_close(got, expected)


# --- guidance -----------------------------------------------------------------------------------
class CountingModel:
    def __init__(self):
        self.batches = []

    def __call__(self, x, t, cond):
        self.batches.append(x.shape[0])
        context = cond["c_crossattn"][0] if isinstance(cond, dict) else cond
        out = smooth_eps(x, t) + context.mean(dim=(1, 2))[:, None, None, None] * x
        if isinstance(cond, dict):
            out = out + cond["c_concat"][0]
        return out


def test_guidance_is_one_batched_pass_equal_to_two_passes():
    x, t = torch.randn(SHAPE), torch.full((2,), 500)
    cond, null = torch.randn(2, 5, 8), torch.randn(1, 5, 8)
    model = CountingModel()
    guided = guided_model_output(model, x, t, cond, null, 7.5)
    assert model.batches == [4]
    unconditional, conditional = model(x, t, null.expand(2, -1, -1)), model(x, t, cond)
    torch.testing.assert_close(guided, unconditional + 7.5 * (conditional - unconditional))


def test_guidance_with_hybrid_dict_conditions():
    x, t = torch.randn(SHAPE), torch.full((2,), 300)
    concat = torch.randn(SHAPE)
    cond = {"c_concat": [concat], "c_crossattn": [torch.randn(2, 5, 8)]}
    null = {"c_concat": [concat], "c_crossattn": [torch.zeros(2, 5, 8)]}
    model = CountingModel()
    guided = guided_model_output(model, x, t, cond, null, 3.0)
    assert model.batches == [4]
    unconditional, conditional = model(x, t, null), model(x, t, cond)
    torch.testing.assert_close(guided, unconditional + 3.0 * (conditional - unconditional))


def test_guidance_scale_one_is_a_single_conditional_pass():
    model = CountingModel()
    sampler = DDIMSampler(model, linear_alphas_cumprod())
    sampler.sample(SHAPE, cond=torch.randn(2, 5, 8), unconditional_cond=torch.zeros(1, 5, 8), steps=3, seed=0)
    assert model.batches == [2, 2, 2]


def test_guidance_without_null_condition_is_an_error():
    with pytest.raises(ValueError, match="unconditional_cond"):
        DDIMSampler(CountingModel(), linear_alphas_cumprod()).sample(
            SHAPE, cond=torch.randn(2, 5, 8), guidance_scale=5.0, steps=2, seed=0)


# --- callback, intermediates, inpainting ----------------------------------------------------------
def test_callback_gets_each_step_with_pred_x0():
    fixed_x0 = torch.randn(SHAPE)
    sampler = DDIMSampler(lambda x, t, c: fixed_x0.expand_as(x), linear_alphas_cumprod(), "x0")
    calls = []
    result = sampler.sample(SHAPE, steps=4, seed=0, callback=lambda i, n, x, x0: calls.append((i, n, x, x0)))
    assert [(i, n) for i, n, _, _ in calls] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    for _, _, _, pred_x0 in calls:
        torch.testing.assert_close(pred_x0, fixed_x0)
    assert torch.equal(calls[-1][2], result)


@pytest.mark.parametrize("name,resample_steps", [("ddim", 1), ("ddim", 3), ("ddpm", 2), ("plms", 1), ("dpm", 1)])
def test_inpainting_keeps_the_known_region_exactly(name, resample_steps):
    alphas_cumprod = linear_alphas_cumprod(50)
    x0_known = torch.randn(SHAPE)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1:3, 1:3] = 1  # fill the centre
    model = CountingModel()
    result = SAMPLERS[name](model, alphas_cumprod).sample(
        SHAPE, cond=torch.zeros(2, 5, 8), steps=None if name == "ddpm" else 5, seed=0,
        mask=mask, x0_known=x0_known, resample_steps=resample_steps)
    assert torch.equal(result * (1 - mask), x0_known * (1 - mask))
    assert not torch.allclose(result * mask, x0_known * mask)
    steps = 50 if name == "ddpm" else 5
    assert len(model.batches) == steps * resample_steps + (1 if name == "plms" else 0)


def test_resampling_is_refused_by_multistep_samplers():
    with pytest.raises(ValueError, match="resample_steps"):
        PLMSSampler(smooth_eps, linear_alphas_cumprod()).sample(
            SHAPE, steps=3, mask=torch.ones(1, 1, 4, 4), x0_known=torch.zeros(SHAPE), resample_steps=2)


# --- construction -------------------------------------------------------------------------------
class TinyLatentDiffusion(torch.nn.Module):
    parameterization = "eps"

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.register_buffer("alphas_cumprod", linear_alphas_cumprod(20).float())

    def apply_model(self, x, t, cond):
        return self.scale * torch.tanh(x)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_make_sampler_from_model(name):
    sampler = make_sampler(name, TinyLatentDiffusion())
    assert sampler.num_timesteps == 20 and sampler.parameterization == "eps"
    assert sampler.sample(SHAPE, steps=None if name == "ddpm" else 4, seed=0).shape == SHAPE


def test_bad_sampler_arguments():
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("euler", TinyLatentDiffusion())
    with pytest.raises(ValueError, match="eta"):
        PLMSSampler(smooth_eps, linear_alphas_cumprod()).sample(SHAPE, steps=3, eta=0.5)
    with pytest.raises(ValueError, match="parameterization"):
        DDIMSampler(smooth_eps, linear_alphas_cumprod(), "score")
    with pytest.raises(ValueError, match="DDPM"):
        DDPMSampler(smooth_eps, linear_alphas_cumprod()).sample(SHAPE, steps=50)
    with pytest.raises(ValueError, match="x0_known"):
        DDIMSampler(smooth_eps, linear_alphas_cumprod()).sample(SHAPE, steps=3, mask=torch.ones(1, 1, 4, 4))


# --- the start-aligned reference solution ----------------------------------------------------------
def test_reference_starts_where_the_grid_starts_and_visits_every_timestep():
    from ldm_lite.samplers.reference import ReferenceSampler, grid_start

    assert [grid_start(steps) for steps in (5, 10, 20, 50)] == [801, 901, 951, 981]
    sampler = ReferenceSampler(smooth_eps, linear_alphas_cumprod(), start=901)
    assert sampler.plan(sampler.default_steps())[0] == list(range(901, 0, -1))
    assert sampler.plan(10)[0] == DDIMSampler(smooth_eps, linear_alphas_cumprod()).plan(10)[0]  # same grid
    assert sampler.plan(1)[0] == [901]
    with pytest.raises(ValueError, match="start=1000 is out of range"):
        ReferenceSampler(smooth_eps, linear_alphas_cumprod(), start=1000)


GAUSSIAN_MEAN, GAUSSIAN_STD = 0.3, 0.5


def gaussian_data_eps(alphas_cumprod):
    """The exact eps-prediction for data ~ N(m, s^2 I): with x_t ~ N(sqrt(a) m, v_t I), v_t = a s^2 + 1 - a,
    eps = sqrt(1 - a) (x_t - sqrt(a) m) / v_t (Tweedie's formula)."""
    def eps(x, t, cond=None):
        alpha = alphas_cumprod[t].to(x)[:, None, None, None]
        variance = alpha * GAUSSIAN_STD ** 2 + 1 - alpha
        return (1 - alpha).sqrt() * (x - alpha.sqrt() * GAUSSIAN_MEAN) / variance
    return eps


def gaussian_ode_solution(x_start, alpha_start, alpha_end):
    """The probability-flow ODE's exact map for Gaussian data: the standardised x_t is constant along it."""
    variance = lambda alpha: alpha * GAUSSIAN_STD ** 2 + 1 - alpha
    return (alpha_end ** 0.5 * GAUSSIAN_MEAN
            + (variance(alpha_end) / variance(alpha_start)) ** 0.5 * (x_start - alpha_start ** 0.5 * GAUSSIAN_MEAN))


def test_reference_and_solver_order_against_the_closed_form_ode_solution():
    """Notebook 05's lesson on an exact denoiser: the reference is far closer to the true solution than any
    few-step solver; at equal steps PLMS and DPM-Solver++(2M) beat DDIM, and DDIM's error falls like 1/S."""
    from ldm_lite.samplers.reference import ReferenceSampler, grid_start

    alphas_cumprod = linear_alphas_cumprod()
    model = gaussian_data_eps(alphas_cumprod)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = {}
    for steps in (10, 20):
        start = grid_start(steps)
        exact = gaussian_ode_solution(x_T, float(alphas_cumprod[start]), float(alphas_cumprod[0]))
        samples = {name: SAMPLERS[name](model, alphas_cumprod).sample(SHAPE, steps=steps, x_T=x_T)
                   for name in ("ddim", "plms", "dpm")}
        samples["reference"] = ReferenceSampler(model, alphas_cumprod, start=start).sample(SHAPE, x_T=x_T)
        for name, sample in samples.items():
            errors[name, steps] = (sample - exact).pow(2).mean().sqrt().item()
    for steps in (10, 20):
        assert errors["reference", steps] < 1e-4 < errors["plms", steps] < errors["dpm", steps] < errors["ddim", steps], errors
    assert errors["plms", 10] < errors["ddim", 10] / 3, errors
    assert 1.6 < errors["ddim", 10] / errors["ddim", 20] < 2.4, errors  # first order: half the error at twice the steps
