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

from ldm_lite.checkpoint import first_stage_prefixes, load_model_folder, save_model
from ldm_lite.config import load_config

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


def inference_config(config: DictConfig, first_stage_weights: str | None = None) -> DictConfig:
    """The `model` section of a training config, made self-contained for a model folder; with
    `first_stage_weights`, the first stage is read from that (shipped) file instead."""
    model = _without_checkpoint_paths(OmegaConf.to_container(config.model, resolve=True))
    params = model.get("params", {})
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
