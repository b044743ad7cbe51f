"""ldm_lite's first stages (the original's `AutoencoderKL`, `VQModel(Interface)`) <-> diffusers'
`AutoencoderKL` and `VQModel`.

| ldm_lite | diffusers |
|---|---|
| `encoder.down.l.block.i`, `.attn.i`, `.downsample.conv` | `encoder.down_blocks.l.resnets.i`, `.attentions.i`, `.downsamplers.0.conv` |
| `encoder.mid.block_1`, `.attn_1`, `.block_2` | `encoder.mid_block.resnets.0`, `.attentions.0`, `.resnets.1` |
| `encoder.norm_out` | `encoder.conv_norm_out` |
| `decoder.up.l.*` (l = 0 is the full resolution) | `decoder.up_blocks.(L-1-l).*` (deepest first) |
| `decoder.up.l.upsample.conv` | `decoder.up_blocks.(L-1-l).upsamplers.0.conv` |
| ResnetBlock `nin_shortcut` | ResnetBlock2D `conv_shortcut` |
| AttnBlock `norm`, `q`, `k`, `v`, `proj_out` (1x1 Conv2d) | Attention `group_norm`, `to_q`, `to_k`, `to_v`, `to_out.0` (Linear) |
| `quant_conv`, `post_quant_conv`, `quantize.embedding` | the same |

Both downsample by padding right and bottom by one pixel before a stride-2 convolution (diffusers:
`downsample_padding=0`), use GroupNorm with eps 1e-6 and single-head attention. The LDM's
`scale_factor` becomes the config's `scaling_factor`."""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from ldm_lite.diffusers_interop.common import ConversionError, WeightPair, from_diffusers_state, load_into, \
    to_diffusers_state
from ldm_lite.models.autoencoder import AutoencoderKL, VQModel, VQModelInterface
from ldm_lite.modules.autoencoder_nets import AttnBlock, ResnetBlock


def _resnet_pairs(ours: str, theirs: str, block: ResnetBlock) -> list[WeightPair]:
    pairs = [WeightPair(f"{ours}.{name}", f"{theirs}.{name}") for name in ("norm1", "conv1", "norm2", "conv2")]
    if block.in_channels != block.out_channels:
        pairs.append(WeightPair(f"{ours}.nin_shortcut", f"{theirs}.conv_shortcut"))
    return pairs


def _attention_pairs(ours: str, theirs: str) -> list[WeightPair]:
    pairs = [WeightPair(f"{ours}.norm", f"{theirs}.group_norm")]
    for mine, their in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")):
        pairs.append(WeightPair(f"{ours}.{mine}", f"{theirs}.{their}", "conv_as_linear", kernel_dims=2))
    return pairs


def _middle_pairs(ours: str, theirs: str, middle: nn.Module) -> list[WeightPair]:
    pairs = _resnet_pairs(f"{ours}.block_1", f"{theirs}.resnets.0", middle.block_1)
    if isinstance(middle.attn_1, AttnBlock):
        pairs += _attention_pairs(f"{ours}.attn_1", f"{theirs}.attentions.0")
    return pairs + _resnet_pairs(f"{ours}.block_2", f"{theirs}.resnets.1", middle.block_2)


def _level_pairs(ours: str, theirs: str, level: nn.Module, resample: str) -> list[WeightPair]:
    pairs = []
    for index, block in enumerate(level.block):
        pairs += _resnet_pairs(f"{ours}.block.{index}", f"{theirs}.resnets.{index}", block)
    for index, attention in enumerate(level.attn):
        if isinstance(attention, AttnBlock):
            pairs += _attention_pairs(f"{ours}.attn.{index}", f"{theirs}.attentions.{index}")
    if hasattr(level, resample):
        direction = "downsamplers" if resample == "downsample" else "upsamplers"
        pairs.append(WeightPair(f"{ours}.{resample}.conv", f"{theirs}.{direction}.0.conv"))
    return pairs


def autoencoder_weight_pairs(model: AutoencoderKL | VQModel) -> list[WeightPair]:
    """The table of every weight of the first stage `model` and its diffusers name (see the module docstring)."""
    encoder, decoder = model.encoder, model.decoder
    levels = encoder.num_resolutions
    pairs = [WeightPair(f"{part}.{name}", f"{part}.{their}") for part in ("encoder", "decoder")
             for name, their in (("conv_in", "conv_in"), ("norm_out", "conv_norm_out"), ("conv_out", "conv_out"))]
    for level in range(levels):
        pairs += _level_pairs(f"encoder.down.{level}", f"encoder.down_blocks.{level}", encoder.down[level], "downsample")
        pairs += _level_pairs(f"decoder.up.{level}", f"decoder.up_blocks.{levels - 1 - level}", decoder.up[level], "upsample")
    pairs += _middle_pairs("encoder.mid", "encoder.mid_block", encoder.mid)
    pairs += _middle_pairs("decoder.mid", "decoder.mid_block", decoder.mid)
    pairs += [WeightPair("quant_conv", "quant_conv"), WeightPair("post_quant_conv", "post_quant_conv")]
    if isinstance(model, VQModel):
        pairs.append(WeightPair("quantize.embedding", "quantize.embedding"))
    return pairs


