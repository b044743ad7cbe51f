"""Export an ldm_lite model (a model folder or a main.py run) as a diffusers folder, in safetensors.

| ldm_lite model | diffusers folder | pipeline |
|---|---|---|
| unconditional LDM (KL or VQ first stage) | `unet/` (UNet2DModel), `vqvae/`, `scheduler/` | `LDMPipeline` (stock) |
| unconditional pixel-space model | `unet/`, `scheduler/` | `DDIMPipeline` (stock) |
| text (FrozenMiniLMEmbedder) | `unet/` (UNet2DConditionModel), `vae/`, `scheduler/`, `text_encoder/` (BertModel), `tokenizer/` | `LdmLitePipeline` (`ldm_lite_pipeline.py`, shipped in the folder) |
| class token (ClassEmbedder) | `unet/`, `vae/`, `scheduler/`, `class_embedder/` (ClassTokenEmbedder) | `LdmLitePipeline` |
| class label in the UNet ("adm") | `unet/` (num_class_embeds), `vae/`, `scheduler/` | `LdmLitePipeline` |
| inpainting by concatenation | `unet/` (in_channels = 2 z + 1), `vae/`, `scheduler/` | `LdmLitePipeline` |
| first stage alone | `config.json` + `diffusion_pytorch_model.safetensors` (AutoencoderKL / VQModel) | - |

`LDMTextToImagePipeline` expects the paper's LDMBert with 77 tokens and no attention mask; ldm-lite's text
models condition on MiniLM's states with the padding zeroed, so they get `LdmLitePipeline` (or the
component calls in the exported README) instead.

The scheduler is a DDIMScheduler with the original DDIM conventions: the training schedule (linear in
sqrt(beta) = "scaled_linear" with beta_start/end, Ho et al.'s linear = "linear", cosine =
"squaredcos_cap_v2", anything else as trained_betas), timestep_spacing "leading" with steps_offset=1,
set_alpha_to_one=False, prediction_type from the parameterization, clip_sample only for pixel-space
models (whose samplers clip x0). The LDM's scale_factor is the autoencoder's scaling_factor."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ldm_lite.checkpoint import load_model_from_config
from ldm_lite.diffusers_interop.autoencoder import autoencoder_to_diffusers
from ldm_lite.diffusers_interop.cards import write_export_card
from ldm_lite.diffusers_interop.common import ConversionError
from ldm_lite.diffusers_interop.unet import unet_to_diffusers
from ldm_lite.models.autoencoder import AutoencoderKL, IdentityFirstStage, VQModel
from ldm_lite.models.diffusion import make_beta_schedule
from ldm_lite.modules.encoders import ClassEmbedder, FrozenMiniLMEmbedder

COMPONENTS = Path(__file__).resolve().parent / "components"
PIPELINE_MODULE = "ldm_lite_pipeline"
CLASS_EMBEDDER_MODULE = "class_embedder"
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
# diffusers' name of each ldm_lite beta schedule (with beta_start/end where it has them)
BETA_SCHEDULES = {"linear": "scaled_linear", "sqrt_linear": "linear", "cosine": "squaredcos_cap_v2"}


@dataclass
class Export:
    """What was written: the folder, the pipeline that loads it, and the kind of model."""

    folder: Path
    pipeline: str | None  # "LDMPipeline", "DDIMPipeline", "LdmLitePipeline", or None for a first stage alone
    kind: str  # "unconditional", "text", "class", "inpainting" or "first stage"


# ----------------------------------------------------------------------------- the pieces

def scheduler_config(model: torch.nn.Module) -> dict[str, Any]:
    """The DDIMScheduler config that reproduces ldm_lite's DDIM sampler for `model` (see the module docstring)."""
    betas = model.betas.detach().double().cpu().numpy()
    timesteps = len(betas)
    config: dict[str, Any] = dict(num_train_timesteps=timesteps, timestep_spacing="leading", steps_offset=1,
                                  set_alpha_to_one=False, clip_sample=bool(model.clip_denoised), clip_sample_range=1.0,
                                  prediction_type=PREDICTION_TYPES[model.parameterization], thresholding=False,
                                  rescale_betas_zero_snr=False)
    for ours, theirs in BETA_SCHEDULES.items():
        candidate = make_beta_schedule(ours, timesteps, model.linear_start, model.linear_end)
        if np.allclose(candidate.astype(np.float32), betas, rtol=1e-6, atol=0):
            if theirs != "squaredcos_cap_v2":
                config.update(beta_start=float(model.linear_start), beta_end=float(model.linear_end))
            return dict(config, beta_schedule=theirs)
    return dict(config, beta_schedule="linear", trained_betas=betas.tolist())


