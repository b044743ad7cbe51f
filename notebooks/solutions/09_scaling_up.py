"""Worked solutions to the exercises of notebook 09 (scaling up).

    python notebooks/solutions/09_scaling_up.py                     # full sizes (about a minute of CPU)
    LDM_LITE_SMOKE=1 python notebooks/solutions/09_scaling_up.py    # smaller sampling runs: checks that it runs

Exercises 1-4 work on the paper's architectures built on the meta device (no memory, no download,
the same numbers in both modes); exercise 5 samples the shipped text model. Each exercise is one
function: it computes what the exercise asks with `ldm_lite.scaling`, prints the numbers and says what
they mean; facts that hold whatever the sizes are asserted. The scripts find the repository
themselves, so any working directory works."""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from ldm_lite.checkpoint import load_model_folder
from ldm_lite.modules.attention import SpatialTransformer
from ldm_lite.modules.blocks import ResBlock
from ldm_lite.pretrained import REPOSITORY_ROOT
from ldm_lite.samplers import DDIMSampler
from ldm_lite.sampling import decode_latents, make_conditions
from ldm_lite.scaling import (GPU_PEAK_TFLOPS, StepCost, build_on_meta, format_bytes, format_count, gpu_seconds,
                              model_config, parameter_counts, table, training_memory, training_step_cost)

from common import SMOKE, section  # notebooks/solutions/common.py

step_counts = (5, 10) if SMOKE else (10, 25, 50)    # exercise 5: DDIM steps
guidance_scales = (1.0, 3.0) if SMOKE else (1.0, 3.0, 7.0)
utilisation = 0.4                                    # as the notebook
seed = 0
CONFIGS = REPOSITORY_ROOT / "configs" / "latent-diffusion"
TEXT, CHURCHES = CONFIGS / "txt2img-1p4B-eval.yaml", CONFIGS / "lsun_churches-ldm-kl-8.yaml"
PAPER_STEPS, PAPER_BATCH, LAION_IMAGES = 390_000, 680, 400_000_000  # the paper's text run (appendix E), LAION-400M
CHURCH_IMAGES = 126_227  # LSUN church_outdoor training images
GPU_MEMORY = 80 * 2**30
torch.set_num_threads(1)


def a100_days(flops: float) -> float:
    return gpu_seconds(flops, GPU_PEAK_TFLOPS["A100 SXM"], utilisation) / 86400


def exercise_1(text_cost: StepCost, churches_cost: StepCost) -> None:
    section("Exercise 1: precompute the latents?")
    encoder = text_cost.flops["first stage (encode)"]
    saved_days = a100_days(encoder * PAPER_BATCH * PAPER_STEPS)
    total_days = a100_days(text_cost.total_flops * PAPER_BATCH * PAPER_STEPS)
    disk = LAION_IMAGES * 32 * 32 * 4 * 2  # float16 latents
    epochs = PAPER_STEPS * PAPER_BATCH / LAION_IMAGES
    print(f"text model: the encoder is {encoder / text_cost.total_flops:.0%} of a step; over the run "
          f"{saved_days:.1f} of {total_days:.1f} A100-days (at {utilisation:.0%} of the peak)")
    print(f"latents of LAION-400M, 32x32x4 in float16: {format_bytes(disk)} "
          f"(the JPEGs themselves are tens of TB)")
    print(f"the run sees {PAPER_STEPS * PAPER_BATCH / 1e6:.0f}M examples = {epochs:.2f} epochs: on average each image "
          "once or not at all, so encoding the whole set in advance costs MORE encoder passes "
          f"({LAION_IMAGES / 1e6:.0f}M) than encoding during training ({PAPER_STEPS * PAPER_BATCH / 1e6:.0f}M)")
    assert epochs < 1
    church_steps = 100_000
    church_epochs = church_steps * 96 / CHURCH_IMAGES
    share = churches_cost.flops["first stage (encode)"] / churches_cost.total_flops
    print(f"LSUN-Churches: {church_steps:,} steps at batch 96 = {church_epochs:.0f} epochs of {CHURCH_IMAGES:,} "
          "images; "
          f"caching keeps {1 - 1 / church_epochs:.1%} of the encoder passes away, {share:.0%} of every step's FLOPs, "
          f"for {format_bytes(CHURCH_IMAGES * 32 * 32 * 4 * 2)} of float16 latents (random flips: store both)")
    assert church_epochs > 10 and share > 0.5
    print("Answer: caching pays when the data is seen many times (small datasets, many epochs), not in one pass "
          "over a web-scale set; there it is the encoder's cost, paid once per example either way.")


