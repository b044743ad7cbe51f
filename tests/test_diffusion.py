"""Diffusion core and LatentDiffusion: schedules against their formulas, q_sample statistics,
parameterisations, EMA warm-up, condition dropout, scale_by_std, conditioning keys, sampling with a
perfect denoiser, and a tiny model that learns (overfits one batch)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ldm_lite.models.diffusion import DDPM, LatentDiffusion, make_beta_schedule
from ldm_lite.modules.ema import LitEma
from ldm_lite.modules.encoders import ClassEmbedder, SpatialRescaler
from ldm_lite.util import instantiate_from_config

IDENTITY = {"target": "ldm_lite.models.autoencoder.IdentityFirstStage"}


def unet_config(in_channels: int = 3, **extra) -> dict:
    params = dict(image_size=8, in_channels=in_channels, out_channels=3, model_channels=32, num_res_blocks=1,
                  attention_resolutions=[2], channel_mult=[1, 2], num_head_channels=16)
    params.update(extra)
    return {"target": "ldm_lite.modules.unet.UNetModel", "params": params}


def tiny_ldm(**overrides) -> LatentDiffusion:
    params = dict(first_stage_config=IDENTITY, cond_stage_config="__is_unconditional__", unet_config=unet_config(),
                  image_size=8, channels=3, timesteps=100, linear_start=1e-3, linear_end=2e-2)
    params.update(overrides)
    torch.manual_seed(0)
    return LatentDiffusion(**params)


def class_ldm(**overrides) -> LatentDiffusion:
    return tiny_ldm(cond_stage_config={"target": "ldm_lite.modules.encoders.ClassEmbedder",
                                       "params": {"embed_dim": 16, "n_classes": 4, "key": "class_label", "null_class": True}},
                    cond_stage_key="class_label", cond_stage_trainable=True, conditioning_key="crossattn",
                    unet_config=unet_config(use_spatial_transformer=True, context_dim=16), **overrides)


# ---------------------------------------------------------------- schedules

def test_linear_schedule_is_linear_in_sqrt_beta() -> None:
    betas = make_beta_schedule("linear", 1000, 0.00085, 0.012)
    assert betas[0] == pytest.approx(0.00085) and betas[-1] == pytest.approx(0.012)
    assert np.allclose(np.diff(np.sqrt(betas), 2), 0, atol=1e-12)
    assert np.allclose(betas[500], (math.sqrt(0.00085) + 500 / 999 * (math.sqrt(0.012) - math.sqrt(0.00085))) ** 2)


def test_cosine_schedule_alphas_cumprod() -> None:
    betas = make_beta_schedule("cosine", 1000)
    alphas_cumprod = np.cumprod(1 - betas)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 100, 500, 900):
        assert alphas_cumprod[t - 1] == pytest.approx(f(t) / f(0), rel=1e-9)
    assert betas.max() <= 0.999


def test_other_schedules() -> None:
    assert np.allclose(make_beta_schedule("sqrt_linear", 5, 0.1, 0.5), [0.1, 0.2, 0.3, 0.4, 0.5])
    assert np.allclose(make_beta_schedule("sqrt", 5, 0.1, 0.5), np.sqrt([0.1, 0.2, 0.3, 0.4, 0.5]))
    with pytest.raises(ValueError, match="unknown beta_schedule"):
        make_beta_schedule("quadratic", 10)


def test_schedule_buffers_follow_their_formulas() -> None:
    model = tiny_ldm()
    betas = make_beta_schedule("linear", 100, 1e-3, 2e-2)
    alphas_cumprod = np.cumprod(1 - betas)
    previous = np.append(1.0, alphas_cumprod[:-1])
    expected = {
        "betas": betas, "alphas_cumprod": alphas_cumprod, "alphas_cumprod_prev": previous,
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1 - alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1 / alphas_cumprod - 1),
        "posterior_variance": betas * (1 - previous) / (1 - alphas_cumprod),
        "posterior_mean_coef2": (1 - previous) * np.sqrt(1 - betas) / (1 - alphas_cumprod),
    }
    for name, values in expected.items():
        np.testing.assert_allclose(getattr(model, name).numpy(), values, rtol=1e-5, err_msg=name)


# ---------------------------------------------------------------- forward process, parameterisations

def test_q_sample_statistics() -> None:
    model = tiny_ldm()
    x_start = torch.full((20000, 1, 1, 1), 0.7)
    t = torch.full((20000,), 60, dtype=torch.long)
    torch.manual_seed(3)
    x_t = model.q_sample(x_start, t)
    abar = float(model.alphas_cumprod[60])
    assert x_t.mean().item() == pytest.approx(math.sqrt(abar) * 0.7, abs=0.02)
    assert x_t.std().item() == pytest.approx(math.sqrt(1 - abar), rel=0.02)


def test_v_parameterisation_round_trip() -> None:
    model = tiny_ldm(parameterization="v")
    x_start, noise = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 10, 50, 99])
    x_t = model.q_sample(x_start, t, noise)
    v = model.get_v(x_start, noise, t)
    torch.testing.assert_close(model.predict_start_from_z_and_v(x_t, t, v), x_start, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.predict_eps_from_z_and_v(x_t, t, v), noise, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.predict_start_from_noise(x_t, t, noise), x_start, atol=1e-4, rtol=1e-4)


def test_min_snr_weights() -> None:
    model = tiny_ldm(min_snr_gamma=5.0)
    t = torch.tensor([0, 99])
    snr = model.alphas_cumprod[t] / (1 - model.alphas_cumprod[t])
    torch.testing.assert_close(model.snr_weights(t), torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert model.snr_weights(t)[0] < 1 and model.snr_weights(t)[1] == pytest.approx(1.0)


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
@pytest.mark.parametrize("num_steps", [100, 10])
def test_sampling_with_a_perfect_denoiser_returns_the_data_point(parameterization: str, num_steps: int) -> None:
    model = tiny_ldm(parameterization=parameterization)
    target = torch.rand(2, 3, 8, 8) * 2 - 1  # the data distribution is this single point

    def perfect(x_noisy, t, cond=None):
        abar = model.alphas_cumprod[t].view(-1, 1, 1, 1)
        eps = (x_noisy - abar.sqrt() * target) / (1 - abar).sqrt()
        return {"eps": eps, "x0": target, "v": abar.sqrt() * eps - (1 - abar).sqrt() * target}[parameterization]

    model.apply_model = perfect
    torch.testing.assert_close(model.sample(2, num_steps=num_steps), target, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- EMA

def test_ema_warm_up_decay() -> None:
    layer = torch.nn.Linear(2, 2)
    ema = LitEma(layer, decay=0.9999)
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(1.0)
    ema(layer)
    decay = min(0.9999, 2 / 11)  # (1 + n) / (10 + n) with n = 1
    torch.testing.assert_close(ema.weight, start + (1 - decay) * 1.0)
    assert int(ema.num_updates) == 1
    ema.store(layer.parameters())
    ema.copy_to(layer)
    torch.testing.assert_close(layer.weight, ema.weight)
    ema.restore(layer.parameters())
    torch.testing.assert_close(layer.weight, start + 1.0)
    assert set(ema.state_dict()) == {"decay", "num_updates", "weight", "bias"}


def test_weights_without_ema_restart_the_average_from_them(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    trained = tiny_ldm()
    with torch.no_grad():
        for parameter in trained.model.parameters():
            parameter.add_(1.0)
    path = tmp_path / "model.safetensors"
    save_file({key: value for key, value in trained.state_dict().items() if not key.startswith("model_ema.")}, path)
    loaded = tiny_ldm(ckpt_path=str(path))
    with loaded.ema_scope():
        for mine, theirs in zip(loaded.model.parameters(), trained.model.parameters()):
            assert torch.equal(mine, theirs)


def test_ema_scope_swaps_weights_and_nests() -> None:
    model = tiny_ldm()
    with torch.no_grad():
        for parameter in model.model.parameters():
            parameter.add_(1.0)
    trained = [p.clone() for p in model.model.parameters()]
    with model.ema_scope():
        with model.ema_scope():
            assert not torch.equal(next(model.model.parameters()), trained[0])
        assert not torch.equal(next(model.model.parameters()), trained[0])
    for parameter, value in zip(model.model.parameters(), trained):
        assert torch.equal(parameter, value)


# ---------------------------------------------------------------- conditioning

def test_condition_dropout_rate() -> None:
    model = class_ldm(cond_drop_prob=0.3)
    labels = torch.zeros(20000, dtype=torch.long)
    dropped = model.drop_condition(labels, generator=torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, 4}  # 4 = the null class row
    assert (dropped == 4).float().mean().item() == pytest.approx(0.3, abs=0.015)
    captions = model.drop_condition(["a cat"] * 20000)
    assert sum(caption == "" for caption in captions) / 20000 == pytest.approx(0.3, abs=0.015)


def test_condition_dropout_only_while_training() -> None:
    model = class_ldm(cond_drop_prob=0.999)
    batch = {"image": torch.rand(8, 8, 8, 3) * 2 - 1, "class_label": torch.zeros(8, dtype=torch.long)}
    model.eval()
    assert torch.equal(model.get_input(batch, "image")[1], torch.zeros(8, dtype=torch.long))
    model.train()
    assert torch.equal(model.get_input(batch, "image")[1], torch.full((8,), 4))


def test_dropout_needs_a_null_class() -> None:
    model = tiny_ldm(cond_stage_config={"target": "ldm_lite.modules.encoders.ClassEmbedder",
                                        "params": {"embed_dim": 16, "n_classes": 4}},
                     cond_stage_key="class_label", conditioning_key="crossattn", cond_drop_prob=0.1,
                     unet_config=unet_config(use_spatial_transformer=True, context_dim=16))
    with pytest.raises(ValueError, match="null_class"):
        model.drop_condition(torch.zeros(4, dtype=torch.long))


def test_class_embedder_layout_and_output() -> None:
    embedder = ClassEmbedder(8, n_classes=5, key="class_label")
    assert embedder.embedding.weight.shape == (5, 8) and embedder.null_index is None
    assert embedder({"class_label": torch.tensor([0, 4])}).shape == (2, 1, 8)
    assert ClassEmbedder(8, n_classes=5, null_class=True).embedding.weight.shape == (6, 8)
    with pytest.raises(ValueError, match="class labels"):
        embedder(torch.tensor([5]))


def test_spatial_rescaler() -> None:
    rescaler = SpatialRescaler(n_stages=2, in_channels=5, out_channels=3)
    assert rescaler(torch.randn(1, 5, 32, 32)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("key", ["concat", "adm", "hybrid"])
def test_conditioning_keys_reach_the_unet(key: str) -> None:
    batch = {"image": torch.rand(2, 8, 8, 3) * 2 - 1, "class_label": torch.tensor([1, 2]),
             "masked_image": torch.rand(2, 8, 8, 3) * 2 - 1, "mask": torch.ones(2, 8, 8, 1)}
    if key == "concat":  # inpainting: x_t (3) + masked-image latent (3) + mask (1)
        model = tiny_ldm(cond_stage_config="__is_first_stage__", cond_stage_key="masked_image", concat_mode=True,
                         unet_config=unet_config(in_channels=7))
    elif key == "adm":
        model = tiny_ldm(cond_stage_config={"target": "torch.nn.Identity"}, cond_stage_key="class_label",
                         conditioning_key="adm", unet_config=unet_config(num_classes=4))
    else:
        model = tiny_ldm(cond_stage_config={"target": "ldm_lite.modules.encoders.ClassEmbedder",
                                            "params": {"embed_dim": 16, "n_classes": 4}},
                         cond_stage_key="class_label", conditioning_key="hybrid",
                         unet_config=unet_config(in_channels=7, use_spatial_transformer=True, context_dim=16))
    z, c = model.get_input(batch, "image")
    if key == "concat":
        assert c.shape == (2, 4, 8, 8) and set(c[:, 3].unique().tolist()) == {1.0}
    loss, logs = model.training_step(batch, 0, 0)
    loss.backward()
    assert math.isfinite(loss.item()) and "train/loss_simple" in logs
    assert model.apply_model(z, torch.tensor([1, 2]), c).shape == z.shape


# ---------------------------------------------------------------- scale_by_std, learning

def test_scale_by_std_sets_and_persists() -> None:
    model = tiny_ldm(scale_by_std=True)
    torch.manual_seed(4)
    batch = {"image": 0.25 * torch.randn(16, 8, 8, 3)}
    model.training_step(batch, 0, global_step=0)
    expected = 1 / batch["image"].flatten().std().item()
    assert float(model.scale_factor) == pytest.approx(expected, rel=1e-5)
    state = model.state_dict()
    assert float(state["scale_factor"]) == pytest.approx(expected, rel=1e-5)
    restored = tiny_ldm(scale_by_std=True)
    restored.load_state_dict(state)
    assert float(restored.scale_factor) == pytest.approx(expected, rel=1e-5)
    model.training_step({"image": torch.randn(16, 8, 8, 3)}, 0, global_step=1)  # only the first batch sets it
    assert float(model.scale_factor) == pytest.approx(expected, rel=1e-5)


def test_missing_first_stage_weights_say_how_to_get_them() -> None:
    with pytest.raises(FileNotFoundError, match="main.py"):
        tiny_ldm(first_stage_config={"target": "ldm_lite.models.autoencoder.IdentityFirstStage",
                                     "params": {"ckpt_path": "models/first_stage_models/nowhere/model.safetensors"}})


def test_tiny_ldm_overfits_one_batch() -> None:
    model = class_ldm(cond_drop_prob=0.1)
    model.learning_rate = 3e-3
    torch.manual_seed(5)
    batch = {"image": (torch.rand(8, 8, 8, 3) > 0.5).float() * 2 - 1, "class_label": torch.arange(8) % 4}
    before = model.validation_step(batch)["val/loss_simple"]
    optimizer = model.configure_optimizers()[0]
    model.train()
    for step in range(30):
        loss, _ = model.training_step(batch, 0, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.on_train_batch_end()
    model.eval()
    logs = model.validation_step(batch)
    assert logs["val/loss_simple"] < 0.8 * before, (before, logs)
    assert set(logs) >= {"val/loss", "val/loss_vlb", "val/loss_simple_ema"}
    images = model.log_images(batch, max_images=4, sample_steps=5)
    assert images["samples"].shape == (4, 3, 8, 8) and "samples_cfg_3" in images
    assert images["diffusion_row"].shape == images["progressive_row"].shape == (16, 3, 8, 8)  # 4 rows of 4
    assert all(torch.isfinite(value).all() for value in images.values())


def test_plain_ddpm_trains_and_samples() -> None:
    torch.manual_seed(0)
    model = DDPM(unet_config=unet_config(), image_size=8, channels=3, timesteps=50)
    model.learning_rate = 1e-3
    batch = {"image": torch.rand(4, 8, 8, 3) * 2 - 1}
    loss, logs = model.training_step(batch, 0, 0)
    loss.backward()
    assert set(logs) == {"train/loss_simple", "train/loss_vlb", "train/loss"}
    assert model.log_images(batch, sample_steps=3)["samples"].shape == (4, 3, 8, 8)


# ---------------------------------------------------------------- the lite configs

LITE_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "latent-diffusion").glob("lite_*.yaml"))


def synthetic_batch(channels: int, size: int = 32, batch_size: int = 2) -> dict:
    mask = torch.zeros(batch_size, size, size, 1)
    mask[:, 8:20, 8:20] = 1
    image = torch.rand(batch_size, size, size, channels) * 2 - 1
    return {"image": image, "caption": ["a small red circle at the top left", "an emoji of red apple"][:batch_size],
            "class_label": torch.arange(batch_size), "mask": mask, "masked_image": image * (1 - mask)}


def test_lite_configs_exist() -> None:
    assert {path.stem for path in LITE_CONFIGS} >= {
        "lite_emoji_uncond", "lite_mnist_class", "lite_shapes_text_minilm", "lite_shapes_text_bert",
        "lite_emoji_text_minilm", "lite_inpainting_emoji"}


@pytest.mark.parametrize("path", LITE_CONFIGS, ids=lambda path: path.stem)
def test_lite_config_builds_and_trains_one_step(path: Path) -> None:
    config = OmegaConf.load(path)
    config.model.params.first_stage_config.get("params", {}).pop("ckpt_path", None)  # untrained first stage
    torch.manual_seed(0)
    model = instantiate_from_config(config.model)
    model.learning_rate = float(config.model.base_learning_rate)
    optimizer = model.configure_optimizers()[0]
    size = config.model.params.first_stage_config.get("params", {}).get("ddconfig", {}).get("resolution", 32)
    batch = synthetic_batch(model.first_stage_model.encoder.conv_in.in_channels
                            if hasattr(model.first_stage_model, "encoder") else model.channels, size=size)
    model.train()
    loss, logs = model.training_step(batch, 0, 0)
    loss.backward()
    optimizer.step()
    model.on_train_batch_end()
    assert math.isfinite(loss.item()) and logs["train/loss"] == pytest.approx(loss.item())
    z, _ = model.get_input(batch, "image")
    assert z.shape[1:] == (model.channels, model.image_size, model.image_size)


# ---------------------------------------------------------------- text encoders

def test_bert_embedder_tokenizes_and_embeds() -> None:
    from ldm_lite.modules.encoders import BERTEmbedder

    embedder = BERTEmbedder(n_embed=32, n_layer=1, max_seq_len=12)
    tokens = embedder.tokenizer(["a red apple", ""])["input_ids"]
    assert tokens.shape == (2, 12) and tokens[0, 0] == 101 and tokens[1, 1] == 102  # [CLS] ... [SEP]
    out = embedder(["a red apple", ""])
    assert out.shape == (2, 12, 32)
    assert not torch.allclose(out[0], out[1])
    keys = set(embedder.state_dict())
    assert {"transformer.attn_layers.layers.0.1.to_q.weight", "transformer.attn_layers.layers.1.1.net.0.0.weight",
            "transformer.pos_emb.emb.weight", "transformer.norm.weight", "transformer.to_logits.weight"} <= keys


def test_frozen_minilm_embedder() -> None:
    from ldm_lite.modules.encoders import FrozenMiniLMEmbedder

    embedder = FrozenMiniLMEmbedder(max_length=10)
    out = embedder(["a red apple", "a small blue square at the top left", "a red apple"])
    assert out.shape == (3, 10, 384) and not out.requires_grad
    torch.testing.assert_close(out[0], out[2])
    assert torch.all(out[0, 5:] == 0) and torch.all(out[0, :5].abs().sum(-1) > 0)  # [CLS] a red apple [SEP], then padding
    assert len(embedder.cache) == 2 and embedder.state_dict() == {}
