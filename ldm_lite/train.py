"""One readable training loop for every model of the project (autoencoders and latent diffusion).

`fit(config)` is what `main.py -t` and the notebooks call. It builds the model and the data from
the config, then repeats: batch -> `training_step` for each optimizer -> backward -> (after
`accumulate_grad_batches` micro-batches) clip, optimizer step, LR schedule step, EMA hook. Every
`val_check_interval` steps it validates (EMA weights when the model has them), every
`batch_frequency` steps it saves the model's `log_images` as grids, every `every_n_train_steps` it
writes a checkpoint; on exit, on SIGINT/SIGTERM and on an exception `last.ckpt` is brought to the
last step trained. One process at a time trains a run directory (`ldm_lite.run_lock`).

Devices, mixed precision and data parallelism go through `accelerate`: run under `torchrun` or
`accelerate launch` with N processes and each rank trains on its share of every batch, gradients
are averaged, and only rank 0 writes files.

A trainable model is an `nn.Module` with (see the README's "model protocol"):
`learning_rate`, `configure_optimizers() -> list[Optimizer]`,
`training_step(batch, optimizer_index, global_step) -> (loss, logs)`,
`validation_step(batch, global_step) -> logs`, `log_images(batch, max_images) -> {name: NCHW}`,
and optionally `on_train_batch_end()` (EMA) and `ema_scope()`."""
from __future__ import annotations

import contextlib
import csv
import math
import random
import shutil
import signal
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from omegaconf import DictConfig, OmegaConf
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, Sampler

from ldm_lite.checkpoint import (DiskFullError, atomic_write, disk_is_full, load_training_checkpoint,
                                 save_training_checkpoint)
from ldm_lite.lr_schedule import WarmupCosine
from ldm_lite.progress import progress_bar
from ldm_lite.run_lock import RunLock, describe_holder
from ldm_lite.util import default_device, instantiate_from_config, save_image_grid, seed_everything

PRECISIONS = {"32": "no", "bf16": "bf16", "16": "fp16"}


class TrainingInterrupted(Exception):
    """Raised by `fit` when SIGINT or SIGTERM arrived, after `last.ckpt` was written at the step
    reached; `main.py` then exits with 128 + `signal_number` (130, 143), as a killed program does."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"received {signal.Signals(signal_number).name}")
        self.signal_number = signal_number


@dataclass
class TrainerSettings:
    """The `lightning.trainer` and `lightning.callbacks` sections of a config, with CLI overrides."""

    max_steps: int
    max_epochs: int
    precision: str
    accumulate_grad_batches: int
    val_check_interval: int
    limit_val_batches: int
    log_every_n_steps: int
    lr_warmup_steps: int
    lr_schedule: str
    lr_min_ratio: float
    gradient_clip_val: float
    channels_last: bool
    image_log_frequency: int
    max_images: int
    checkpoint_every_n_steps: int

    @classmethod
    def from_config(cls, config: DictConfig) -> "TrainerSettings":
        trainer = config.lightning.trainer
        callbacks = config.lightning.callbacks
        precision = str(trainer.precision)
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision '{precision}': use one of {', '.join(PRECISIONS)}")
        if int(trainer.max_steps) == 0 or int(trainer.max_steps) < -1:
            raise ValueError(f"max_steps is {trainer.max_steps} (--max_steps, lightning.trainer.max_steps): give a "
                             "positive number of optimizer steps, or -1 to stop after max_epochs")
        if int(trainer.max_epochs) < 1:
            raise ValueError(f"max_epochs is {trainer.max_epochs} (--max_epochs, lightning.trainer.max_epochs): "
                             "give a positive number of epochs")
        if int(trainer.accumulate_grad_batches) < 1:
            raise ValueError(f"lightning.trainer.accumulate_grad_batches is {trainer.accumulate_grad_batches}: "
                             "give a positive number of batches (1 = no accumulation)")
        return cls(
            max_steps=int(trainer.max_steps), max_epochs=int(trainer.max_epochs), precision=precision,
            accumulate_grad_batches=int(trainer.accumulate_grad_batches),
            val_check_interval=int(trainer.val_check_interval), limit_val_batches=int(trainer.limit_val_batches),
            log_every_n_steps=int(trainer.log_every_n_steps), lr_warmup_steps=int(trainer.lr_warmup_steps),
            lr_schedule=str(trainer.lr_schedule), lr_min_ratio=float(trainer.lr_min_ratio),
            gradient_clip_val=float(trainer.gradient_clip_val), channels_last=bool(trainer.channels_last),
            image_log_frequency=int(callbacks.image_logger.params.batch_frequency),
            max_images=int(callbacks.image_logger.params.max_images),
            checkpoint_every_n_steps=int(callbacks.checkpoint.params.every_n_train_steps),
        )


class EpochSampler(Sampler[int]):
    """A shuffled order that is a pure function of (seed, epoch), split across ranks, and able to
    start in the middle of an epoch: this is what makes a resumed run see the same batches."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.length = len(dataset)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch, self.start_batch = 0, 0

    def batches_per_epoch(self) -> int:
        return self.length // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.length, generator=generator)
        usable = self.batches_per_epoch() * self.batch_size * self.world_size
        mine = order[:usable].view(-1, self.world_size, self.batch_size)[:, self.rank]  # (batches, batch_size)
        return iter(mine[self.start_batch:].reshape(-1).tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start_batch) * self.batch_size


