"""LdmLitePipeline: sampling, with diffusers components, the ldm-lite latent diffusion models that no
stock diffusers pipeline runs: text by cross-attention on a frozen BERT-type encoder's per-token states
(padding tokens zeroed), a class as one learned token (`class_embedder/`) or as a label added to the
timestep embedding (`UNet2DModel` with `num_class_embeds`), and inpainting by concatenation.

    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe(prompt=["a red circle"], guidance_scale=3.0, num_inference_steps=50).images
    pipe(class_labels=[3, 7], guidance_scale=3.0).images
    pipe(image=image, mask_image=mask, eta=1.0).images         # image in [-1, 1], mask 1 = fill

Each step, as ldm-lite's samplers: the UNet input is [x_t, condition channels] (inpainting), its
context the condition tokens; with guidance scale s != 1 the batch is doubled to [null, condition]
and the output is out_null + s * (out_cond - out_null) (Ho & Salimans 2022); the scheduler steps
(DDIM: eta, and use_clipped_model_output when it clips x0, as ldm-lite's pixel-space samplers).
Latents are divided by the autoencoder's `scaling_factor` before decoding. Inpainting: the condition
is [scaling_factor * E(masked image) (posterior mode), 2 * mask - 1 (nearest, latent size)], the
masked image holds `masked_fill` in the hole, and the decoded result keeps the known pixels exactly.
The noise: `latents` if given, else drawn from `generator` first, then the scheduler's per-step noise."""
from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor


