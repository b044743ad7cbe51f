"""ldm_lite's samplers against diffusers' schedulers (an independent implementation): same
denoiser, same schedule, same noise -> the same trajectories to 1e-5 relative.

Configuration that makes diffusers follow the original LDM conventions: timesteps "leading"
with steps_offset=1 (the original's uniform grid + 1) and set_alpha_to_one=False (the last step
lands on alphas_cumprod[0]). PNDM with skip_prk_steps=True does exactly the original PLMS
warm-up: its second call re-evaluates the first step with the averaged eps (pseudo improved
Euler), then Adams-Bashforth of order 2, 3, 4; S steps cost S + 1 calls in both."""
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from ldm_lite.samplers import DDIMSampler, DPMSolverSampler, PLMSSampler  # noqa: E402
from ldm_lite.samplers.schedule import make_ddim_timesteps  # noqa: E402

T = 1000
SHAPE = (2, 3, 8, 8)
SCHEDULE = dict(num_train_timesteps=T, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


class FrozenDenoiser(torch.nn.Module):
    """A fixed random smooth function of (x, t): a tiny conv net with a sinusoidal time input."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(1234)
        self.conv1 = torch.nn.Conv2d(3 + 2, 8, 3, padding=1).double()
        self.conv2 = torch.nn.Conv2d(8, 3, 3, padding=1).double()
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 0.3)
        self.calls = 0

    @torch.no_grad()
    def forward(self, x, t, cond=None):
        self.calls += 1
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1).expand(x.shape[0])
        time = torch.stack([torch.sin(t / 150), torch.cos(t / 330)], 1)[:, :, None, None].expand(-1, -1, *x.shape[2:])
        hidden = torch.tanh(self.conv1(torch.cat([x.double(), time], 1)))
        return (torch.tanh(self.conv2(hidden)) + 0.1 * x.double()).to(x.dtype)


def schedule_alphas(scheduler) -> torch.Tensor:
    return scheduler.alphas_cumprod.double()


def assert_close(ours, theirs):
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6 * theirs.abs().max().item())


def run_diffusers(scheduler, denoiser, x, noises=None, **step_kwargs):
    trajectory = []
    for index, t in enumerate(scheduler.timesteps):
        extra = {} if noises is None else {"variance_noise": noises[index]}
        x = scheduler.step(denoiser(x, t), t, x, **step_kwargs, **extra).prev_sample
        trajectory.append(x)
    return x, trajectory


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_eta0_matches_diffusers(steps, prediction_type):
    scheduler = diffusers.DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                        timestep_spacing="leading", prediction_type=prediction_type)
    scheduler.set_timesteps(steps)
    denoiser = FrozenDenoiser()
    parameterization = {"epsilon": "eps", "v_prediction": "v"}[prediction_type]
    sampler = DDIMSampler(denoiser, schedule_alphas(scheduler), parameterization)
    assert list(sampler.plan(steps)[0]) == scheduler.timesteps.tolist()
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = []
    result = sampler.sample(SHAPE, x_T=x_T, steps=steps, callback=lambda i, n, x, x0: ours.append(x))
    theirs, trajectory = run_diffusers(scheduler, denoiser, x_T.clone(), eta=0.0)
    for mine, reference in zip(ours, trajectory):
        assert_close(mine, reference)
    assert_close(result, theirs)


def test_ddim_clip_denoised_matches_diffusers_clip_sample():
    """Pixel-space models clip the predicted x0 to [-1, 1] and re-derive eps from it: diffusers'
    clip_sample with use_clipped_model_output (GLIDE's convention)."""
    steps = 20
    scheduler = diffusers.DDIMScheduler(**SCHEDULE, clip_sample=True, set_alpha_to_one=False, steps_offset=1,
                                        timestep_spacing="leading")
    scheduler.set_timesteps(steps)
    denoiser = FrozenDenoiser()
    x_T = 3 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    clipped = DDIMSampler(denoiser, schedule_alphas(scheduler), clip_denoised=True).sample(SHAPE, x_T=x_T, steps=steps)
    theirs, _ = run_diffusers(scheduler, denoiser, x_T.clone(), eta=0.0, use_clipped_model_output=True)
    assert_close(clipped, theirs)
    unclipped = DDIMSampler(denoiser, schedule_alphas(scheduler)).sample(SHAPE, x_T=x_T, steps=steps)
    assert (unclipped - clipped).abs().max() > 1e-2  # the clipping really acts


def test_ddim_eta_positive_matches_diffusers_with_shared_noise():
    steps, eta, seed = 20, 0.7, 3
    scheduler = diffusers.DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                        timestep_spacing="leading")
    scheduler.set_timesteps(steps)
    denoiser = FrozenDenoiser()
    sampler = DDIMSampler(denoiser, schedule_alphas(scheduler))
    # The documented draw order: x_T, then one N(0, I) per step.
    generator = torch.Generator().manual_seed(seed)
    x_T = torch.randn(SHAPE, generator=generator)
    noises = [torch.randn(SHAPE, generator=generator) for _ in range(steps)]
    result = sampler.sample(SHAPE, steps=steps, eta=eta, seed=seed).double()
    theirs, _ = run_diffusers(scheduler, denoiser, x_T.double(), [n.double() for n in noises], eta=eta)
    # float32 noise and state on our side: compare at float32 precision.
    torch.testing.assert_close(result, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())
    deterministic = DDIMSampler(denoiser, schedule_alphas(scheduler)).sample(SHAPE, steps=steps, seed=seed).double()
    assert (deterministic - theirs).abs().max() > 1e-2  # the noise really enters


@pytest.mark.parametrize("steps", [2, 3, 5, 50])  # S = 1: diffusers makes one plain DDIM call, the original two
def test_plms_matches_diffusers_pndm(steps):
    scheduler = diffusers.PNDMScheduler(**SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1,
                                        timestep_spacing="leading")
    scheduler.set_timesteps(steps)
    denoiser = FrozenDenoiser()
    sampler = PLMSSampler(denoiser, schedule_alphas(scheduler))
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = sampler.sample(SHAPE, x_T=x_T, steps=steps)
    our_calls, denoiser.calls = denoiser.calls, 0
    theirs, _ = run_diffusers(scheduler, denoiser, x_T.clone())
    assert our_calls == denoiser.calls == steps + 1
    assert_close(result, theirs)


@pytest.mark.parametrize("steps", [10, 20])
def test_dpm_solver_pp_2m_matches_diffusers(steps):
    denoiser = FrozenDenoiser()
    scheduler = diffusers.DPMSolverMultistepScheduler(
        **SCHEDULE, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", lower_order_final=True,
        final_sigmas_type="sigma_min", prediction_type="epsilon", thresholding=False)
    timesteps = make_ddim_timesteps("uniform", steps, T)[::-1].tolist()  # our grid, given to diffusers
    scheduler.set_timesteps(timesteps=timesteps)
    sampler = DPMSolverSampler(denoiser, schedule_alphas(scheduler))
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = []
    result = sampler.sample(SHAPE, x_T=x_T, steps=steps, callback=lambda i, n, x, x0: ours.append(x))
    theirs, trajectory = run_diffusers(scheduler, denoiser, x_T.clone())
    for mine, reference in zip(ours, trajectory):
        assert_close(mine, reference)
    assert_close(result, theirs)
