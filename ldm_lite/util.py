"""Small helpers shared by the whole library: building objects from configs, seeding,
device choice and image grids."""
from __future__ import annotations

import importlib
import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from einops import rearrange, repeat
from PIL import Image

# Targets written in the original CompVis/latent-diffusion configs, mapped to this library.
# They let an original `config.yaml` be instantiated unchanged.
ORIGINAL_TARGETS: dict[str, str] = {
    "ldm.models.autoencoder.AutoencoderKL": "ldm_lite.models.autoencoder.AutoencoderKL",
    "ldm.models.autoencoder.VQModel": "ldm_lite.models.autoencoder.VQModel",
    "ldm.models.autoencoder.VQModelInterface": "ldm_lite.models.autoencoder.VQModelInterface",
    "ldm.models.autoencoder.IdentityFirstStage": "ldm_lite.models.autoencoder.IdentityFirstStage",
    "ldm.modules.losses.LPIPSWithDiscriminator": "ldm_lite.modules.losses.LPIPSWithDiscriminator",
    "ldm.modules.losses.VQLPIPSWithDiscriminator": "ldm_lite.modules.losses.VQLPIPSWithDiscriminator",
    "ldm.modules.losses.contperceptual.LPIPSWithDiscriminator": "ldm_lite.modules.losses.LPIPSWithDiscriminator",
    "ldm.modules.losses.vqperceptual.VQLPIPSWithDiscriminator": "ldm_lite.modules.losses.VQLPIPSWithDiscriminator",
    "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator": "ldm_lite.modules.losses.VQLPIPSWithDiscriminator",
    "ldm.modules.losses.contperceptual.DummyLoss": "ldm_lite.modules.losses.DummyLoss",
    "ldm.models.diffusion.ddpm.DDPM": "ldm_lite.models.diffusion.DDPM",
    "ldm.models.diffusion.ddpm.LatentDiffusion": "ldm_lite.models.diffusion.LatentDiffusion",
    "ldm.models.diffusion.ddpm.LatentInpaintDiffusion": "ldm_lite.models.diffusion.LatentDiffusion",
    "ldm.modules.diffusionmodules.openaimodel.UNetModel": "ldm_lite.modules.unet.UNetModel",
    "ldm.modules.encoders.modules.ClassEmbedder": "ldm_lite.modules.encoders.ClassEmbedder",
    "ldm.modules.encoders.modules.BERTEmbedder": "ldm_lite.modules.encoders.BERTEmbedder",
    "ldm.modules.encoders.modules.SpatialRescaler": "ldm_lite.modules.encoders.SpatialRescaler",
    "ldm.modules.diffusionmodules.model.Encoder": "ldm_lite.modules.autoencoder_nets.Encoder",
    "ldm.lr_scheduler.LambdaLinearScheduler": "ldm_lite.lr_schedule.LambdaLinearScheduler",
    "main.DataModuleFromConfig": "ldm_lite.data.DataModuleFromConfig",
    **{f"taming.data.faceshq.{name}": f"ldm_lite.data.original.{name}"
       for name in ("CelebAHQTrain", "CelebAHQValidation", "FFHQTrain", "FFHQValidation")},
    **{f"ldm.data.lsun.{name}{split}": f"ldm_lite.data.original.{name}{split}"
       for name in ("LSUNChurches", "LSUNBedrooms", "LSUNCats") for split in ("Train", "Validation")},
    **{f"ldm.data.imagenet.{name}": f"ldm_lite.data.original.{name}" for name in ("ImageNetTrain", "ImageNetValidation")},
}


def get_obj_from_str(target: str) -> Any:
    """Import `package.module.Name` and return `Name`; original `ldm.*` targets are translated."""
    target = ORIGINAL_TARGETS.get(target, target)
    module_name, _, attribute = target.rpartition(".")
    if not module_name:
        raise ValueError(f"target '{target}' is not a dotted path: write it as package.module.Name")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ValueError(f"unknown target '{target}': module '{module_name}' cannot be imported ({error})") from None
    if not hasattr(module, attribute):
        raise ValueError(f"unknown target '{target}': module '{module_name}' has no '{attribute}'")
    return getattr(module, attribute)


