"""Back-of-the-envelope numbers for taking a latent diffusion model from this course to the paper's
scale (Rombach et al. 2022, arXiv:2112.10752): parameter counts without allocating anything, the
FLOPs and saved activations of one training step, the memory that step needs, and its time,
measured on a small copy and extrapolated by FLOPs to a CPU or a GPU.

Models are built on PyTorch's `meta` device: every tensor has a shape and a dtype but no storage,
so even the 1.45B-parameter text-to-image model is built in seconds and costs no memory, and a
forward and backward pass on it runs through every layer (shapes only) while
`torch.utils.flop_counter.FlopCounterMode` counts the FLOPs of each matrix product and convolution.

    model = build_on_meta("configs/latent-diffusion/txt2img-1p4B-eval.yaml")
    parameter_counts(model)                  # {"unet": 872_300_484, "first_stage": ..., ...}
    cost = training_step_cost(model)         # FLOPs per part and saved activations, batch 1
    training_memory(model, cost, batch_size=32)

Conventions: one multiply-add is 2 FLOPs (FlopCounterMode's count); "training step" means the frozen
first stage's encoder forward, the condition encoder's forward (and backward when it is trained with
the UNet, as the paper's text and class encoders are), and the UNet's forward and backward. The
optimizer update is left out: it is a few FLOPs per parameter, not per pixel."""
from __future__ import annotations

import copy
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from ldm_lite.util import count_params, instantiate_from_config

# Dense (no sparsity) bfloat16 tensor-core peaks from NVIDIA's data sheets, in TFLOP/s.
GPU_PEAK_TFLOPS: dict[str, float] = {"A100 SXM": 312.0, "H100 SXM": 989.0}
CAPTION_KEYS = ("caption", "txt")
CLASS_KEYS = ("class_label", "class")


# ----------------------------------------------------------------------------- building without memory

