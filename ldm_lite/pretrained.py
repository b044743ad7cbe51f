"""The models notebooks and scripts build on: shipped with the repository under `models/`, trained
earlier under `outputs/models/`, or trained now. `load_or_train` tries them in that order, so no
notebook depends on another notebook having been run first.

A model folder holds `config.yaml` (an inference config: EMA weights already swapped in, no
training-only paths) and `model.safetensors`, in the original repository's layout:
`models/first_stage_models/<name>/` and `models/ldm/<name>/`."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable

import torch
from omegaconf import DictConfig, OmegaConf

from ldm_lite.checkpoint import first_stage_prefixes, load_model_folder, load_state_dict_file, load_weights, save_model
from ldm_lite.config import load_config
from ldm_lite.util import instantiate_from_config

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODELS = REPOSITORY_ROOT / "models"
TRAINED_MODELS = REPOSITORY_ROOT / "outputs" / "models"
KINDS = ("first_stage_models", "ldm")


def find_model(kind: str, name: str) -> Path | None:
    """The folder of model `name` (shipped first, then trained here), or None."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind '{kind}': use one of {', '.join(KINDS)}")
    for root in (SHIPPED_MODELS, TRAINED_MODELS):
        folder = root / kind / name
        if (folder / "config.yaml").is_file() and any((folder / weights).is_file()
                                                       for weights in ("model.safetensors", "model.ckpt")):
            return folder
    return None


def _without_checkpoint_paths(node: Any) -> Any:
    """Drop `ckpt_path` entries: an exported model's file holds all its weights, first stage included."""
    if isinstance(node, dict):
        return {key: _without_checkpoint_paths(value) for key, value in node.items() if key != "ckpt_path"}
    if isinstance(node, list):
        return [_without_checkpoint_paths(value) for value in node]
    return node


FIRST_STAGE_FROM_FOLDER = "ldm_lite.pretrained.first_stage_from_folder"


def _existing_folder(folder: str | Path) -> Path | None:
    """`folder` relative to the working directory, else to the repository root, if it holds a model."""
    for candidate in (Path(folder), REPOSITORY_ROOT / folder):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def first_stage_config_from_folder(folder: str | Path, made_by: str | None = None) -> dict[str, Any]:
    """The `{target, params}` of the autoencoder saved in model folder `folder`, with `params.ckpt_path`
    naming its weights and `lossconfig` made an identity (a frozen first stage trains no loss)."""
    found = _existing_folder(folder)
    weights = next((found / name for name in ("model.safetensors", "model.ckpt")
                    if (found / name).is_file()), None) if found is not None else None
    if weights is None:
        how = f"make it with `{made_by}`" if made_by else "train and export the autoencoder first (scripts/export_model.py)"
        raise FileNotFoundError(f"first stage '{folder}' does not exist yet (no config.yaml + model.safetensors there): {how}")
    model = OmegaConf.to_container(OmegaConf.load(found / "config.yaml").model, resolve=True)
    params = dict(model.get("params") or {})
    params.update(lossconfig={"target": "torch.nn.Identity"}, ckpt_path=str(weights))
    return {"target": model["target"], "params": params}


def first_stage_from_folder(folder: str | Path, image_size: int | None = None, latent_size: int | None = None,
                            latent_channels: int | None = None, made_by: str | None = None) -> torch.nn.Module:
    """The frozen first stage of an LDM config, read from the model folder an autoencoder run was exported
    to (its architecture from `config.yaml`, its weights beside it), so that the LDM config never repeats
    the autoencoder's sizes. `image_size`, `latent_size` and `latent_channels` (the LDM's data size and
    `image_size` / `channels`) are checked against it; `made_by` is the command that makes the folder,
    named when it is missing or trained at another size."""
    config = first_stage_config_from_folder(folder, made_by)
    params = dict(config["params"])
    weights = params.pop("ckpt_path")
    ddconfig = params.get("ddconfig") or {}
    trained_on = ddconfig.get("resolution")
    if image_size is not None and trained_on is not None and trained_on != image_size:
        retrain = f"`{made_by} SIZE={image_size}`" if made_by else "its config"
        raise ValueError(f"first stage '{folder}' was trained on {trained_on}x{trained_on} images, these are "
                         f"{image_size}x{image_size}: retrain it at {image_size} px ({retrain}), or train the LDM "
                         f"at {trained_on} px")
    factor = 2 ** (len(ddconfig.get("ch_mult", [1])) - 1)  # one downsampling per level after the first
    if image_size is not None and latent_size is not None and image_size != latent_size * factor:
        raise ValueError(f"{image_size} px images make {image_size // factor}x{image_size // factor} latents with "
                         f"this f={factor} first stage, but model.params.image_size is {latent_size}: set "
                         f"model.params.image_size={image_size // factor}")
    channels = params.get("embed_dim")
    if latent_channels is not None and channels is not None and channels != latent_channels:
        raise ValueError(f"first stage '{folder}' makes {channels}-channel latents but model.params.channels is "
                         f"{latent_channels}: set model.params.channels={channels}")
    model = instantiate_from_config({"target": config["target"], "params": params})
    return load_weights(model, load_state_dict_file(weights), source=f"first stage '{weights}'")


