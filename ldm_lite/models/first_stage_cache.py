"""Encodings of a frozen first stage, kept per training image so that each image is encoded once.

The first stage of an LDM is frozen and deterministic in eval mode, so E(x) of an image is the same at every
epoch: a KL posterior's parameters (mean and log-variance; the latent is still sampled afresh each step) or a
VQ model's pre-quantization latent. On a CPU the encoder is about a seventh of a lite text LDM's training step.
Images are keyed by a hash of their bytes, so an augmented image (a flip, a new crop) is simply a new key."""
from __future__ import annotations

import hashlib
from typing import Callable

import torch

from ldm_lite.modules.distributions import DiagonalGaussianDistribution

Encoding = torch.Tensor | DiagonalGaussianDistribution


class FirstStageCache:
    """`encode(encoder, images)` returns what `encoder(images)` returns, calling the encoder only for the
    images not seen before. Entries live on the CPU in the encoder's dtype; once `capacity` images are held,
    the cache starts again empty."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self.entries: dict[bytes, torch.Tensor] = {}
        self.returns_posterior: bool | None = None  # learnt from the first call

    @staticmethod
    def key(image: torch.Tensor) -> bytes:
        return hashlib.blake2b(image.contiguous().view(torch.uint8).numpy().tobytes(), digest_size=16).digest()

    def encode(self, encoder: Callable[[torch.Tensor], Encoding], images: torch.Tensor) -> Encoding:
        keys = [self.key(image) for image in images.detach().cpu()]
        if len(self.entries) + len(keys) > self.capacity:
            self.entries.clear()
        new_keys = [key for key in dict.fromkeys(keys) if key not in self.entries]
        if new_keys:
            encoded = encoder(images[[keys.index(key) for key in new_keys]])
            self.returns_posterior = isinstance(encoded, DiagonalGaussianDistribution)
            values = encoded.parameters if self.returns_posterior else encoded
            self.entries.update(zip(new_keys, values.detach().cpu()))
        stacked = torch.stack([self.entries[key] for key in keys]).to(images.device)
        return DiagonalGaussianDistribution(stacked) if self.returns_posterior else stacked
