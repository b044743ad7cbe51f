"""Hub-style model cards: the YAML front matter the Hugging Face Hub reads (licence, tags, datasets,
pipeline tag, library name) and the README.md that `scripts/export_diffusers.py` writes into an
exported folder, with the calls that load and sample it (they are run by tests/test_diffusers_interop.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

PIPELINE_TAGS = {"unconditional": "unconditional-image-generation", "text": "text-to-image",
                 "class": "unconditional-image-generation",  # the Hub has no class-conditional pipeline tag
                 "inpainting": "image-to-image", "first stage": "image-to-image"}
KIND_TAGS = {"unconditional": ["unconditional-image-generation"], "text": ["text-to-image"],
             "class": ["class-conditional-image-generation"], "inpainting": ["inpainting"],
             "first stage": ["autoencoder", "vae"]}
CARRIED_KEYS = ("license", "license_name", "license_link", "datasets", "language")


def read_front_matter(card: str | Path) -> dict[str, Any]:
    """The YAML front matter of a model card (between the leading `---` lines); {} when it has none."""
    path = Path(card)
    if not path.is_file():
        return {}
    text = path.read_text()
    if not text.startswith("---\n") or "\n---" not in text[3:]:
        return {}
    return yaml.safe_load(text[4:text.index("\n---", 3)]) or {}


def front_matter(metadata: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n"


# ----------------------------------------------------------------------------- the calls per kind

def component_calls(kind: str, model: torch.nn.Module, folder: str) -> str:
    """Python that loads the exported components and samples `images` ((B, 3, H, W) in [-1, 1]) with
    diffusers and transformers alone: ldm-lite's sampling, written out."""
    latent = getattr(model.first_stage_model, "encoder", None) is not None
    vae_class = "VQModel" if hasattr(model.first_stage_model, "quantize") else "AutoencoderKL"
    unet_class = "UNet2DConditionModel" if kind in ("text", "class") and model.conditioning_key == "crossattn" \
        else "UNet2DModel"
    clip = ", use_clipped_model_output=True" if model.clip_denoised else ""
    imports = ["import torch"]
    if kind == "inpainting":
        imports.append("import torch.nn.functional as F")
    classes = sorted({"DDIMScheduler", unet_class, *([vae_class] if latent else [])})
    imports.append(f"from diffusers import {', '.join(classes)}")
    if kind == "text":
        imports.append("from transformers import BertModel, BertTokenizerFast")
    if kind == "class" and model.conditioning_key == "crossattn":
        imports.append("from safetensors.torch import load_file")
    lines = [*imports, "",
             f'folder = "{folder}"  # after an upload: huggingface_hub.snapshot_download("<user>/<name>")',
             f'unet = {unet_class}.from_pretrained(folder, subfolder="unet")',
             'scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")']
    if latent:
        lines.append(f'vae = {vae_class}.from_pretrained(folder, subfolder="vae")')
    lines += ["steps, eta = 50, 0.0  # eta = 1: stochastic DDIM", "generator = torch.Generator().manual_seed(0)"]
    if kind in ("text", "class"):
        lines.append("scale = 3.0  # classifier-free guidance")
    size = "unet.config.sample_size"
    if kind == "text":
        lines += [
            'tokenizer = BertTokenizerFast.from_pretrained(folder, subfolder="tokenizer")',
            'text_encoder = BertModel.from_pretrained(folder, subfolder="text_encoder")', "",
            "def encode(prompts):  # per-token states, padding tokens zeroed",
            "    tokens = tokenizer(prompts, padding=\"max_length\", truncation=True, max_length=tokenizer.model_max_length,",
            "                       return_tensors=\"pt\", return_token_type_ids=False)",
            "    return text_encoder(**tokens).last_hidden_state * tokens[\"attention_mask\"][..., None]", "",
            'prompts = ["a red circle at the top left"] * 4',
            "with torch.no_grad():",
            "    condition = {\"encoder_hidden_states\": torch.cat([encode([\"\"] * len(prompts)), encode(prompts)])}"]
        batch = "len(prompts)"
    elif kind == "class":
        lines += ["labels = torch.tensor([0, 1, 2, 3])"]
        if model.conditioning_key == "crossattn":
            null = model.cond_stage_model.null_index
            lines += ['table = load_file(f"{folder}/class_embedder/diffusion_pytorch_model.safetensors")["embedding.weight"]',
                      f"null = torch.full_like(labels, {null})  # the \"no class\" row of the table",
                      "condition = {\"encoder_hidden_states\": table[torch.cat([null, labels])][:, None]}  # one token per class"]
        else:
            lines += ["null = torch.full_like(labels, unet.config.num_class_embeds - 1)  # the \"no class\" label",
                      "condition = {\"class_labels\": torch.cat([null, labels])}"]
        batch = "len(labels)"
    elif kind == "inpainting":
        lines += [
            f"side = {size} * 2 ** (len(vae.config.block_out_channels) - 1)",
            "image = torch.rand(1, 3, side, side, generator=generator) * 2 - 1  # your image in [-1, 1]",
            "mask = torch.zeros(1, 1, side, side)",
            "mask[..., side // 4: 3 * side // 4, side // 4: 3 * side // 4] = 1  # 1 = fill",
            "with torch.no_grad():",
            "    masked = image * (1 - mask)  # the hole holds 0, as in training",
            "    latent = vae.encode(masked).%s * vae.config.scaling_factor" % (
                "latents" if vae_class == "VQModel" else "latent_dist.mode()"),
            "    concat = torch.cat([latent, 2 * F.interpolate(mask, size=latent.shape[-2:], mode=\"nearest\") - 1], dim=1)"]
        batch = "1"
    lines += [f"x = torch.randn({batch}, unet.config.out_channels, {size}, {size}, generator=generator)",
              "scheduler.set_timesteps(steps)",
              "with torch.no_grad():",
              "    for t in scheduler.timesteps:"]
    unet_input = "torch.cat([x, concat], dim=1)" if kind == "inpainting" else "x"
    if kind in ("text", "class"):
        lines += ["        null_output, output = unet(torch.cat([x, x]), t, **condition).sample.chunk(2)",
                  "        output = null_output + scale * (output - null_output)  # classifier-free guidance"]
    else:
        lines += [f"        output = unet({unet_input}, t).sample"]
    lines += [f"        x = scheduler.step(output, t, x, eta=eta, generator=generator{clip}).prev_sample"]
    if latent:
        lines += ["    images = vae.decode(x / vae.config.scaling_factor).sample.clamp(-1, 1)"]
    else:
        lines += ["    images = x.clamp(-1, 1)"]
    if kind == "inpainting":
        lines += ["    images = mask * images + (1 - mask) * image  # the known pixels kept exactly"]
    return "\n".join(lines) + "\n"


