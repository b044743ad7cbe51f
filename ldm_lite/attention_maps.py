"""Cross-attention maps: where each token of the condition writes into the latent.

Every `SpatialTransformer` of the UNet reads the condition's tokens tau(y) through the cross-attention
`attn2` of its transformer blocks (Rombach et al. 2022, arXiv:2112.10752, Sec. 3.3):
weights = softmax(Q K^T / sqrt(d)) with Q = W_Q phi(z_t) (one query per latent pixel) and K = W_K tau(y).
Laid out on the latent grid, the weights of one token show which pixels read it, as in Prompt-to-Prompt
(Hertz et al. 2022, arXiv:2208.01626), which averages them over heads, layers and timesteps."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ldm_lite.modules.attention import BasicTransformerBlock, CrossAttention, split_heads


def attention_weights(layer: CrossAttention, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """The weights `layer` applies, averaged over its heads: (B, queries, keys), each row sums to 1.
    Recomputed from the layer's own projections (its forward calls a fused kernel that keeps none)."""
    context = x if context is None else context
    q = split_heads(layer.to_q(x), layer.heads).float()
    k = split_heads(layer.to_k(context), layer.heads).float()
    return torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1).mean(dim=1)


@contextmanager
def capture_cross_attention(unet: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside the `with` block, every forward of a cross-attention layer (`attn2` of each
    `BasicTransformerBlock`) appends its head-averaged weights (B, pixels, tokens) to the yielded list,
    in call order. The hooks are removed on leaving the block, also after an error."""
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: torch.Tensor) -> None:
        x = args[0] if args else kwargs["x"]
        context = args[1] if len(args) > 1 else kwargs.get("context")
        captured.append(attention_weights(module, x, context).detach())

    blocks = [module for module in unet.modules() if isinstance(module, BasicTransformerBlock)]
    handles = [block.attn2.register_forward_hook(hook, with_kwargs=True) for block in blocks]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def token_maps(captured: list[torch.Tensor], side: int) -> torch.Tensor:
    """Captured weights (each (B, pixels, tokens), square feature maps of any size) -> (B, tokens, side, side):
    every layer's maps resized bilinearly to `side` x `side`, then averaged over the layers (and calls).
    Each pixel's weights still sum to 1 over the tokens."""
    resized = []
    for weights in captured:
        layer_side = int(round(weights.shape[1] ** 0.5))
        if layer_side * layer_side != weights.shape[1]:
            raise ValueError(f"{weights.shape[1]} query pixels do not form a square feature map")
        grid = rearrange(weights, "b (h w) n -> b n h w", h=layer_side)
        resized.append(F.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False))
    return torch.stack(resized).mean(dim=0)
