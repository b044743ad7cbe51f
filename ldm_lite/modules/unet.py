"""The denoising UNet epsilon_theta(z_t, t, y) of Latent Diffusion (Rombach et al. 2022, Sec. 3.3).

Structure of Ho et al. (2020) as improved by Dhariwal & Nichol (2021): an encoder of residual blocks
(`input_blocks`) with downsampling, a `middle_block`, a decoder (`output_blocks`) with skip
connections from the encoder, attention at the resolutions listed in `attention_resolutions`
(given as downsampling factors: 1 = full latent resolution, 2 = half, ...), and the timestep
embedded sinusoidally then through an MLP (`time_embed`). Conditioning: a context for cross-attention
(`use_spatial_transformer`), a class label (`num_classes` -> `label_emb`), or channels concatenated
to the input by the caller."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ldm_lite.modules.attention import AttentionBlock, SpatialTransformer
from ldm_lite.modules.blocks import (
    Downsample,
    ResBlock,
    TimestepEmbedSequential,
    Upsample,
    conv_nd,
    normalization,
    timestep_embedding,
    zero_module,
)


class UNetModel(nn.Module):
    """UNet with timestep embedding, optional class and cross-attention conditioning.

    Constructor parameters and module names are those of the original `openaimodel.UNetModel`, so an
    original config builds the same state-dict layout. `use_fp16` is accepted and ignored (use autocast).
    `norm_num_groups` (not in the original, which uses 32) sets the GroupNorm groups of every block: a
    narrow UNet needs fewer, as 32 groups of a 32-channel level normalise each channel alone."""

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: Sequence[int],
        dropout: float = 0.0,
        channel_mult: Sequence[int] = (1, 2, 4, 8),
        conv_resample: bool = True,
        dims: int = 2,
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        num_heads: int = -1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
        use_spatial_transformer: bool = False,
        transformer_depth: int = 1,
        context_dim: int | None = None,
        n_embed: int | None = None,
        legacy: bool = True,
        norm_num_groups: int = 32,
    ):
        super().__init__()
        if use_spatial_transformer and context_dim is None:
            raise ValueError("use_spatial_transformer=True needs context_dim (the width of the conditioning tokens)")
        if num_heads == -1 and num_head_channels == -1:
            raise ValueError("set either num_heads or num_head_channels")
        if any(model_channels * mult % norm_num_groups for mult in channel_mult):
            raise ValueError(f"norm_num_groups {norm_num_groups} does not divide the channels of every level "
                             f"({[model_channels * mult for mult in channel_mult]}): choose a common divisor")
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = tuple(attention_resolutions)
        self.channel_mult = tuple(channel_mult)
        self.num_classes = num_classes
        self.use_checkpoint = use_checkpoint
        self.predict_codebook_ids = n_embed is not None

        def attention_layer(channels: int, attention_block_heads: int) -> nn.Module:
            # Heads: either `num_heads` fixed, or as many as fit `num_head_channels` each. As in the
            # original, `num_heads_upsample` reaches only the decoder's AttentionBlock (as
            # `attention_block_heads`, where it counts with legacy and num_head_channels = -1);
            # a SpatialTransformer always gets `num_heads`.
            heads = num_heads
            if num_head_channels == -1:
                dim_head = channels // num_heads
            else:
                heads = channels // num_head_channels
                dim_head = num_head_channels
            if legacy:  # the original's rule for the released models
                dim_head = channels // heads if use_spatial_transformer else num_head_channels
            if use_spatial_transformer:
                return SpatialTransformer(channels, heads, dim_head, depth=transformer_depth, dropout=dropout,
                                          context_dim=context_dim, use_checkpoint=use_checkpoint,
                                          norm_groups=norm_num_groups)
            return AttentionBlock(channels, num_heads=attention_block_heads, num_head_channels=dim_head,
                                  use_checkpoint=use_checkpoint, use_new_attention_order=use_new_attention_order,
                                  norm_groups=norm_num_groups)

        def res_block(channels: int, out: int, **kwargs) -> ResBlock:
            return ResBlock(channels, time_embed_dim, dropout, out_channels=out, dims=dims, use_checkpoint=use_checkpoint,
                            use_scale_shift_norm=use_scale_shift_norm, norm_groups=norm_num_groups, **kwargs)

        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

        # Encoder: num_res_blocks ResBlocks per level, then a downsampling step (not after the last level).
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(dims, in_channels, model_channels, 3, padding=1))])
        input_block_chans = [model_channels]
        channels, downsampling = model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res_block(channels, mult * model_channels)]
                channels = mult * model_channels
                if downsampling in attention_resolutions:
                    layers.append(attention_layer(channels, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                input_block_chans.append(channels)
            if level != len(channel_mult) - 1:
                down = res_block(channels, channels, down=True) if resblock_updown else Downsample(channels, conv_resample, dims)
                self.input_blocks.append(TimestepEmbedSequential(down))
                input_block_chans.append(channels)
                downsampling *= 2

        self.middle_block = TimestepEmbedSequential(
            res_block(channels, channels), attention_layer(channels, num_heads), res_block(channels, channels)
        )

        # Decoder: num_res_blocks + 1 ResBlocks per level, each fed the matching encoder activation.
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for index in range(num_res_blocks + 1):
                skip_channels = input_block_chans.pop()
                layers = [res_block(channels + skip_channels, model_channels * mult)]
                channels = model_channels * mult
                if downsampling in attention_resolutions:
                    layers.append(attention_layer(channels, num_heads_upsample))
                if level and index == num_res_blocks:
                    layers.append(res_block(channels, channels, up=True) if resblock_updown
                                  else Upsample(channels, conv_resample, dims))
                    downsampling //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(channels, norm_num_groups), nn.SiLU(),
            zero_module(conv_nd(dims, model_channels, out_channels, 3, padding=1)),
        )
        if self.predict_codebook_ids:
            self.id_predictor = nn.Sequential(normalization(channels, norm_num_groups),
                                              conv_nd(dims, model_channels, n_embed, 1))

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, in_channels, H, W); timesteps: (B,); context: (B, L, context_dim) for cross-attention;
        y: (B,) class labels when the model was built with `num_classes`."""
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass class labels y if and only if the UNet was built with num_classes")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(self.time_embed[0].weight.dtype))
        if self.num_classes is not None:
            if y.shape != (x.shape[0],):
                raise ValueError(f"class labels y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
            emb = emb + self.label_emb(y)
        skips = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for module in self.output_blocks:
            h = module(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.id_predictor(h) if self.predict_codebook_ids else self.out(h)
