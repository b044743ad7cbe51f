"""A first stage built from each original config has exactly the released checkpoint's layout
(key -> shape), so original weights load with strict=True. Built on the meta device: no memory, no time."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from ldm_lite.util import instantiate_from_config

COMPAT = json.loads((Path(__file__).parent / "compat" / "compvis_state_dicts.json").read_text())
FIRST_STAGES = sorted(name for name in COMPAT if name.startswith("models/first_stage_models/"))
LDM_FIRST_STAGES = sorted(name for name in COMPAT if "first_stage_config" in COMPAT[name]["config"])
PREFIX = "first_stage_model."


def layout(config: dict) -> dict[str, list[int]]:
    with torch.device("meta"):
        model = instantiate_from_config(copy.deepcopy(config))
    return {key: list(value.shape) for key, value in model.state_dict().items() if not key.startswith("loss.")}


def assert_same_layout(ours: dict[str, list[int]], expected: dict[str, list[int]]) -> None:
    missing, unexpected = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    wrong = {key: (ours[key], shape) for key, shape in expected.items() if ours[key] != shape}
    assert not wrong, f"shapes (ours, original) differ: {dict(list(wrong.items())[:5])}"


def test_entries_present() -> None:
    assert len(FIRST_STAGES) == 9 and len(LDM_FIRST_STAGES) >= 10


@pytest.mark.parametrize("name", FIRST_STAGES)
def test_released_first_stage_layout(name: str) -> None:
    entry = COMPAT[name]
    config = {"target": entry["config"]["target"],
              "params": {key: value for key, value in entry["config"].items() if key != "target"}}
    assert_same_layout(layout(config), entry["state_dict"])


@pytest.mark.parametrize("name", LDM_FIRST_STAGES)
def test_first_stage_inside_ldm_layout(name: str) -> None:
    """The `first_stage_config` of each original LDM config (lossconfig torch.nn.Identity and the like)."""
    entry = COMPAT[name]
    expected = {key[len(PREFIX):]: shape for key, shape in entry["state_dict"].items() if key.startswith(PREFIX)}
    assert_same_layout(layout(entry["config"]["first_stage_config"]), expected)


CONFIGS = Path(__file__).parent.parent / "configs" / "autoencoder"
ORIGINAL_CONFIG_ENTRIES = {
    "autoencoder_kl_8x8x64.yaml": "models/first_stage_models/kl-f32",
    "autoencoder_kl_16x16x16.yaml": "models/first_stage_models/kl-f16",
    "autoencoder_kl_32x32x4.yaml": "models/first_stage_models/kl-f8",
    "autoencoder_kl_64x64x3.yaml": "models/first_stage_models/kl-f4",
}


@pytest.mark.parametrize("file_name,entry", sorted(ORIGINAL_CONFIG_ENTRIES.items()))
def test_shipped_original_configs_match_released_layout(file_name: str, entry: str) -> None:
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.load(CONFIGS / file_name).model, resolve=True)
    assert_same_layout(layout(config), COMPAT[entry]["state_dict"])


@pytest.mark.parametrize("file_name", sorted(path.name for path in CONFIGS.glob("lite_*.yaml")))
def test_lite_configs_build(file_name: str) -> None:
    from omegaconf import OmegaConf

    config = OmegaConf.load(CONFIGS / file_name)
    with torch.device("meta"):
        model = instantiate_from_config(config.model)
    factor = 2 ** (len(config.model.params.ddconfig.ch_mult) - 1)
    assert model.decoder.z_shape[-1] == config.model.params.ddconfig.resolution // factor