def with_checkpointing(path, enabled: bool) -> torch.nn.Module:
    config = model_config(path)
    config["params"]["unet_config"]["params"]["use_checkpoint"] = enabled
    return build_on_meta(config)


def exercise_2(text_cost: StepCost, churches_cost: StepCost) -> None:
    section("Exercise 2: gradient checkpointing, both ways")
    rows, results = [], {}
    for name, path, as_configured, cost in (("txt2img-1p4B", TEXT, True, text_cost),
                                            ("lsun_churches", CHURCHES, False, churches_cost)):
        other = training_step_cost(with_checkpointing(path, not as_configured))
        results[name] = {as_configured: cost, not as_configured: other}
        for enabled in (False, True):
            measured = results[name][enabled]
            rows.append([name, "on" if enabled else "off", f"{measured.flops['unet'] / 1e9:.1f}",
                         format_bytes(measured.activation_bytes)])
    print("per example:")
    print(table(rows, ["model", "use_checkpoint", "UNet GFLOP (fwd+bwd)", "activations"]))
    for name, pair in results.items():
        extra = pair[True].flops["unet"] / pair[False].flops["unet"] - 1
        kept = pair[True].activation_bytes / pair[False].activation_bytes
        print(f"{name}: checkpointing costs {extra:+.0%} UNet FLOPs and keeps {kept:.0%} of the activations")
        assert pair[True].flops["unet"] > pair[False].flops["unet"]  # the forward is repeated
        assert pair[True].activation_bytes < pair[False].activation_bytes
    print("Answer: about a quarter more UNet FLOPs (the checkpointed blocks run their forward twice: 4 passes "
          "instead of 3, for the part of the UNet inside them) for a several-fold smaller activation memory: the "
          "trade the text model's config makes to fit large batches.")


