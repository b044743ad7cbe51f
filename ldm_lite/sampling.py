"""Sampling from a trained (latent) diffusion model: find and load it, build its conditions, run a
sampler, decode, inpaint, and write images safely. The command-line scripts
(`scripts/txt2img.py`, `scripts/inpaint.py`, `scripts/sample_diffusion.py`) are thin layers over
these functions, and notebooks call them directly.

Errors a user can fix (a missing file, a config that does not fit its checkpoint, an image of the
wrong size ...) raise `SamplingError` (or the checkpoint module's `CheckpointError`) with one line
saying what is wrong and how to fix it."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from omegaconf import DictConfig, OmegaConf
from PIL import Image, UnidentifiedImageError

from ldm_lite.checkpoint import (CheckpointError, atomic_write, first_stage_prefixes, load_state_dict_file,
                                 load_training_checkpoint, load_weights)
from ldm_lite.data.transforms import pil_to_rgb_array
from ldm_lite.samplers import SAMPLERS, make_sampler
from ldm_lite.samplers.inpainting import composite
from ldm_lite.samplers.schedule import check_steps
from ldm_lite.util import (check_targets, default_device, instantiate_from_config, safe_targets_requested,
                           tensor_to_pil)

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
WEIGHT_NAMES = ("model.safetensors", "model.ckpt", "checkpoints/last.ckpt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CAPTION_KEYS = ("caption", "txt")


class SamplingError(ValueError):
    """Bad input to sampling; the message names the problem and the fix."""


# ----------------------------------------------------------------------------- loading

@dataclass
class LoadedModel:
    model: torch.nn.Module
    config: DictConfig
    weights: Path
    folder: Path  # the model folder or training log dir it came from
    global_step: int = 0  # from a training checkpoint; 0 when the weights file does not record it
    original: bool = False  # built from an original CompVis config (ldm.* targets)
    config_files: list[Path] = field(default_factory=list)


def find_model_files(resume: str | Path | None = None, config: str | Path | None = None,
                     ckpt: str | Path | None = None) -> tuple[list[Path], Path, Path]:
    """(config files, weights file, folder) for a model given as
    - `resume`: a model folder (`config.yaml` + `model.safetensors` or `model.ckpt`, the layout of
      `models/ldm/<name>/`), a training log dir (`configs/*.yaml` + `checkpoints/last.ckpt`), or a
      weights file inside either;
    - `config` + `ckpt`: explicit files (`ckpt` alone: its config is looked up beside it)."""
    if resume is None and ckpt is None:
        raise SamplingError("no model given: pass a model folder or log dir (-r), or --config and --ckpt")
    path = Path(ckpt if resume is None else resume)
    if not path.exists():
        raise SamplingError(f"'{path}' does not exist: give a model folder (config.yaml + model.safetensors), "
                            "a training log dir, or a checkpoint file")
    if path.is_dir():
        folder = path
        weights = next((folder / name for name in WEIGHT_NAMES if (folder / name).is_file()), None)
        if weights is None:
            raise SamplingError(f"'{folder}' holds no weights ({', '.join(WEIGHT_NAMES)}): train the model "
                                "or point to the weights file")
    else:
        weights = path
        folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if config is not None:
        config_files = [Path(config)]
        if not config_files[0].is_file():
            raise SamplingError(f"config '{config}' does not exist: check the --config path")
    elif (folder / "config.yaml").is_file():
        config_files = [folder / "config.yaml"]
    else:
        config_files = sorted((folder / "configs").glob("*.yaml"))
        if not config_files:
            raise SamplingError(f"no config found for '{weights}' (looked for {folder / 'config.yaml'} and "
                                f"{folder / 'configs'}/*.yaml): pass --config")
    return config_files, weights, folder


def _read_configs(config_files: Sequence[Path], overrides: Sequence[str] = ()) -> DictConfig:
    configs = []
    for path in config_files:
        try:
            configs.append(OmegaConf.load(path))
        except Exception as error:  # YAML errors carry the line number
            raise SamplingError(f"config '{path}' is not valid YAML: {str(error).splitlines()[0]}") from None
    for override in overrides:
        if "=" not in override:
            raise SamplingError(f"unexpected argument '{override}': config overrides are written dotted.key=value")
    config = OmegaConf.merge(*configs, OmegaConf.from_dotlist(list(overrides)))
    if "model" not in config or "target" not in config.model:
        raise SamplingError(f"config {', '.join(map(str, config_files))} has no model.target: "
                            "it is not a model config (see configs/latent-diffusion/)")
    return config


def load_for_sampling(resume: str | Path | None = None, config: str | Path | None = None,
                      ckpt: str | Path | None = None, device: torch.device | str | None = None,
                      overrides: Sequence[str] = (), safe_targets: bool | None = None) -> LoadedModel:
    """Build the model from its config, load its weights strictly and move it to `device`
    (default: `default_device()`). Accepts this project's and the original repository's configs
    and checkpoints (original `ldm.*` targets are translated). Configs are code: `safe_targets`
    (default: the LDM_LITE_SAFE_TARGETS variable) refuses targets outside this library."""
    config_files, weights, folder = find_model_files(resume, config, ckpt)
    config = _read_configs(config_files, overrides)
    if safe_targets if safe_targets is not None else safe_targets_requested():
        try:
            check_targets(config, where=str(config_files[0]))
        except ValueError as error:
            raise SamplingError(str(error)) from None
    try:
        model = instantiate_from_config(config.model)
    except (TypeError, ValueError, KeyError, FileNotFoundError) as error:
        raise SamplingError(f"cannot build the model of {config_files[0]}: {error}") from None
    if not all(hasattr(model, name) for name in ("apply_model", "alphas_cumprod", "parameterization")):
        raise SamplingError(f"{config_files[0]} builds a {type(model).__name__}, not a diffusion model: "
                            "give the config of an LDM (configs/latent-diffusion/)")
    global_step = 0
    if weights.suffix == ".safetensors":
        state_dict = load_state_dict_file(weights)
    else:
        checkpoint = load_training_checkpoint(weights)
        state_dict = checkpoint.get("state_dict", checkpoint)
        global_step = int(checkpoint.get("global_step", 0) or 0)
    load_weights(model, state_dict, strict=True, source=f"checkpoint '{weights}'",
                 optional_prefixes=first_stage_prefixes(config.model))
    model = model.to(torch.device(device) if device is not None else default_device()).eval()
    original = str(config.model.target).startswith("ldm.")
    return LoadedModel(model, config, weights, folder, global_step, original, list(config_files))


def default_model_folder(name: str) -> Path:
    """`models/ldm/<name>/` of this repository, or a clear error when it has not been made yet."""
    for base in (Path.cwd(), REPOSITORY_ROOT):
        folder = base / "models" / "ldm" / name
        if (folder / "config.yaml").is_file():
            return folder
    raise SamplingError(f"the default model models/ldm/{name}/ does not exist yet: pass --config and --ckpt "
                        f"(or -r <model folder>), or train it and save it there")


# ----------------------------------------------------------------------------- conditions

def downsampling_factor(model: torch.nn.Module) -> int:
    """f of the first stage (image side / latent side); 1 for pixel-space models."""
    encoder = getattr(getattr(model, "first_stage_model", None), "encoder", None)
    return 2 ** (encoder.num_resolutions - 1) if encoder is not None else 1


def is_inpainting_model(model: torch.nn.Module) -> bool:
    """Concat-conditioned on [masked-image latent, mask] (the original's inpainting model)."""
    return getattr(model, "conditioning_key", None) in ("concat", "hybrid") and \
        getattr(model, "cond_stage_key", None) == "masked_image"


def is_caption_model(model: torch.nn.Module) -> bool:
    return getattr(model, "cond_stage_key", None) in CAPTION_KEYS


def make_conditions(model: torch.nn.Module, batch_size: int, prompts: Sequence[str] | None = None,
                    class_labels: Sequence[int] | None = None, guidance_scale: float = 1.0) -> tuple[Any, Any]:
    """(cond, unconditional_cond) for a text, class or unconditional model; the second is None
    without guidance. prompts / class_labels are repeated to `batch_size` when shorter."""
    key = getattr(model, "conditioning_key", None)
    if key is None:
        if prompts or class_labels:
            raise SamplingError("this model is unconditional: drop --prompt / --classes")
        if guidance_scale != 1.0:
            raise SamplingError("guidance needs a conditional model: use --scale 1 for this unconditional model")
        return None, None
    if key == "concat":
        raise SamplingError("this model is conditioned on an image (concat): use scripts/inpaint.py")
    with torch.no_grad():
        if is_caption_model(model):
            if not prompts:
                raise SamplingError("this is a text-to-image model: give --prompt (or --prompts)")
            cond = model.get_learned_conditioning(_repeat(list(prompts), batch_size))
        else:
            if not class_labels:
                raise SamplingError("this is a class-conditional model: give --classes, e.g. --classes 0 3 7")
            labels = torch.tensor(_repeat(list(class_labels), batch_size), device=model.device)
            cond = model.get_learned_conditioning(labels)
        if guidance_scale == 1.0:
            return cond, None
        try:
            unconditional = model.get_unconditional_conditioning(batch_size)
        except ValueError as error:
            raise SamplingError(f"guidance needs a null condition, and this model has none ({error}); "
                                "use --scale 1") from None
    return cond, unconditional


def _repeat(values: list, count: int) -> list:
    return [values[index % len(values)] for index in range(count)]


# ----------------------------------------------------------------------------- sampling

def check_sampling_options(model: torch.nn.Module, sampler: str, steps: int, eta: float) -> None:
    """Reject a bad sampler, step count or eta before anything runs or is written."""
    if sampler not in SAMPLERS:
        raise SamplingError(f"unknown sampler '{sampler}': choose one of {', '.join(SAMPLERS)}")
    if sampler != "ddpm":
        try:
            check_steps(steps, model.num_timesteps)
        except ValueError as error:
            raise SamplingError(str(error)) from None
    if sampler in ("plms", "dpm") and eta != 0:
        raise SamplingError(f"the {sampler} sampler is deterministic: use eta 0 (or the ddim sampler for eta > 0)")
    if eta < 0:
        raise SamplingError(f"eta must be >= 0, got {eta}")


def latent_shape(model: torch.nn.Module, batch_size: int, height: int | None = None,
                 width: int | None = None) -> tuple[int, int, int, int]:
    """(B, C, h, w) of the latents for images of height x width (default: the training size)."""
    factor = downsampling_factor(model)
    size = model.image_size
    latent_height, latent_width = (size, size) if isinstance(size, int) else tuple(size)
    for name, value in (("height", height), ("width", width)):
        if value is not None and (value <= 0 or value % factor):
            raise SamplingError(f"image {name} {value} is not a positive multiple of the model's downsampling "
                                f"factor {factor}: use e.g. {max(factor, value - value % factor)}")
    if height is not None:
        latent_height = height // factor
    if width is not None:
        latent_width = width // factor
    return (batch_size, model.channels, latent_height, latent_width)


# ----------------------------------------------------------------------------- memory

# A block holds its input, its output and a few temporaries at once: the largest single activation
# of a forward, times WORKING_SET, plus the UNet's skip connections, is its peak. AttentionBlock
# (UNet) and AttnBlock (first stage) hand SDPA strided q, k, v, which only its math kernel takes: it
# holds (heads x tokens x tokens) matrices for the scores and the softmax at once (3 leaves some
# slack). tests/test_hardening.py checks the estimate against a measured peak.
WORKING_SET = 4
ATTENTION_MATRICES = 3
_ESTIMATES: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[float, float], tuple[float, float]]]" = \
    weakref.WeakKeyDictionary()


