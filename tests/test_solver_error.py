"""The solvers' distance to the ODE reference (ldm_lite.evaluation.solver_error) on the shipped text model."""
import pytest
import torch

from ldm_lite.evaluation.solver_error import per_sample_rmse, solver_errors
from ldm_lite.sampling import latent_shape, load_for_sampling, make_conditions

MODEL = "models/ldm/text-shapes-emoji"


def test_per_sample_rmse_averages_each_images_rmse():
    reference = torch.zeros(2, 3, 4, 4)
    images = torch.stack([torch.full((3, 4, 4), 0.5), torch.full((3, 4, 4), 0.1)])
    assert per_sample_rmse(images, reference) == pytest.approx(0.3)


@torch.no_grad()
def test_a_reference_on_the_solvers_own_grid_is_that_solver():
    """With as many reference steps as the solver takes, the reference (PLMS from the grid's start) walks the
    solver's grid: PLMS's error is zero, DDIM's is not, and more reference steps move the reference."""
    model = load_for_sampling(MODEL, device="cpu").model
    cond, null = make_conditions(model, 2, ["a large red circle at the center", "an emoji of red apple"],
                                 guidance_scale=3.0)
    x_T = torch.randn(latent_shape(model, 2), generator=torch.Generator().manual_seed(0))
    same_grid = solver_errors(model, x_T, cond, null, 3.0, step_counts=[4], solvers=["plms", "ddim"], reference_steps=4)
    assert same_grid["plms", 4] < 1e-5 < 1e-2 < same_grid["ddim", 4]
    finer = solver_errors(model, x_T, cond, null, 3.0, step_counts=[4], solvers=["plms"], reference_steps=8)
    assert finer["plms", 4] > 1e-3
