"""diffusers folders -> ldm_lite modules, so that the notebooks and scripts can sample and inspect a
model saved by diffusers (`save_pretrained`, or downloaded from the Hub). Reads config.json and
safetensors files directly: diffusers itself is not needed.

- a pipeline folder (`model_index.json`: `unet/`, `vae/` or `vqvae/` (none: pixel space), `scheduler/`,
  and the condition: `text_encoder/` + `tokenizer/` when it is all-MiniLM-L6-v2, `class_embedder/`, class
  labels in the UNet, or inpainting by concatenation) -> a `LatentDiffusion`;
- a model folder (`config.json`): `UNet2DModel` / `UNet2DConditionModel` -> `UNetModel`,
  `AutoencoderKL` / `VQModel` -> the first stage.

The scheduler's training schedule and prediction_type become the LDM's schedule and parameterization;
the autoencoder's scaling_factor its scale_factor (kept as a buffer, as a scale_by_std model stores it).
ldm_lite's DDIM always samples with the original conventions (steps_offset=1, set_alpha_to_one=False)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from ldm_lite.checkpoint import save_model
from ldm_lite.diffusers_interop.autoencoder import autoencoder_from_diffusers_state, \
    autoencoder_params_from_diffusers, load_autoencoder_weights
from ldm_lite.diffusers_interop.common import ConversionError, load_into, read_config, read_weights
from ldm_lite.diffusers_interop.unet import load_unet_weights, unet_from_diffusers_state, unet_params_from_diffusers
from ldm_lite.util import instantiate_from_config

PARAMETERIZATIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
SCHEDULES = {"scaled_linear": "linear", "linear": "sqrt_linear", "squaredcos_cap_v2": "cosine"}
UNETS = ("UNet2DModel", "UNet2DConditionModel")
AUTOENCODERS = ("AutoencoderKL", "VQModel")


def schedule_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """LatentDiffusion schedule parameters from a diffusers scheduler config."""
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PARAMETERIZATIONS:
        raise ConversionError(f"prediction_type '{prediction}' has no ldm_lite parameterization "
                              f"({', '.join(PARAMETERIZATIONS)})")
    if config.get("rescale_betas_zero_snr"):
        raise ConversionError("rescale_betas_zero_snr=True has no ldm_lite counterpart")
    params: dict[str, Any] = {"timesteps": config.get("num_train_timesteps", 1000),
                              "parameterization": PARAMETERIZATIONS[prediction]}
    if config.get("trained_betas") is not None:
        return dict(params, given_betas=[float(beta) for beta in config["trained_betas"]])
    schedule = config.get("beta_schedule", "linear")
    if schedule not in SCHEDULES:
        raise ConversionError(f"beta_schedule '{schedule}' has no ldm_lite counterpart ({', '.join(SCHEDULES)})")
    params["beta_schedule"] = SCHEDULES[schedule]
    if schedule != "squaredcos_cap_v2":
        params.update(linear_start=config.get("beta_start", 0.0001), linear_end=config.get("beta_end", 0.02))
    return params


def _component(index: Mapping[str, Any], *names: str) -> tuple[str, str] | None:
    """(folder name, class name) of the first present component among `names`."""
    for name in names:
        entry = index.get(name)
        if isinstance(entry, (list, tuple)) and entry[0] is not None:
            return name, entry[1]
    return None


def _is_minilm(folder: Path) -> bool:
    """Whether `folder` holds all-MiniLM-L6-v2, the text encoder ldm_lite's FrozenMiniLMEmbedder loads."""
    from safetensors.torch import load_file

    from ldm_lite.modules.encoders import minilm_folder

    if not (folder / "model.safetensors").is_file():
        return False
    weights = [{key: value for key, value in load_file(str(path)).items()
                if not key.endswith("position_ids")}  # a constant buffer that some files store
               for path in (folder / "model.safetensors", Path(minilm_folder()) / "model.safetensors")]
    theirs, ours = weights
    return set(theirs) == set(ours) and all(torch.equal(theirs[key], ours[key]) for key in ours)


