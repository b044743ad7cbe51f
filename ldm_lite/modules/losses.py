"""Training objectives of the first stage (paper Sec. 3 and App. G; Esser et al. 2021, Sec. 3.1).

    L = L_rec(x, D(E(x))) + w_reg * L_reg + lambda * L_GAN
- L_rec: pixel L1 (or L2) distance, plus a perceptual distance when a backbone is configured;
  for the KL model it is a Gaussian/Laplace NLL with a learnable log-variance: |x - x'| / e^s + s.
- L_reg: KL(q(z|x) || N(0, I)) with a tiny weight (~1e-6), or the VQ codebook + commitment loss.
- L_GAN: a PatchGAN discriminator's loss, switched on at `disc_start`, weighted adaptively by
  lambda = ||grad_L L_rec|| / (||grad_L L_GAN|| + 1e-4) at the decoder's last layer L (Esser et al. Eq. 7).

LPIPS (Zhang et al. 2018) needs VGG weights that cannot be had offline, so the perceptual term is
pluggable (`perceptual_backbone: {target, params}`, a module (x, y) -> distance) and off by default."""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ldm_lite.modules.discriminator import NLayerDiscriminator
from ldm_lite.util import instantiate_from_config

_perceptual_off_reported = False


def adopt_weight(weight: float, global_step: int, threshold: int = 0, value: float = 0.0) -> float:
    """`weight` from step `threshold` on, `value` before it."""
    return value if global_step < threshold else weight


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss (Lim & Ye 2017): 1/2 (E[relu(1 - D(x))] + E[relu(1 + D(x'))])."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss (Goodfellow et al. 2014): 1/2 (E[softplus(-D(x))] + E[softplus(D(x'))])."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def adaptive_weight(nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    disc_weight: float = 1.0) -> torch.Tensor:
    """lambda = ||grad_L nll|| / (||grad_L g|| + 1e-4), clamped to [0, 1e4], times disc_weight
    (Esser et al. 2021, Eq. 7); L = the decoder's last layer weight."""
    nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(nll_grads) / (torch.norm(g_grads) + 1e-4)
    return torch.clamp(weight, 0.0, 1e4).detach() * disc_weight


