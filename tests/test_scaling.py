"""ldm_lite.scaling (notebook 09): parameter counts on the meta device, FLOPs and saved activations of a
training step, memory and time arithmetic. The FLOP counts are checked against hand counts of small
layers; the paper's parameter counts against the original configs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ldm_lite.scaling import (GPU_PEAK_TFLOPS, StepCost, build_on_meta, counted_flops, format_bytes, format_count,
                              gpu_seconds, human_seconds, model_config, parameter_counts, saved_tensor_bytes,
                              scaled_unet_config, table, training_memory, training_step_cost)
from ldm_lite.util import instantiate_from_config

from .conftest import ROOT

CONFIGS = ROOT / "configs" / "latent-diffusion"


@pytest.fixture(scope="module")
def text_model() -> nn.Module:
    return build_on_meta(CONFIGS / "txt2img-1p4B-eval.yaml")


def test_paper_text_model_is_1p45b_trainable_parameters_and_costs_no_memory(text_model):
    counts = parameter_counts(text_model)
    assert counts["unet"] == 872_300_484 and counts["cond_stage"] == 581_994_042 and counts["first_stage"] == 83_653_863
    assert counts["trainable"] == counts["unet"] + counts["cond_stage"]  # the paper's 1.45B (its Tab. 2)
    assert format_count(counts["trainable"]) == "1.45B"
    assert counts["total"] == counts["trainable"] + counts["first_stage"]
    assert all(parameter.is_meta for parameter in text_model.parameters())


def test_checkpoint_paths_are_dropped_so_original_configs_build_without_their_weights():
    config = model_config(CONFIGS / "lsun_churches-ldm-kl-8.yaml")
    assert "ckpt_path" not in config["params"]["first_stage_config"]["params"]
    counts = parameter_counts(build_on_meta(config))
    assert counts["unet"] == 294_966_916 and counts["cond_stage"] == 0


def test_flops_of_a_convolution_and_a_linear_layer_match_the_hand_count():
    conv = nn.Conv2d(8, 16, 3, padding=1)
    image = torch.zeros(2, 8, 10, 10)
    assert counted_flops(lambda: conv(image)) == 2 * 2 * 8 * 16 * 9 * 10 * 10  # 2 FLOPs per multiply-add
    linear = nn.Linear(32, 64)
    tokens = torch.zeros(5, 32, requires_grad=True)
    forward = counted_flops(lambda: linear(tokens))
    assert forward == 2 * 5 * 32 * 64
    assert counted_flops(lambda: linear(tokens).sum().backward()) == 3 * forward  # input and weight gradients


def test_saved_activations_leave_out_the_parameters():
    linear = nn.Linear(32, 64, bias=False)
    tokens = torch.zeros(5, 32, requires_grad=True)
    assert saved_tensor_bytes(lambda: linear(tokens), exclude=linear.parameters()) == 5 * 32 * 4  # the input only
    assert saved_tensor_bytes(lambda: linear(tokens)) == (5 * 32 + 32 * 64) * 4


def test_training_step_cost_of_a_lite_model_on_the_meta_device():
    model = build_on_meta(CONFIGS / "lite_emoji_uncond.yaml")
    cost = training_step_cost(model, batch_size=4)
    assert set(cost.flops) == {"first stage (encode)", "unet"}  # unconditional: no condition encoder
    assert all(value > 0 for value in cost.flops.values()) and cost.activation_bytes > 0
    unet = model.model.diffusion_model
    latents = torch.zeros(4, 4, model.image_size, model.image_size, device="meta")
    timesteps = torch.zeros(4, dtype=torch.long, device="meta")
    forward = counted_flops(lambda: unet(latents, timesteps))
    assert 2.5 * forward < cost.flops["unet"] < 3.5 * forward  # forward + backward ~ 3 forwards
    assert cost.per_example().flops["unet"] == cost.flops["unet"] // 4
    assert all(parameter.grad is None for parameter in model.parameters())


def test_class_conditioned_model_on_the_meta_device():
    model = build_on_meta(CONFIGS / "lite_mnist_class.yaml")
    cost = training_step_cost(model)
    assert cost.flops["first stage (encode)"] == 0  # pixel space
    assert "condition encoder" in cost.flops


def test_training_memory_adds_weights_gradients_adam_ema_and_activations():
    model = build_on_meta(CONFIGS / "lsun_churches-ldm-kl-8.yaml")
    counts = parameter_counts(model)
    cost = StepCost(batch_size=2, flops={"unet": 1}, activation_bytes=2000)
    memory = training_memory(model, cost, batch_size=8, activation_scale=0.5)
    assert memory["weights (fp32)"] == 4 * counts["total"]
    assert memory["gradients (fp32)"] == 4 * counts["trainable"]
    assert memory["AdamW moments (2 x fp32)"] == 8 * counts["trainable"]
    assert memory["EMA weights (fp32)"] == 4 * counts["unet"]  # the config keeps an EMA
    assert memory["activations"] == 1000 * 8 * 0.5


def test_scaled_unet_keeps_the_structure_with_another_width():
    from omegaconf import OmegaConf

    original = OmegaConf.load(CONFIGS / "txt2img-1p4B-eval.yaml").model.params.unet_config
    small = scaled_unet_config(original, 32, context_dim=64)
    assert small["params"]["model_channels"] == 32 and small["params"]["context_dim"] == 64
    assert small["params"]["channel_mult"] == [1, 2, 4, 4] and small["params"]["num_head_channels"] == 32
    assert "use_checkpoint" not in small["params"]
    unet = instantiate_from_config(small)
    output = unet(torch.zeros(1, 4, 16, 16), torch.zeros(1, dtype=torch.long), context=torch.zeros(1, 3, 64))
    assert output.shape == (1, 4, 16, 16)


def test_time_and_formatting_helpers():
    assert gpu_seconds(312e12 * 0.4, GPU_PEAK_TFLOPS["A100 SXM"], 0.4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        gpu_seconds(1.0, 312, 0)
    assert human_seconds(3.2) == "3.20 s" and human_seconds(420) == "7.0 min" and human_seconds(7200) == "2.0 h"
    assert human_seconds(3 * 86400) == "3.0 days" and human_seconds(100 * 365.25 * 86400) == "100.0 years"
    assert format_count(83_653_863) == "83.7M" and format_count(512_512) == "0.51M"
    assert format_bytes(1.5 * 2**30) == "1.5 GiB" and format_bytes(2**20) == "1.0 MiB"
    text = table([["a", 1], ["bb", 22]], ["name", "n"])
    assert text.splitlines()[0].startswith("name") and text.splitlines()[-1] == "bb    22"
