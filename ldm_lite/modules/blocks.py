"""Building blocks of the diffusion UNet: timestep embedding, group normalisation, residual
blocks conditioned on the timestep, down- and upsampling, and the sequential container that
routes the timestep embedding and the cross-attention context to the layers that need them.

Names and nesting follow the reference UNet of Dhariwal & Nichol (2021, "Diffusion Models Beat
GANs", arXiv:2105.05233) as used by Latent Diffusion, so that checkpoints keep their layout."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, shape (B,) -> (B, dim).

    Transformer positional encoding (Vaswani et al. 2017, Sec. 3.5) applied to t, with the cosine
    half first: emb = [cos(t * w_i), sin(t * w_i)], w_i = max_period^(-i / (dim/2)), i < dim/2."""
    half = dim // 2
    frequencies = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    arguments = timesteps[:, None].float() * frequencies[None]
    embedding = torch.cat([torch.cos(arguments), torch.sin(arguments)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in at least float32 (stable under fp16/bf16; float64 stays float64)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float32, torch.float64):
            return super().forward(x)
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)


def normalization(channels: int, num_groups: int = 32) -> nn.GroupNorm:
    """The UNet's normalisation layer: GroupNorm (Wu & He 2018), 32 groups in the original."""
    return GroupNorm32(num_groups, channels)


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """nn.Conv1d / Conv2d / Conv3d chosen by `dims`."""
    convolutions = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    if dims not in convolutions:
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    return convolutions[dims](*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    """nn.AvgPool1d / 2d / 3d chosen by `dims`."""
    pools = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
    if dims not in pools:
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    return pools[dims](*args, **kwargs)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero the parameters of `module` and return it: the residual branch starts as identity."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def maybe_checkpoint(function, *inputs, enabled: bool):
    """Run `function(*inputs)`, recomputing activations in backward when `enabled` and training
    (gradient checkpointing, Chen et al. 2016): memory for compute."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(function, *inputs, use_reentrant=False)
    return function(*inputs)


class TimestepBlock(nn.Module):
    """A layer whose forward takes the timestep embedding as a second argument."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class ContextBlock(nn.Module):
    """A layer whose forward takes the cross-attention context as a second argument."""

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential):
    """nn.Sequential that passes `emb` to TimestepBlocks and `context` to ContextBlocks."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, emb)
            elif isinstance(layer, ContextBlock):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by 2 (spatial axes), optionally followed by a 3x3 conv."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None, padding: int = 1):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.dims = dims
        if use_conv:
            self.conv = conv_nd(dims, self.channels, self.out_channels, 3, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            raise ValueError(f"Upsample expects {self.channels} channels, got {x.shape[1]}")
        if self.dims == 3:  # keep depth, upsample height and width
            x = F.interpolate(x, (x.shape[2], x.shape[3] * 2, x.shape[4] * 2), mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Downsampling by 2: a strided 3x3 conv (`use_conv`) or average pooling."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None, padding: int = 1):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        stride = 2 if dims != 3 else (1, 2, 2)
        if use_conv:
            self.op = conv_nd(dims, self.channels, self.out_channels, 3, stride=stride, padding=padding)
        else:
            if self.channels != self.out_channels:
                raise ValueError("Downsample without conv cannot change the channel count: set use_conv=True")
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            raise ValueError(f"Downsample expects {self.channels} channels, got {x.shape[1]}")
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding.

    h = conv(SiLU(GN(x))); h += Linear(SiLU(emb)) (or, with `use_scale_shift_norm`, the adaptive
    group norm of Dhariwal & Nichol 2021 Sec. 3: GN(h) * (1 + scale) + shift); h = conv(drop(SiLU(GN(h))));
    return skip(x) + h. With `up`/`down` the block also resamples (BigGAN-style, Brock et al. 2019)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        dims: int = 2,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
        norm_groups: int = 32,
    ):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_layers = nn.Sequential(
            normalization(channels, norm_groups), nn.SiLU(), conv_nd(dims, channels, self.out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False, dims), Upsample(channels, False, dims)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False, dims), Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels)
        )
        self.out_layers = nn.Sequential(
            normalization(self.out_channels, norm_groups),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(self._forward, x, emb, enabled=self.use_checkpoint)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)
        emb_out = emb_out.reshape(*emb_out.shape, *([1] * (h.dim() - 2)))
        if self.use_scale_shift_norm:
            out_norm, out_rest = self.out_layers[0], self.out_layers[1:]
            scale, shift = emb_out.chunk(2, dim=1)
            h = out_rest(out_norm(h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h