def _condition_kind(model: torch.nn.Module) -> str:
    """"unconditional", "text", "class", "class label" (adm) or "inpainting"; ConversionError for the rest."""
    key = model.conditioning_key
    encoder = model.cond_stage_model
    if key is None:
        return "unconditional"
    if key == "concat" and model.cond_stage_key == "masked_image":
        return "inpainting"
    if key == "crossattn" and isinstance(encoder, FrozenMiniLMEmbedder):
        return "text"
    if key == "crossattn" and isinstance(encoder, ClassEmbedder):
        return "class"
    if key == "adm" and isinstance(encoder, torch.nn.Identity):
        return "class label"
    raise ConversionError(f"conditioning '{key}' with the condition encoder {type(encoder).__name__} (key "
                          f"'{model.cond_stage_key}') is not exported: text (FrozenMiniLMEmbedder), class tokens "
                          "(ClassEmbedder), class labels (adm), inpainting (concat) and unconditional models are")


def _save_tokenizer_and_text_encoder(encoder: FrozenMiniLMEmbedder, folder: Path) -> None:
    from transformers import BertTokenizerFast

    from ldm_lite.modules.encoders import minilm_folder

    encoder.encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)
    tokenizer = BertTokenizerFast.from_pretrained(minilm_folder(), model_max_length=encoder.max_length)
    tokenizer.save_pretrained(folder / "tokenizer")


def _save_class_embedder(encoder: ClassEmbedder, folder: Path) -> None:
    from ldm_lite.diffusers_interop.components.class_embedder import ClassTokenEmbedder

    table = encoder.embedding.weight.detach().float()
    embedder = ClassTokenEmbedder(num_embeddings=table.shape[0], embedding_dim=table.shape[1],
                                  null_class_index=encoder.null_index)
    embedder.embedding.weight.data.copy_(table)
    embedder.save_pretrained(folder / "class_embedder", safe_serialization=True)
    shutil.copy(COMPONENTS / f"{CLASS_EMBEDDER_MODULE}.py", folder / "class_embedder" / f"{CLASS_EMBEDDER_MODULE}.py")