# ----------------------------------------------------------------------------- ldm_lite -> diffusers

def _groups(model: AutoencoderKL | VQModel) -> int:
    counts = sorted({module.num_groups for module in model.modules() if isinstance(module, nn.GroupNorm)})
    if len(counts) != 1:
        raise ConversionError(f"GroupNorm group counts differ across the first stage ({counts}): diffusers' "
                              "autoencoders use one norm_num_groups; choose channels that the groups divide")
    return counts[0]


def _attention_levels(stages: Any) -> list[bool]:
    return [any(isinstance(module, AttnBlock) for module in stage.attn) for stage in stages]


def diffusers_autoencoder_config(model: AutoencoderKL | VQModel, scaling_factor: float = 1.0) -> tuple[str, dict[str, Any]]:
    """(diffusers class name, config) of the first stage `model`; `scaling_factor` is the LDM's scale_factor."""
    encoder, decoder = model.encoder, model.decoder
    if not isinstance(model, (AutoencoderKL, VQModel)):
        raise ConversionError(f"a {type(model).__name__} first stage is not converted: only AutoencoderKL and VQModel")
    if decoder.give_pre_end or decoder.tanh_out:
        raise ConversionError("give_pre_end / tanh_out decoders have no diffusers counterpart")
    resamplers = [stage.downsample for stage in encoder.down if hasattr(stage, "downsample")]
    resamplers += [stage.upsample for stage in decoder.up if hasattr(stage, "upsample")]
    if any(not resampler.with_conv for resampler in resamplers):
        raise ConversionError("resamp_with_conv=False has no diffusers counterpart: its autoencoders resample "
                              "with convolutions")
    down_attention, up_attention = _attention_levels(encoder.down), _attention_levels(decoder.up)
    if down_attention != up_attention:
        raise ConversionError("attention at other resolutions in the encoder than in the decoder is not converted")
    if isinstance(encoder.mid.attn_1, AttnBlock) != isinstance(decoder.mid.attn_1, AttnBlock):
        raise ConversionError("middle attention in only one of encoder and decoder is not converted")
    blocks = {len(stage.block) for stage in encoder.down}
    channels = [stage.block[0].out_channels for stage in encoder.down]
    z_channels = decoder.conv_in.in_channels
    config: dict[str, Any] = dict(
        in_channels=encoder.conv_in.in_channels, out_channels=decoder.conv_out.out_channels,
        down_block_types=["AttnDownEncoderBlock2D" if attends else "DownEncoderBlock2D" for attends in down_attention],
        up_block_types=["AttnUpDecoderBlock2D" if attends else "UpDecoderBlock2D" for attends in up_attention[::-1]],
        block_out_channels=channels, layers_per_block=blocks.pop(), act_fn="silu", latent_channels=z_channels,
        norm_num_groups=_groups(model), sample_size=decoder.z_shape[-1] * 2 ** (encoder.num_resolutions - 1),
        scaling_factor=float(scaling_factor), mid_block_add_attention=isinstance(encoder.mid.attn_1, AttnBlock),
    )
    if isinstance(model, VQModel):
        if encoder.conv_out.out_channels != z_channels:
            raise ConversionError("a VQ encoder with double_z=True is not converted: diffusers' VQModel has double_z=False")
        config.update(num_vq_embeddings=model.quantize.n_e, vq_embed_dim=model.quantize.e_dim, norm_type="group")
        return "VQModel", config
    if encoder.conv_out.out_channels != 2 * z_channels:
        raise ConversionError("a KL encoder with double_z=False is not converted: diffusers' AutoencoderKL has double_z=True")
    if model.embed_dim != z_channels:
        raise ConversionError(f"embed_dim {model.embed_dim} != z_channels {z_channels}: diffusers' AutoencoderKL has "
                              "one latent_channels for both")
    config.update(use_quant_conv=True, use_post_quant_conv=True, force_upcast=False)
    return "AutoencoderKL", config


def autoencoder_to_diffusers(model: AutoencoderKL | VQModel, scaling_factor: float = 1.0) -> nn.Module:
    """A diffusers AutoencoderKL / VQModel holding `model`'s weights (float32)."""
    import diffusers

    class_name, config = diffusers_autoencoder_config(model, scaling_factor)
    state = to_diffusers_state(model.state_dict(), autoencoder_weight_pairs(model), "first stage")
    with torch.device("meta"):
        converted = getattr(diffusers, class_name)(**config)
    converted.load_state_dict({key: value.float() for key, value in state.items()}, strict=True, assign=True)
    return converted.eval()