class _TrainingStep(torch.nn.Module):
    """Routes `training_step` through `forward`, so that DistributedDataParallel sees the call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict, optimizer_index: int, global_step: int):
        return self.model.training_step(batch, optimizer_index, global_step)


class RunLogger:
    """Writes `metrics.csv` (step, epoch, name, value), the loss-curve PNG, image grids and, when
    tensorboard is installed, TensorBoard events. Only rank 0 gets one."""

    def __init__(self, logdir: Path, resumed_step: int | None = None) -> None:
        self.logdir = logdir
        self.metrics_path = logdir / "metrics.csv"
        if resumed_step is not None and self.metrics_path.exists():
            _drop_rows_after(self.metrics_path, resumed_step)
        new_file = not self.metrics_path.exists()
        self.metrics_file = open(self.metrics_path, "a", newline="")
        self.metrics = csv.writer(self.metrics_file)
        if new_file:
            self.metrics.writerow(["step", "epoch", "name", "value"])
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(logdir / "tensorboard"))
        except ImportError:
            self.tensorboard = None

    def log_scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        for name, value in values.items():
            self.metrics.writerow([step, epoch, name, f"{float(value):.6g}"])
            if self.tensorboard is not None:
                self.tensorboard.add_scalar(name, float(value), step)
        self.metrics_file.flush()

    def log_images(self, images: dict[str, torch.Tensor], split: str, step: int, epoch: int, batch_index: int) -> None:
        for name, grid in images.items():
            path = self.logdir / "images" / split / f"{name}_gs-{step:06}_e-{epoch:06}_b-{batch_index:06}.png"
            save_image_grid(grid, path)

    def plot_loss_curve(self) -> None:
        plot_metrics(self.metrics_path, self.logdir / "loss_curve.png")

    def close(self) -> None:
        self.metrics_file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def finish(self, after_failure: bool = False) -> None:
        """Plot the loss curve and close the files. After a failure (a full disk, say) this is best
        effort, so that the error that stopped training is the one reported."""
        for step in (self.plot_loss_curve, self.close):
            try:
                step()
            except OSError:
                if not after_failure:
                    raise


def _drop_rows_after(metrics_path: Path, step: int) -> None:
    """Keep the rows of `metrics.csv` up to `step`: a run killed after its last checkpoint logged
    steps that the resumed run repeats. A row cut short by the kill goes too."""
    with open(metrics_path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [row for row in rows[1:] if len(row) == 4 and row[0].isdigit() and int(row[0]) <= step]
    if len(kept) == len(rows) and metrics_path.read_bytes().endswith(b"\n"):
        return

    def write(temporary: str) -> None:
        with open(temporary, "w", newline="") as handle:
            csv.writer(handle).writerows(kept)

    atomic_write(metrics_path, write)


def read_metrics(metrics_path: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """`metrics.csv` as {name: (steps, values)}."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    with open(metrics_path, newline="") as handle:
        for row in csv.DictReader(handle):
            steps, values = series.setdefault(row["name"], ([], []))
            steps.append(int(row["step"]))
            values.append(float(row["value"]))
    return series