def pipeline_calls(pipeline: str | None, kind: str, folder: str) -> str:
    """Python that loads the exported folder with diffusers' own loader and samples it."""
    if pipeline is None:
        return (f'from diffusers import AutoencoderKL, VQModel\n\nvae = AutoencoderKL.from_pretrained("{folder}")'
                "  # VQModel for a VQ first stage\n"
                "latents = vae.encode(images).latent_dist.mode()  # images (B, 3, H, W) in [-1, 1]\n"
                "reconstructions = vae.decode(latents).sample\n")
    load = f'pipe = DiffusionPipeline.from_pretrained("{folder}"'
    if pipeline == "LdmLitePipeline":
        load += ", trust_remote_code=True)  # runs ldm_lite_pipeline.py from the folder"
    else:
        load += f")  # {pipeline}"
    call = {"unconditional": "pipe(batch_size=4, num_inference_steps=50, eta=1.0).images",
            "text": 'pipe(prompt=["a red circle at the top left"] * 4, guidance_scale=3.0, num_inference_steps=50).images',
            "class": "pipe(class_labels=[0, 1, 2, 3], guidance_scale=3.0, num_inference_steps=50).images",
            "inpainting": "pipe(image=image, mask_image=mask, num_inference_steps=50, eta=1.0).images  "
                          "# image in [-1, 1], mask 1 = fill (tensors or PIL)"}[kind]
    if pipeline == "DDIMPipeline":
        call = call.replace("eta=1.0)", "eta=1.0, use_clipped_model_output=True)")
    return f"from diffusers import DiffusionPipeline\n\n{load}\nimages = {call}\n"


# ----------------------------------------------------------------------------- the exported card

