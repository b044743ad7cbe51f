"""Classifier-free guidance (Ho & Salimans 2022, Eq. 6), in one batched model call.

    output = output(x, null) + s * (output(x, c) - output(x, null))

The unconditional and conditional inputs are stacked along the batch, so the UNet runs once on
2B samples instead of twice on B. The null condition comes from the caller: the embedding of the
empty prompt "" for text models, the extra "null" class for class-conditional models. Guidance is
applied to the raw model output: eps, x0 and v are affine in each other for a fixed x_t, so
guiding any of them gives the same result."""
from __future__ import annotations

from typing import Any, Callable

import torch
from einops import repeat

ModelFn = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def stack_conditions(unconditional: Any, conditional: Any) -> Any:
    """Concatenate unconditional and conditional along the batch: tensors, lists of tensors and
    the hybrid dict-of-lists form {"c_concat": [...], "c_crossattn": [...]}. An unconditional
    tensor of batch 1 is repeated to the conditional batch."""
    if isinstance(conditional, dict):
        if not isinstance(unconditional, dict) or set(unconditional) != set(conditional):
            raise ValueError(f"unconditional_cond must be a dict with the same keys as cond {sorted(conditional)}")
        return {key: stack_conditions(unconditional[key], conditional[key]) for key in conditional}
    if isinstance(conditional, (list, tuple)):
        if not isinstance(unconditional, (list, tuple)) or len(unconditional) != len(conditional):
            raise ValueError("unconditional_cond must be a list of the same length as cond")
        return [stack_conditions(u, c) for u, c in zip(unconditional, conditional)]
    if isinstance(conditional, torch.Tensor) and isinstance(unconditional, torch.Tensor):
        if unconditional.shape[0] == 1 and conditional.shape[0] > 1:
            unconditional = repeat(unconditional, "1 ... -> b ...", b=conditional.shape[0])  # a view, no copy
        if unconditional.shape != conditional.shape:
            raise ValueError(f"unconditional_cond has shape {tuple(unconditional.shape)} but cond has "
                             f"{tuple(conditional.shape)}: build both with the same conditioning model")
        return torch.cat([unconditional, conditional])
    raise TypeError(f"cannot stack conditions of types {type(unconditional).__name__} and {type(conditional).__name__}")


class GuidedDenoiser:
    """`model_fn` with classifier-free guidance of strength `guidance_scale` (1 = no guidance):
    call it as denoiser(x, t). The stacked [null, cond] condition is built once, not every step."""

    def __init__(self, model_fn: ModelFn, cond: Any, unconditional_cond: Any = None, guidance_scale: float = 1.0):
        if guidance_scale != 1.0 and unconditional_cond is None:
            raise ValueError(f"guidance_scale={guidance_scale} needs unconditional_cond (the null condition: "
                             "embedding of the empty prompt or the null class); pass it or use guidance_scale=1")
        self.model_fn = model_fn
        self.guidance_scale = guidance_scale
        self.guided = guidance_scale != 1.0
        self.cond = stack_conditions(unconditional_cond, cond) if self.guided else cond

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not self.guided:
            return self.model_fn(x, t, self.cond)
        output = self.model_fn(torch.cat([x, x]), torch.cat([t, t]), self.cond)
        unconditional, conditional = output.chunk(2)
        return unconditional + self.guidance_scale * (conditional - unconditional)


def guided_model_output(model_fn: ModelFn, x: torch.Tensor, t: torch.Tensor, cond: Any,
                        unconditional_cond: Any = None, guidance_scale: float = 1.0) -> torch.Tensor:
    """One guided model output (see `GuidedDenoiser`)."""
    return GuidedDenoiser(model_fn, cond, unconditional_cond, guidance_scale)(x, t)