def plot_metrics(metrics_path: str | Path, image_path: str | Path) -> None:
    """Plot every `*loss*` series of a `metrics.csv` against the step (train smoothed, val as points)."""
    from matplotlib.figure import Figure  # no pyplot: the backend of a notebook stays untouched

    series = {name: values for name, values in read_metrics(metrics_path).items() if "loss" in name}
    if not series:
        return
    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    for name, (steps, values) in sorted(series.items()):
        if name.startswith("val/"):
            axis.plot(steps, values, "o-", label=name, markersize=3)
        else:
            window = max(1, len(values) // 50)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            axis.plot(steps[window - 1:], smooth, label=name)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    if all(value > 0 for _, values in series.values() for value in values):
        axis.set_yscale("log")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(image_path, dpi=100)


def scaled_learning_rate(base_learning_rate: float, batch_size: int, accumulate: int, devices: int,
                         scale_lr: bool) -> float:
    """The original's rule: lr = accumulate_grad_batches x devices x batch_size x base_lr (when scale_lr)."""
    return accumulate * devices * batch_size * base_learning_rate if scale_lr else base_learning_rate


def make_logdir(root: str | Path, name: str) -> Path:
    """`<root>/<%Y-%m-%dT%H-%M-%S>_<name>/`, as the original main.py names its runs."""
    return Path(root) / f"{datetime.now().strftime('%Y-%m-%dT%H-%M-%S')}_{name}"


def _rng_states() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@contextlib.contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """While the loop runs, SIGINT / SIGTERM only record themselves in the yielded list; the loop
    checks it after each optimizer step, so it stops between steps with a consistent state."""
    received: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, lambda number, frame: received.append(number))
        except ValueError:  # not the main thread: keep the default handlers
            pass
    try:
        yield received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _set_trainable(optimizers: list[torch.optim.Optimizer], index: int) -> None:
    """With several optimizers, let gradients flow only into the parameters of optimizer `index`
    (the generator step must not fill the discriminator's gradients, and vice versa)."""
    mine = {id(p) for group in optimizers[index].param_groups for p in group["params"]}
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.requires_grad_(id(parameter) in mine)


def _apply_learning_rates(optimizers: list[torch.optim.Optimizer], schedulers: list[LambdaLR],
                          configured: list[list[float]]) -> bool:
    """After loading a checkpoint: continue at the config's learning rates (`configured`, each scheduler's
    base_lrs before loading) and this run's schedule, at the point of the schedule reached. Returns whether
    the rates differ from the checkpoint's."""
    changed = False
    for optimizer, scheduler, rates in zip(optimizers, schedulers, configured):
        changed |= not all(math.isclose(new, old, rel_tol=1e-9) for new, old in zip(rates, scheduler.base_lrs))
        scheduler.base_lrs = list(rates)
        for group, rate, multiplier in zip(optimizer.param_groups, rates, scheduler.lr_lambdas):
            group["initial_lr"] = rate
            group["lr"] = rate * multiplier(scheduler.last_epoch)
    return changed


def _optimizer_step(optimizer: torch.optim.Optimizer, global_step: int) -> None:
    """`optimizer.step()`, with a learning rate too large for float32 named as such."""
    try:
        optimizer.step()
    except RuntimeError as error:
        if "overflow" not in str(error):
            raise
        rate = optimizer.param_groups[0]["lr"]
        raise FloatingPointError(f"the optimizer step overflows float32 at learning rate {rate:.3g} (step "
                                 f"{global_step}): lower model.base_learning_rate (e.g. 1e-4)") from None


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    return batch