def _conventions(model: torch.nn.Module) -> list[str]:
    from ldm_lite.diffusers_interop.export import scheduler_config

    schedule = scheduler_config(model)
    if "trained_betas" in schedule:
        betas = f"the model's {schedule['num_train_timesteps']} betas as `trained_betas`"
    elif schedule["beta_schedule"] == "squaredcos_cap_v2":
        betas = "`squaredcos_cap_v2` (the cosine schedule)"
    else:
        betas = f"`{schedule['beta_schedule']}` from {schedule['beta_start']:g} to {schedule['beta_end']:g}"
    lines = [f"- Schedule: {schedule['num_train_timesteps']} steps, {betas}; `prediction_type` "
             f"`{schedule['prediction_type']}`.",
             "- DDIM as in the original repository: `timestep_spacing=\"leading\"` with `steps_offset=1`, "
             "`set_alpha_to_one=False`" + (", `clip_sample=True` with `use_clipped_model_output=True` (pixel space: "
                                           "x0 is clipped to [-1, 1] and eps re-derived)" if model.clip_denoised
                                           else ", `clip_sample=False` (latents are not bounded)") + "."]
    if getattr(model.first_stage_model, "encoder", None) is not None:
        lines.append(f"- Latents are the autoencoder's times `scaling_factor` = {float(model.scale_factor):.6g} "
                     "(the LDM's scale_factor); divide by it before decoding.")
    return lines


def write_export_card(folder: Path, pipeline: str | None, kind: str, model: torch.nn.Module,
                      source_folder: Path) -> Path:
    """README.md of an exported folder: front matter (licence and datasets of the source's card), the
    calls that load it, the conventions carried over, and the upload command."""
    source = read_front_matter(source_folder / "README.md")
    metadata: dict[str, Any] = {key: source[key] for key in CARRIED_KEYS if key in source}
    metadata.update(library_name="diffusers", pipeline_tag=PIPELINE_TAGS[kind],
                    tags=["ldm-lite", "latent-diffusion", "diffusers", *KIND_TAGS[kind]])
    name = source_folder.name
    shown = str(folder)
    parts = [front_matter(metadata), f"# {name} (diffusers)\n",
             f"The ldm-lite model `{source_folder}` exported by `python scripts/export_diffusers.py {source_folder} "
             f"{folder}`: the same weights in float32 safetensors. What the model is, its training data, metrics "
             "and licence: the ldm-lite model card (the source folder's README.md).\n"]
    if pipeline is None:
        parts += ["## Load\n", "```python\n" + pipeline_calls(None, kind, shown) + "```\n",
                  "`scaling_factor` is 1 here: each latent diffusion model's export carries its own in its `vae/`.\n"]
    else:
        parts += ["## Load and sample\n", "```python\n" + pipeline_calls(pipeline, kind, shown) + "```\n"]
        if pipeline == "LDMPipeline":
            parts.append("diffusers warns that LDMPipeline expected a VQModel as `vqvae`: the pipeline only calls "
                         "`vqvae.decode` and divides by `vqvae.config.scaling_factor`, which this AutoencoderKL has.\n")
        if pipeline == "LdmLitePipeline":
            parts += ["No stock diffusers pipeline runs this model (see below); the same sampling with the components "
                      "alone, no code from the folder:\n", "```python\n" + component_calls(kind, model, shown) + "```\n",
                      _why_custom(kind)]
        parts += ["## Carried over from ldm-lite\n", "\n".join(_conventions(model)) + "\n"]
    parts += ["## Upload to the Hub\n", "```\n" + f"huggingface-cli upload <user>/{name} {folder} .\n" + "```\n"]
    path = folder / "README.md"
    path.write_text("\n".join(parts))
    return path


def _why_custom(kind: str) -> str:
    return {
        "text": "`LDMTextToImagePipeline` expects the paper's LDMBert (77 tokens, no attention mask); this model "
                "attends to all-MiniLM-L6-v2's per-token states (`text_encoder/`, a transformers BertModel, "
                "Apache-2.0) with the padding tokens zeroed.\n",
        "class": "diffusers has no pipeline for a class given as a cross-attention token (`class_embedder/`) "
                 "or as a label added to the timestep embedding.\n",
        "inpainting": "The UNet sees [x_t, latent of the masked image, mask] (the original LDM inpainting model's "
                      "order; Stable Diffusion's inpainting pipeline puts the mask first and needs a text encoder).\n",
    }[kind]
