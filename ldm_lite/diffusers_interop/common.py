"""What the UNet and autoencoder conversions share: the error type, the table of weight pairs
(an ldm_lite module <-> a diffusers module, and how their tensors relate) applied in either
direction, and reading a diffusers model folder (config.json + safetensors) without diffusers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from einops import rearrange
from safetensors.torch import load_file as load_safetensors


class ConversionError(ValueError):
    """A model that cannot be converted; the one-line message says what and why."""


@dataclass(frozen=True)
class WeightPair:
    """One module in both layouts.

    kind "rename": the same tensors under another prefix (a leaf layer or a whole subtree).
    kind "conv_as_linear": ldm_lite's 1x1 convolution is a diffusers Linear (kernel dims dropped).
    kind "qkv": ldm_lite's fused qkv 1x1 Conv1d of an AttentionBlock -> diffusers' to_q, to_k, to_v
    Linears under `theirs`; its output channels are ordered per head [q, k, v] (`per_head`, the
    original's legacy order) or [all q, all k, all v]."""

    ours: str
    theirs: str
    kind: str = "rename"
    kernel_dims: int = 0  # conv_as_linear: trailing kernel dimensions of our weight (1 for Conv1d, 2 for Conv2d)
    heads: int = 1  # qkv
    per_head: bool = True  # qkv


def _take(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Pop every tensor of `state` under module `prefix` (the module's own tensors and its subtree's)."""
    keys = [key for key in state if key.startswith(prefix + ".")]
    return {key[len(prefix) + 1:]: state.pop(key) for key in keys}


def _fused_qkv_order(pair: WeightPair) -> str:
    """How the 3C output channels of the fused qkv layer are ordered: head by head, [q, k, v] within
    each head (h heads of d channels), or all q, then all k, then all v."""
    return "(h three d) ..." if pair.per_head else "(three h d) ..."


def _split_qkv(tensor: torch.Tensor, pair: WeightPair) -> list[torch.Tensor]:
    """Fused (3C, ...) -> [q, k, v], each (C, ...) with its heads side by side, as to_q, to_k, to_v."""
    return list(rearrange(tensor, f"{_fused_qkv_order(pair)} -> three (h d) ...", three=3, h=pair.heads))


def _merge_qkv(parts: list[torch.Tensor], pair: WeightPair) -> torch.Tensor:
    """[q, k, v], each (C, ...) -> fused (3C, ...) (the inverse of `_split_qkv`)."""
    return rearrange(list(parts), f"three (h d) ... -> {_fused_qkv_order(pair)}", three=3, h=pair.heads)


def to_diffusers_state(state: Mapping[str, torch.Tensor], pairs: list[WeightPair], what: str) -> dict[str, torch.Tensor]:
    """ldm_lite tensors -> diffusers tensors by `pairs`; every tensor must be claimed by one pair."""
    remaining = dict(state)
    converted: dict[str, torch.Tensor] = {}
    for pair in pairs:
        tensors = _take(remaining, pair.ours)
        if pair.kind == "rename":
            converted.update({f"{pair.theirs}.{name}": value for name, value in tensors.items()})
        elif pair.kind == "conv_as_linear":
            converted.update({f"{pair.theirs}.{name}": value.flatten(1) if name == "weight" else value
                              for name, value in tensors.items()})
        else:  # qkv
            weight = tensors["weight"].flatten(1)
            for projection, part in zip(("to_q", "to_k", "to_v"), _split_qkv(weight, pair)):
                converted[f"{pair.theirs}.{projection}.weight"] = part.contiguous()
            for projection, part in zip(("to_q", "to_k", "to_v"), _split_qkv(tensors["bias"][:, None], pair)):
                converted[f"{pair.theirs}.{projection}.bias"] = part[:, 0].contiguous()
    if remaining:
        raise ConversionError(f"{what}: {len(remaining)} weights have no diffusers counterpart "
                              f"(e.g. {sorted(remaining)[0]})")
    return converted


def from_diffusers_state(state: Mapping[str, torch.Tensor], pairs: list[WeightPair], what: str) -> dict[str, torch.Tensor]:
    """diffusers tensors -> ldm_lite tensors by `pairs` (the inverse of `to_diffusers_state`)."""
    remaining = dict(state)
    converted: dict[str, torch.Tensor] = {}
    for pair in pairs:
        if pair.kind == "qkv":  # only the projections: the attention's norm and output have their own pairs
            tensors = {f"{projection}.{name}": value for projection in ("to_q", "to_k", "to_v")
                       for name, value in _take(remaining, f"{pair.theirs}.{projection}").items()}
        else:
            tensors = _take(remaining, pair.theirs)
        if pair.kind == "rename":
            converted.update({f"{pair.ours}.{name}": value for name, value in tensors.items()})
        elif pair.kind == "conv_as_linear":
            converted.update({f"{pair.ours}.{name}": value.reshape(*value.shape, *[1] * pair.kernel_dims)
                              if name == "weight" else value for name, value in tensors.items()})
        else:  # qkv
            try:
                weights = [tensors[f"{projection}.weight"] for projection in ("to_q", "to_k", "to_v")]
                biases = [tensors[f"{projection}.bias"][:, None] for projection in ("to_q", "to_k", "to_v")]
            except KeyError as missing:
                raise ConversionError(f"{what}: {pair.theirs} has no {missing.args[0]} (an attention without "
                                      "biases cannot become ldm_lite's AttentionBlock)") from None
            converted[f"{pair.ours}.weight"] = _merge_qkv(weights, pair)[..., None].contiguous()
            converted[f"{pair.ours}.bias"] = _merge_qkv(biases, pair)[:, 0].contiguous()
    if remaining:
        raise ConversionError(f"{what}: {len(remaining)} weights have no ldm_lite counterpart "
                              f"(e.g. {sorted(remaining)[0]})")
    return converted


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> torch.nn.Module:
    """Load `state` strictly, naming the first mismatch in one line."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(key for key in set(own) & set(state) if own[key].shape != state[key].shape)
    if missing or unexpected or wrong:
        detail = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected
                  else f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}")
        raise ConversionError(f"{what}: the converted weights do not fit the model built from its config ({detail})")
    module.load_state_dict(state, strict=True)
    return module


# ----------------------------------------------------------------------------- diffusers folders

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def read_config(folder: str | Path) -> dict[str, Any]:
    """`config.json` of a diffusers model folder."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConversionError(f"'{folder}' has no config.json: give a diffusers model folder "
                              "(config.json + diffusion_pytorch_model.safetensors)")
    return json.loads(path.read_text())


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a diffusers model folder: one safetensors file or safetensors shards with an index."""
    folder = Path(folder)
    single, index = folder / WEIGHTS_NAME, folder / f"{WEIGHTS_NAME}.index.json"
    if single.is_file():
        return load_safetensors(str(single))
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {key: value for shard in shards for key, value in load_safetensors(str(folder / shard)).items()}
    if (folder / "diffusion_pytorch_model.bin").is_file():
        raise ConversionError(f"'{folder}' holds pickled weights (diffusion_pytorch_model.bin), which ldm_lite does "
                              "not load: re-save the model with save_pretrained(..., safe_serialization=True)")
    raise ConversionError(f"'{folder}' has no {WEIGHTS_NAME}: give a diffusers model folder")