def inference_config(config: DictConfig, first_stage_weights: str | None = None) -> DictConfig:
    """The `model` section of a training config, made self-contained for a model folder; with
    `first_stage_weights`, the first stage is read from that (shipped) file instead. A first stage
    read from a model folder (`first_stage_from_folder`) becomes that folder's own config."""
    model = _without_checkpoint_paths(OmegaConf.to_container(config.model, resolve=True))
    params = model.get("params", {})
    first_stage = params.get("first_stage_config")
    if isinstance(first_stage, dict) and first_stage.get("target") == FIRST_STAGE_FROM_FOLDER:
        params["first_stage_config"] = _without_checkpoint_paths(
            first_stage_config_from_folder(first_stage["params"]["folder"]))
    if "use_ema" in params:
        params["use_ema"] = False  # the exported weights are the EMA weights
    if "lossconfig" in params:
        params["lossconfig"] = {"target": "torch.nn.Identity"}  # training losses are not exported
    params.pop("train_decoder_only", None)  # a training option: the exported file holds the whole autoencoder
    if first_stage_weights is not None:
        params["first_stage_config"].setdefault("params", {})["ckpt_path"] = first_stage_weights
    return OmegaConf.create({"model": model})


def export_model(model: torch.nn.Module, config: DictConfig, folder: str | Path,
                 half_precision: bool = False, first_stage_weights: str | None = None) -> Path:
    """Save `model` for inference: EMA weights swapped in (when it has them), `model_ema.*` dropped,
    parameters in float16 when `half_precision` (buffers such as noise schedules stay float32).

    `first_stage_weights` (a path relative to the repository root, e.g. the shipped autoencoder's
    `models/first_stage_models/<name>/model.safetensors`) leaves the frozen first stage out of the
    file: the config points at it instead, so several LDMs share one copy."""
    exported = inference_config(config, first_stage_weights)
    left_out = ("model_ema.", "loss.") + first_stage_prefixes(exported.model)
    scope = model.ema_scope() if hasattr(model, "ema_scope") else contextlib.nullcontext()
    with scope:
        state = {key: value.detach().clone() for key, value in model.state_dict().items()
                 if not key.startswith(left_out)}
    if half_precision:
        parameter_names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
        state = {key: value.half() if key in parameter_names and value.is_floating_point() else value
                 for key, value in state.items()}
    return save_model(state, exported, folder)


def load_or_train(kind: str, name: str, config_path: str | Path, max_steps: int | None = None,
                  overrides: Iterable[str] = (), retrain: bool = False,
                  device: torch.device | str | None = None) -> torch.nn.Module:
    """Model `name` of `kind` ("first_stage_models" or "ldm"): loaded when shipped or trained
    before, else trained now with `config_path` (relative to the repository root) for `max_steps`
    and saved under `outputs/models/<kind>/<name>/` for the next notebook."""
    from ldm_lite.train import fit, make_logdir

    folder = None if retrain else find_model(kind, name)
    if folder is not None:
        print(f"Loading {kind}/{name} from {folder}")
        model = load_model_folder(folder)
    else:
        config = load_config([REPOSITORY_ROOT / config_path], overrides)
        if max_steps is not None:
            config.lightning.trainer.max_steps = max_steps
        print(f"Training {kind}/{name} from {config_path} for {config.lightning.trainer.max_steps} steps")
        model = fit(config, logdir=make_logdir(REPOSITORY_ROOT / "logs", name))
        folder = export_model(model, config, TRAINED_MODELS / kind / name)
        print(f"Saved {folder}")
        model = load_model_folder(folder)
    return model.to(device) if device is not None else model


def load_diffusers(folder: str | Path) -> torch.nn.Module:
    """A diffusers folder (saved by diffusers or downloaded from the Hub) as ldm_lite modules: a pipeline
    folder -> LatentDiffusion, a UNet folder -> UNetModel, an autoencoder folder -> the first stage
    (`ldm_lite.diffusers_interop.load`)."""
    from ldm_lite.diffusers_interop import load_diffusers as load

    return load(folder)
