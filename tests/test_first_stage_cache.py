"""FirstStageCache: the frozen encoder runs once per image, and what it returns is unchanged."""
from __future__ import annotations

import torch

from ldm_lite.models.autoencoder import AutoencoderKL
from ldm_lite.models.diffusion import LatentDiffusion
from ldm_lite.models.first_stage_cache import FirstStageCache
from ldm_lite.modules.distributions import DiagonalGaussianDistribution

KL_FIRST_STAGE = {"target": "ldm_lite.models.autoencoder.AutoencoderKL", "params": {
    "embed_dim": 4, "lossconfig": {"target": "torch.nn.Identity"},
    "ddconfig": dict(double_z=True, z_channels=4, resolution=16, in_channels=3, out_ch=3, ch=8, ch_mult=[1, 2],
                     num_res_blocks=1, attn_resolutions=[], dropout=0.0)}}


class CountingEncoder:
    """Wraps an encoder and records how many images it was asked to encode."""

    def __init__(self, encoder) -> None:
        self.encoder, self.images = encoder, 0

    def __call__(self, images: torch.Tensor):
        self.images += len(images)
        return self.encoder(images)


def test_kl_posterior_matches_and_encodes_each_image_once() -> None:
    torch.manual_seed(0)
    autoencoder = AutoencoderKL(KL_FIRST_STAGE["params"]["ddconfig"], {"target": "torch.nn.Identity"}, embed_dim=4).eval()
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    cache, encoder = FirstStageCache(), CountingEncoder(autoencoder.encode)
    with torch.no_grad():
        first = cache.encode(encoder, images[:4])
        # images 2 and 3 seen before, image 4 new and given twice
        second = cache.encode(encoder, torch.stack([images[2], images[4], images[3], images[4]]))
        direct = autoencoder.encode(images)
    assert encoder.images == 5
    assert isinstance(first, DiagonalGaussianDistribution) and isinstance(second, DiagonalGaussianDistribution)
    torch.testing.assert_close(first.mean, direct.mean[:4], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second.logvar, direct.logvar[[2, 4, 3, 4]], rtol=1e-5, atol=1e-5)
    assert not torch.equal(second.sample(), second.sample())  # the latent is still sampled afresh


def test_tensor_encodings_and_capacity() -> None:
    cache = FirstStageCache(capacity=3)
    encoder = CountingEncoder(lambda images: images * 2)
    images = torch.arange(4.0).view(4, 1)
    torch.testing.assert_close(cache.encode(encoder, images[:2]), images[:2] * 2)
    torch.testing.assert_close(cache.encode(encoder, images[1:]), images[1:] * 2)  # 2 + 3 > 3: starts again
    assert encoder.images == 5 and len(cache.entries) == 3


def test_latent_diffusion_input_is_the_same_with_the_cache() -> None:
    def model(cache: bool) -> LatentDiffusion:
        torch.manual_seed(0)
        return LatentDiffusion(
            first_stage_config=KL_FIRST_STAGE, cond_stage_config="__is_unconditional__", image_size=8, channels=4,
            timesteps=100, cache_first_stage=cache,
            unet_config={"target": "ldm_lite.modules.unet.UNetModel", "params": dict(
                image_size=8, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=1,
                attention_resolutions=[], channel_mult=[1], num_head_channels=16)})

    batch = {"image": torch.rand(3, 16, 16, 3) * 2 - 1}
    plain, cached = model(False), model(True)
    for _ in range(2):  # a miss, then a hit
        torch.manual_seed(1)
        z_plain = plain.get_input(batch, "image")[0]
        torch.manual_seed(1)
        z_cached = cached.get_input(batch, "image")[0]
        torch.testing.assert_close(z_cached, z_plain, rtol=1e-5, atol=1e-5)
    assert len(cached.first_stage_cache.entries) == 3
