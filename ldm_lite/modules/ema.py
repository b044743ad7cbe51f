"""Exponential moving average (EMA) of a model's weights, as kept by Latent Diffusion.

shadow <- shadow - (1 - decay_n) * (shadow - parameter), with the warm-up
decay_n = min(decay, (1 + n) / (10 + n)) after n updates, so early averages are not dominated by
the random initialisation. Buffers: `decay`, `num_updates`, and one shadow buffer per trainable
parameter named like the parameter without dots (the layout of the released checkpoints)."""
from __future__ import annotations

import torch
from torch import nn


class LitEma(nn.Module):
    """EMA shadow of `model`'s trainable parameters, stored as buffers (saved in the state dict)."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, use_num_updates: bool = True):
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
        self.register_buffer("decay", torch.tensor(decay, dtype=torch.float32))
        self.register_buffer("num_updates", torch.tensor(0 if use_num_updates else -1, dtype=torch.int))
        self.shadow_names: dict[str, str] = {}  # parameter name -> buffer name
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                shadow_name = name.replace(".", "")
                self.shadow_names[name] = shadow_name
                self.register_buffer(shadow_name, parameter.detach().clone())
        self.stored_parameters: list[torch.Tensor] = []

    def current_decay(self) -> float:
        """The decay the next update uses (with the warm-up when updates are counted)."""
        decay = float(self.decay)
        if self.num_updates >= 0:
            n = int(self.num_updates) + 1
            decay = min(decay, (1 + n) / (10 + n))
        return decay

    @torch.no_grad()
    def forward(self, model: nn.Module) -> None:
        """One EMA update from the current weights of `model`."""
        decay = self.current_decay()
        if self.num_updates >= 0:
            self.num_updates += 1
        buffers = dict(self.named_buffers())
        for name, parameter in model.named_parameters():
            if name in self.shadow_names:
                shadow = buffers[self.shadow_names[name]]
                shadow.lerp_(parameter.detach().to(shadow.dtype), 1.0 - decay)
            elif parameter.requires_grad:
                raise KeyError(f"parameter '{name}' has no EMA shadow: build LitEma after freezing what stays frozen")

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into `model`."""
        buffers = dict(self.named_buffers())
        for name, parameter in model.named_parameters():
            if name in self.shadow_names:
                parameter.copy_(buffers[self.shadow_names[name]])

    def store(self, parameters) -> None:
        """Keep a copy of `parameters` so that `restore` can bring them back after `copy_to`."""
        self.stored_parameters = [parameter.detach().clone() for parameter in parameters]

    @torch.no_grad()
    def restore(self, parameters) -> None:
        """Put back the parameters saved by `store`."""
        if not self.stored_parameters:
            raise RuntimeError("LitEma.restore called without a matching store")
        for stored, parameter in zip(self.stored_parameters, parameters):
            parameter.copy_(stored)
        self.stored_parameters = []
