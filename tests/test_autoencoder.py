"""First stage: networks, posterior, quantizer, losses and the training protocol, on tiny models."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from ldm_lite.metrics import psnr, ssim
from ldm_lite.models.autoencoder import AutoencoderKL, IdentityFirstStage, VQModel, VQModelInterface
from ldm_lite.modules.discriminator import NLayerDiscriminator
from ldm_lite.modules.distributions import DiagonalGaussianDistribution
from ldm_lite.modules.losses import adaptive_weight
from ldm_lite.modules.quantize import VectorQuantizer
from ldm_lite.util import instantiate_from_config

pytestmark = pytest.mark.filterwarnings("ignore:perceptual loss is off")

RESOLUTION = 16


def ddconfig(levels: int, double_z: bool, z_channels: int = 4, attn: bool = True) -> dict:
    """Tiny nets: f = 2^(levels - 1), 8/16 channels, attention at the lowest resolution."""
    lowest = RESOLUTION // 2 ** (levels - 1)
    return dict(double_z=double_z, z_channels=z_channels, resolution=RESOLUTION, in_channels=3, out_ch=3, ch=8,
                ch_mult=[1] + [2] * (levels - 1), num_res_blocks=1, attn_resolutions=[lowest] if attn else [],
                dropout=0.0)


def kl_loss(disc_start: int = 100, **extra) -> dict:
    return {"target": "ldm_lite.modules.losses.LPIPSWithDiscriminator",
            "params": dict(disc_start=disc_start, kl_weight=1e-6, disc_weight=0.5, disc_num_layers=2, disc_ndf=8, **extra)}


def vq_loss(disc_start: int = 100) -> dict:
    return {"target": "ldm_lite.modules.losses.VQLPIPSWithDiscriminator",
            "params": dict(disc_start=disc_start, codebook_weight=1.0, disc_num_layers=2, disc_ndf=8)}


def tiny_kl(levels: int = 3, disc_start: int = 100) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(ddconfig(levels, True), kl_loss(disc_start), embed_dim=4)


def tiny_vq(levels: int = 3, disc_start: int = 100) -> VQModel:
    torch.manual_seed(0)
    return VQModel(ddconfig(levels, False, z_channels=3), vq_loss(disc_start), n_embed=32, embed_dim=3)


def batch(size: int = 4) -> dict:
    torch.manual_seed(1)
    return {"image": torch.rand(size, RESOLUTION, RESOLUTION, 3) * 2 - 1}


@pytest.mark.parametrize("levels,factor", [(3, 4), (4, 8)])
def test_kl_shapes(levels: int, factor: int) -> None:
    model = tiny_kl(levels)
    x = torch.randn(2, 3, RESOLUTION, RESOLUTION)
    posterior = model.encode(x)
    assert posterior.sample().shape == (2, 4, RESOLUTION // factor, RESOLUTION // factor)
    reconstruction, posterior = model(x)
    assert reconstruction.shape == x.shape and posterior.mode().shape == posterior.mean.shape


@pytest.mark.parametrize("levels,factor", [(3, 4), (4, 8)])
def test_vq_shapes(levels: int, factor: int) -> None:
    model = tiny_vq(levels)
    x = torch.randn(2, 3, RESOLUTION, RESOLUTION)
    quant, _, (_, _, indices) = model.encode(x)
    assert quant.shape == (2, 3, RESOLUTION // factor, RESOLUTION // factor)
    assert indices.shape == (2 * (RESOLUTION // factor) ** 2,) and int(indices.max()) < 32
    assert model(x)[0].shape == x.shape


def test_tiny_channel_counts_build() -> None:
    """GroupNorm falls back to fewer groups when channels are not a multiple of 32."""
    model = AutoencoderKL(ddconfig(2, True), {"target": "torch.nn.Identity"}, embed_dim=4)
    assert model.encoder.conv_in.out_channels == 8 and model.encoder.norm_out.num_groups == 16


def test_posterior_logvar_is_clamped() -> None:
    mean = torch.zeros(1, 2, 2, 2)
    parameters = torch.cat([mean, torch.tensor([100.0, -100.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)], dim=1)
    posterior = DiagonalGaussianDistribution(parameters)
    assert posterior.logvar[:, 0].max() == 20.0 and posterior.logvar[:, 1].min() == -30.0
    assert torch.isfinite(posterior.var).all() and torch.isfinite(posterior.kl()).all()


def test_kl_matches_closed_form() -> None:
    torch.manual_seed(0)
    parameters = torch.randn(3, 8, 4, 4)
    posterior = DiagonalGaussianDistribution(parameters)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(posterior.mean, posterior.std), torch.distributions.Normal(0.0, 1.0)
    ).sum(dim=(1, 2, 3))
    torch.testing.assert_close(posterior.kl(), reference)
    other = DiagonalGaussianDistribution(torch.randn(3, 8, 4, 4))
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(posterior.mean, posterior.std), torch.distributions.Normal(other.mean, other.std)
    ).sum(dim=(1, 2, 3))
    torch.testing.assert_close(posterior.kl(other), reference)


def test_vq_straight_through_gradient_reaches_encoder() -> None:
    model = tiny_vq()
    reconstruction, codebook_loss = model(torch.randn(2, 3, RESOLUTION, RESOLUTION))
    reconstruction.abs().mean().backward()  # reconstruction only: the codebook loss is not in the graph
    assert model.encoder.conv_in.weight.grad is not None and model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.quantize.embedding.weight.grad is None


def test_vq_loss_terms_and_perplexity() -> None:
    quantizer = VectorQuantizer(4, 2, beta=0.25, legacy=False)
    quantizer.embedding.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    codes = quantizer.embedding.weight.data
    z = codes.repeat(2, 1).t().reshape(1, 2, 2, 4)  # 8 vectors, each code twice
    z_q, loss, (perplexity, _, indices) = quantizer(z)
    torch.testing.assert_close(z_q, z)
    assert loss.item() == 0.0 and sorted(indices.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert perplexity.item() == pytest.approx(4.0, rel=1e-4)
    _, _, (perplexity, _, _) = quantizer(torch.full((1, 2, 2, 2), 0.9) * torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    assert perplexity.item() == pytest.approx(1.0, rel=1e-4)
    # (z - e)^2 with z = 0.9 e: codebook term 0.01 + beta * commitment term 0.01, averaged per element
    z = 0.9 * codes.t().reshape(1, 2, 2, 2)
    _, loss, _ = quantizer(z)
    assert loss.item() == pytest.approx(1.25 * 0.01 / 2, rel=1e-4)


def test_dead_codes_are_restarted_onto_encoder_outputs() -> None:
    torch.manual_seed(0)
    quantizer = VectorQuantizer(8, 2, restart_dead_codes=True, usage_decay=0.5).train()
    z = torch.full((1, 2, 2, 2), 3.0)
    for _ in range(20):
        quantizer(z)
    assert (quantizer.embedding.weight.data == 3.0).all(dim=1).sum() >= 2


def test_kmeans_initialization_finds_the_clusters_of_the_remembered_latents() -> None:
    torch.manual_seed(0)
    centres = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [-2.0, 0.0, 0.0]])
    quantizer = VectorQuantizer(4, 3)
    for _ in range(3):  # three "batches" of 2 x 5 x 5 latents around the centres
        points = centres[torch.randint(0, 4, (50,))] + 0.01 * torch.randn(50, 3)
        quantizer.remember(points.t().reshape(3, 2, 5, 5).permute(1, 0, 2, 3))
    quantizer.initialize_by_kmeans()
    distances = torch.cdist(centres, quantizer.embedding.weight.data)
    assert distances.min(dim=1).values.max() < 0.02 and quantizer.memory == []
    with pytest.raises(RuntimeError, match="remember"):
        quantizer.initialize_by_kmeans()


def test_quantizer_memory_keeps_only_the_latest_latents() -> None:
    quantizer = VectorQuantizer(8, 2)
    for value in range(10):  # 10 batches of 16 vectors; room for 4 * 8 = 32 (+ one batch)
        quantizer.remember(torch.full((1, 2, 4, 4), float(value)))
    assert sum(len(rows) for rows in quantizer.memory) == 32 and quantizer.memory[0][0, 0].item() == 8.0


def test_vq_quantize_start_trains_a_plain_autoencoder_then_a_kmeans_codebook() -> None:
    torch.manual_seed(0)
    model = VQModel(ddconfig(3, False, z_channels=3), vq_loss(100), n_embed=8, embed_dim=3, quantize_start=3)
    model.learning_rate = 1e-3
    optimizer = model.configure_optimizers()[0]
    random_codebook = model.quantize.embedding.weight.detach().clone()
    for step in range(3):
        assert model.validation_step(batch(), step)["val/perplexity"] == 0.0  # validated without quantizer
        loss, logs = model.training_step(batch(), 0, global_step=step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert logs["train/quant_loss"] == 0.0 and model.quantize.embedding.weight.grad is None
    # After the last step without the quantizer the codebook holds k-means centroids of the latents.
    assert not torch.equal(model.quantize.embedding.weight, random_codebook) and model.quantize.memory == []
    h = model.encode_to_prequant(model.get_input(batch(), "image")).detach()
    codebook_error = model.quantize(h)[1].item()
    model.quantize.embedding.weight.data = random_codebook
    assert codebook_error < 0.1 * model.quantize(h)[1].item()
    _, logs = model.training_step(batch(), 0, global_step=3)
    assert logs["train/quant_loss"] > 0 and logs["train/perplexity"] >= 1


def test_vq_interface_encodes_before_quantization() -> None:
    torch.manual_seed(0)
    model = VQModelInterface(embed_dim=3, ddconfig=ddconfig(3, False, z_channels=3),
                             lossconfig={"target": "torch.nn.Identity"}, n_embed=16)
    x = torch.randn(1, 3, RESOLUTION, RESOLUTION)
    h = model.encode(x)
    torch.testing.assert_close(h, model.quant_conv(model.encoder(x)))
    quant = model.quantize(h)[0]
    torch.testing.assert_close(model.decode(h), model.decode(quant, force_not_quantize=True))
    assert not torch.allclose(model.decode(h, force_not_quantize=True), model.decode(h))
    assert model(x)[0].shape == x.shape and "val/psnr" in model.validation_step(batch(), 0)


def test_adaptive_weight_is_gradient_norm_ratio() -> None:
    last_layer = torch.randn(3, 3, requires_grad=True)
    a, b = torch.randn(3, 3), torch.randn(3, 3)
    weight = adaptive_weight((last_layer * a).sum(), (last_layer * b).sum(), last_layer, disc_weight=0.5)
    assert weight.item() == pytest.approx(0.5 * a.norm().item() / (b.norm().item() + 1e-4), rel=1e-5)


def test_discriminator_active_after_disc_start() -> None:
    model = tiny_kl(disc_start=3)
    model.learning_rate = 1e-3
    _, logs = model.training_step(batch(), 0, global_step=3)
    assert logs["train/disc_factor"] == 1.0 and logs["train/d_weight"] > 0 and logs["train/g_loss"] != 0
    loss, logs = model.training_step(batch(), 1, global_step=3)
    loss.backward()
    assert "train/disc_loss" in logs and all(p.grad is not None for p in model.loss.discriminator.parameters())


def test_discriminator_inactive_before_disc_start() -> None:
    model = tiny_kl(disc_start=3)
    model.learning_rate = 1e-3
    optimizers = model.configure_optimizers()
    assert len(optimizers) == 2
    before = [p.detach().clone() for p in model.loss.discriminator.parameters()]
    for index, optimizer in enumerate(optimizers):
        loss, logs = model.training_step(batch(), index, global_step=2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if index == 0:
            assert logs["train/disc_factor"] == 0.0 and logs["train/d_weight"] == 0.0 and logs["train/g_loss"] == 0.0
    assert all(torch.equal(p, q) for p, q in zip(before, model.loss.discriminator.parameters()))


def test_adam_betas_reach_the_autoencoder_optimizer_only() -> None:
    model = tiny_kl()
    model.learning_rate = 1e-3
    autoencoder, discriminator = model.configure_optimizers()
    assert autoencoder.defaults["betas"] == (0.5, 0.9) == discriminator.defaults["betas"]  # the original's
    torch.manual_seed(0)
    model = VQModel(ddconfig(3, False, z_channels=3), vq_loss(100), n_embed=32, embed_dim=3, adam_betas=[0.9, 0.999])
    model.learning_rate = 1e-3
    autoencoder, discriminator = model.configure_optimizers()
    assert autoencoder.defaults["betas"] == (0.9, 0.999) and discriminator.defaults["betas"] == (0.5, 0.9)


def test_patch_discriminator_output() -> None:
    logits = NLayerDiscriminator(3, ndf=8, n_layers=3)(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 1, 6, 6)


@pytest.mark.parametrize("make", [tiny_kl, tiny_vq])
def test_loss_decreases_overfitting_one_batch(make) -> None:
    model = make()
    model.learning_rate = 2e-3
    optimizer = model.configure_optimizers()[0]
    data = batch(2)
    psnrs = []
    for step in range(15):
        loss, logs = model.training_step(data, 0, global_step=step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        psnrs.append(logs["train/psnr"])
    assert logs["train/rec_loss"] < 0.5 and psnrs[-1] > psnrs[0] + 1.0
    assert set(model.validation_step(data, 15)) >= {"val/rec_loss", "val/psnr"}
    images = model.log_images(data, max_images=1)
    assert images["reconstructions"].shape == (1, 3, RESOLUTION, RESOLUTION)


def test_vq_logs_codebook_statistics() -> None:
    model = tiny_vq()
    model.learning_rate = 1e-3
    _, logs = model.training_step(batch(), 0, global_step=0)
    assert 1.0 <= logs["train/perplexity"] <= 32 and 0 <= logs["train/codebook_usage"] <= 1
    logs = model.validation_step(batch(), 0)
    assert 0 < logs["val/codebook_usage"] <= 1 and logs["val/perplexity"] >= 1


def test_identity_first_stage_round_trip() -> None:
    x = torch.randn(2, 3, 8, 8)
    stage = IdentityFirstStage(vq_interface=True)
    assert torch.equal(stage.decode(stage.encode(x)), x) and torch.equal(stage.quantize(x)[0], x)
    assert torch.equal(IdentityFirstStage().quantize(x), x)


def test_original_inference_config_instantiates() -> None:
    """LDM configs embed first stages with `lossconfig: torch.nn.Identity` and original targets."""
    config = {"target": "ldm.models.autoencoder.AutoencoderKL",
              "params": {"embed_dim": 4, "monitor": "val/rec_loss", "ddconfig": ddconfig(3, True),
                         "lossconfig": {"target": "torch.nn.Identity"}}}
    model = instantiate_from_config(config)
    assert isinstance(model.loss, torch.nn.Identity) and model.decode(torch.randn(1, 4, 4, 4)).shape == (1, 3, 16, 16)
    model.learning_rate = 1e-4
    assert len(model.configure_optimizers()) == 1
    with pytest.raises(RuntimeError, match="inference only"):
        model.training_step(batch(), 0, 0)
    assert "val/psnr" in model.validation_step(batch(), 0)


def test_batch_without_image_key_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="image_key"):
        tiny_kl().training_step({"caption": ["a"]}, 0, 0)


def test_psnr_and_ssim() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = x + 0.1
    assert psnr(x, y).item() == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-4)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert ssim(x, noisy).item() < ssim(x, (x + 0.05 * torch.randn_like(x)).clamp(-1, 1)).item() < 1.0
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, y[:1])


def test_ckpt_path_loads_weights_and_ignores_loss_keys(tmp_path) -> None:
    from safetensors.torch import save_file

    trained = tiny_kl()
    path = tmp_path / "model.safetensors"
    save_file({key: value.contiguous() for key, value in trained.state_dict().items()}, str(path))
    params = dict(ddconfig=ddconfig(3, True), lossconfig={"target": "torch.nn.Identity"}, embed_dim=4)
    loaded = AutoencoderKL(ckpt_path=str(path), **params)
    assert torch.equal(loaded.decoder.conv_out.weight, trained.decoder.conv_out.weight)
    partial = AutoencoderKL(ckpt_path=str(path), ignore_keys=["decoder.conv_out"], **params)
    assert not torch.equal(partial.decoder.conv_out.weight, trained.decoder.conv_out.weight)
    save_file({"encoder.conv_in.weight": trained.encoder.conv_in.weight.contiguous()}, str(path))
    with pytest.raises(ValueError, match="lacks"):
        AutoencoderKL(ckpt_path=str(path), **params)


def test_train_decoder_only_keeps_the_latent_space(tmp_path) -> None:
    from safetensors.torch import save_file

    from ldm_lite.pretrained import inference_config

    trained = tiny_kl()
    path = tmp_path / "model.safetensors"
    save_file({key: value.contiguous() for key, value in trained.state_dict().items()}, str(path))
    model = AutoencoderKL(ddconfig(3, True), kl_loss(), embed_dim=4, ckpt_path=str(path), train_decoder_only=True)
    model.learning_rate = 1e-2
    optimizer = model.configure_optimizers()[0]
    decoder_side = [*model.decoder.parameters(), *model.post_quant_conv.parameters()]
    assert {id(p) for p in model.autoencoder_parameters()} == {id(p) for p in decoder_side}
    loss, _ = model.training_step(batch(2), 0, global_step=0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in (*model.encoder.parameters(), *model.quant_conv.parameters()))
    for name in ("encoder.conv_in.weight", "quant_conv.weight"):
        assert torch.equal(model.state_dict()[name], trained.state_dict()[name])
    assert not torch.equal(model.decoder.conv_out.weight, trained.decoder.conv_out.weight)
    with pytest.raises(ValueError, match="needs ckpt_path"):
        AutoencoderKL(ddconfig(3, True), kl_loss(), embed_dim=4, train_decoder_only=True)
    config = OmegaConf.create({"model": {"target": "ldm_lite.models.autoencoder.AutoencoderKL", "params": {
        "ckpt_path": str(path), "train_decoder_only": True, "embed_dim": 4, "ddconfig": ddconfig(3, True),
        "lossconfig": kl_loss()}}})
    assert "train_decoder_only" not in inference_config(config).model.params  # the export loads on its own
