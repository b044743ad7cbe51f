"""A tiny model and dataset that follow the training protocol, for testing the loop itself."""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.data import Dataset


class ToyImages(Dataset):
    """`length` fixed random 8x8 RGB images in [-1, 1] (HWC), as the real datasets return them."""

    def __init__(self, length: int = 64, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(length, 8, 8, 3, generator=generator) * 2 - 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "class_label": index % 4}


class ToyAutoencoder(nn.Module):
    """A conv autoencoder; with `adversarial=True` it has a second optimizer for a critic, like the
    first-stage models."""

    def __init__(self, channels: int = 4, adversarial: bool = False, step_delay: float = 0.0) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, channels, 3, padding=1)
        self.decoder = nn.Conv2d(channels, 3, 3, padding=1)
        self.critic = nn.Conv2d(3, 1, 3, padding=1) if adversarial else None
        self.step_delay = step_delay
        self.learning_rate = 1e-3
        self.ema_calls = 0

    def reconstruct(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch["image"].permute(0, 3, 1, 2)
        return images, self.decoder(torch.tanh(self.encoder(images)))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        optimizers = [torch.optim.Adam(list(self.encoder.parameters()) + list(self.decoder.parameters()),
                                       lr=self.learning_rate)]
        if self.critic is not None:
            optimizers.append(torch.optim.Adam(self.critic.parameters(), lr=self.learning_rate))
        return optimizers

    def training_step(self, batch: dict, optimizer_index: int, global_step: int):
        if self.step_delay:
            import time

            time.sleep(self.step_delay)
        images, reconstructions = self.reconstruct(batch)
        loss = (images - reconstructions).abs().mean()
        if optimizer_index == 0:
            if self.critic is not None:
                loss = loss - 0.01 * self.critic(reconstructions).mean()
            return loss, {"train/rec_loss": loss.item()}
        critic_loss = self.critic(reconstructions.detach()).mean() - self.critic(images).mean()
        return critic_loss, {"train/critic_loss": critic_loss.item()}

    def validation_step(self, batch: dict, global_step: int) -> dict[str, float]:
        images, reconstructions = self.reconstruct(batch)
        return {"val/rec_loss": (images - reconstructions).abs().mean().item()}

    def log_images(self, batch: dict, max_images: int = 8) -> dict[str, torch.Tensor]:
        images, reconstructions = self.reconstruct(batch)
        return {"inputs": images[:max_images], "reconstructions": reconstructions[:max_images].clamp(-1, 1)}

    def on_train_batch_end(self) -> None:
        self.ema_calls += 1

    @contextlib.contextmanager
    def ema_scope(self):
        yield
