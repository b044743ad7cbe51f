"""First-stage models: the perceptual compression of the paper (Sec. 3).

An autoencoder E, D is trained once so that x' = D(E(x)) looks like x while z = E(x) is f times
smaller in each spatial dimension; the diffusion model then works on z. Two regularizations:
- `AutoencoderKL`: a slight KL penalty towards N(0, I) on a Gaussian posterior (VAE-like);
- `VQModel`: a vector-quantization layer absorbed into the decoder (VQGAN-like).
`VQModelInterface` is the view the LDM uses (latent before quantization), and
`IdentityFirstStage` stands for "no compression" (pixel-space diffusion, LDM-1)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ldm_lite.metrics import psnr
from ldm_lite.modules.autoencoder_nets import Decoder, Encoder
from ldm_lite.modules.distributions import DiagonalGaussianDistribution
from ldm_lite.modules.quantize import VectorQuantizer
from ldm_lite.util import instantiate_from_config


def _as_float(logs: Mapping[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in logs.items()}


class _FirstStage(nn.Module):
    """What both autoencoders share: the nets, inputs from batches, checkpoints, optimizers and the
    two-optimizer (autoencoder, discriminator) training step of the Trainable model protocol."""

    learning_rate: float = 4.5e-6

    def __init__(self, ddconfig: Mapping[str, Any], lossconfig: Mapping[str, Any], embed_dim: int,
                 image_key: str = "image", colorize_nlabels: int | None = None, monitor: str | None = None,
                 adam_betas: Sequence[float] = (0.5, 0.9)) -> None:
        super().__init__()
        self.image_key, self.monitor, self.embed_dim = image_key, monitor, embed_dim
        self.adam_betas = tuple(float(beta) for beta in adam_betas)
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.loss = instantiate_from_config(lossconfig)
        if colorize_nlabels is not None:
            # Random projection of segmentation-map channels to RGB for logging (a buffer, as in the original).
            self.register_buffer("colorize", torch.randn(3, colorize_nlabels, 1, 1))

    def init_from_ckpt(self, path: str, ignore_keys: Sequence[str] = ()) -> None:
        """Load weights, dropping keys that start with any of `ignore_keys` (those layers keep their
        fresh initialisation) and training-only keys the model lacks (`loss.*` of released files)."""
        from ldm_lite.checkpoint import CheckpointError, load_state_dict_file

        def ignored(key: str) -> bool:
            return any(key.startswith(prefix) for prefix in ignore_keys)

        state_dict = {key: value for key, value in load_state_dict_file(path).items() if not ignored(key)}
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        missing = [key for key in missing if not ignored(key) and not key.startswith("loss.")]
        if missing:
            raise CheckpointError(f"'{path}' lacks {len(missing)} weights of this {self.__class__.__name__} (e.g. {missing[0]}): "
                                  "use the config the checkpoint was trained with")
        unexpected = [key for key in unexpected if not key.startswith("loss.")]
        print(f"restored {self.__class__.__name__} from {path}" + (f" ({len(unexpected)} unused keys)" if unexpected else ""))

    def get_input(self, batch: Mapping[str, Any], key: str) -> torch.Tensor:
        """batch[key] (B, H, W, C) or (B, H, W) -> float NCHW on the model's device."""
        if key not in batch:
            raise KeyError(f"batch has no '{key}' (keys: {sorted(batch)}): set the model's image_key")
        x = torch.as_tensor(np.asarray(batch[key]) if not torch.is_tensor(batch[key]) else batch[key])
        if x.ndim == 3:
            x = x[..., None]
        x = rearrange(x, "b h w c -> b c h w").float()
        return x.to(self.decoder.conv_out.weight.device).contiguous()

    def get_last_layer(self) -> torch.Tensor:
        """The decoder's last weight: where the adaptive GAN weight compares gradient norms."""
        return self.decoder.conv_out.weight

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """What the autoencoder's optimizer trains: every parameter outside the loss that is not frozen."""
        return [p for name, p in self.named_parameters() if not name.startswith("loss.") and p.requires_grad]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for the autoencoder (betas `adam_betas`; the original's 0.5, 0.9 suit GAN training), and Adam
        (0.5, 0.9) for the discriminator when the loss has one."""
        optimizers = [torch.optim.Adam(self.autoencoder_parameters(), lr=self.learning_rate, betas=self.adam_betas,
                                       fused=True)]
        if hasattr(self.loss, "discriminator"):
            optimizers.append(torch.optim.Adam(self.loss.discriminator.parameters(), lr=self.learning_rate,
                                               betas=(0.5, 0.9), fused=True))
        return optimizers

    def _check_trainable(self) -> None:
        if not hasattr(self.loss, "discriminator"):
            raise RuntimeError(f"this {self.__class__.__name__} has lossconfig {self.loss.__class__.__name__} "
                               "(inference only): train it with LPIPSWithDiscriminator / VQLPIPSWithDiscriminator")

    def _idle_discriminator_step(self, global_step: int) -> tuple[torch.Tensor, dict[str, float]] | None:
        """Before disc_start the discriminator has nothing to learn: skip its forward pass entirely
        and return a zero loss with no parameter gradients (its optimizer then leaves it unchanged)."""
        if self.loss.discriminator_active(global_step):
            return None
        return torch.zeros((), device=self.get_last_layer().device, requires_grad=True), {}

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """Segmentation maps (more than 3 channels) -> RGB via the `colorize` projection, for logging."""
        if x.shape[1] <= 3:
            return x
        if not hasattr(self, "colorize"):
            self.register_buffer("colorize", torch.randn(3, x.shape[1], 1, 1).to(x), persistent=False)
        x = F.conv2d(x, weight=self.colorize)
        return 2.0 * (x - x.min()) / (x.max() - x.min()) - 1.0


class AutoencoderKL(_FirstStage):
    """KL-regularized autoencoder: z ~ q(z|x) = N(mu(x), sigma(x)^2) with `embed_dim` channels.

    `train_decoder_only` (with `ckpt_path`): E and `quant_conv` are frozen and only D learns, so the
    latent space of the loaded model, and every LDM trained on it, stays valid."""

    def __init__(self, ddconfig: Mapping[str, Any], lossconfig: Mapping[str, Any], embed_dim: int,
                 ckpt_path: str | None = None, ignore_keys: Sequence[str] = (), image_key: str = "image",
                 colorize_nlabels: int | None = None, monitor: str | None = None, learn_logvar: bool = False,
                 ema_decay: float | None = None, adam_betas: Sequence[float] = (0.5, 0.9),
                 train_decoder_only: bool = False) -> None:
        super().__init__(ddconfig, lossconfig, embed_dim, image_key, colorize_nlabels, monitor, adam_betas)
        if ema_decay is not None:
            raise ValueError("ema_decay is not supported for the first stage: set it to null")
        if not ddconfig.get("double_z", True):
            raise ValueError("AutoencoderKL needs ddconfig.double_z=true (the encoder predicts mean and log-variance)")
        self.learn_logvar = learn_logvar
        self.quant_conv = nn.Conv2d(2 * ddconfig["z_channels"], 2 * embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], kernel_size=1)
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys)
        if train_decoder_only:
            # D fine-tuned alone on a trained E, as Stable Diffusion's "ft-MSE" VAE decoders.
            if ckpt_path is None:
                raise ValueError("train_decoder_only needs ckpt_path: the trained autoencoder whose decoder to fine-tune")
            for module in (self.encoder, self.quant_conv):
                module.requires_grad_(False)

    def encode(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        """x (B, 3, H, W) -> the posterior q(z|x) over z (B, embed_dim, H/f, W/f)."""
        return DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    def forward(self, input: torch.Tensor, sample_posterior: bool = True
                ) -> tuple[torch.Tensor, DiagonalGaussianDistribution]:
        posterior = self.encode(input)
        z = posterior.sample() if sample_posterior else posterior.mode()
        return self.decode(z), posterior

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        parameters = super().autoencoder_parameters()
        return parameters + [self.loss.logvar] if self.learn_logvar and hasattr(self.loss, "logvar") else parameters

    def training_step(self, batch: Mapping[str, Any], optimizer_index: int, global_step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        self._check_trainable()
        inputs = self.get_input(batch, self.image_key)
        if optimizer_index == 0:
            reconstructions, posterior = self(inputs)
            loss, logs = self.loss(inputs, reconstructions, posterior, 0, global_step,
                                   last_layer=self.get_last_layer(), split="train")
            logs["train/psnr"] = psnr(reconstructions.detach().clamp(-1, 1), inputs)
            return loss, _as_float(logs)
        idle = self._idle_discriminator_step(global_step)
        if idle is not None:
            return idle
        with torch.no_grad():
            reconstructions, posterior = self(inputs)
        loss, logs = self.loss(inputs, reconstructions, posterior, 1, global_step, split="train")
        return loss, _as_float(logs)

    @torch.no_grad()
    def validation_step(self, batch: Mapping[str, Any], global_step: int) -> dict[str, float]:
        """Deterministic reconstructions from the posterior mean: val/rec_loss (mean L1), val/psnr, and
        the loss terms when the model has a training loss."""
        inputs = self.get_input(batch, self.image_key)
        posterior = self.encode(inputs)
        reconstructions = self.decode(posterior.mode())
        logs: dict[str, Any] = {}
        if hasattr(self.loss, "discriminator"):
            _, logs = self.loss(inputs, reconstructions, posterior, 0, global_step, split="val")
        logs["val/rec_loss"] = (inputs - reconstructions).abs().mean()
        logs["val/psnr"] = psnr(reconstructions.clamp(-1, 1), inputs)
        return _as_float(logs)

    @torch.no_grad()
    def log_images(self, batch: Mapping[str, Any], max_images: int = 8, **kwargs: Any) -> dict[str, torch.Tensor]:
        """inputs, reconstructions (posterior mean), samples (decoded posterior samples) and
        prior_samples (decoded z ~ N(0, I), which the tiny KL weight does not make look like images)."""
        inputs = self.get_input(batch, self.image_key)[:max_images]
        posterior = self.encode(inputs)
        images = {"inputs": inputs, "reconstructions": self.decode(posterior.mode()),
                  "samples": self.decode(posterior.sample()),
                  "prior_samples": self.decode(torch.randn_like(posterior.mean))}
        return {key: self.to_rgb(value).clamp(-1, 1) for key, value in images.items()}


class VQModel(_FirstStage):
    """VQ-regularized autoencoder: z_q = nearest of `n_embed` codebook vectors of size `embed_dim`.

    `quantize_start` > 0 (beyond the original): the first `quantize_start` steps train and validate a
    plain autoencoder without the quantizer; after the last of them the codebook is set to k-means
    centroids of the latest encoder outputs, and quantization starts. The decoder then learns on a
    codebook that already fits the encoder instead of on random codes."""

    def __init__(self, ddconfig: Mapping[str, Any], lossconfig: Mapping[str, Any], n_embed: int, embed_dim: int,
                 ckpt_path: str | None = None, ignore_keys: Sequence[str] = (), image_key: str = "image",
                 colorize_nlabels: int | None = None, monitor: str | None = None,
                 batch_resize_range: Sequence[int] | None = None, scheduler_config: Mapping[str, Any] | None = None,
                 lr_g_factor: float = 1.0, remap: str | None = None, sane_index_shape: bool = False,
                 use_ema: bool = False, beta: float = 0.25, legacy: bool = True,
                 restart_dead_codes: bool = False, adam_betas: Sequence[float] = (0.5, 0.9),
                 quantize_start: int = 0) -> None:
        # batch_resize_range / scheduler_config: original training options; the training loop owns
        # the schedule here and images keep their size, so both are accepted and not used.
        super().__init__(ddconfig, lossconfig, embed_dim, image_key, colorize_nlabels, monitor, adam_betas)
        if use_ema:
            raise ValueError("use_ema is not supported for the VQ first stage: set use_ema to false")
        self.n_embed, self.lr_g_factor, self.quantize_start = n_embed, lr_g_factor, quantize_start
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=beta, remap=remap, sane_index_shape=sane_index_shape,
                                        legacy=legacy, restart_dead_codes=restart_dead_codes)
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], kernel_size=1)
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys)

    def encode_to_prequant(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """x -> (z_q, codebook loss, (perplexity, None, indices))."""
        return self.quantize(self.encode_to_prequant(x))

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quant))

    def decode_code(self, code_b: torch.Tensor) -> torch.Tensor:
        """Codebook indices (B, H, W) -> images."""
        batch, height, width = code_b.shape
        return self.decode(self.quantize.get_codebook_entry(code_b, (batch, height, width, self.embed_dim)))

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """x -> (reconstruction, codebook loss, (perplexity, None, indices)): E, quantizer, D."""
        quant, codebook_loss, info = self.quantize(self.encode_to_prequant(x))
        return self.decoder(self.post_quant_conv(quant)), codebook_loss, info

    def _reconstruct_at_step(self, x: torch.Tensor, global_step: int, remember: bool = False
                             ) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """`reconstruct`, or before `quantize_start` E and D alone (zero codebook loss, no indices;
        with `remember` the latents are kept for the codebook's k-means initialization)."""
        if global_step >= self.quantize_start:
            return self.reconstruct(x)
        h = self.encode_to_prequant(x)
        if remember:
            self.quantize.remember(h)
        zero = h.new_zeros(())
        return self.decoder(self.post_quant_conv(h)), zero, (zero, None, None)

    def forward(self, input: torch.Tensor, return_pred_indices: bool = False):
        """input -> (reconstruction, codebook loss[, indices])."""
        decoded, diff, (_, _, indices) = self.reconstruct(input)
        return (decoded, diff, indices) if return_pred_indices else (decoded, diff)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        optimizers = super().configure_optimizers()
        for group in optimizers[0].param_groups:
            group["lr"] = self.lr_g_factor * self.learning_rate
        return optimizers

    def training_step(self, batch: Mapping[str, Any], optimizer_index: int, global_step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        self._check_trainable()
        inputs = self.get_input(batch, self.image_key)
        if optimizer_index == 0:
            reconstructions, qloss, (perplexity, _, indices) = self._reconstruct_at_step(inputs, global_step, remember=True)
            if global_step == self.quantize_start - 1:  # the last step without the quantizer
                self.quantize.initialize_by_kmeans()
            loss, logs = self.loss(qloss, inputs, reconstructions, 0, global_step,
                                   last_layer=self.get_last_layer(), split="train", predicted_indices=indices)
            logs["train/perplexity"] = perplexity
            logs["train/codebook_usage"] = 0.0 if indices is None else self.quantize.codebook_usage()
            logs["train/psnr"] = psnr(reconstructions.detach().clamp(-1, 1), inputs)
            return loss, _as_float(logs)
        idle = self._idle_discriminator_step(global_step)
        if idle is not None:
            return idle
        with torch.no_grad():
            reconstructions, qloss, _ = self._reconstruct_at_step(inputs, global_step)
        loss, logs = self.loss(qloss, inputs, reconstructions, 1, global_step, split="train")
        return loss, _as_float(logs)

    @torch.no_grad()
    def validation_step(self, batch: Mapping[str, Any], global_step: int) -> dict[str, float]:
        """val/rec_loss (mean L1), val/psnr, val/perplexity and val/codebook_usage (fraction of codes
        used by this batch; both 0 before `quantize_start`), plus the loss terms when the model has a
        training loss."""
        inputs = self.get_input(batch, self.image_key)
        reconstructions, qloss, (perplexity, _, indices) = self._reconstruct_at_step(inputs, global_step)
        logs: dict[str, Any] = {}
        if hasattr(self.loss, "discriminator"):
            _, logs = self.loss(qloss, inputs, reconstructions, 0, global_step, split="val", predicted_indices=indices)
        logs["val/rec_loss"] = (inputs - reconstructions).abs().mean()
        logs["val/psnr"] = psnr(reconstructions.clamp(-1, 1), inputs)
        logs["val/perplexity"] = perplexity
        logs["val/codebook_usage"] = 0.0 if indices is None else indices.unique().numel() / self.n_embed
        return _as_float(logs)

    @torch.no_grad()
    def log_images(self, batch: Mapping[str, Any], max_images: int = 8, **kwargs: Any) -> dict[str, torch.Tensor]:
        inputs = self.get_input(batch, self.image_key)[:max_images]
        reconstructions, _ = self(inputs)
        return {"inputs": self.to_rgb(inputs), "reconstructions": self.to_rgb(reconstructions).clamp(-1, 1)}


class VQModelInterface(VQModel):
    """The VQ first stage as the LDM sees it: `encode` returns the latent h before quantization
    (the diffusion model works on it) and `decode` quantizes first (the quantizer is part of D)."""

    def __init__(self, embed_dim: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, embed_dim=embed_dim, **kwargs)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_to_prequant(x)

    def decode(self, h: torch.Tensor, force_not_quantize: bool = False) -> torch.Tensor:
        quant = h if force_not_quantize else self.quantize(h)[0]
        return self.decoder(self.post_quant_conv(quant))


class IdentityFirstStage(nn.Module):
    """No compression (f = 1): diffusion in pixel space, the paper's LDM-1 baseline."""

    def __init__(self, *args: Any, vq_interface: bool = False, **kwargs: Any) -> None:
        super().__init__()
        self.vq_interface = vq_interface

    def encode(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x

    def decode(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x

    def quantize(self, x: torch.Tensor, *args: Any, **kwargs: Any):
        return (x, None, [None, None, None]) if self.vq_interface else x

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x
