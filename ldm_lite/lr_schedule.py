"""Learning-rate multipliers for `torch.optim.lr_scheduler.LambdaLR`, called with the optimizer step."""
from __future__ import annotations

import math
from typing import Sequence


class WarmupCosine:
    """Linear warm-up from 0 to 1 over `warmup_steps`, then constant or a cosine decay that reaches
    `min_ratio` at `total_steps` (Loshchilov & Hutter, "SGDR", 2017, without restarts)."""

    def __init__(self, warmup_steps: int = 0, total_steps: int = 0, schedule: str = "constant",
                 min_ratio: float = 0.1) -> None:
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown lr_schedule '{schedule}': use 'constant' or 'cosine'")
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.schedule, self.min_ratio = schedule, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant" or self.total_steps <= self.warmup_steps:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class LambdaLinearScheduler:
    """The original configs' `scheduler_config` (`ldm.lr_scheduler.LambdaLinearScheduler`): per cycle, a
    linear warm-up from f_start to f_max over warm_up_steps, then a linear move to f_min at the
    cycle's end. Accepted so the original training configs run unchanged."""

    def __init__(self, warm_up_steps: Sequence[int], f_min: Sequence[float], f_max: Sequence[float],
                 f_start: Sequence[float], cycle_lengths: Sequence[float], verbosity_interval: int = 0) -> None:
        self.warm_up_steps, self.f_min, self.f_max = list(warm_up_steps), list(f_min), list(f_max)
        self.f_start, self.cycle_lengths = list(f_start), list(cycle_lengths)
        self.cycle_starts = [0] + [sum(self.cycle_lengths[: i + 1]) for i in range(len(self.cycle_lengths))]

    def __call__(self, step: int) -> float:
        cycle = max(i for i, start in enumerate(self.cycle_starts[:-1]) if step >= start) if step >= 0 else 0
        local = step - self.cycle_starts[cycle]
        if local < self.warm_up_steps[cycle]:
            return self.f_start[cycle] + (self.f_max[cycle] - self.f_start[cycle]) * local / self.warm_up_steps[cycle]
        fraction = (self.cycle_lengths[cycle] - local) / self.cycle_lengths[cycle]
        return self.f_min[cycle] + (self.f_max[cycle] - self.f_min[cycle]) * max(fraction, 0.0)