def exercise_3(text_model: torch.nn.Module, text_cost: StepCost) -> None:
    section("Exercise 3: how many GPUs for batch 680?")
    counts = parameter_counts(text_model)
    per_example = text_cost.activation_bytes * 0.5  # bfloat16 activations (notebook section 5 measured ~0.53x)
    plain = training_memory(text_model, text_cost, batch_size=1)
    states = sum(value for key, value in plain.items() if key != "activations")
    rows = []
    for gpus in (1, 2, 4, 8):
        zero2 = 4 * counts["total"] + 12 * counts["trainable"] / gpus  # gradients and AdamW moments sharded
        batch_ddp = int((GPU_MEMORY - states) // per_example)
        batch_zero = int((GPU_MEMORY - zero2) // per_example)
        rows.append([gpus, format_bytes(states), batch_ddp, math.ceil(PAPER_BATCH / (batch_ddp * gpus)),
                     format_bytes(zero2), batch_zero, math.ceil(PAPER_BATCH / (batch_zero * gpus))])
    print(f"text model, {format_bytes(per_example)} of bf16 activations per example (with its gradient checkpointing):")
    print(table(rows, ["GPUs", "DDP states/GPU", "batch/GPU", "accumulation for 680", "ZeRO-2 states/GPU",
                       "batch/GPU", "accumulation for 680"]))
    best = int((GPU_MEMORY - states) // per_example)
    print(f"Answer: plain data parallelism fits {best} examples per 80 GiB GPU, so 680 needs "
          f"{math.ceil(PAPER_BATCH / best)} GPUs, or fewer GPUs with gradient accumulation; ZeRO-2 frees "
          f"{format_bytes(12 * counts['trainable'] * (1 - 1 / 8))} per GPU on 8 GPUs. Without checkpointing "
          "(exercise 2) the activations, not the states, decide.")
    assert best * 4 >= PAPER_BATCH  # four 80 GiB GPUs hold the paper's batch in one step


def level_of(name: str, unet: torch.nn.Module) -> str:
    """The resolution level (downsampling factor) a UNet parameter works at."""
    parts = name.split(".")
    if parts[0] == "middle_block":
        return f"1/{2 ** (len(unet.channel_mult) - 1)} (middle)"
    if parts[0] in ("input_blocks", "output_blocks"):
        index = int(parts[1])
        blocks = unet.num_res_blocks + 1
        level = index // blocks if parts[0] == "input_blocks" else len(unet.channel_mult) - 1 - index // blocks
        return f"1/{2 ** level}"
    return "embeddings, in/out"


def exercise_4(text_model: torch.nn.Module) -> None:
    section("Exercise 4: where do the text UNet's 872M parameters live?")
    unet = text_model.model.diffusion_model
    kind_of_module = {}
    for module_name, module in unet.named_modules():
        if isinstance(module, (ResBlock, SpatialTransformer)):
            kind_of_module[module_name] = type(module).__name__
    by_level: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, parameter in unet.named_parameters():
        owner = max((prefix for prefix in kind_of_module if name.startswith(prefix + ".")), key=len, default=None)
        kind = kind_of_module[owner] if owner else "other"
        by_level[level_of(name, unet)][kind] += parameter.numel()
    total = sum(parameter.numel() for parameter in unet.parameters())
    rows = []
    for level, kinds in sorted(by_level.items()):
        rows.append([level, format_count(kinds["ResBlock"]), format_count(kinds["SpatialTransformer"]),
                     format_count(kinds["other"]), f"{sum(kinds.values()) / total:.0%}"])
    print(table(rows, ["resolution", "ResBlocks", "transformers", "other", "share"]))
    widest = [level for level in by_level if level.startswith(("1/4", "1/8"))]
    share = sum(sum(by_level[level].values()) for level in widest) / total
    print(f"channels per level: {[unet.model_channels * mult for mult in unet.channel_mult]}; the two 1280-channel "
          f"levels (1/4, 1/8 and the middle) hold {share:.0%} of the parameters")
    assert share > 0.6
    print("Answer: a convolution or a projection has C_in x C_out weights, so parameters grow with the square of "
          "the width: the low-resolution levels, 4x wider than the first, hold most of them, while most FLOPs "
          "are spent at the high resolutions, where there are 16-64x more pixels.")


def ddim_images(model, prompts, x_T, dtype, steps, guidance_scale):
    cond, null = make_conditions(model, len(prompts), prompts=prompts, guidance_scale=guidance_scale)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not torch.float32):
        latents = DDIMSampler.from_model(model).sample(tuple(x_T.shape), cond=cond, unconditional_cond=null,
                                                       guidance_scale=guidance_scale, steps=steps, x_T=x_T.clone())
    return decode_latents(model, latents.float())


def exercise_5() -> None:
    section("Exercise 5: does bfloat16 drift over a sampling run?")
    model = load_model_folder(REPOSITORY_ROOT / "models" / "ldm" / "text-shapes-emoji").float()
    prompts = ["a red circle at the top left", "an emoji of red apple", "a blue square", "an emoji of rocket"]
    x_T = torch.randn(len(prompts), model.channels, model.image_size, model.image_size,
                      generator=torch.Generator().manual_seed(seed))
    rows, differences = [], {}
    for scale in guidance_scales:
        for steps in step_counts:
            exact = ddim_images(model, prompts, x_T, torch.float32, steps, scale)
            rounded = ddim_images(model, prompts, x_T, torch.bfloat16, steps, scale)
            difference = (exact - rounded).abs() / 2  # as a fraction of the [-1, 1] range
            differences[scale, steps] = difference.mean().item()
            rows.append([scale, steps, f"{difference.mean().item():.4f}", f"{difference.max().item():.3f}"])
    print(table(rows, ["guidance", "DDIM steps", "mean |fp32 - bf16|", "largest"]))
    assert all(value < 0.05 for value in differences.values())
    low, high = guidance_scales[0], guidance_scales[-1]
    print(f"mean difference at {step_counts[-1]} steps: guidance {low:g}: {differences[low, step_counts[-1]]:.4f}, "
          f"guidance {high:g}: {differences[high, step_counts[-1]]:.4f}")
    by_steps = all(differences[scale, step_counts[0]] < differences[scale, step_counts[-1]]
                   for scale in guidance_scales)
    by_scale = all(differences[low, steps] < differences[high, steps] for steps in step_counts)
    print(f"grows with the steps at every scale: {'yes' if by_steps else 'no'}; "
          f"with the guidance scale at every step count: {'yes' if by_scale else 'no'}")
    print("Answer: the difference stays at thousandths of the range at every setting tried. Two effects pull "
          "against each other: more steps mean more rounded UNet calls but smaller updates per call, and "
          "guidance multiplies the difference of two UNet outputs (and their rounding errors) by the scale, "
          "while DDIM with eta = 0, a deterministic ODE solver, does not amplify small errors much over a few "
          "dozen steps. bfloat16 sampling is safe for these models; compare images, not only losses, after "
          "changing precision.")


def main() -> None:
    text_model = build_on_meta(TEXT)
    churches_model = build_on_meta(CHURCHES)
    text_cost, churches_cost = training_step_cost(text_model), training_step_cost(churches_model)
    exercise_1(text_cost, churches_cost)
    exercise_2(text_cost, churches_cost)
    exercise_3(text_model, text_cost)
    exercise_4(text_model)
    exercise_5()


if __name__ == "__main__":
    main()
