"""Config loading: merging, overrides, strictness and instantiate_from_config."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ldm_lite.config import ConfigError, load_config
from ldm_lite.util import instantiate_from_config

TOY = Path(__file__).parent / "configs" / "toy.yaml"


def test_bases_merge_left_to_right(tmp_path):
    second = tmp_path / "second.yaml"
    second.write_text("model:\n  base_learning_rate: 0.5\n  params:\n    channels: 6\n")
    config = load_config([TOY, second])
    assert config.model.base_learning_rate == 0.5
    assert config.model.params.channels == 6
    assert config.model.target == "tests.toy_model.ToyAutoencoder"  # kept from the first file
    assert config.lightning.trainer.accumulate_grad_batches == 1  # default filled in


def test_overrides_parse_values():
    config = load_config([TOY], ["model.params.channels=7", "lightning.trainer.precision=bf16",
                                 "data.params.batch_size=4"])
    assert config.model.params.channels == 7
    assert str(config.lightning.trainer.precision) == "bf16"
    assert config.data.params.batch_size == 4


def test_override_of_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="model.params.chanels"):
        load_config([TOY], ["model.params.chanels=7"])


def test_override_may_add_an_argument_of_the_target_constructor():
    # model.params.ckpt_path is how training continues from committed weights (models/README.md);
    # LatentDiffusion takes it through **kwargs from DDPM, so the whole constructor chain counts
    config = load_config(["configs/latent-diffusion/lite_text_shapes_emoji.yaml"],
                         ["model.params.ckpt_path=models/ldm/text-shapes-emoji/model.safetensors",
                          "model.params.unet_config.params.use_checkpoint=true"])
    assert config.model.params.ckpt_path == "models/ldm/text-shapes-emoji/model.safetensors"
    assert config.model.params.unet_config.params.use_checkpoint is True
    with pytest.raises(ConfigError, match="model.params.ckpt_pth"):
        load_config(["configs/latent-diffusion/lite_text_shapes_emoji.yaml"], ["model.params.ckpt_pth=x"])
    with pytest.raises(ConfigError, match="model.learning_rate"):  # not under a params mapping
        load_config([TOY], ["model.learning_rate=1"])


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="no '='"):
        load_config([TOY], ["model.params.channels"])


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config([tmp_path / "nope.yaml"])


def test_instantiate_and_unknown_target():
    model = instantiate_from_config(OmegaConf.create({"target": "torch.nn.Linear", "params": {"in_features": 2, "out_features": 3}}))
    assert model.weight.shape == (3, 2)
    with pytest.raises(ValueError, match="unknown target"):
        instantiate_from_config({"target": "torch.nn.Linaer"})
    with pytest.raises(ValueError, match="unknown target"):
        instantiate_from_config({"target": "no_such_package.Thing"})
    assert instantiate_from_config("__is_unconditional__") is None