def instantiate_from_config(config: Mapping[str, Any], **extra_kwargs: Any) -> Any:
    """Build `target(**params, **extra_kwargs)` from a `{target, params}` mapping (OmegaConf or dict).

    Configs are code: `target` may name any importable callable, and it is called with `params`,
    as in the original (`target: os.system` with `params: {command: ...}` runs a shell command).
    Treat a config like a script and only use configs you trust; `check_targets` (on for model
    folders with LDM_LITE_SAFE_TARGETS=1) refuses targets outside this library and torch.nn.

    The two special values of the original configs are kept: `__is_first_stage__` and
    `__is_unconditional__` return None (the caller handles them)."""
    if config in ("__is_first_stage__", "__is_unconditional__"):
        return None
    if "target" not in config:
        raise ValueError("config has no 'target': expected a mapping with 'target' and optional 'params'")
    params = config.get("params", None) or {}
    if hasattr(params, "items") and not isinstance(params, dict):  # OmegaConf DictConfig
        from omegaconf import OmegaConf

        params = OmegaConf.to_container(params, resolve=True)
    return get_obj_from_str(config["target"])(**params, **extra_kwargs)


SAFE_TARGET_PREFIXES: tuple[str, ...] = ("ldm_lite.", "torch.nn.")


def safe_targets_requested() -> bool:
    """Whether LDM_LITE_SAFE_TARGETS asks model loaders to run `check_targets` (any value but '' and 0)."""
    return os.environ.get("LDM_LITE_SAFE_TARGETS", "") not in ("", "0")


def check_targets(config: Any, prefixes: tuple[str, ...] = SAFE_TARGET_PREFIXES, where: str = "config") -> None:
    """Allow-list mode: raise ValueError when any `target` in `config` (nested mappings and lists;
    original `ldm.*` targets translated first) names something outside `prefixes`."""
    if isinstance(config, Mapping):
        for key, value in config.items():
            if key == "target" and isinstance(value, str):
                target = ORIGINAL_TARGETS.get(value, value)
                if not target.startswith(prefixes):
                    raise ValueError(f"{where}.target '{value}' is outside the allowed targets "
                                     f"({', '.join(prefix + '*' for prefix in prefixes)}): configs are code; unset "
                                     "LDM_LITE_SAFE_TARGETS only for a config you trust")
            else:
                check_targets(value, prefixes, f"{where}.{key}")
    elif isinstance(config, Sequence) and not isinstance(config, str):
        for index, value in enumerate(config):
            check_targets(value, prefixes, f"{where}[{index}]")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def default_device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def count_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of `model` (only those with requires_grad when trainable_only)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def images_to_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """NCHW tensor in [-1, 1] -> one HWC uint8 grid of `nrow` images per row (default: square)."""
    images = images.detach().float().cpu().clamp(-1, 1)
    count, channels, height, width = images.shape
    if channels == 1:
        images = repeat(images, "n 1 h w -> n 3 h w")  # grey as RGB
    elif channels != 3:
        raise ValueError(f"images_to_grid needs 1 or 3 channels, got {channels}")
    nrow = nrow or max(1, int(np.ceil(np.sqrt(count))))
    rows = int(np.ceil(count / nrow))
    # One white tile per grid cell (blank ones fill the last row), each image in its tile's lower right
    # corner: `padding` white pixels above and to the left of it.
    tiles = torch.full((rows * nrow, 3, height + padding, width + padding), 255, dtype=torch.uint8)
    tiles[:count, :, padding:, padding:] = ((images + 1) * 127.5).round().to(torch.uint8)
    grid = rearrange(tiles, "(row col) c h w -> (row h) (col w) c", col=nrow)  # tiles side by side, HWC
    return np.pad(grid.numpy(), ((0, padding), (0, padding), (0, 0)), constant_values=255)  # the last border


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save an NCHW batch in [-1, 1] as one PNG grid; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(images_to_grid(images, nrow)).save(path)
    return path


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """One CHW tensor in [-1, 1] -> a PIL RGB image."""
    return Image.fromarray(images_to_grid(image[None], nrow=1, padding=0))


REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def resolve_path(path: str | Path) -> Path:
    """A path from a config: as given when it exists (relative to the working directory), else
    relative to the repository root, so configs work from notebooks/ as well as from the root."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return REPOSITORY_ROOT / path
