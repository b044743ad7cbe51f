"""UNet and its blocks: timestep embedding formula, output shapes per conditioning mode, zero-initialised
output layers, gradient checkpointing, the legacy qkv split, channels_last."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ldm_lite.modules.attention import GEGLU, AttentionBlock, CrossAttention, SpatialTransformer
from ldm_lite.modules.blocks import ResBlock, timestep_embedding
from ldm_lite.modules.unet import UNetModel


def tiny_unet(**overrides) -> UNetModel:
    params = dict(image_size=8, in_channels=4, model_channels=32, out_channels=4, num_res_blocks=1,
                  attention_resolutions=[2], channel_mult=[1, 2], num_head_channels=16)
    params.update(overrides)
    torch.manual_seed(0)
    return UNetModel(**params)


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Give zero-initialised layers random weights so outputs depend on every path."""
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return module


def test_timestep_embedding_formula() -> None:
    t = torch.tensor([0.0, 3.0, 999.0])
    embedding = timestep_embedding(t, 6)
    frequencies = [10000 ** (-i / 3) for i in range(3)]
    expected = [[math.cos(v * f) for f in frequencies] + [math.sin(v * f) for f in frequencies] for v in t.tolist()]
    torch.testing.assert_close(embedding, torch.tensor(expected))
    odd = timestep_embedding(t, 7)
    assert odd.shape == (3, 7) and torch.all(odd[:, -1] == 0)


@pytest.mark.parametrize("mode", ["unconditional", "crossattn", "concat", "class", "scale_shift_updown"])
def test_output_shapes(mode: str) -> None:
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0, 999])
    kwargs: dict = {}
    if mode == "crossattn":
        unet = tiny_unet(use_spatial_transformer=True, context_dim=24, transformer_depth=2)
        kwargs["context"] = torch.randn(2, 5, 24)
    elif mode == "concat":
        unet = tiny_unet(in_channels=9)
        x = torch.cat([x, torch.randn(2, 5, 8, 8)], dim=1)
    elif mode == "class":
        unet = tiny_unet(num_classes=11)
        kwargs["y"] = torch.tensor([3, 10])
    elif mode == "scale_shift_updown":
        unet = tiny_unet(use_scale_shift_norm=True, resblock_updown=True, channel_mult=[1, 2, 2])
    else:
        unet = tiny_unet()
    assert unet(x, t, **kwargs).shape == (2, 4, 8, 8)


def test_codebook_head() -> None:
    unet = tiny_unet(n_embed=17)
    assert unet(torch.randn(2, 4, 8, 8), torch.tensor([1, 2])).shape == (2, 17, 8, 8)


def test_class_labels_required_iff_num_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        tiny_unet()(torch.randn(1, 4, 8, 8), torch.tensor([1]), y=torch.tensor([0]))
    with pytest.raises(ValueError, match="num_classes"):
        tiny_unet(num_classes=3)(torch.randn(1, 4, 8, 8), torch.tensor([1]))


@pytest.mark.parametrize("transformer", [False, True])
def test_norm_num_groups_reaches_every_norm_and_keeps_the_layout(transformer: bool) -> None:
    kwargs = dict(use_spatial_transformer=True, context_dim=24) if transformer else {}
    default, narrow = tiny_unet(**kwargs, n_embed=5), tiny_unet(**kwargs, n_embed=5, norm_num_groups=8)
    group_counts = {module.num_groups for module in narrow.modules() if isinstance(module, torch.nn.GroupNorm)}
    assert group_counts == {8}
    assert {k: v.shape for k, v in default.state_dict().items()} == {k: v.shape for k, v in narrow.state_dict().items()}
    context = {"context": torch.randn(2, 5, 24)} if transformer else {}
    assert narrow(torch.randn(2, 4, 8, 8), torch.tensor([0, 999]), **context).shape == (2, 5, 8, 8)  # codebook logits
    with pytest.raises(ValueError, match="norm_num_groups 12 does not divide"):
        tiny_unet(norm_num_groups=12)


def test_output_and_residual_branches_start_at_zero() -> None:
    unet = tiny_unet(use_spatial_transformer=True, context_dim=8)
    assert torch.all(unet.out[-1].weight == 0) and torch.all(unet.out[-1].bias == 0)
    for module in unet.modules():
        if isinstance(module, (SpatialTransformer, AttentionBlock)):
            assert torch.all(module.proj_out.weight == 0)
        if isinstance(module, ResBlock):
            assert torch.all(module.out_layers[-1].weight == 0)
    output = unet(torch.randn(2, 4, 8, 8), torch.tensor([5, 50]), context=torch.randn(2, 3, 8))
    assert torch.all(output == 0)


