"""ldm_lite's `UNetModel` (the original CompVis layout) <-> diffusers' `UNet2DModel` (self-attention
`AttentionBlock`s, or none) and `UNet2DConditionModel` (`SpatialTransformer`s, cross-attention).

The layouts, level by level (L levels, R = num_res_blocks):

| ldm_lite | diffusers |
|---|---|
| `time_embed.0`, `time_embed.2` | `time_embedding.linear_1`, `linear_2` |
| `label_emb` (num_classes) | `class_embedding` (num_class_embeds) |
| `input_blocks.0.0` | `conv_in` |
| `input_blocks.k.0` (ResBlock), `.1` (attention) | `down_blocks.level.resnets.i`, `.attentions.i` (R per level) |
| `input_blocks.k.0.op` (after each level but the last) | `down_blocks.level.downsamplers.0.conv` |
| `middle_block.0`, `.1`, `.2` | `mid_block.resnets.0`, `.attentions.0`, `.resnets.1` |
| `output_blocks.k.0`, `.1` (attention), last `.conv` | `up_blocks.j.resnets.i`, `.attentions.i`, `.upsamplers.0.conv` (R + 1 per level, deepest first) |
| `out.0`, `out.2` | `conv_norm_out`, `conv_out` |

Inside a ResBlock: `in_layers.0/2` = `norm1`/`conv1`, `emb_layers.1` = `time_emb_proj`, `out_layers.0/3` =
`norm2`/`conv2`, `skip_connection` = `conv_shortcut`. A SpatialTransformer has diffusers' names already
(`norm`, `proj_in`, `transformer_blocks.n.{attn1,attn2,ff,norm1..3}`, `proj_out`). An AttentionBlock's
`norm` is `group_norm`, its fused `qkv` Conv1d splits into `to_q`/`to_k`/`to_v` and `proj_out` is `to_out.0`.

Option names: diffusers' `attention_head_dim` is the width of a head in `UNet2DModel` but, for historical
reasons, the number of heads per level in `UNet2DConditionModel`; ldm_lite's `num_head_channels` /
`num_heads` are computed into either. `transformer_depth` is `transformer_layers_per_block`,
`use_scale_shift_norm` is `resnet_time_scale_shift="scale_shift"`."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ldm_lite.diffusers_interop.common import ConversionError, WeightPair, from_diffusers_state, load_into, \
    to_diffusers_state
from ldm_lite.modules.attention import AttentionBlock, SpatialTransformer
from ldm_lite.modules.blocks import Downsample, ResBlock, Upsample
from ldm_lite.modules.unet import UNetModel

GROUP_NORM_EPS = 1e-5  # torch's default, which ldm_lite's GroupNorm32 keeps


def _resblock_pairs(ours: str, theirs: str, block: ResBlock) -> list[WeightPair]:
    pairs = [WeightPair(f"{ours}.in_layers.0", f"{theirs}.norm1"), WeightPair(f"{ours}.in_layers.2", f"{theirs}.conv1"),
             WeightPair(f"{ours}.emb_layers.1", f"{theirs}.time_emb_proj"),
             WeightPair(f"{ours}.out_layers.0", f"{theirs}.norm2"), WeightPair(f"{ours}.out_layers.3", f"{theirs}.conv2")]
    if not isinstance(block.skip_connection, nn.Identity):
        pairs.append(WeightPair(f"{ours}.skip_connection", f"{theirs}.conv_shortcut"))
    return pairs


def _attention_pairs(ours: str, theirs: str, block: nn.Module) -> list[WeightPair]:
    if isinstance(block, SpatialTransformer):
        return [WeightPair(ours, theirs)]
    return [WeightPair(f"{ours}.norm", f"{theirs}.group_norm"),
            WeightPair(f"{ours}.qkv", theirs, "qkv", heads=block.num_heads, per_head=not block.use_new_attention_order),
            WeightPair(f"{ours}.proj_out", f"{theirs}.to_out.0", "conv_as_linear", kernel_dims=1)]


def _block_pairs(block: nn.Sequential, ours: str, theirs: str, layer: int) -> list[WeightPair]:
    """One input/output block of ldm_lite: [ResBlock, attention?, Upsample?] -> layer `layer` of a diffusers block."""
    pairs = _resblock_pairs(f"{ours}.0", f"{theirs}.resnets.{layer}", block[0])
    for position, module in enumerate(block):
        if isinstance(module, (AttentionBlock, SpatialTransformer)):
            pairs += _attention_pairs(f"{ours}.{position}", f"{theirs}.attentions.{layer}", module)
        elif isinstance(module, Upsample):
            pairs.append(WeightPair(f"{ours}.{position}.conv", f"{theirs}.upsamplers.0.conv"))
    return pairs


def unet_weight_pairs(unet: UNetModel) -> list[WeightPair]:
    """The table of every weight of `unet` and its diffusers name (see the module docstring)."""
    pairs = [WeightPair("time_embed.0", "time_embedding.linear_1"), WeightPair("time_embed.2", "time_embedding.linear_2"),
             WeightPair("input_blocks.0.0", "conv_in"), WeightPair("out.0", "conv_norm_out"),
             WeightPair("out.2", "conv_out")]
    if unet.num_classes is not None:
        pairs.append(WeightPair("label_emb", "class_embedding"))
    levels = len(unet.channel_mult)
    index = 1
    for level in range(levels):
        for layer in range(unet.num_res_blocks):
            pairs += _block_pairs(unet.input_blocks[index], f"input_blocks.{index}", f"down_blocks.{level}", layer)
            index += 1
        if level != levels - 1:
            pairs.append(WeightPair(f"input_blocks.{index}.0.op", f"down_blocks.{level}.downsamplers.0.conv"))
            index += 1
    middle = unet.middle_block
    pairs += _resblock_pairs("middle_block.0", "mid_block.resnets.0", middle[0])
    pairs += _attention_pairs("middle_block.1", "mid_block.attentions.0", middle[1])
    pairs += _resblock_pairs("middle_block.2", "mid_block.resnets.1", middle[2])
    index = 0
    for up in range(levels):
        for layer in range(unet.num_res_blocks + 1):
            pairs += _block_pairs(unet.output_blocks[index], f"output_blocks.{index}", f"up_blocks.{up}", layer)
            index += 1
    return pairs


# ----------------------------------------------------------------------------- ldm_lite -> diffusers

def _level_attention(unet: UNetModel) -> tuple[list[nn.Module | None], list[nn.Module | None]]:
    """The first attention layer of each level of the encoder and of the decoder (None: no attention there)."""
    levels, blocks = len(unet.channel_mult), unet.num_res_blocks
    down, up = [], []
    for level in range(levels):
        first = 1 + level * (blocks + 1)
        down.append(next((m for m in unet.input_blocks[first] if isinstance(m, (AttentionBlock, SpatialTransformer))), None))
    for up_level in range(levels):
        block = unet.output_blocks[up_level * (blocks + 1)]
        up.append(next((m for m in block if isinstance(m, (AttentionBlock, SpatialTransformer))), None))
    return down, up


def _check_exportable(unet: UNetModel) -> None:
    if not isinstance(unet.input_blocks[0][0], nn.Conv2d):
        raise ConversionError("a 1-D or 3-D UNet (dims != 2) has no diffusers counterpart: only dims=2 converts")
    if unet.predict_codebook_ids:
        raise ConversionError("a UNet that predicts codebook ids (n_embed) has no diffusers counterpart")
    for module in unet.modules():
        if isinstance(module, ResBlock) and module.updown:
            raise ConversionError("resblock_updown=True (resampling inside ResBlocks) is not converted: diffusers' "
                                  "UNet2DModel/UNet2DConditionModel resample with a convolution (resblock_updown=False)")
        if isinstance(module, Downsample) and not isinstance(module.op, nn.Conv2d):
            raise ConversionError("conv_resample=False (average-pool downsampling) is not converted: diffusers' "
                                  "down blocks downsample with a strided convolution (conv_resample=True)")
        if isinstance(module, Upsample) and not module.use_conv:
            raise ConversionError("conv_resample=False (upsampling without a convolution) is not converted: "
                                  "diffusers' up blocks convolve after upsampling (conv_resample=True)")


def diffusers_unet_config(unet: UNetModel) -> tuple[str, dict[str, Any]]:
    """(diffusers class name, its config) of a UNet with the same computation as `unet`; raises
    ConversionError (one line) for options diffusers lacks."""
    _check_exportable(unet)
    channels = [unet.model_channels * mult for mult in unet.channel_mult]
    resblock = unet.middle_block[0]
    down, up = _level_attention(unet)
    middle = unet.middle_block[1]
    common = dict(
        sample_size=unet.image_size, in_channels=unet.in_channels, out_channels=unet.out_channels,
        block_out_channels=channels, layers_per_block=unet.num_res_blocks, center_input_sample=False,
        flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, mid_block_scale_factor=1,
        dropout=resblock.out_layers[2].p, act_fn="silu", norm_num_groups=unet.out[0].num_groups, norm_eps=GROUP_NORM_EPS,
        resnet_time_scale_shift="scale_shift" if resblock.use_scale_shift_norm else "default",
        num_class_embeds=unet.num_classes,
    )
    if isinstance(middle, SpatialTransformer):
        blocks = [m for m in unet.modules() if isinstance(m, SpatialTransformer)]
        depths = sorted({len(block.transformer_blocks) for block in blocks})
        if len(depths) > 1:
            raise ConversionError(f"SpatialTransformers of different depths {depths} are not converted")
        for block in blocks:
            attention = block.transformer_blocks[0].attn1
            if attention.to_q.out_features != block.proj_in.in_channels:
                raise ConversionError(
                    f"a SpatialTransformer of {block.proj_in.in_channels} channels with {attention.heads} heads "
                    f"of width {attention.to_q.out_features // attention.heads} ({attention.to_q.out_features} in all) "
                    "has no diffusers counterpart (its Transformer2DModel splits the channels into the heads): "
                    "use num_head_channels that divides every level's channels, or legacy=True")
        heads = [block.transformer_blocks[0].attn1.heads if block is not None else None for block in down]
        up_heads = [block.transformer_blocks[0].attn1.heads if block is not None else None for block in up][::-1]
        middle_heads = middle.transformer_blocks[0].attn1.heads
        heads = [middle_heads if value is None else value for value in heads]  # levels without attention: unused
        if heads[-1] != middle_heads or any(value not in (None, mine) for value, mine in zip(up_heads, heads)):
            raise ConversionError(f"attention heads per level differ between encoder {heads}, decoder {up_heads} and "
                                  f"middle ({middle_heads}): diffusers uses one count per level (num_heads_upsample "
                                  "has no counterpart)")
        config = dict(
            common,
            down_block_types=["CrossAttnDownBlock2D" if block is not None else "DownBlock2D" for block in down],
            up_block_types=["CrossAttnUpBlock2D" if block is not None else "UpBlock2D" for block in up],
            mid_block_type="UNetMidBlock2DCrossAttn",
            cross_attention_dim=middle.transformer_blocks[0].attn2.to_k.in_features,
            transformer_layers_per_block=depths[0],
            attention_head_dim=heads,  # diffusers' name for the number of heads here
            use_linear_projection=False, only_cross_attention=False, upcast_attention=False,
        )
        return "UNet2DConditionModel", config
    head_widths = sorted({block.norm.num_channels // block.num_heads
                          for block in unet.modules() if isinstance(block, AttentionBlock)})
    if len(head_widths) != 1:
        raise ConversionError(f"self-attention heads of different widths {head_widths} across levels have no "
                              "UNet2DModel counterpart (one attention_head_dim): use num_head_channels instead of num_heads")
    config = dict(
        common,
        down_block_types=["AttnDownBlock2D" if block is not None else "DownBlock2D" for block in down],
        up_block_types=["AttnUpBlock2D" if block is not None else "UpBlock2D" for block in up],
        mid_block_type="UNetMidBlock2D", add_attention=True, attention_head_dim=head_widths[0],
        attn_norm_num_groups=middle.norm.num_groups, time_embedding_type="positional",
        downsample_type="conv", upsample_type="conv",
    )
    return "UNet2DModel", config


def unet_to_diffusers(unet: UNetModel) -> nn.Module:
    """A diffusers UNet2DModel / UNet2DConditionModel holding `unet`'s weights (float32)."""
    import diffusers

    class_name, config = diffusers_unet_config(unet)
    state = to_diffusers_state(unet.state_dict(), unet_weight_pairs(unet), "UNet")
    with torch.device("meta"):
        converted = getattr(diffusers, class_name)(**config)
    converted.load_state_dict({key: value.float() for key, value in state.items()}, strict=True, assign=True)
    return converted.eval()