class LdmLitePipeline(DiffusionPipeline):
    _optional_components = ["vae", "text_encoder", "tokenizer", "class_embedder"]

    def __init__(self, unet: Any, scheduler: Any, vae: Any = None, text_encoder: Any = None, tokenizer: Any = None,
                 class_embedder: Any = None, conditioning_key: str | None = None, zero_padding: bool = True,
                 masked_fill: float = 0.0):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                              tokenizer=tokenizer, class_embedder=class_embedder)
        self.register_to_config(conditioning_key=conditioning_key, zero_padding=zero_padding, masked_fill=masked_fill)

    # ------------------------------------------------------------------ conditions
    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """(B, max_length, D) per-token states; padding positions zero when `zero_padding`."""
        tokens = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                                max_length=self.tokenizer.model_max_length, return_tensors="pt",
                                return_token_type_ids=False).to(self.device)
        states = self.text_encoder(**tokens).last_hidden_state
        if self.config.zero_padding:
            states = states * tokens["attention_mask"][..., None].to(states.dtype)
        return states

    def null_class(self) -> int:
        if self.class_embedder is not None:
            index = self.class_embedder.config.null_class_index
        else:
            index = self.unet.config.num_class_embeds - 1  # ldm-lite's "adm" models: the last label
        if index is None:
            raise ValueError("guidance needs a null class, and this model has none: use guidance_scale=1")
        return index

    def conditions(self, batch: int, prompt: Any, class_labels: Any, guided: bool) -> tuple[dict, dict | None]:
        """UNet keyword arguments for the condition and (with guidance) for the null condition."""
        if self.text_encoder is not None:
            if prompt is None:
                raise ValueError("this is a text-to-image model: pass prompt")
            prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
            condition = {"encoder_hidden_states": self.encode_prompt(prompts)}
            return condition, {"encoder_hidden_states": self.encode_prompt([""] * len(prompts))} if guided else None
        if self.class_embedder is not None or self.unet.config.get("num_class_embeds"):
            if class_labels is None:
                raise ValueError("this is a class-conditional model: pass class_labels")
            labels = torch.as_tensor(class_labels, device=self.device).long().reshape(-1)
            null = torch.full_like(labels, self.null_class()) if guided else None
            if self.class_embedder is not None:
                return ({"encoder_hidden_states": self.class_embedder(labels)},
                        {"encoder_hidden_states": self.class_embedder(null)} if guided else None)
            return {"class_labels": labels}, {"class_labels": null} if guided else None
        if prompt is not None or class_labels is not None:
            raise ValueError("this model takes no prompt or class_labels")
        if guided:
            raise ValueError("guidance needs a conditional model: use guidance_scale=1")
        return {}, None

    def inpainting_condition(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[scaling_factor * E(masked image), 2 * mask - 1] at the latent size."""
        masked = image * (1 - mask) + self.config.masked_fill * mask
        if self.vae is None:
            latent = masked
        else:
            encoded = self.vae.encode(masked)
            latent = encoded.latent_dist.mode() if hasattr(encoded, "latent_dist") else encoded.latents
            latent = latent * self.vae.config.scaling_factor
        small_mask = F.interpolate(mask, size=latent.shape[-2:], mode="nearest")
        return torch.cat([latent, 2 * small_mask - 1], dim=1)

    # ------------------------------------------------------------------ sampling
    def downsampling_factor(self) -> int:
        return 1 if self.vae is None else 2 ** (len(self.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def __call__(self, prompt: str | Sequence[str] | None = None, class_labels: Sequence[int] | None = None,
                 image: Any = None, mask_image: Any = None, batch_size: int | None = None,
                 num_inference_steps: int = 50, guidance_scale: float = 1.0, eta: float = 0.0,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True) -> ImagePipelineOutput | tuple:
        inpainting = self.config.conditioning_key == "concat"
        if inpainting != (image is not None and mask_image is not None):
            raise ValueError("this is an inpainting model: pass image and mask_image" if inpainting
                             else "this model does not inpaint: drop image and mask_image")
        if inpainting:
            image, mask_image = to_tensor(image, self.device), to_tensor(mask_image, self.device, mask=True)
        sizes = [len([prompt] if isinstance(prompt, str) else prompt) if prompt is not None else None,
                 len(class_labels) if class_labels is not None else None,
                 image.shape[0] if inpainting else None, latents.shape[0] if latents is not None else None]
        batch = batch_size or next((size for size in sizes if size is not None), 1)
        guided = guidance_scale != 1.0
        condition, null = self.conditions(batch, prompt, class_labels, guided)
        concat = self.inpainting_condition(image, mask_image) if inpainting else None
        if inpainting:
            height, width = concat.shape[-2:]
        else:
            height = width = self.unet.config.sample_size
        shape = (batch, self.unet.config.out_channels, height, width)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        x = latents.to(self.device) * self.scheduler.init_noise_sigma
        step_options = {"eta": eta, "generator": generator,
                        "use_clipped_model_output": bool(self.scheduler.config.get("clip_sample", False))}
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        step_options = {key: value for key, value in step_options.items() if key in accepted}
        if guided:  # one UNet call on [null, condition]
            arguments = {key: torch.cat([null[key], value]) for key, value in condition.items()}
            concat = torch.cat([concat, concat]) if concat is not None else None
        else:
            arguments = condition
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([x, x]) if guided else x
            if concat is not None:
                model_input = torch.cat([model_input, concat], dim=1)
            model_input = self.scheduler.scale_model_input(model_input, t)
            output = self.unet(model_input, t, **arguments).sample
            if guided:
                unconditional, conditional = output.chunk(2)
                output = unconditional + guidance_scale * (conditional - unconditional)
            x = self.scheduler.step(output, t, x, **step_options).prev_sample
        if output_type == "latent":
            images = x
        else:
            images = x if self.vae is None else self.vae.decode(x / self.vae.config.scaling_factor).sample
            images = images.clamp(-1, 1)
            if inpainting:
                images = mask_image * images + (1 - mask_image) * image
            images = (images + 1) / 2
            if output_type != "pt":
                images = images.permute(0, 2, 3, 1).float().cpu().numpy()
                if output_type == "pil":
                    images = self.numpy_to_pil(images)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def to_tensor(picture: Any, device: torch.device, mask: bool = False) -> torch.Tensor:
    """(B, C, H, W) float: an image in [-1, 1], a mask (`mask`) in {0, 1} with one channel (1 = fill).
    Tensors are taken as they are; PIL images (or a list of them) are converted (masks: white = fill)."""
    if isinstance(picture, torch.Tensor):
        tensor = (picture[None] if picture.ndim == 3 else picture).to(device, torch.float32)
        return tensor[:, :1] if mask else tensor
    pictures = picture if isinstance(picture, (list, tuple)) else [picture]
    if mask:
        arrays = [(np.asarray(item.convert("L"), dtype=np.float32)[..., None] >= 127.5).astype(np.float32)
                  for item in pictures]
    else:
        arrays = [np.asarray(item.convert("RGB"), dtype=np.float32) / 127.5 - 1 for item in pictures]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(device)
