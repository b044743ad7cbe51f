"""Cross-attention maps (ldm_lite/attention_maps.py) on a tiny randomly initialised UNet: one map per
cross-attention layer, weights that sum to 1 over the tokens, the layer's own weights, hooks removed."""
from __future__ import annotations

import pytest
import torch

from ldm_lite.attention_maps import attention_weights, capture_cross_attention, token_maps
from ldm_lite.modules.attention import BasicTransformerBlock, CrossAttention
from ldm_lite.modules.unet import UNetModel


def tiny_unet() -> UNetModel:
    torch.manual_seed(0)
    return UNetModel(image_size=8, in_channels=4, model_channels=32, out_channels=4, num_res_blocks=1,
                     attention_resolutions=[1, 2], channel_mult=[1, 2], num_head_channels=16,
                     use_spatial_transformer=True, context_dim=12).eval()


def cross_attention_layers(unet: torch.nn.Module) -> list[CrossAttention]:
    return [module.attn2 for module in unet.modules() if isinstance(module, BasicTransformerBlock)]


def test_maps_have_one_entry_per_layer_and_sum_to_one() -> None:
    unet = tiny_unet()
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 5, 12)
    with torch.no_grad():
        expected = unet(x, t, context=context)
        with capture_cross_attention(unet) as captured:
            output = unet(x, t, context=context)
    torch.testing.assert_close(output, expected)  # the hooks only read
    assert len(captured) == len(cross_attention_layers(unet))
    assert {weights.shape[1] for weights in captured} == {64, 16}  # 8x8 and 4x4 feature maps
    for weights in captured:
        assert weights.shape[0] == 2 and weights.shape[2] == 5
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
    maps = token_maps(captured, side=8)
    assert maps.shape == (2, 5, 8, 8)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 8, 8))  # per pixel, over the tokens


def test_weights_are_those_the_layer_applies() -> None:
    torch.manual_seed(0)
    layer = CrossAttention(16, context_dim=12, heads=1, dim_head=8)
    x, context = torch.randn(2, 6, 16), torch.randn(2, 5, 12)
    weights = attention_weights(layer, x, context)  # one head: the mean over heads is the head
    torch.testing.assert_close(layer.to_out(weights @ layer.to_v(context)), layer(x, context))


def test_hooks_are_removed_afterwards_even_after_an_error() -> None:
    unet = tiny_unet()
    layers = cross_attention_layers(unet)
    with capture_cross_attention(unet):
        assert all(len(layer._forward_hooks) == 1 for layer in layers)
    assert all(not layer._forward_hooks for layer in layers)
    with pytest.raises(RuntimeError), capture_cross_attention(unet):
        raise RuntimeError("interrupted")
    assert all(not layer._forward_hooks for layer in layers)


def test_token_maps_rejects_non_square_maps() -> None:
    with pytest.raises(ValueError, match="square"):
        token_maps([torch.full((1, 12, 3), 1 / 3)], side=8)