# ----------------------------------------------------------------------------- diffusers -> ldm_lite

DOWN_TYPES = {"DownEncoderBlock2D": False, "AttnDownEncoderBlock2D": True}
UP_TYPES = {"UpDecoderBlock2D": False, "AttnUpDecoderBlock2D": True}


def autoencoder_params_from_diffusers(class_name: str, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(ldm_lite target, params) of the first stage that computes what the diffusers `class_name` computes."""
    if class_name not in ("AutoencoderKL", "VQModel"):
        raise ConversionError(f"a diffusers {class_name} is not converted: only AutoencoderKL and VQModel")
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    unknown = [kind for kind in down if kind not in DOWN_TYPES] + [kind for kind in up if kind not in UP_TYPES]
    if unknown:
        raise ConversionError(f"{class_name} block type {unknown[0]} has no ldm_lite counterpart")
    attention = [DOWN_TYPES[kind] for kind in down]
    if attention != [UP_TYPES[kind] for kind in up][::-1]:
        raise ConversionError(f"attention at other levels in the encoder ({down}) than in the decoder ({up}) "
                              "is not converted")
    for option, expected in (("act_fn", "silu"), ("norm_type", "group"), ("shift_factor", None),
                             ("use_quant_conv", True), ("use_post_quant_conv", True), ("lookup_from_codebook", False),
                             ("latents_mean", None), ("latents_std", None)):
        if config.get(option, expected) != expected:
            raise ConversionError(f"{class_name} option {option}={config[option]!r} has no ldm_lite counterpart "
                                  f"({expected!r})")
    channels = list(config["block_out_channels"])
    if any(channel % channels[0] for channel in channels):
        raise ConversionError(f"block_out_channels {channels} are not multiples of the first: ldm_lite's autoencoder "
                              "has ch x ch_mult")
    levels = len(channels)
    size = config.get("sample_size", 32)
    size = size[0] if isinstance(size, (list, tuple)) else size
    size = max(size, 2 ** (levels - 1)) // 2 ** (levels - 1) * 2 ** (levels - 1)  # a multiple of the factor f
    latent = config.get("latent_channels", 4)
    groups = config.get("norm_num_groups", 32)
    if any(math.gcd(groups, channel) != groups for channel in channels):
        raise ConversionError(f"norm_num_groups {groups} does not divide block_out_channels {channels}")
    ddconfig = dict(double_z=class_name == "AutoencoderKL", z_channels=latent, resolution=size,
                    in_channels=config.get("in_channels", 3), out_ch=config.get("out_channels", 3), ch=channels[0],
                    ch_mult=[channel // channels[0] for channel in channels],
                    num_res_blocks=config.get("layers_per_block", 1),
                    attn_resolutions=[size // 2 ** level for level, attends in enumerate(attention) if attends],
                    attn_type="vanilla" if config.get("mid_block_add_attention", True) else "none",
                    dropout=0.0, num_groups=groups)
    if not config.get("mid_block_add_attention", True) and any(attention):
        raise ConversionError("attention in the levels but not in the middle has no ldm_lite counterpart "
                              "(attn_type 'none' removes both)")
    lossconfig = {"target": "torch.nn.Identity"}
    if class_name == "VQModel":
        embed_dim = config.get("vq_embed_dim") or latent
        return "ldm_lite.models.autoencoder.VQModelInterface", dict(
            embed_dim=embed_dim, n_embed=config.get("num_vq_embeddings", 256), ddconfig=ddconfig, lossconfig=lossconfig)
    return "ldm_lite.models.autoencoder.AutoencoderKL", dict(embed_dim=latent, ddconfig=ddconfig, lossconfig=lossconfig)


def load_autoencoder_weights(model: AutoencoderKL | VQModel, state: Mapping[str, torch.Tensor],
                             what: str = "diffusers autoencoder") -> AutoencoderKL | VQModel:
    """Load the diffusers-layout weights `state` into the first stage `model`."""
    return load_into(model, from_diffusers_state(dict(state), autoencoder_weight_pairs(model), what), what)


def autoencoder_from_diffusers_state(class_name: str, config: Mapping[str, Any], state: Mapping[str, torch.Tensor]
                                     ) -> tuple[AutoencoderKL | VQModelInterface, dict[str, Any]]:
    """(ldm_lite first stage with the weights of a diffusers autoencoder, its {target, params} config)."""
    target, params = autoencoder_params_from_diffusers(class_name, config)
    model = VQModelInterface(**params) if class_name == "VQModel" else AutoencoderKL(**params)
    load_autoencoder_weights(model, state, f"diffusers {class_name}")
    return model.eval(), {"target": target, "params": params}
