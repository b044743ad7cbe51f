"""Every released Latent Diffusion model of the original code, rebuilt by ldm-lite from its original
config, has exactly the released checkpoint's layout (key -> shape: UNet, first stage, condition
encoder, schedule buffers, EMA shadows), so its weights load with strict=True. Built on the meta device,
so even the 1.45B text-to-image model costs no memory."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from ldm_lite.util import count_params, instantiate_from_config

COMPAT = json.loads((Path(__file__).parent / "compat" / "compvis_state_dicts.json").read_text())
LDMS = sorted(name for name in COMPAT if "unet_config" in COMPAT[name]["config"])


def build(name: str) -> torch.nn.Module:
    config = {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": copy.deepcopy(COMPAT[name]["config"])}
    with torch.device("meta"):
        return instantiate_from_config(config)


def test_all_released_ldms_listed() -> None:
    assert len(LDMS) == 13


@pytest.mark.parametrize("name", LDMS)
def test_released_ldm_layout(name: str) -> None:
    model = build(name)
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    expected = COMPAT[name]["state_dict"]
    missing, unexpected = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    wrong = {key: (ours[key], shape) for key, shape in expected.items() if ours[key] != shape}
    assert not wrong, f"shapes (ours, original) differ: {dict(list(wrong.items())[:5])}"
    assert count_params(model.model) == COMPAT[name]["params_unet"]


def test_ema_shadows_mirror_unet() -> None:
    model = build("models/ldm/cin256/config.yaml")
    shadows = {key for key in model.state_dict() if key.startswith("model_ema.")} - {"model_ema.decay", "model_ema.num_updates"}
    parameters = {"model_ema." + name.replace(".", "") for name, _ in model.model.named_parameters()}
    assert shadows == parameters


def test_scale_factor_is_a_buffer_only_with_scale_by_std() -> None:
    assert "scale_factor" in build("models/ldm/lsun_churches256/config.yaml").state_dict()
    text_model = build("configs/latent-diffusion/txt2img-1p4B-eval.yaml")
    assert "scale_factor" not in text_model.state_dict() and text_model.scale_factor == pytest.approx(0.18215)


def test_conditioning_keys_follow_the_original_rules() -> None:
    assert build("models/ldm/celeba256/config.yaml").conditioning_key is None  # unconditional despite concat_mode false
    assert build("models/ldm/inpainting_big/config.yaml").conditioning_key == "concat"
    assert build("models/ldm/cin256/config.yaml").conditioning_key == "crossattn"
