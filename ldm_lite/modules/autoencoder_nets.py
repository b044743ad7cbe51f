"""Encoder and decoder of the first stage (paper Sec. 3 and App. G).

The encoder maps an image x (H x W x 3) to a latent z (H/f x W/f x c) through `len(ch_mult) - 1`
stride-2 downsamplings (f = 2^(len(ch_mult) - 1)); the decoder mirrors it. Both are stacks of
ResNet blocks (GroupNorm, swish, 3x3 conv) with optional self-attention, and keep the original
module names (`down.N.block.M`, `mid.attn_1`, `up.N.upsample`, ...) so that released checkpoints load."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def normalization(channels: int, num_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with `num_groups` groups (Wu & He 2018), or the largest divisor of `channels` below
    it, so tiny models (e.g. 16 channels) still build."""
    return nn.GroupNorm(math.gcd(num_groups, channels), channels, eps=1e-6, affine=True)


def nonlinearity(x: torch.Tensor) -> torch.Tensor:
    """swish / SiLU: x * sigmoid(x)."""
    return F.silu(x)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling, then (optionally) a 3x3 conv."""

    def __init__(self, in_channels: int, with_conv: bool = True) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


class Downsample(nn.Module):
    """2x downsampling: a 3x3 stride-2 conv after padding only right and bottom by one pixel (the
    original's asymmetric padding; released weights expect it), or 2x2 average pooling."""

    def __init__(self, in_channels: int, with_conv: bool = True) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class ResnetBlock(nn.Module):
    """x + conv(swish(norm(conv(swish(norm(x)))))) (He et al. 2016, pre-activation form); a 1x1
    `nin_shortcut` matches channels when they change."""

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0,
                 num_groups: int = 32) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = normalization(in_channels, num_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = normalization(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(nonlinearity(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, softmax(q k^T / sqrt(C)) v, with 1x1-conv
    projections and a residual connection (Vaswani et al. 2017; as in the original first stage)."""

    def __init__(self, in_channels: int, num_groups: int = 32) -> None:
        super().__init__()
        self.norm = normalization(in_channels, num_groups)
        self.q = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.k = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.v = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        h = self.norm(x)
        # Every pixel is a token with C channels, one head (the `1`): views of the conv outputs, no copy.
        # (Strided, they get scaled_dot_product_attention's math kernel, not flash; copying them first
        # costs more than it gains up to 16x16 positions on CPU, so they stay views.)
        q, k, v = (rearrange(conv(h), "b c h w -> b 1 (h w) c") for conv in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v)
        h = rearrange(h, "b 1 (h w) c -> b c h w", h=height, w=width)
        return x + self.proj_out(h)


def make_attn(in_channels: int, attn_type: str = "vanilla", num_groups: int = 32) -> nn.Module:
    """`vanilla` = AttnBlock, `none` = identity (the original `vq-f4-noattn`)."""
    if attn_type == "vanilla":
        return AttnBlock(in_channels, num_groups)
    if attn_type == "none":
        return nn.Identity()
    raise ValueError(f"attn_type '{attn_type}' is not supported: use 'vanilla' or 'none'")


class _Level(nn.Module):
    """One resolution level: `block` (ResNet blocks), `attn` (attention after each block, if any)
    and `downsample` / `upsample` (absent on the last level)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Middle(nn.Module):
    """block_1 -> attn_1 -> block_2 at the lowest resolution."""

    def __init__(self, channels: int, dropout: float, attn_type: str, num_groups: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout, num_groups)
        self.attn_1 = make_attn(channels, attn_type, num_groups)
        self.block_2 = ResnetBlock(channels, channels, dropout, num_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def _check_resolution(resolution: int, ch_mult: Sequence[int]) -> None:
    factor = 2 ** (len(ch_mult) - 1)
    if resolution % factor != 0:
        raise ValueError(f"resolution {resolution} is not divisible by the downsampling factor {factor} "
                         f"(ch_mult has {len(ch_mult)} levels): choose a multiple of {factor}")


class Encoder(nn.Module):
    """x (B, in_channels, H, W) -> (B, 2*z_channels if double_z else z_channels, H/f, W/f)."""

    def __init__(self, *, ch: int, ch_mult: Sequence[int] = (1, 2, 4, 8), num_res_blocks: int,
                 attn_resolutions: Sequence[int], in_channels: int, resolution: int, z_channels: int,
                 dropout: float = 0.0, resamp_with_conv: bool = True, double_z: bool = True,
                 attn_type: str = "vanilla", num_groups: int = 32, **ignored) -> None:
        super().__init__()  # `ignored`: decoder-only keys of a shared `ddconfig` (out_ch, ...)
        _check_resolution(resolution, ch_mult)
        self.num_resolutions = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, stride=1, padding=1)
        in_ch_mult = (1,) + tuple(ch_mult)
        current_resolution = resolution
        self.down = nn.ModuleList()
        for level in range(self.num_resolutions):
            stage = _Level()
            block_in, block_out = ch * in_ch_mult[level], ch * ch_mult[level]
            for _ in range(num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, dropout, num_groups))
                block_in = block_out
                if current_resolution in attn_resolutions:
                    stage.attn.append(make_attn(block_in, attn_type, num_groups))
            if level != self.num_resolutions - 1:
                stage.downsample = Downsample(block_in, resamp_with_conv)
                current_resolution //= 2
            self.down.append(stage)
        self.mid = _Middle(block_in, dropout, attn_type, num_groups)
        self.norm_out = normalization(block_in, num_groups)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for index, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[index](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(nonlinearity(self.norm_out(h)))


class Decoder(nn.Module):
    """z (B, z_channels, H/f, W/f) -> image (B, out_ch, H, W); `up[level]` mirrors `down[level]`
    (built from the lowest resolution up, each level with num_res_blocks + 1 blocks)."""

    def __init__(self, *, ch: int, out_ch: int, ch_mult: Sequence[int] = (1, 2, 4, 8), num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, dropout: float = 0.0,
                 resamp_with_conv: bool = True, give_pre_end: bool = False, tanh_out: bool = False,
                 attn_type: str = "vanilla", num_groups: int = 32, **ignored) -> None:
        super().__init__()  # `ignored`: encoder-only keys of a shared `ddconfig` (in_channels, double_z)
        _check_resolution(resolution, ch_mult)
        self.num_resolutions = len(ch_mult)
        self.give_pre_end, self.tanh_out = give_pre_end, tanh_out
        block_in = ch * ch_mult[-1]
        current_resolution = resolution // 2 ** (self.num_resolutions - 1)
        self.z_shape = (1, z_channels, current_resolution, current_resolution)
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = _Middle(block_in, dropout, attn_type, num_groups)
        levels: list[_Level] = []
        for level in reversed(range(self.num_resolutions)):
            stage = _Level()
            block_out = ch * ch_mult[level]
            for _ in range(num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, dropout, num_groups))
                block_in = block_out
                if current_resolution in attn_resolutions:
                    stage.attn.append(make_attn(block_in, attn_type, num_groups))
            if level != 0:
                stage.upsample = Upsample(block_in, resamp_with_conv)
                current_resolution *= 2
            levels.insert(0, stage)  # keep up[level] aligned with the encoder's down[level]
        self.up = nn.ModuleList(levels)
        self.norm_out = normalization(block_in, num_groups)
        self.conv_out = nn.Conv2d(block_in, out_ch, kernel_size=3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            for index, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[index](h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        if self.give_pre_end:
            return h
        h = self.conv_out(nonlinearity(self.norm_out(h)))
        return torch.tanh(h) if self.tanh_out else h