# ----------------------------------------------------------------------------- diffusers -> ldm_lite

# Options of a diffusers UNet config that ldm_lite's UNetModel computes only at these values.
FIXED_OPTIONS: dict[str, Any] = {
    "center_input_sample": False, "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "act_fn": "silu", "norm_eps": GROUP_NORM_EPS, "time_embedding_type": "positional",
    "time_embedding_dim": None, "class_embed_type": None, "downsample_type": "conv", "upsample_type": "conv",
    "add_attention": True, "only_cross_attention": False, "dual_cross_attention": False, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "addition_embed_type": None, "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0, "time_embedding_act_fn": None, "timestep_post_act": None,
    "time_cond_proj_dim": None, "conv_in_kernel": 3, "conv_out_kernel": 3, "attention_type": "default",
    "class_embeddings_concat": False, "mid_block_only_cross_attention": None, "cross_attention_norm": None,
    "reverse_transformer_layers_per_block": None,
}
BLOCK_TYPES = {
    "UNet2DModel": ({"DownBlock2D": False, "AttnDownBlock2D": True}, {"UpBlock2D": False, "AttnUpBlock2D": True},
                    "UNetMidBlock2D"),
    "UNet2DConditionModel": ({"DownBlock2D": False, "CrossAttnDownBlock2D": True},
                             {"UpBlock2D": False, "CrossAttnUpBlock2D": True}, "UNetMidBlock2DCrossAttn"),
}