def _forward_bytes(network: torch.nn.Module, run: Callable[[], Any], pixels: int,
                   kept: Sequence[torch.nn.Module] = ()) -> tuple[float, float]:
    """Bytes of activations of one forward (`run`) of `network` over `pixels` pixels, as (bytes per
    pixel, bytes per pixel squared), from hooks: the outputs of the `kept` modules (alive until the
    end) plus WORKING_SET x the largest single output, and the largest attention matrices."""
    from ldm_lite.modules.attention import AttentionBlock
    from ldm_lite.modules.autoencoder_nets import AttnBlock

    outputs: list[int] = []
    kept_outputs: list[int] = []
    matrices: list[float] = []

    def record(sizes: list[int]) -> Callable:
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                sizes.append(output.numel() * output.element_size())
        return hook

    def record_attention(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        batch, tokens = output.shape[0], output[0, 0].numel()
        matrices.append(ATTENTION_MATRICES * batch * getattr(module, "num_heads", 1) * tokens**2 * output.element_size())

    modules = list(network.modules())
    handles = [module.register_forward_hook(record(outputs)) for module in modules if next(module.children(), None) is None]
    handles += [module.register_forward_hook(record(kept_outputs)) for module in kept]
    handles += [module.register_forward_hook(record_attention) for module in modules
                if isinstance(module, (AttentionBlock, AttnBlock))]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return (sum(kept_outputs) + WORKING_SET * max(outputs, default=0)) / pixels, max(matrices, default=0) / pixels**2


def _estimates(model: torch.nn.Module) -> tuple[tuple[float, float], tuple[float, float]]:
    """`_forward_bytes` of the UNet (per latent pixel) and of the first stage's decoder (per image
    pixel), for one image; measured once per model by a forward at a small size."""
    if model in _ESTIMATES:
        return _ESTIMATES[model]
    unet = model.model.diffusion_model
    parameter = next(unet.parameters())
    side = 2 ** len(unet.channel_mult)  # every level halves it, the deepest still has 2 x 2 pixels
    x = torch.zeros(1, unet.in_channels, side, side, device=parameter.device, dtype=parameter.dtype)
    inputs: dict[str, Any] = {"timesteps": torch.zeros(1, device=parameter.device, dtype=torch.long)}
    cross = next((module for name, module in unet.named_modules() if name.endswith("attn2")), None)
    if cross is not None:
        inputs["context"] = x.new_zeros(1, 77, cross.to_k.in_features)  # 77 tokens, as CLIP and BERT
    if unet.num_classes is not None:
        inputs["y"] = torch.zeros(1, device=parameter.device, dtype=torch.long)
    unet_bytes = _forward_bytes(unet, lambda: unet(x, **inputs), side**2, kept=unet.input_blocks)
    decoder_bytes = (0.0, 0.0)
    first_stage = getattr(model, "first_stage_model", None)
    if getattr(first_stage, "decoder", None) is not None:
        latent = x.new_zeros(1, model.channels, side, side)
        decoder_bytes = _forward_bytes(first_stage, lambda: model.decode_first_stage(latent),
                                       (side * downsampling_factor(model)) ** 2)
    _ESTIMATES[model] = (unet_bytes, decoder_bytes)
    return _ESTIMATES[model]


def sampling_memory(model: torch.nn.Module, batch_size: int, height: int, width: int, guided: bool) -> int:
    """Estimated peak bytes of activations (beyond the weights) for sampling `batch_size` images of
    height x width: the larger of the UNet's at the latent size (twice the batch with guidance) and
    the first stage decoder's at the image size."""
    (unet_linear, unet_square), (decoder_linear, decoder_square) = _estimates(model)
    factor = downsampling_factor(model)
    latent, image = (height // factor) * (width // factor), height * width
    unet = (unet_linear * latent + unet_square * latent**2) * batch_size * (2 if guided else 1)
    decoder = (decoder_linear * image + decoder_square * image**2) * batch_size
    return int(max(unet, decoder))


def available_memory(device: torch.device) -> int | None:
    """Free memory for `device` in bytes: CUDA's free memory, or on CPU the smaller of the system's
    MemAvailable and the cgroup's limit minus its use; None where it cannot be told (MPS, ...)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    amounts = []
    with contextlib.suppress(OSError, ValueError, StopIteration):
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        amounts.append(int(next(line for line in meminfo if line.startswith("MemAvailable:")).split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            amounts.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    return min(amounts) if amounts else None


def _readable_bytes(amount: float) -> str:
    return f"{amount / 2**30:.1f} GB" if amount >= 2**30 else f"{amount / 2**20:.0f} MB"


def check_memory(model: torch.nn.Module, batch_size: int, height: int, width: int, guided: bool) -> None:
    """Refuse, before any work, a request whose estimated memory (`sampling_memory`) exceeds what
    the model's device has free; the message names the largest size, and the most images at a
    time, that fit."""
    available = available_memory(model.device)
    needed = sampling_memory(model, batch_size, height, width, guided)
    if available is None or needed <= available:
        return
    multiple = downsampling_factor(model) * 2 ** (len(model.model.diffusion_model.channel_mult) - 1)

    def size(steps: int) -> tuple[int, int]:  # (height, width) of `steps` multiples in height, aspect kept
        return steps * multiple, max(multiple, round(width * steps / height) * multiple)

    low, high = 0, height // multiple  # the largest size that fits: a binary search (memory grows with size)
    while low < high:
        middle = (low + high + 1) // 2
        if sampling_memory(model, batch_size, *size(middle), guided) <= available:
            low = middle
        else:
            high = middle - 1
    fits = f"the largest size that fits is {size(low)[1]}x{size(low)[0]}" if low else "no size fits"
    at_a_time = available // max(1, sampling_memory(model, 1, height, width, guided))
    fewer = f", or {at_a_time} image(s) at a time at {width}x{height}" if 0 < at_a_time < batch_size else ""
    raise SamplingError(f"sampling {batch_size} image(s) of {width}x{height} needs about {_readable_bytes(needed)} "
                        f"of memory but {_readable_bytes(available)} is free on {model.device}: {fits} "
                        f"({batch_size} at a time){fewer}")


@torch.no_grad()
def sample_latents(model: torch.nn.Module, shape: Sequence[int], sampler: str = "ddim", steps: int = 50,
                   eta: float = 0.0, cond: Any = None, unconditional_cond: Any = None, guidance_scale: float = 1.0,
                   seed: int | None = None, x_T: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                   x0_known: torch.Tensor | None = None, resample_steps: int = 1,
                   callback: Callable | None = None, verbose: bool = False) -> torch.Tensor:
    """Latents from `sampler` ("ddim", "plms", "dpm", "ddpm"; ddpm always takes all T steps), with the EMA weights."""
    check_sampling_options(model, sampler, steps, eta)
    chosen = make_sampler(sampler, model, verbose=verbose)  # clips x0 for pixel-space models
    with model.ema_scope() if hasattr(model, "ema_scope") else contextlib.nullcontext():
        return chosen.sample(tuple(shape), cond=cond, unconditional_cond=unconditional_cond,
                             guidance_scale=guidance_scale, steps=None if sampler == "ddpm" else steps, eta=eta,
                             x_T=x_T, seed=seed, mask=mask, x0_known=x0_known, callback=callback,
                             resample_steps=resample_steps)


@torch.no_grad()
def decode_latents(model: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (NCHW, float32) from latents (identity for pixel-space models)."""
    decode = getattr(model, "decode_first_stage", None)
    images = decode(latents) if decode is not None else latents
    return images.float().clamp(-1, 1)


def sample_images(model: torch.nn.Module, batch_size: int, sampler: str = "ddim", steps: int = 50,
                  eta: float = 0.0, prompts: Sequence[str] | None = None, class_labels: Sequence[int] | None = None,
                  guidance_scale: float = 1.0, seed: int | None = None, height: int | None = None,
                  width: int | None = None, callback: Callable | None = None, verbose: bool = False) -> torch.Tensor:
    """Generate `batch_size` images in [-1, 1] from a text, class or unconditional model."""
    cond, unconditional = make_conditions(model, batch_size, prompts, class_labels, guidance_scale)
    shape = latent_shape(model, batch_size, height, width)
    factor = downsampling_factor(model)
    check_memory(model, batch_size, shape[2] * factor, shape[3] * factor, unconditional is not None)
    latents = sample_latents(model, shape, sampler, steps, eta, cond, unconditional, guidance_scale, seed,
                             callback=callback, verbose=verbose)
    return decode_latents(model, latents)


# ----------------------------------------------------------------------------- inpainting

def find_inpainting_pairs(indir: str | Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Pairs (`<n>.<ext>`, `<n>_mask.<ext>`) in `indir`, and the files that are not images (skipped).
    An image without a mask, or a mask without an image, is an error."""
    indir = Path(indir)
    if not indir.is_dir():
        raise SamplingError(f"input folder '{indir}' does not exist: give --indir with <n>.png and <n>_mask.png files")
    files = sorted(path for path in indir.iterdir() if path.is_file() and not path.name.startswith("."))
    skipped = [path for path in files if path.suffix.lower() not in IMAGE_SUFFIXES]
    images = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
    masks = {path.stem[: -len("_mask")]: path for path in images if path.stem.endswith("_mask")}
    pictures = {path.stem: path for path in images if not path.stem.endswith("_mask")}
    for stem, path in pictures.items():
        if stem not in masks:
            raise SamplingError(f"image '{path}' has no mask: add {indir / (stem + '_mask.png')} "
                                "(white = region to fill) or remove the image")
    for stem, path in masks.items():
        if stem not in pictures:
            raise SamplingError(f"mask '{path}' has no image: add {indir / (stem + '.png')} or remove the mask")
    if not pictures:
        raise SamplingError(f"no <n>.png + <n>_mask.png pairs in '{indir}'")
    return [(pictures[stem], masks[stem]) for stem in sorted(pictures)], skipped


def _open_image(path: Path, background: tuple[int, int, int]) -> np.ndarray:
    """Any image file as uint8 RGB (transparency composited on `background`, 16-bit scaled)."""
    try:
        with Image.open(path) as image:
            return pil_to_rgb_array(image, background)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise SamplingError(f"cannot read image '{path}' ({error}): replace it with a valid PNG") from None


def working_size(model: torch.nn.Module) -> tuple[int, int]:
    """(height, width) in pixels of the images the model was trained on (latent size x f)."""
    size = model.image_size
    latent_height, latent_width = (size, size) if isinstance(size, int) else tuple(size)
    factor = downsampling_factor(model)
    return latent_height * factor, latent_width * factor


def load_inpainting_pair(image_path: str | Path, mask_path: str | Path, factor: int = 1,
                         working: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """image (1, 3, H, W) in [-1, 1] and mask (1, 1, H, W) in {0, 1} (1 = fill: mask pixel >= 128).
    Any Pillow mode is read (16-bit greyscale scaled, transparency on white for the image and on
    black, i.e. keep, for the mask). H and W must be multiples of `factor`, unless the image is
    larger than `working` (height, width), the size `inpaint_any_size` then brings it to."""
    image_path, mask_path = Path(image_path), Path(mask_path)
    image, mask = _open_image(image_path, (255, 255, 255)), _open_image(mask_path, (0, 0, 0))
    (height, width), (mask_height, mask_width) = image.shape[:2], mask.shape[:2]
    if (height, width) != (mask_height, mask_width):
        raise SamplingError(f"mask '{mask_path}' is {mask_width}x{mask_height} but image '{image_path}' is "
                            f"{width}x{height}: make the mask the size of its image")
    larger = working is not None and (height > working[0] or width > working[1])
    if (width % factor or height % factor) and not larger:
        raise SamplingError(f"image '{image_path}' is {width}x{height}, not a multiple of the model's downsampling "
                            f"factor {factor}: crop or resize it to e.g. {width - width % factor}x{height - height % factor}")
    grey = np.asarray(Image.fromarray(mask).convert("L"), dtype=np.float32)
    pixels = rearrange(torch.from_numpy(image.astype(np.float32) / 127.5 - 1), "h w c -> 1 c h w")
    fill = rearrange(torch.from_numpy((grey >= 127.5).astype(np.float32)), "h w -> 1 1 h w")
    return pixels, fill


@torch.no_grad()
def inpaint(model: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor, sampler: str = "ddim",
            steps: int = 50, eta: float = 0.0, seed: int | None = None, resample_steps: int = 1,
            prompts: Sequence[str] | None = None, guidance_scale: float = 1.0, masked_fill: float = 0.0,
            verbose: bool = False) -> torch.Tensor:
    """Fill the region mask == 1 of `image` (NCHW in [-1, 1]); returns the composited result in [-1, 1].

    A concat-conditioned inpainting model gets [latent of the masked image, mask] as its condition
    (the masked image has `masked_fill` in the fill region: 0 for this project's datasets, -1 for
    the original's inpainting model). Any other model inpaints by latent blending, with RePaint
    resampling when `resample_steps` > 1. Either way the known pixels are pasted back at the end."""
    device = model.device
    image, mask = image.to(device), mask.to(device)
    batch_size = image.shape[0]
    shape = latent_shape(model, batch_size, image.shape[-2], image.shape[-1])
    if is_inpainting_model(model):
        if resample_steps != 1:
            raise SamplingError("resample_steps applies to latent blending, not to a trained inpainting model")
        masked_image = image * (1 - mask) + masked_fill * mask
        concat = model.get_inpainting_condition(masked_image, mask)
        cond: Any = concat
        unconditional = None
        if model.conditioning_key == "hybrid":
            text, null = make_conditions(model, batch_size, prompts or [""], None, guidance_scale)
            cond = {"c_concat": [concat], "c_crossattn": [text]}
            unconditional = None if null is None else {"c_concat": [concat], "c_crossattn": [null]}
        latents = sample_latents(model, shape, sampler, steps, eta, cond, unconditional, guidance_scale, seed,
                                 verbose=verbose)
    else:
        encoded = model.encode_first_stage(image)
        known = model.scale_factor * (encoded.mode() if hasattr(encoded, "mode") else encoded)
        # a latent pixel is filled when any image pixel it covers is
        factor = downsampling_factor(model)
        latent_mask = F.max_pool2d(mask, factor) if factor > 1 else mask
        cond = unconditional = None
        if is_caption_model(model):
            cond, unconditional = make_conditions(model, batch_size, prompts or [""], None, guidance_scale)
        elif getattr(model, "conditioning_key", None) is not None:  # class model: sample its "no class" mode
            try:
                cond = model.get_unconditional_conditioning(batch_size)
            except ValueError as error:
                raise SamplingError(f"inpainting by blending needs an unconditional mode of this model ({error})") from None
        latents = sample_latents(model, shape, sampler, steps, eta, cond, unconditional, guidance_scale, seed,
                                 mask=latent_mask, x0_known=known, resample_steps=resample_steps, verbose=verbose)
    return composite(decode_latents(model, latents), image, mask)


def shrink_to_working_size(model: torch.nn.Module, image: torch.Tensor,
                           mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """An image (N, 3, H, W) larger than the model's working size, brought inside it (aspect ratio
    kept, sides multiples of f): the image area-averaged, the mask max-pooled so that every pixel
    of the hole stays in the hole. None when it already fits."""
    (height, width), (working_height, working_width) = image.shape[-2:], working_size(model)
    if height <= working_height and width <= working_width:
        return None
    factor = downsampling_factor(model)
    scale = min(working_height / height, working_width / width)
    size = tuple(max(factor, int(side * scale) // factor * factor) for side in (height, width))
    return F.adaptive_avg_pool2d(image, size), F.adaptive_max_pool2d(mask, size)


def inpaint_any_size(model: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor,
                     **options: Any) -> torch.Tensor:
    """`inpaint` (same `options`) for an image of any size. One larger than the model's working size
    is inpainted at that size (`shrink_to_working_size`: memory stays that of the working size) and
    the fill is upsampled into the full-size image, whose known pixels are kept exactly."""
    shrunk = shrink_to_working_size(model, image, mask)
    if shrunk is None:
        return inpaint(model, image, mask, **options)
    result = inpaint(model, *shrunk, **options)
    fill = F.interpolate(result, size=tuple(image.shape[-2:]), mode="bicubic", align_corners=False).clamp(-1, 1)
    return composite(fill, image.to(fill.device), mask.to(fill.device))


# ----------------------------------------------------------------------------- writing

def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write one CHW image in [-1, 1] as PNG, atomically (a temporary file renamed into place)."""
    picture = tensor_to_pil(image)
    return atomic_write(path, lambda temporary: picture.save(temporary, format="PNG"))


def check_writable_folder(folder: str | Path, option: str) -> None:
    """Fail before sampling, not after, when `folder` (created later if missing) cannot be written:
    it or an ancestor is a file, or the nearest existing ancestor is read-only."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SamplingError(f"{option} '{folder}' cannot be created: '{existing}' is a file; choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SamplingError(f"{option} '{folder}' is not writable (no write permission on '{existing}'): "
                            "choose another folder")


def filename_from_prompt(prompt: str, max_length: int = 100) -> str:
    """The original names a txt2img grid `<prompt with - for spaces>.png`; also drop characters that
    are unsafe in file names."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "", prompt.strip().replace(" ", "-"))[:max_length].strip(".-")
    return name or "grid"


# ----------------------------------------------------------------------------- command lines

@contextlib.contextmanager
def command_line_errors(program: str, debug: bool = False) -> Iterator[None]:
    """Turn an exception into one line on stderr and exit status 1 (the traceback with `debug`)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:  # noqa: BLE001 - the top level of a command-line tool
        if debug:
            raise
        text = str(error).strip()
        message = text.splitlines()[0] if text else type(error).__name__
        if not isinstance(error, (SamplingError, CheckpointError, ValueError, FileNotFoundError)):
            message = f"{type(error).__name__}: {message} (rerun with --debug for the traceback)"
        print(f"{program}: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None