def _condition(folder: Path, index: Mapping[str, Any], unet_params: Mapping[str, Any]
               ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(LatentDiffusion condition parameters, the condition encoder's weights in ldm_lite's layout)."""
    pipeline = index.get("_class_name")
    if pipeline in ("LDMTextToImagePipeline", "LDMSuperResolutionPipeline"):
        raise ConversionError(f"a {pipeline} conditions on what ldm_lite's condition encoders do not load (LDMBert, "
                              "a low-resolution image): load its unet/ and vqvae/ folders alone with load_diffusers")
    text = _component(index, "text_encoder")
    classes = _component(index, "class_embedder")
    concat = unet_params["in_channels"] != unet_params["out_channels"]
    if concat and index.get("conditioning_key") != "concat":
        raise ConversionError(f"the UNet takes {unet_params['in_channels']} channels and returns "
                              f"{unet_params['out_channels']}: a concatenated condition that this folder does not "
                              "describe (ldm_lite exports say conditioning_key 'concat' in model_index.json)")
    if concat:
        return dict(conditioning_key="concat", concat_mode=True, cond_stage_key="masked_image",
                    cond_stage_config="__is_first_stage__"), {}
    if text is not None:
        if not _is_minilm(folder / "text_encoder"):
            raise ConversionError(f"text_encoder/ ({text[1]}) is not the all-MiniLM-L6-v2 of ldm_lite's "
                                  "FrozenMiniLMEmbedder: load the unet/ and vae/ folders alone with load_diffusers")
        tokenizer_config = json.loads((folder / "tokenizer" / "tokenizer_config.json").read_text())
        params = {"max_length": int(tokenizer_config.get("model_max_length", 77)),
                  "zero_padding": bool(index.get("zero_padding", True))}
        return dict(conditioning_key="crossattn", cond_stage_key="caption", cond_stage_trainable=False,
                    cond_stage_config={"target": "ldm_lite.modules.encoders.FrozenMiniLMEmbedder", "params": params}), {}
    if classes is not None:
        config = read_config(folder / "class_embedder")
        rows, null = config["num_embeddings"], config.get("null_class_index")
        if null not in (None, rows - 1):
            raise ConversionError(f"the null class is row {null} of {rows}: ldm_lite's ClassEmbedder keeps it last")
        params = {"embed_dim": config["embedding_dim"], "n_classes": rows - (null is not None), "key": "class_label",
                  "null_class": null is not None}
        weights = {f"cond_stage_model.{key}": value for key, value in read_weights(folder / "class_embedder").items()}
        return dict(conditioning_key="crossattn", cond_stage_key="class_label", cond_stage_trainable=True,
                    cond_stage_config={"target": "ldm_lite.modules.encoders.ClassEmbedder", "params": params}), weights
    if unet_params.get("num_classes") is not None:
        return dict(conditioning_key="adm", cond_stage_key="class_label",
                    cond_stage_config={"target": "torch.nn.Identity"}), {}
    return dict(cond_stage_key="image", cond_stage_config="__is_unconditional__"), {}


def latent_diffusion_from_diffusers(folder: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(LatentDiffusion, its ldm_lite config {"model": ...}) from a diffusers pipeline folder."""
    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    unet_entry = _component(index, "unet")
    if unet_entry is None or unet_entry[1] not in UNETS:
        raise ConversionError(f"'{folder}' has no unet/ of class {' or '.join(UNETS)}")
    unet_config = read_config(folder / "unet")
    unet_params = unet_params_from_diffusers(unet_entry[1], unet_config)
    if unet_params["image_size"] is None:
        raise ConversionError("the UNet config has no sample_size: ldm_lite needs the latent size to sample")
    first_stage = _component(index, "vqvae", "vae")
    if first_stage is not None:
        vae_config = read_config(folder / first_stage[0])
        target, vae_params = autoencoder_params_from_diffusers(first_stage[1], vae_config)
        first_stage_config = {"target": target, "params": vae_params}
        scale = {"scale_factor": float(vae_config.get("scaling_factor", 0.18215)), "scale_by_std": True}
    else:
        first_stage_config = {"target": "ldm_lite.models.autoencoder.IdentityFirstStage"}
        scale = {"scale_factor": 1.0}
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    if not scheduler_path.is_file():
        raise ConversionError(f"'{folder}' has no scheduler/scheduler_config.json: the training schedule comes from it")
    scheduler = json.loads(scheduler_path.read_text())
    condition, condition_weights = _condition(folder, index, unet_params)
    params = dict(schedule_params(scheduler), first_stage_key="image", image_size=unet_params["image_size"],
                  channels=unet_params["out_channels"], use_ema=False, **scale, **condition,
                  unet_config={"target": "ldm_lite.modules.unet.UNetModel", "params": unet_params},
                  first_stage_config=first_stage_config)
    config = {"model": {"target": "ldm_lite.models.diffusion.LatentDiffusion", "params": params}}
    model = instantiate_from_config(config["model"])
    load_unet_weights(model.model.diffusion_model, read_weights(folder / "unet"), f"{folder / 'unet'}")
    if first_stage is not None:
        load_autoencoder_weights(model.first_stage_model, read_weights(folder / first_stage[0]),
                                 f"{folder / first_stage[0]}")
    if condition_weights:
        load_into(model.cond_stage_model, {key.removeprefix("cond_stage_model."): value
                                           for key, value in condition_weights.items()}, f"{folder / 'class_embedder'}")
    return model.eval(), config


def load_diffusers(folder: str | Path) -> torch.nn.Module:
    """ldm_lite module(s) of a diffusers folder: a pipeline folder -> LatentDiffusion, a UNet folder ->
    UNetModel, an autoencoder folder -> AutoencoderKL / VQModelInterface (see the module docstring)."""
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return latent_diffusion_from_diffusers(folder)[0]
    config = read_config(folder)
    class_name = config.get("_class_name")
    if class_name in UNETS:
        return unet_from_diffusers_state(class_name, config, read_weights(folder))[0]
    if class_name in AUTOENCODERS:
        return autoencoder_from_diffusers_state(class_name, config, read_weights(folder))[0]
    raise ConversionError(f"'{folder}' holds a {class_name}: ldm_lite loads pipeline folders (model_index.json), "
                          f"{', '.join(UNETS + AUTOENCODERS)}")


def import_from_diffusers(folder: str | Path, out: str | Path) -> Path:
    """Write the diffusers folder `folder` as an ldm_lite model folder `out` (config.yaml + model.safetensors)
    that the scripts and notebooks load like a shipped model."""
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        model, config = latent_diffusion_from_diffusers(folder)
    else:
        diffusers_config = read_config(folder)
        class_name = diffusers_config.get("_class_name")
        if class_name not in AUTOENCODERS:
            raise ConversionError(f"'{folder}' holds a {class_name}: an ldm_lite model folder holds a pipeline "
                                  "(model_index.json) or an autoencoder; load a UNet alone with load_diffusers")
        model, config = autoencoder_from_diffusers_state(class_name, diffusers_config, read_weights(folder))
        config = {"model": config}
    return save_model(model, config, out)