def _per_level(value: Any, levels: int, name: str) -> list[Any]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * levels
    if len(values) != levels:
        raise ConversionError(f"{name} has {len(values)} entries for {levels} levels")
    return values


def _one_value(value: Any, levels: int, name: str, ldm_name: str) -> Any:
    values = set(_per_level(value, levels, name))
    if len(values) != 1:
        raise ConversionError(f"{name} varies per level ({sorted(values)}): ldm_lite's UNetModel has one {ldm_name}")
    return values.pop()


def _square_size(size: Any) -> int | None:
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ConversionError(f"sample_size {list(size)} is not square: ldm_lite's UNetModel has one image_size")
        return int(size[0])
    return size


def unet_params_from_diffusers(class_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """`UNetModel` parameters computing what the diffusers UNet of `class_name` and `config` computes;
    ConversionError (one line) for what ldm_lite's UNet cannot express."""
    if class_name not in BLOCK_TYPES:
        raise ConversionError(f"a diffusers {class_name} is not converted: only UNet2DModel and UNet2DConditionModel")
    for option, expected in FIXED_OPTIONS.items():
        value = config.get(option, expected)
        if value != expected and not (isinstance(value, (list, tuple)) and set(value) <= {expected}):
            raise ConversionError(f"{class_name} option {option}={value!r} has no ldm_lite counterpart "
                                  f"(UNetModel computes {option}={expected!r})")
    down_types, up_types, middle_type = BLOCK_TYPES[class_name]
    channels = list(config["block_out_channels"])
    levels = len(channels)
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    unknown = [kind for kind in down if kind not in down_types] + [kind for kind in up if kind not in up_types]
    if unknown:
        raise ConversionError(f"{class_name} block type {unknown[0]} has no ldm_lite counterpart "
                              f"(it builds {', '.join([*down_types, *up_types])})")
    if config.get("mid_block_type", middle_type) != middle_type:
        raise ConversionError(f"mid_block_type {config['mid_block_type']} has no ldm_lite counterpart ({middle_type})")
    attention = [down_types[kind] for kind in down]
    if attention != [up_types[kind] for kind in up][::-1]:
        raise ConversionError(f"attention sits at other levels in the encoder ({down}) than in the decoder ({up}): "
                              "ldm_lite's UNetModel puts it at the same resolutions in both")
    if any(channel % channels[0] for channel in channels):
        raise ConversionError(f"block_out_channels {channels} are not multiples of the first: ldm_lite's UNetModel "
                              "has model_channels x channel_mult")
    groups = config.get("norm_num_groups", 32)
    if config.get("attn_norm_num_groups") not in (None, groups):
        raise ConversionError(f"attn_norm_num_groups {config['attn_norm_num_groups']} differs from norm_num_groups "
                              f"{groups}: ldm_lite's UNetModel uses one norm_num_groups")
    params: dict[str, Any] = dict(
        image_size=_square_size(config.get("sample_size")), in_channels=config["in_channels"],
        out_channels=config["out_channels"], model_channels=channels[0],
        channel_mult=[channel // channels[0] for channel in channels],
        num_res_blocks=_one_value(config.get("layers_per_block", 2), levels, "layers_per_block", "num_res_blocks"),
        attention_resolutions=[2 ** level for level, attends in enumerate(attention) if attends],
        dropout=config.get("dropout", 0.0), num_classes=config.get("num_class_embeds"),
        use_scale_shift_norm=_time_scale_shift(config.get("resnet_time_scale_shift", "default")),
        norm_num_groups=groups, legacy=True,
    )
    if class_name == "UNet2DModel":
        head_width = config.get("attention_head_dim", 8)
        if head_width is None:  # one head per attention layer, as wide as its channels
            params.update(num_heads=1)
        else:
            params.update(num_head_channels=head_width)
        return params
    context_dim = config.get("cross_attention_dim", 1280)
    if isinstance(context_dim, (list, tuple)):
        context_dim = _one_value(context_dim, levels, "cross_attention_dim", "context_dim")
    heads = _per_level(config.get("num_attention_heads") or config.get("attention_head_dim", 8), levels,
                       "attention_head_dim")
    used = [(channel, count) for channel, count, attends in zip(channels, heads, attention) if attends]
    used.append((channels[-1], heads[-1]))  # the middle block
    if len({count for _, count in used}) == 1:
        params.update(num_heads=used[0][1])
    elif len({channel // count for channel, count in used}) == 1 and all(channel % count == 0 for channel, count in used):
        params.update(num_head_channels=used[0][0] // used[0][1])
    else:
        raise ConversionError(f"heads per level {heads} over channels {channels} are neither one count nor one "
                              "width: ldm_lite's UNetModel has num_heads or num_head_channels")
    depth = config.get("transformer_layers_per_block", 1)
    params.update(use_spatial_transformer=True, context_dim=context_dim,
                  transformer_depth=_one_value(depth, levels, "transformer_layers_per_block", "transformer_depth"))
    return params


def _time_scale_shift(value: str) -> bool:
    if value not in ("default", "scale_shift"):
        raise ConversionError(f"resnet_time_scale_shift={value!r} has no ldm_lite counterpart ('default' or 'scale_shift')")
    return value == "scale_shift"


def _linear_projection_as_conv(state: dict[str, torch.Tensor], unet: UNetModel) -> dict[str, torch.Tensor]:
    """A Transformer2DModel with use_linear_projection=True holds proj_in/proj_out as Linear weights (out, in):
    the same map as ldm_lite's 1x1 convolutions (out, in, 1, 1)."""
    own = unet.state_dict()
    return {key: value[..., None, None] if value.ndim == 2 and own.get(key, value).ndim == 4 else value
            for key, value in state.items()}


def load_unet_weights(unet: UNetModel, state: Mapping[str, torch.Tensor], what: str = "diffusers UNet") -> UNetModel:
    """Load the diffusers-layout weights `state` into `unet` (built with `unet_params_from_diffusers`)."""
    converted = from_diffusers_state(dict(state), unet_weight_pairs(unet), what)
    return load_into(unet, _linear_projection_as_conv(converted, unet), what)


def unet_from_diffusers_state(class_name: str, config: Mapping[str, Any],
                              state: Mapping[str, torch.Tensor]) -> tuple[UNetModel, dict[str, Any]]:
    """(UNetModel with the weights of a diffusers UNet, its parameters for a config)."""
    params = unet_params_from_diffusers(class_name, config)
    return load_unet_weights(UNetModel(**params), state, f"diffusers {class_name}").eval(), params