def _without_checkpoint_paths(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {key: _without_checkpoint_paths(value) for key, value in node.items() if key != "ckpt_path"}
    if isinstance(node, (list, tuple)):
        return [_without_checkpoint_paths(value) for value in node]
    return node


def model_config(config: str | Path | DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The `{target, params}` of a config file or an experiment config (its `model` section), with every
    `ckpt_path` removed: counting and timing need the architecture, not the released weights."""
    if isinstance(config, (str, Path)):
        config = OmegaConf.load(config)
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    config = config.get("model", config)
    return _without_checkpoint_paths(copy.deepcopy(dict(config)))


def build_on_meta(config: str | Path | DictConfig | Mapping[str, Any]) -> torch.nn.Module:
    """The model of `config` on the meta device: real module tree and shapes, no storage, no weights read."""
    with torch.device("meta"):
        return instantiate_from_config(model_config(config))


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameters of a LatentDiffusion model by part (UNet, first stage, condition encoder), their
    total, and the trainable ones (UNet, plus the condition encoder when `cond_stage_trainable`)."""
    first_stage = getattr(model, "first_stage_model", None)
    condition = getattr(model, "cond_stage_model", None)
    shared = condition is first_stage  # `__is_first_stage__`: the first stage also encodes the condition
    counts = {
        "unet": count_params(model.model),
        "first_stage": count_params(first_stage) if first_stage is not None else 0,
        "cond_stage": count_params(condition) if condition is not None and not shared else 0,
    }
    counts["total"] = count_params(model)
    counts["trainable"] = count_params(model, trainable_only=True)
    return counts


def format_count(value: float) -> str:
    """1_454_294_526 -> '1.45B', 83_653_863 -> '83.7M', 512_512 -> '0.51M'."""
    if value >= 1e9:
        return f"{value / 1e9:.2f}B"
    return f"{value / 1e6:.1f}M" if value >= 1e6 else f"{value / 1e6:.2f}M"


def format_bytes(value: float) -> str:
    """Bytes in binary units: '335.0 MiB', '5.7 GiB', '1.6 TiB'."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value / 2**10:.1f} KiB"


# ----------------------------------------------------------------------------- one training step

@dataclass
class StepCost:
    """What one training step of `batch_size` examples costs.

    flops: FLOPs per part: "first stage (encode)" (forward only: it is frozen), "condition encoder"
    (forward, and backward when trained), "unet" (forward + backward, with the config's gradient
    checkpointing, which repeats the forward of the checkpointed blocks).
    activation_bytes: tensors the trainable parts keep for their backward pass (parameters excluded),
    at the dtype they ran in. An upper bound: a tensor saved by two operations is counted twice."""

    batch_size: int
    flops: dict[str, int]
    activation_bytes: int

    @property
    def total_flops(self) -> int:
        return sum(self.flops.values())

    def per_example(self) -> "StepCost":
        return StepCost(1, {key: value // self.batch_size for key, value in self.flops.items()},
                        self.activation_bytes // self.batch_size)


class _SavedTensorBytes:
    """Counts the bytes autograd saves for backward inside `recording()`, leaving out `excluded`
    tensors (the parameters, which are memory of their own)."""

    def __init__(self, excluded: Iterable[torch.Tensor]) -> None:
        self.excluded = {id(tensor) for tensor in excluded}
        self.total = 0

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor  # a layer may save a view (weight.t())
        if id(base) not in self.excluded:
            self.total += tensor.numel() * tensor.element_size()
        return tensor

    @contextmanager
    def recording(self) -> Iterator[None]:
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor):
            yield


def example_condition(model: torch.nn.Module, batch_size: int, device: torch.device) -> Any:
    """A stand-in condition of the right kind (before encoding): captions, class labels or, for concat
    conditioning, zero channels of the UNet's extra input. None for an unconditional model."""
    key = model.conditioning_key
    if key is None:
        return None
    if key == "concat":
        unet = model.model.diffusion_model
        size = model.image_size
        return torch.zeros(batch_size, unet.in_channels - model.channels, size, size, device=device)
    if model.cond_stage_key in CAPTION_KEYS:
        return ["a photograph of a small church on a hill at sunset"] * batch_size
    if model.cond_stage_key in CLASS_KEYS:
        return torch.zeros(batch_size, dtype=torch.long, device=device)
    raise ValueError(f"no stand-in condition for cond_stage_key '{model.cond_stage_key}' "
                     f"(conditioning '{key}'): captions, class labels and concat are supported")


def _encode_condition(model: torch.nn.Module, condition: Any) -> torch.Tensor:
    """`model.get_learned_conditioning`, except for class labels on the meta device: the class embedder
    checks the labels' range, which needs values, so the (FLOP-free) table lookup is done directly."""
    from ldm_lite.modules.encoders import ClassEmbedder

    encoder = model.cond_stage_model
    if isinstance(encoder, ClassEmbedder) and encoder.embedding.weight.is_meta:
        return encoder.embedding(condition[:, None])
    return model.get_learned_conditioning(condition)


def training_step_cost(model: torch.nn.Module, batch_size: int = 1) -> StepCost:
    """FLOPs and saved activations of one LatentDiffusion training step on `batch_size` examples,
    run on whatever device the model is on (the meta device: shapes only, no memory, no time)."""
    from ldm_lite.sampling import downsampling_factor

    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    saved = _SavedTensorBytes(model.parameters())
    flops: dict[str, int] = {}
    side = model.image_size * downsampling_factor(model)
    encoder = getattr(model.first_stage_model, "encoder", None)
    channels = encoder.conv_in.in_channels if encoder is not None else model.channels  # pixel space: the image
    images = torch.zeros(batch_size, channels, side, side, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        latents = model.get_first_stage_encoding(model.encode_first_stage(images))
    flops["first stage (encode)"] = counter.get_total_flops()

    condition = example_condition(model, batch_size, device)
    if model.conditioning_key not in (None, "concat"):
        trained = bool(model.cond_stage_trainable)
        with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(trained), saved.recording():
            condition = _encode_condition(model, condition)
            if trained:  # the gradient that reaches the encoder has the shape of its output
                condition.float().sum().backward()
        flops["condition encoder"] = counter.get_total_flops()
        condition = condition.detach()

    timesteps = torch.zeros(batch_size, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter, saved.recording():
        output = model.apply_model(torch.zeros_like(latents), timesteps, condition)
        output.float().pow(2).mean().backward()  # the loss against the noise: a few FLOPs per latent pixel
    flops["unet"] = counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return StepCost(batch_size, flops, saved.total)


def training_memory(model: torch.nn.Module, cost: StepCost, batch_size: int,
                    activation_scale: float = 1.0) -> dict[str, int]:
    """Bytes that training with plain AdamW needs, by kind, for a batch of `batch_size` on one device:

    - weights: every parameter in float32 (4 bytes), the frozen first stage included;
    - gradients: float32, trainable parameters only;
    - AdamW moments: two float32 tensors (m and v) per trainable parameter (Kingma & Ba 2015);
    - EMA weights: one float32 copy of the UNet when the config keeps an EMA;
    - activations: `cost`'s saved tensors scaled to `batch_size` (times `activation_scale`, e.g. 0.5
      for bfloat16 autocast, which saves most activations in 2 bytes).
    Left out: transient tensors (a checkpointed block's recomputed activations during its backward pass,
    attention temporaries), the framework's workspace, the data pipeline and memory fragmentation, so a
    real run fits a somewhat smaller batch than this estimate says."""
    counts = parameter_counts(model)
    per_example = cost.activation_bytes / cost.batch_size
    return {
        "weights (fp32)": 4 * counts["total"],
        "gradients (fp32)": 4 * counts["trainable"],
        "AdamW moments (2 x fp32)": 8 * counts["trainable"],
        "EMA weights (fp32)": 4 * counts["unet"] if getattr(model, "use_ema", False) else 0,
        "activations": int(per_example * batch_size * activation_scale),
    }


# ----------------------------------------------------------------------------- time

def seconds_per_call(function: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall-clock seconds of `function()` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def saved_tensor_bytes(function: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes that autograd keeps for the backward pass while `function()` runs (the activation memory
    of a training step), leaving out the tensors in `exclude` (pass the model's parameters)."""
    saved = _SavedTensorBytes(exclude)
    with saved.recording():
        function()
    return saved.total


def counted_flops(function: Callable[[], Any]) -> int:
    """FLOPs of one call of `function` (FlopCounterMode)."""
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def gpu_seconds(flops: float, peak_tflops: float, utilisation: float = 0.4) -> float:
    """Seconds for `flops` on an accelerator that sustains `utilisation` of its peak (model FLOPs
    utilisation; 30-50% is typical of well-tuned training of convolutional UNets in bfloat16)."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must lie in (0, 1], got {utilisation}")
    return flops / (peak_tflops * 1e12 * utilisation)


def scaled_unet_config(unet_config: Mapping[str, Any], model_channels: int, context_dim: int | None = None,
                       head_channels: int | None = 32) -> dict[str, Any]:
    """A copy of a UNet config with another width: the same levels, blocks and attention resolutions,
    `model_channels` (and the condition width `context_dim`, when given) replaced, no gradient
    checkpointing. The small copy that a CPU can time; its FLOPs are counted, so its speed (FLOP/s)
    carries over to the large one. `head_channels` gives the copy attention heads of that width
    (`num_head_channels`) instead of the original's fixed head count: 8 heads of a 32-channel layer
    would be 4 channels wide, a shape no matrix-multiply kernel runs efficiently."""
    config = model_config(unet_config)
    params = dict(config["params"])
    params["model_channels"] = model_channels
    if context_dim is not None and params.get("context_dim") is not None:
        params["context_dim"] = context_dim
    if head_channels is not None:
        params.update(num_heads=-1, num_head_channels=head_channels)
    params.pop("use_checkpoint", None)
    return {"target": config["target"], "params": params}


def human_seconds(seconds: float) -> str:
    """3.2 -> '3.2 s', 420 -> '7.0 min', 7200 -> '2.0 h', 3e5 -> '3.5 days', 1e8 -> '3.2 years'."""
    for unit, size, at_least in (("years", 365.25 * 86400, 2), ("days", 86400, 2), ("h", 3600, 1), ("min", 60, 1)):
        if seconds >= at_least * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Plain-text table with right-aligned columns after the first."""
    cells = [list(map(str, header))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(widths[0]) if column == 0 else cell.rjust(widths[column])
                               for column, cell in enumerate(row)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
