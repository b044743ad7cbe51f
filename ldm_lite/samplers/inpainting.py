"""Inpainting helpers. Convention everywhere: `mask` = 1 where the image is to be FILLED
(white in `<n>_mask.png`), 0 where it is kept.

Two ways to inpaint:
(a) any diffusion model, by blending inside the reverse loop: before each step the kept region
    is replaced by the known latent noised to the current level,
        x_t = mask * x_t + (1 - mask) * q_sample(x0_known, t),
    q_sample(x0, t) = sqrt(a_t) x0 + sqrt(1 - a_t) eps (Ho et al. 2020, Eq. 4); at the end the kept
    region is set to x0_known exactly. Optional RePaint resampling (Lugmayr et al. 2022,
    Algorithm 1): after a step t -> t_prev, re-noise back to t with q(x_t | x_t_prev) and repeat,
    so the generated region harmonises with the pasted one.
(b) a model trained for it (concat conditioning, as the original's inpainting model): the UNet
    sees [x_t, latent of the masked image, mask downsampled to the latent size] on channels; the
    decoded result is composited in pixel space, result = mask * generated + (1 - mask) * original."""
from __future__ import annotations

import torch


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def blend_known_region(x: torch.Tensor, x0_known: torch.Tensor, mask: torch.Tensor, alpha: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """x_t with its kept region (mask == 0) replaced by q_sample(x0_known, t) at alpha-bar = `alpha`."""
    x0_known = x0_known.to(x)
    noised_known = alpha ** 0.5 * x0_known + (1 - alpha) ** 0.5 * _noise(x0_known, generator)
    return mask * x + (1 - mask) * noised_known


def renoise(x_prev: torch.Tensor, alpha_prev: float, alpha: float,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """One jump back up the chain: x_t ~ q(x_t | x_prev) = N(sqrt(a_t / a_prev) x_prev, (1 - a_t / a_prev) I)."""
    ratio = alpha / alpha_prev
    return ratio ** 0.5 * x_prev + (1 - ratio) ** 0.5 * _noise(x_prev, generator)


def composite(generated: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pixel-space compositing: generated where mask = 1, original where mask = 0."""
    return mask * generated + (1 - mask) * original
