"""Saving and loading weights without ever executing code from a file.

- Training checkpoints (`last.ckpt`, `step=*.ckpt`) are `torch.save` dicts of tensors and plain
  Python values, written atomically (temporary file + fsync + rename), read with `weights_only=True`.
- Shipped models are `model.safetensors` beside a `config.yaml`.
- Original CompVis `.ckpt` files (pickled Lightning checkpoints) are read with `weights_only=True`
  too; their weights sit under `state_dict`, and first-stage files carry `loss.*` keys we drop."""
from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors

from ldm_lite.util import check_targets, instantiate_from_config, safe_targets_requested


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit its model; the message says how to fix it."""


class DiskFullError(OSError):
    """A file could not be written because its disk is full; the previous file, if any, is intact."""


# A write that failed with less than this free on its disk failed because the disk is full: torch's
# writer reports it as "[enforce fail at inline_container.cc] unexpected pos", without the errno.
FULL_DISK_MARGIN = 16 * 2**20


def disk_is_full(error: BaseException | None) -> bool:
    """Whether `error` says that a disk (or a quota) is full."""
    return isinstance(error, DiskFullError) or getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT)


def _failed_for_space(error: BaseException, folder: Path) -> bool:
    """Whether a write into `folder` that raised `error` failed because the disk is full."""
    if disk_is_full(error):
        return True
    try:
        return isinstance(error, (OSError, RuntimeError)) and shutil.disk_usage(folder).free < FULL_DISK_MARGIN
    except OSError:
        return False


def atomic_write(path: str | Path, write: Any) -> Path:
    """Call `write(temporary_path)`, fsync it and rename it onto `path`: readers never see a partial
    file. A full disk raises `DiskFullError` (the partial temporary file is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        full = _failed_for_space(error, path.parent)  # before the partial file is removed and frees space
        Path(temporary).unlink(missing_ok=True)
        if full:
            raise DiskFullError(f"the disk holding '{path.parent}' is full: '{path.name}' was not written "
                                "(the previous one, if any, is unchanged); free some space") from error
        raise
    return path


def save_training_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    return atomic_write(path, lambda temporary: torch.save(dict(state), temporary))


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_training_checkpoint` (or an original Lightning `.ckpt`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist: check the path (a log dir's checkpoints/last.ckpt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise CheckpointError(f"checkpoint '{path}' cannot be read: permission denied") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if unsafe:
            raise CheckpointError(
                f"checkpoint '{path}' cannot be read safely: it holds a {unsafe.group(1)} object, which loading with "
                "weights_only refuses (unpickling it could run code): re-save its state_dict with torch.save or as "
                ".safetensors"
            ) from None
        raise CheckpointError(
            f"checkpoint '{path}' is truncated or corrupt ({path.stat().st_size} bytes, not a complete torch.save "
            "file): use another checkpoint (e.g. a step=*.ckpt beside it) or copy the file again"
        ) from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from a `.safetensors` file or a `.ckpt`/`.pt` file (its `state_dict` entry if it has one)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file '{path}' does not exist: train the model or run scripts/download_models.sh")
    if path.suffix == ".safetensors":
        try:
            return load_safetensors(str(path))
        except SafetensorError as error:
            raise CheckpointError(f"weights file '{path}' is truncated or corrupt ({path.stat().st_size} bytes; "
                                  f"{_first_line(error)}): export or download it again") from None
    checkpoint = load_training_checkpoint(path)
    return checkpoint.get("state_dict", checkpoint)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def first_stage_prefixes(model_config: Mapping[str, Any]) -> tuple[str, ...]:
    """State-dict prefixes that an LDM's model folder may leave out: when the config names the
    first stage's own weights file (`first_stage_config.params.ckpt_path`; shipped LDMs share one
    autoencoder), the first stage, and the condition stage when it is that same first stage."""
    params = model_config.get("params") or {}
    first_stage = params.get("first_stage_config") or {}
    if not (isinstance(first_stage, Mapping) and (first_stage.get("params") or {}).get("ckpt_path")):
        return ()
    shared = params.get("cond_stage_config") == "__is_first_stage__"
    return ("first_stage_model.", "cond_stage_model.") if shared else ("first_stage_model.",)


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
                 source: str = "checkpoint", optional_prefixes: tuple[str, ...] = ()) -> torch.nn.Module:
    """Load `state_dict` into `model`, dropping the original first stages' `loss.*` training keys
    when the model has none, and naming the mismatch clearly when the layouts differ. Keys under
    `optional_prefixes` may be absent from the file (the model already holds them)."""
    own = model.state_dict()
    state_dict = {key: value for key, value in state_dict.items()
                  if not (key.startswith("loss.") and key not in own)}
    missing = sorted(key for key in set(own) - set(state_dict) if not key.startswith(optional_prefixes or ("\0",)))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_shape = sorted(key for key in set(own) & set(state_dict) if own[key].shape != state_dict[key].shape)
    if wrong_shape or (strict and (missing or unexpected)):
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            key = wrong_shape[0]
            details.append(f"{len(wrong_shape)} of another shape (e.g. {key}: "
                           f"{tuple(state_dict[key].shape)} in the file, {tuple(own[key].shape)} in the model)")
        raise CheckpointError(f"{source} does not fit the model built from its config: {', '.join(details)}; "
                              "use the config the checkpoint was trained with")
    model.load_state_dict(state_dict, strict=strict and len(state_dict) == len(own))
    return model


def load_model_from_config(config: DictConfig | Mapping[str, Any], checkpoint_path: str | Path | None = None,
                           strict: bool = True) -> torch.nn.Module:
    """Build `config.model` (a full experiment config, or a `{target, params}` mapping) and load its weights."""
    model_config = config["model"] if "model" in config else config
    model = instantiate_from_config(model_config)
    if checkpoint_path is not None:
        load_weights(model, load_state_dict_file(checkpoint_path), strict=strict,
                     source=f"checkpoint '{checkpoint_path}'", optional_prefixes=first_stage_prefixes(model_config))
    return model.eval()


def save_model(weights: torch.nn.Module | Mapping[str, torch.Tensor], config: DictConfig | Mapping[str, Any],
               folder: str | Path) -> Path:
    """Write `folder/config.yaml` and `folder/model.safetensors` (the layout of `models/ldm/<name>/`)
    from a model or a state dict."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"cannot write the model folder '{folder}': it is a file; give a folder path")
    folder.mkdir(parents=True, exist_ok=True)
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state.items()}
    atomic_write(folder / "model.safetensors", lambda temporary: save_safetensors(tensors, temporary))
    config = config if isinstance(config, DictConfig) else OmegaConf.create(dict(config))
    atomic_write(folder / "config.yaml", lambda temporary: OmegaConf.save(config, temporary))
    return folder


def load_model_folder(folder: str | Path, safe_targets: bool | None = None) -> torch.nn.Module:
    """Load a model saved by `save_model` (or an original `models/ldm/<name>/` with `model.ckpt`).
    `safe_targets` (default: the LDM_LITE_SAFE_TARGETS variable) refuses a config whose targets lie
    outside this library (`ldm_lite.util.check_targets`): configs are code."""
    folder = Path(folder)
    config_path = folder / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"model folder '{folder}' has no config.yaml: expected config.yaml + model.safetensors")
    weights = next((folder / name for name in ("model.safetensors", "model.ckpt") if (folder / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"model folder '{folder}' has no model.safetensors or model.ckpt: "
                              "train it (see the folder's README) or run scripts/download_models.sh")
    config = OmegaConf.load(config_path)
    if safe_targets if safe_targets is not None else safe_targets_requested():
        check_targets(config, where=str(config_path))
    return load_model_from_config(config, weights)
