"""Worked solutions to the exercises of notebook 07 (the interactive sampler).

    python notebooks/solutions/07_interactive_sampler.py                     # full sizes (~3 min on 2 cores)
    LDM_LITE_SMOKE=1 python notebooks/solutions/07_interactive_sampler.py    # tiny sizes: checks that it runs

The exercises turn the widgets' knobs; here the knobs are set from code and the buttons clicked,
exactly as the notebook's last cells do, so every answer is what the widget would show. Facts that
hold at any size are asserted. Grids go to outputs/solutions/07/ (outputs/smoke/solutions/07/ in smoke mode)."""
from __future__ import annotations


import torch

from ldm_lite.evaluation.solver_error import per_sample_rmse
from ldm_lite.pretrained import REPOSITORY_ROOT, load_or_train
from ldm_lite.samplers.reference import ReferenceSampler, grid_start
from ldm_lite.sampling import decode_latents, latent_shape, make_conditions
from ldm_lite.util import save_image_grid
from ldm_lite.widgets import InpaintWidget, SamplerWidget

from common import SMOKE, output_folder, section  # notebooks/solutions/common.py

steps = 5 if SMOKE else 25
scales = (1.0, 4.0, 8.0) if SMOKE else (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
reference_steps = 20 if SMOKE else 300  # PLMS steps of exercise 2's reference ODE solution
OUT = output_folder("07")
REL = OUT.relative_to(REPOSITORY_ROOT)  # where the pictures go, as printed
torch.set_grad_enabled(False)


def generate(widget: SamplerWidget, **values: object) -> torch.Tensor:
    """Set the widget's controls (by name) and click Generate, as a user would."""
    for name, value in values.items():
        getattr(widget, name).value = value
    widget.generate_button.click()
    assert widget.status.value.startswith(f"{widget.batch_size.value} images"), widget.status.value
    return widget.images.clone()


def chroma(images: torch.Tensor) -> float:
    return float((images.max(dim=1).values - images.min(dim=1).values).mean())


def exercise_1(widget: SamplerWidget) -> dict[float, tuple[float, float]]:
    section("Exercise 1: fixed seed, guidance scale from 1 to 8")
    results, grids = {}, []
    for scale in scales:
        images = generate(widget, guidance_scale=scale, seed=0)
        results[scale] = (chroma(images), float((images.abs() > 0.99).float().mean()))
        grids.append(images)
        print(f"s = {scale:g}: chroma {results[scale][0]:.3f}   pixels at the range limit {results[scale][1]:6.1%}")
    save_image_grid(torch.cat(grids), OUT / "exercise1_guidance_sweep.png", nrow=widget.batch_size.value)
    assert results[scales[-1]][0] > results[scales[0]][0], "guidance saturates colours"
    saturated = next((scale for scale in scales if results[scale][1] > 0.1), None)
    print(f"\n'{widget.prompt.value}', seed 0, {widget.steps.value} DDIM steps, eta {widget.eta.value}:")
    print(f"more than 10% of the pixels sit at the range limit from s = {saturated:g} on." if saturated is not None
          else "fewer than 10% of the pixels reach the range limit at any of these scales.")
    print("Chroma (max - min over RGB, 0 for grey) rises with s: guidance extrapolates the difference between the\n"
          "conditional and unconditional predictions, and colour is what most distinguishes a caption from the\n"
          "empty one. Past a few units the pixels pile up at the edge of [-1, 1], where the decoder's output is\n"
          f"clipped: flat, over-saturated areas (grid: {REL}/exercise1_guidance_sweep.png).")
    return results


def exercise_2(widget: SamplerWidget) -> dict[str, float]:
    section("Exercise 2: DDIM 10 steps against DPM-Solver++ 10 steps, same seed")
    images = {"ddim, eta 0": generate(widget, sampler="ddim", steps=10, eta=0.0, guidance_scale=3.0, seed=0),
              "ddim, eta 1 (the widget's default)": generate(widget, sampler="ddim", steps=10, eta=1.0),
              "dpm": generate(widget, sampler="dpm", steps=10)}
    # The exact answer both solvers approach: the ODE solved finely from the 10-step grid's start (t = 901),
    # from the widget's z_T (the first draw of its seeded generator) and the widget's conditions.
    model, batch = widget.model, widget.batch_size.value
    cond, null = make_conditions(model, batch, [widget.prompt.value], guidance_scale=3.0)
    x_T = torch.randn(latent_shape(model, batch), generator=torch.Generator().manual_seed(0)).to(model.device)
    with model.ema_scope():
        latents = ReferenceSampler.from_model(model, start=grid_start(10, model.num_timesteps)).sample(
            x_T.shape, cond=cond, unconditional_cond=null, guidance_scale=3.0, steps=reference_steps, x_T=x_T)
    reference = decode_latents(model, latents)
    distances = {name: per_sample_rmse(value, reference) for name, value in images.items()}
    for name, value in distances.items():
        print(f"{name:36s} RMSE to the ODE solution from t = 901: {value:.3f}")
    save_image_grid(torch.cat([reference, *images.values()]), OUT / "exercise2_ddim_dpm.png", nrow=batch)
    print("\nWith eta = 0, DDIM and DPM-Solver++ solve the same ODE from the same z_T: the distance to its fine\n"
          "solution from the grid's start (notebook 05; a 100-step DDIM run would start at t = 991 instead and add\n"
          "that gap to both) measures each one's error at 10 steps. DDIM with eta = 1 adds fresh noise at every\n"
          "step and lands on a different sample of the same distribution: its distance is not an error.")
    return distances


def exercise_3(widget: SamplerWidget) -> dict[str, bool]:
    section("Exercise 3: DDIM with eta = 1: are two runs with one seed identical?")
    first = generate(widget, sampler="ddim", steps=steps, eta=1.0, seed=7)
    second = generate(widget, sampler="ddim", steps=steps, eta=1.0, seed=7)
    other = generate(widget, sampler="ddim", steps=steps, eta=1.0, seed=8)
    same, differs = torch.equal(first, second), not torch.equal(first, other)
    print(f"seed 7 twice: identical {same}; seed 7 against seed 8: different {differs}")
    assert same and differs
    print("Yes. eta = 1 makes each step draw fresh noise, but the draws come from a torch.Generator seeded with the\n"
          "widget's seed (on the CPU, so also identical on a GPU): x_T first, then one draw per step. The same seed\n"
          "replays the same draws; another seed gives another sample. Only the sampler's own generator is used,\n"
          "so nothing else in the notebook (other cells drawing random numbers) can change the result.")
    return {"same seed identical": same, "other seed differs": differs}


def exercise_4(model: torch.nn.Module) -> dict[str, float]:
    section("Exercise 4: inpaint a box that covers the whole image")
    paths = sorted(path for path in (REPOSITORY_ROOT / "data" / "inpainting_examples").glob("*.png")
                   if not path.stem.endswith("_mask"))
    widget = InpaintWidget(model, paths, steps=steps)
    results, rows, whole = {}, [], []
    for index in range(2 if SMOKE else len(paths)):
        widget.choice.value = index
        for box in ((0.25, 0.75), (0.0, 1.0)):
            widget.box[0].value, widget.box[1].value = box, box
            image, mask = widget.image_and_mask()
            widget.inpaint_button.click()
            assert widget.status.value == "done", widget.status.value
            result = widget.result
            rmse = float((result - image).pow(2).mean().sqrt())
            results[f"{paths[index].name} box {box}"] = rmse
            rows.append(torch.cat([image * (1 - mask) + mask, result]))
            print(f"{paths[index].name}, box x = y = {box}: {mask.mean():4.0%} filled, RMSE to the original {rmse:.3f}")
        assert float(mask.mean()) == 1.0 and not torch.equal(result, image), "nothing is kept: the whole image is new"
        whole.append(result)
    same = all(torch.allclose(whole[0], other, atol=1e-5) for other in whole[1:])
    print(f"whole-image fills of the {len(whole)} different images with seed 0 are identical: {same}")
    assert same, "without context the input image cannot matter"
    save_image_grid(torch.cat(rows), OUT / "exercise4_whole_image_box.png", nrow=4)
    print("\nWith the whole image masked, the masked image is all mid-grey and the mask channel all ones: the model's\n"
          "condition carries no information, so it falls back to what it learned without context, an emoji-like\n"
          "drawing from its training distribution, unrelated to the original: with one seed it is the same picture\n"
          "for every input (asserted above). The RMSE to the original is then that of an unrelated sample, much\n"
          f"larger than for the centre box (grid: {REL}/exercise4_whole_image_box.png; pairs of masked\n"
          "input and result).")
    return results


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"mode: {'smoke' if SMOKE else 'full'}; pictures in {OUT}")
    train_steps = 20 if SMOKE else None
    text_model = load_or_train("ldm", "text2img-clipart64", "configs/latent-diffusion/lite_text2img_clipart64.yaml",
                               max_steps=train_steps).eval()
    widget = SamplerWidget(text_model, prompt="a yellow heart",
                           output_folder=REPOSITORY_ROOT / "outputs" / "widget-samples")
    widget.steps.value = steps
    exercise_1(widget)
    exercise_2(widget)
    exercise_3(widget)
    inpainting_model = load_or_train("ldm", "inpainting-emoji", "configs/latent-diffusion/lite_inpainting_emoji.yaml",
                                     max_steps=train_steps).eval()
    exercise_4(inpainting_model)


if __name__ == "__main__":
    main()