def check_output_folder(folder: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty folder unless `overwrite` and it holds a diffusers export (so that a
    wrong path never deletes other files)."""
    if folder.exists() and not folder.is_dir():
        raise ConversionError(f"'{folder}' is a file: give a folder to write the diffusers model to")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise ConversionError(f"'{folder}' exists and is not empty: choose a new folder or pass --overwrite")
        if not any((folder / name).is_file() for name in ("model_index.json", "config.json")):
            raise ConversionError(f"'{folder}' is not a diffusers folder (no model_index.json or config.json): "
                                  "--overwrite replaces only an earlier export; choose a new folder")


def _prepare_output_folder(folder: Path, overwrite: bool) -> None:
    check_output_folder(folder, overwrite)
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


# ----------------------------------------------------------------------------- whole models

def export_latent_diffusion(model: torch.nn.Module, folder: str | Path, overwrite: bool = False) -> Export:
    """Write `model` (a LatentDiffusion, EMA weights used when it has them) as a diffusers pipeline folder."""
    import diffusers
    from diffusers import DDIMScheduler

    folder = Path(folder)
    kind = _condition_kind(model)  # fail before writing anything
    first_stage = model.first_stage_model
    pixel_space = isinstance(first_stage, IdentityFirstStage)
    if not pixel_space and not isinstance(first_stage, (AutoencoderKL, VQModel)):
        raise ConversionError(f"a {type(first_stage).__name__} first stage is not exported: AutoencoderKL, VQModel "
                              "or the identity (pixel space)")
    with model.ema_scope():
        unet = unet_to_diffusers(model.model.diffusion_model)
        vae = None if pixel_space else autoencoder_to_diffusers(first_stage, float(model.scale_factor))
    if kind == "unconditional":
        pipeline = "DDIMPipeline" if pixel_space else "LDMPipeline"
    else:
        pipeline = "LdmLitePipeline"
    vae_name = "vqvae" if pipeline == "LDMPipeline" else "vae"
    _prepare_output_folder(folder, overwrite)
    index: dict[str, Any] = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__}
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    index["unet"] = ["diffusers", type(unet).__name__]
    DDIMScheduler(**scheduler_config(model)).save_pretrained(folder / "scheduler")
    index["scheduler"] = ["diffusers", "DDIMScheduler"]
    if vae is not None:
        vae.save_pretrained(folder / vae_name, safe_serialization=True)
        index[vae_name] = ["diffusers", type(vae).__name__]
    if pipeline == "LdmLitePipeline":
        index["_class_name"] = [PIPELINE_MODULE, pipeline]
        index.setdefault("vae", [None, None])
        index.update(text_encoder=[None, None], tokenizer=[None, None], class_embedder=[None, None])
        if kind == "text":
            _save_tokenizer_and_text_encoder(model.cond_stage_model, folder)
            index.update(text_encoder=["transformers", "BertModel"], tokenizer=["transformers", "BertTokenizerFast"])
        elif kind == "class":
            _save_class_embedder(model.cond_stage_model, folder)
            index["class_embedder"] = [CLASS_EMBEDDER_MODULE, "ClassTokenEmbedder"]
        text_encoder = model.cond_stage_model if kind == "text" else None
        index.update(conditioning_key=model.conditioning_key,
                     zero_padding=bool(text_encoder.zero_padding) if text_encoder is not None else True,
                     masked_fill=0.0)
        shutil.copy(COMPONENTS / f"{PIPELINE_MODULE}.py", folder / f"{PIPELINE_MODULE}.py")
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return Export(folder, pipeline, "class" if kind == "class label" else kind)


def export_first_stage(model: AutoencoderKL | VQModel, folder: str | Path, overwrite: bool = False) -> Export:
    """Write a first stage alone as a diffusers AutoencoderKL / VQModel folder (scaling_factor 1: each LDM
    export carries its own scale factor in its `vae/`)."""
    folder = Path(folder)
    converted = autoencoder_to_diffusers(model, 1.0)
    _prepare_output_folder(folder, overwrite)
    converted.save_pretrained(folder, safe_serialization=True)
    return Export(folder, None, "first stage")


def load_source(source: str | Path) -> tuple[torch.nn.Module, DictConfig, Path]:
    """(model, config, folder) of an ldm_lite model folder or a main.py run (its last checkpoint)."""
    from ldm_lite.sampling import find_model_files

    config_files, weights, folder = find_model_files(resume=source)
    config = OmegaConf.merge(*[OmegaConf.load(path) for path in config_files])
    if "model" not in config:
        raise ConversionError(f"{config_files[0]} has no model section: give an ldm_lite model folder or main.py run")
    return load_model_from_config(config, weights), config, folder


def export_to_diffusers(source: str | Path, folder: str | Path, overwrite: bool = False) -> Export:
    """Export the ldm_lite model folder or main.py run `source` to the diffusers folder `folder`, with a
    Hub-style model card (README.md)."""
    check_output_folder(Path(folder), overwrite)  # before the model loads
    model, _, source_folder = load_source(source)
    if hasattr(model, "apply_model"):
        exported = export_latent_diffusion(model, folder, overwrite)
    elif isinstance(model, (AutoencoderKL, VQModel)):
        exported = export_first_stage(model, folder, overwrite)
    else:
        raise ConversionError(f"'{source}' holds a {type(model).__name__}: only latent diffusion models and their "
                              "autoencoders are exported")
    write_export_card(exported.folder, exported.pipeline, exported.kind, model, source_folder)
    return exported