class _AdversarialReconstructionLoss(nn.Module):
    """What the KL and VQ losses share: the pixel and perceptual reconstruction distance and the
    PatchGAN discriminator with its two objectives."""

    def __init__(self, disc_start: int, pixelloss_weight: float = 1.0, disc_num_layers: int = 3,
                 disc_in_channels: int = 3, disc_factor: float = 1.0, disc_weight: float = 1.0,
                 perceptual_weight: float = 1.0, use_actnorm: bool = False, disc_conditional: bool = False,
                 disc_ndf: int = 64, disc_loss: str = "hinge", pixel_loss: str = "l1",
                 perceptual_backbone: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if disc_loss not in ("hinge", "vanilla"):
            raise ValueError(f"unknown disc_loss '{disc_loss}': use 'hinge' or 'vanilla'")
        if pixel_loss not in ("l1", "l2"):
            raise ValueError(f"unknown pixel_loss '{pixel_loss}': use 'l1' or 'l2'")
        self.pixel_weight, self.pixel_loss = pixelloss_weight, pixel_loss
        self.perceptual_loss = instantiate_from_config(perceptual_backbone) if perceptual_backbone else None
        if self.perceptual_loss is not None:
            self.perceptual_loss.requires_grad_(False).eval()
        self.perceptual_weight = perceptual_weight if self.perceptual_loss is not None else 0.0
        if self.perceptual_loss is None and perceptual_weight > 0:
            _report_perceptual_off(perceptual_weight)
        self.discriminator = NLayerDiscriminator(disc_in_channels, disc_ndf, disc_num_layers, use_actnorm)
        self.discriminator_iter_start = disc_start
        self.disc_factor, self.discriminator_weight = disc_factor, disc_weight
        self.disc_loss = hinge_d_loss if disc_loss == "hinge" else vanilla_d_loss
        self.disc_conditional = disc_conditional

    def discriminator_active(self, global_step: int) -> bool:
        """The GAN terms count from `disc_start` on (and only with disc_factor > 0)."""
        return adopt_weight(self.disc_factor, global_step, self.discriminator_iter_start) > 0

    def reconstruction_distance(self, inputs: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        """Per-pixel |x - x'| (or (x - x')^2), plus perceptual_weight * perceptual distance."""
        difference = inputs.contiguous() - reconstructions.contiguous()
        distance = difference.abs() if self.pixel_loss == "l1" else difference.pow(2)
        distance = self.pixel_weight * distance
        if self.perceptual_loss is not None and self.perceptual_weight > 0:
            distance = distance + self.perceptual_weight * self.perceptual_loss(inputs.contiguous(),
                                                                                reconstructions.contiguous())
        return distance

    def _discriminate(self, images: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if self.disc_conditional:
            if cond is None:
                raise ValueError("disc_conditional=True needs `cond`: pass it or set disc_conditional to false")
            images = torch.cat((images, cond), dim=1)
        return self.discriminator(images.contiguous())

    def generator_terms(self, nll_loss: torch.Tensor, reconstructions: torch.Tensor, global_step: int,
                        last_layer: torch.Tensor | None, cond: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(g_loss = -E[D(x')], adaptive weight lambda, disc_factor); all zero before disc_start."""
        zero = torch.zeros((), device=reconstructions.device)
        if not self.discriminator_active(global_step):
            return zero, zero, 0.0
        g_loss = -self._discriminate(reconstructions, cond).mean()
        if last_layer is None or not torch.is_grad_enabled():
            d_weight = zero  # evaluation: no gradients, as in the original
        else:
            d_weight = adaptive_weight(nll_loss, g_loss, last_layer, self.discriminator_weight)
        return g_loss, d_weight, self.disc_factor

    def discriminator_step(self, inputs: torch.Tensor, reconstructions: torch.Tensor, global_step: int,
                           cond: torch.Tensor | None, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Second optimizer: the discriminator's loss on real inputs vs detached reconstructions."""
        logits_real = self._discriminate(inputs.detach(), cond)
        logits_fake = self._discriminate(reconstructions.detach(), cond)
        disc_factor = adopt_weight(self.disc_factor, global_step, self.discriminator_iter_start)
        d_loss = disc_factor * self.disc_loss(logits_real, logits_fake)
        return d_loss, {f"{split}/disc_loss": d_loss.detach(), f"{split}/logits_real": logits_real.detach().mean(),
                        f"{split}/logits_fake": logits_fake.detach().mean()}


def _report_perceptual_off(weight: float) -> None:
    global _perceptual_off_reported
    if not _perceptual_off_reported:
        warnings.warn(f"perceptual loss is off (perceptual_weight={weight} ignored): LPIPS weights cannot be had "
                      "offline; set lossconfig.params.perceptual_backbone to a {target, params} module to enable it",
                      stacklevel=3)
        _perceptual_off_reported = True


class LPIPSWithDiscriminator(_AdversarialReconstructionLoss):
    """Loss of the KL-regularized autoencoder (the original's name, kept so original configs load)."""

    def __init__(self, disc_start: int, logvar_init: float = 0.0, kl_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(disc_start, **kwargs)
        self.kl_weight = kl_weight
        self.logvar = nn.Parameter(torch.ones(()) * logvar_init)

    def forward(self, inputs: torch.Tensor, reconstructions: torch.Tensor, posteriors, optimizer_idx: int,
                global_step: int, last_layer: torch.Tensor | None = None, cond: torch.Tensor | None = None,
                split: str = "train", weights: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if optimizer_idx == 1:
            return self.discriminator_step(inputs, reconstructions, global_step, cond, split)
        rec_loss = self.reconstruction_distance(inputs, reconstructions)
        # Laplace (L1) / Gaussian (L2) NLL with one learnable scale s = logvar: d / e^s + s.
        nll_loss = rec_loss / torch.exp(self.logvar) + self.logvar
        weighted_nll_loss = nll_loss if weights is None else weights * nll_loss
        batch = inputs.shape[0]
        nll_loss = nll_loss.sum() / batch
        weighted_nll_loss = weighted_nll_loss.sum() / batch
        kl_loss = posteriors.kl().sum() / batch
        g_loss, d_weight, disc_factor = self.generator_terms(nll_loss, reconstructions, global_step, last_layer, cond)
        loss = weighted_nll_loss + self.kl_weight * kl_loss + d_weight * disc_factor * g_loss
        return loss, {f"{split}/total_loss": loss.detach(), f"{split}/logvar": self.logvar.detach(),
                      f"{split}/kl_loss": kl_loss.detach(), f"{split}/nll_loss": nll_loss.detach(),
                      f"{split}/rec_loss": rec_loss.detach().mean(), f"{split}/d_weight": d_weight.detach(),
                      f"{split}/disc_factor": torch.tensor(disc_factor), f"{split}/g_loss": g_loss.detach()}


class VQLPIPSWithDiscriminator(_AdversarialReconstructionLoss):
    """Loss of the VQ-regularized autoencoder (the original's name, kept so original configs load):
    mean reconstruction distance + codebook_weight * codebook loss + lambda * GAN loss."""

    def __init__(self, disc_start: int, codebook_weight: float = 1.0, n_classes: int | None = None,
                 perceptual_loss: str = "lpips", **kwargs: Any) -> None:
        super().__init__(disc_start, **kwargs)  # n_classes / perceptual_loss: original options, unused here
        self.codebook_weight = codebook_weight

    def forward(self, codebook_loss: torch.Tensor, inputs: torch.Tensor, reconstructions: torch.Tensor,
                optimizer_idx: int, global_step: int, last_layer: torch.Tensor | None = None,
                cond: torch.Tensor | None = None, split: str = "train",
                predicted_indices: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if optimizer_idx == 1:
            return self.discriminator_step(inputs, reconstructions, global_step, cond, split)
        rec_loss = self.reconstruction_distance(inputs, reconstructions)
        nll_loss = rec_loss.mean()
        g_loss, d_weight, disc_factor = self.generator_terms(nll_loss, reconstructions, global_step, last_layer, cond)
        loss = nll_loss + d_weight * disc_factor * g_loss + self.codebook_weight * codebook_loss.mean()
        return loss, {f"{split}/total_loss": loss.detach(), f"{split}/quant_loss": codebook_loss.detach().mean(),
                      f"{split}/nll_loss": nll_loss.detach(), f"{split}/rec_loss": rec_loss.detach().mean(),
                      f"{split}/d_weight": d_weight.detach(), f"{split}/disc_factor": torch.tensor(disc_factor),
                      f"{split}/g_loss": g_loss.detach()}


class DummyLoss(nn.Module):
    """Placeholder loss of inference-only configs (original `ldm.modules.losses.contperceptual.DummyLoss`)."""