def fit(
    config: DictConfig,
    logdir: str | Path | None = None,
    resume_from: str | Path | None = None,
    seed: int = 23,
    scale_lr: bool = True,
    cpu: bool = False,
    progress: bool = True,
) -> torch.nn.Module:
    """Train the model of `config` and return it (unwrapped, on its device, in eval mode).

    `logdir` defaults to `logs/<now>_<config name>`; `resume_from` is a `last.ckpt` to continue
    from (the same step, optimizer, schedule, EMA, RNG and data order; a learning rate changed in
    the config since then applies from there on). Trainer settings come from `config.lightning`;
    override them in the config (`config.lightning.trainer.max_steps = 100`).

    The process that writes (rank 0) holds the run's lock (`ldm_lite.run_lock`) while it trains: a
    second `fit` on the same `logdir` is refused. A run folder made by this call that holds no
    checkpoint and no logged metric when training fails is removed."""
    settings = TrainerSettings.from_config(config)
    cpu = cpu or default_device().type == "cpu"  # accelerate runs gloo data parallelism only when told "cpu"
    if settings.precision == "16" and (cpu or not torch.cuda.is_available()):
        raise ValueError("precision 16 (fp16 mixed precision) needs a CUDA GPU: use --precision bf16 or 32")
    accelerator = Accelerator(
        mixed_precision=PRECISIONS[settings.precision], cpu=cpu,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    logdir = Path(logdir) if logdir is not None else make_logdir("logs", "run")
    if not accelerator.is_main_process:
        return _train(config, settings, accelerator, logdir, resume_from, seed, scale_lr, progress)
    created = not logdir.exists()
    with RunLock(logdir) as lock:
        if lock.stale_holder:
            print(f"{logdir} was locked by {describe_holder(lock.stale_holder)}, which has ended: taking it over")
        for folder in (logdir, logdir / "configs", logdir / "checkpoints"):  # of a holder killed while saving
            for stale in folder.glob(".*.tmp"):
                stale.unlink()
        try:
            return _train(config, settings, accelerator, logdir, resume_from, seed, scale_lr, progress)
        except BaseException:
            if created and not _holds_results(logdir):
                shutil.rmtree(logdir, ignore_errors=True)
            raise


def _holds_results(logdir: Path) -> bool:
    """Whether a run folder holds a checkpoint or a logged metric (more than the CSV header)."""
    metrics = logdir / "metrics.csv"
    logged = metrics.is_file() and len(metrics.read_bytes().splitlines()) > 1
    return logged or any((logdir / "checkpoints").glob("*.ckpt"))


def _train(config: DictConfig, settings: TrainerSettings, accelerator: Accelerator, logdir: Path,
           resume_from: str | Path | None, seed: int, scale_lr: bool, progress: bool) -> torch.nn.Module:
    """The body of `fit`, once the run directory is locked."""
    is_main = accelerator.is_main_process
    seed_everything(seed + accelerator.process_index)

    model = instantiate_from_config(config.model)
    data = instantiate_from_config(config.data)
    batch_size = int(config.data.params.batch_size)
    model.learning_rate = scaled_learning_rate(
        float(config.model.base_learning_rate), batch_size, settings.accumulate_grad_batches,
        accelerator.num_processes, scale_lr)
    if is_main:
        print(f"Setting learning rate to {model.learning_rate:.2e} = {settings.accumulate_grad_batches} "
              f"(accumulate_grad_batches) * {accelerator.num_processes} (num_gpus) * {batch_size} (batchsize) "
              f"* {float(config.model.base_learning_rate):.2e} (base_lr)" if scale_lr else
              f"Setting learning rate to {model.learning_rate:.2e}")
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)

    optimizers = model.configure_optimizers()
    if isinstance(optimizers, torch.optim.Optimizer):
        optimizers = [optimizers]
    schedule_config = getattr(model, "scheduler_config", None)
    multiplier = (instantiate_from_config(schedule_config) if schedule_config is not None else
                  WarmupCosine(settings.lr_warmup_steps, settings.max_steps, settings.lr_schedule, settings.lr_min_ratio))
    schedulers = [LambdaLR(optimizer, multiplier) for optimizer in optimizers]

    train_set = data.datasets["train"]
    sampler = EpochSampler(train_set, batch_size, seed, accelerator.process_index, accelerator.num_processes)
    if sampler.batches_per_epoch() == 0:
        raise ValueError(f"the training set has {len(train_set)} examples, fewer than one batch of {batch_size} "
                         f"per process: lower data.params.batch_size")
    train_loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, num_workers=data.num_workers,
                              drop_last=True)
    has_validation = "validation" in data.datasets

    global_step, epoch, micro_batches = 0, 0, 0
    if resume_from is not None:
        state = load_training_checkpoint(resume_from)
        model.load_state_dict(state["state_dict"])
        configured = [list(scheduler.base_lrs) for scheduler in schedulers]
        schedule_shape = dict(vars(multiplier))  # LambdaLR restores its callable's attributes (total_steps) too
        for optimizer, optimizer_state in zip(optimizers, state["optimizer_states"]):
            optimizer.load_state_dict(optimizer_state)
        for scheduler, scheduler_state in zip(schedulers, state["lr_schedulers"]):
            scheduler.load_state_dict(scheduler_state)
        vars(multiplier).update(schedule_shape)  # the schedule is this run's: a new --max_steps stretches it
        global_step, epoch = state["global_step"], state["epoch"]
        sampler.start_batch = state["batch_in_epoch"]
        _restore_rng_states(state["rng_states"])
        if is_main:
            print(f"Resumed from {resume_from} at step {global_step} (epoch {epoch})")
        trained = schedulers[0].base_lrs[0]
        if _apply_learning_rates(optimizers, schedulers, configured) and is_main:
            print(f"The learning rate changed since the checkpoint ({trained:.2e} -> {configured[0][0]:.2e}): "
                  "training continues at the new rate")

    step_module = accelerator.prepare(_TrainingStep(model))
    optimizers = [accelerator.prepare(optimizer) for optimizer in optimizers]
    model = accelerator.unwrap_model(step_module).model
    device = accelerator.device

    logger = None
    start_step, saved_step = global_step, None  # saved_step: the step of the last.ckpt this process wrote last
    if is_main:
        for folder in ("checkpoints", "configs", "images/train", "images/val"):
            (logdir / folder).mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
        atomic_write(logdir / "configs" / f"{stamp}-project.yaml",
                     lambda temporary: OmegaConf.save(config, temporary))
        logger = RunLogger(logdir, global_step if resume_from is not None else None)

    def checkpoint_state() -> dict[str, Any]:
        return {
            "state_dict": model.state_dict(),
            "optimizer_states": [optimizer.state_dict() for optimizer in optimizers],
            "lr_schedulers": [scheduler.state_dict() for scheduler in schedulers],
            "global_step": global_step, "epoch": epoch, "batch_in_epoch": sampler.start_batch,
            "rng_states": _rng_states(),
            "config": OmegaConf.to_yaml(config),
        }

    def save_checkpoint(*names: str) -> None:
        nonlocal saved_step
        accelerator.wait_for_everyone()
        if is_main:
            state = checkpoint_state()
            for name in names:
                save_training_checkpoint(state, logdir / "checkpoints" / name)
        saved_step = global_step

    def unsaved_progress() -> bool:  # steps trained since the start (or the resumed step) that last.ckpt lacks
        return global_step > start_step and global_step != saved_step

    def validate() -> None:
        if not has_validation:
            return
        model.eval()
        totals: dict[str, float] = {}
        count = 0
        scope = model.ema_scope() if hasattr(model, "ema_scope") else contextlib.nullcontext()
        with torch.no_grad(), scope, accelerator.autocast():
            for index, batch in enumerate(data.val_dataloader()):
                if index >= settings.limit_val_batches:
                    break
                batch = _to_device(batch, device)
                for name, value in model.validation_step(batch, global_step).items():
                    totals[name] = totals.get(name, 0.0) + float(value)
                count += 1
                if index == 0 and is_main:
                    logger.log_images(model.log_images(batch, max_images=settings.max_images), "val",
                                      global_step, epoch, index)
        if is_main and count:
            logger.log_scalars({name: total / count for name, total in totals.items()}, global_step, epoch)
            logger.plot_loss_curve()
        model.train()

    total_steps = settings.max_steps if settings.max_steps >= 0 else settings.max_epochs * sampler.batches_per_epoch()
    if is_main and (global_step >= total_steps or epoch >= settings.max_epochs):
        print(f"Nothing to train: the run is at step {global_step} (epoch {epoch}) and stops at max_steps "
              f"{settings.max_steps}, max_epochs {settings.max_epochs}: raise --max_steps or --max_epochs")
    bar = progress_bar(total=total_steps, initial=global_step, disable=not (progress and is_main),
                       desc="train", dynamic_ncols=True, leave=True)  # LDM_LITE_PROGRESS: ldm_lite/progress.py
    model.train()
    try:
        with _stop_requests() as stop_requests:
            while global_step < total_steps and epoch < settings.max_epochs:
                sampler.epoch = epoch
                for batch in train_loader:
                    batch = _to_device(batch, device)
                    micro_batches += 1
                    sync = micro_batches % settings.accumulate_grad_batches == 0
                    logs: dict[str, float] = {}
                    for index, optimizer in enumerate(optimizers):
                        if len(optimizers) > 1:
                            _set_trainable(optimizers, index)
                        no_sync = contextlib.nullcontext() if sync else accelerator.no_sync(step_module)
                        with no_sync, accelerator.autocast():
                            loss, step_logs = step_module(batch, index, global_step)
                        if not torch.isfinite(loss):
                            advice = "" if settings.precision == "32" else " or train in float32 (--precision 32)"
                            raise FloatingPointError(f"loss is {loss.item()} at step {global_step}: lower the "
                                                     f"learning rate (model.base_learning_rate){advice}")
                        accelerator.backward(loss / settings.accumulate_grad_batches)
                        logs.update(step_logs)
                        if sync:
                            if settings.gradient_clip_val > 0:
                                accelerator.clip_grad_norm_(
                                    [p for group in optimizer.param_groups for p in group["params"]],
                                    settings.gradient_clip_val)
                            _optimizer_step(optimizer, global_step)
                            optimizer.zero_grad(set_to_none=True)
                            schedulers[index].step()
                    if not sync:
                        continue
                    global_step += 1
                    sampler.start_batch += 1
                    if hasattr(model, "on_train_batch_end"):
                        model.on_train_batch_end()
                    bar.update(1)
                    if stop_requests:
                        raise TrainingInterrupted(stop_requests[0])
                    if is_main and (global_step % settings.log_every_n_steps == 0 or global_step == 1):
                        scalars = {name: float(value) for name, value in logs.items()}
                        scalars["train/lr"] = schedulers[0].get_last_lr()[0]
                        logger.log_scalars(scalars, global_step, epoch)
                        bar.set_postfix({name.split("/")[-1]: f"{value:.4f}" for name, value in
                                         scalars.items() if "loss" in name}, refresh=False)
                    if is_main and settings.image_log_frequency > 0 and global_step % settings.image_log_frequency == 0:
                        model.eval()
                        with torch.no_grad(), accelerator.autocast():
                            images = model.log_images(batch, max_images=settings.max_images)
                        logger.log_images(images, "train", global_step, epoch, sampler.start_batch)
                        model.train()
                    if settings.val_check_interval > 0 and global_step % settings.val_check_interval == 0:
                        validate()
                    if settings.checkpoint_every_n_steps > 0 and global_step % settings.checkpoint_every_n_steps == 0:
                        save_checkpoint(f"step={global_step:06}.ckpt", "last.ckpt")
                    if global_step >= total_steps:
                        break
                else:
                    epoch += 1
                    sampler.start_batch = 0
        if settings.val_check_interval > 0 and global_step % settings.val_check_interval != 0:
            validate()
        if unsaved_progress():
            save_checkpoint("last.ckpt")
    except BaseException as error:
        # Whatever stopped the loop, the last completed step is not lost.
        if is_main:
            last = logdir / "checkpoints" / "last.ckpt"
            save_error = None
            if unsaved_progress():
                try:
                    save_training_checkpoint(checkpoint_state(), last)
                    saved_step = global_step
                except (OSError, RuntimeError) as failure:
                    save_error = failure
            if disk_is_full(save_error) or disk_is_full(error):
                resume = f"free some space, then resume with main.py -r {logdir} -t"
                if saved_step is not None:
                    kept = f"the last good checkpoint, {last} at step {saved_step}, is kept; {resume}"
                elif resume_from is not None:
                    kept = f"the checkpoint it resumed from, {resume_from} at step {start_step}, is kept; {resume}"
                else:
                    kept = "no checkpoint could be saved; free some space and train again"
                raise DiskFullError(f"the disk holding {logdir} is full at step {global_step}: {kept}") from error
            if save_error is not None:
                raise save_error
            if saved_step is not None:
                state = f"saved {last} at step {saved_step}"
            else:
                state = f"no step trained since step {start_step}, no checkpoint written"
            reason = error if isinstance(error, TrainingInterrupted) else f"training stopped at step {global_step}"
            print(f"\n{reason}: {state}", file=sys.stderr)
        raise
    finally:
        bar.close()
        if logger is not None:
            logger.finish(after_failure=sys.exc_info()[0] is not None)
    if len(optimizers) > 1:
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    parameter.requires_grad_(True)
    return model.eval()