def test_gradient_checkpointing_gives_same_gradients() -> None:
    gradients = []
    for use_checkpoint in (False, True):
        unet = randomize(tiny_unet(use_spatial_transformer=True, context_dim=8, use_checkpoint=use_checkpoint))
        torch.manual_seed(2)
        x, context = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 8)
        unet(x, torch.tensor([5, 50]), context=context).square().mean().backward()
        gradients.append([p.grad.clone() for p in unet.parameters()])
    for plain, checkpointed in zip(*gradients):
        torch.testing.assert_close(plain, checkpointed)


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_block_qkv_split(new_order: bool) -> None:
    block = randomize(AttentionBlock(32, num_heads=2, use_new_attention_order=new_order))
    x = torch.randn(2, 32, 4, 4)
    qkv = block.qkv(block.norm(x.reshape(2, 32, 16)))
    if new_order:  # [q of all heads, k of all heads, v of all heads]
        q, k, v = (part.reshape(2, 2, 16, 16) for part in qkv.chunk(3, dim=1))
    else:  # legacy: per head [q, k, v]
        q, k, v = qkv.reshape(2, 2, 48, 16).split(16, dim=2)
    weights = torch.softmax(torch.einsum("bhct,bhcs->bhts", q, k) / math.sqrt(16), dim=-1)
    attended = torch.einsum("bhts,bhcs->bhct", weights, v).reshape(2, 32, 16)
    expected = (x.reshape(2, 32, 16) + block.proj_out(attended)).reshape(2, 32, 4, 4)
    torch.testing.assert_close(block(x), expected)


def test_channels_last_matches() -> None:
    unet = randomize(tiny_unet(use_spatial_transformer=True, context_dim=8)).eval()
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([5, 50]), torch.randn(2, 3, 8)
    expected = unet(x, t, context=context)
    unet = unet.to(memory_format=torch.channels_last)
    torch.testing.assert_close(unet(x.to(memory_format=torch.channels_last), t, context=context), expected,
                               rtol=1e-4, atol=1e-5)


def test_spatial_transformer_attends_to_context() -> None:
    block = randomize(SpatialTransformer(32, n_heads=2, d_head=16, context_dim=8))
    x = torch.randn(1, 32, 4, 4)
    a, b = block(x, torch.randn(1, 3, 8)), block(x, torch.randn(1, 3, 8))
    assert not torch.allclose(a, b)
    assert F.mse_loss(a, b) > 0


@pytest.mark.parametrize("with_context", [False, True])
def test_cross_attention_formula(with_context: bool) -> None:
    attention = CrossAttention(32, context_dim=8 if with_context else None, heads=2, dim_head=16)
    x = torch.randn(2, 5, 32)
    context = torch.randn(2, 3, 8) if with_context else x
    q = attention.to_q(x).view(2, 5, 2, 16).transpose(1, 2)
    k = attention.to_k(context).view(2, -1, 2, 16).transpose(1, 2)
    v = attention.to_v(context).view(2, -1, 2, 16).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(16), dim=-1)  # LDM Eq. 3
    expected = attention.to_out((weights @ v).transpose(1, 2).reshape(2, 5, 32))
    torch.testing.assert_close(attention(x, context if with_context else None), expected)


def test_geglu_formula() -> None:
    """GEGLU (Shazeer 2020): [a, g] = proj(x), out = a * GELU(g), where `proj` is one Linear whose output's
    first half is a (the layout of the released checkpoints), with gradients to match."""
    geglu = GEGLU(16, 24)
    x = torch.randn(2, 5, 16, requires_grad=True)
    value, gate = geglu.proj(x).chunk(2, dim=-1)
    expected = value * F.gelu(gate)
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, geglu.proj.weight, geglu.proj.bias])
    out = geglu(x)
    torch.testing.assert_close(out, expected)
    for grad, expected_grad in zip(torch.autograd.grad(out.square().sum(), [x, geglu.proj.weight, geglu.proj.bias]),
                                   expected_grads):
        torch.testing.assert_close(grad, expected_grad)
