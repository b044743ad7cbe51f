"""Training-step time of a lite LDM with and without `cache_first_stage`, in the same process.

Both models train on the same real batches of the config's training data; the cached one has seen them once
(as after the first epoch), so its frozen encoder does not run. Steps are interleaved and the medians compared.

    python bench/first_stage_cache.py [--config configs/latent-diffusion/lite_text_shapes_emoji.yaml] [--steps 12]
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from ldm_lite.util import instantiate_from_config


def build(config: DictConfig, cache: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    config = OmegaConf.merge(config, {"model": {"params": {"cache_first_stage": cache}}})
    torch.manual_seed(0)
    model = instantiate_from_config(config.model)
    model.learning_rate = 1e-4
    return model, model.configure_optimizers()[0]


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict) -> None:
    loss, _ = model.training_step(batch, 0, 0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    model.on_train_batch_end()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/latent-diffusion/lite_text_shapes_emoji.yaml")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="perceptual loss is off")
    config = OmegaConf.load(args.config)
    data = instantiate_from_config(config.data.params.train)
    loader = iter(DataLoader(data, batch_size=int(config.data.params.batch_size), shuffle=True))
    batches = [next(loader) for _ in range(args.steps)]
    runs = {"encoder every step": build(config, False), "cache_first_stage": build(config, True)}
    for model, optimizer in runs.values():  # warm-up; fills the cache and the caption cache
        for batch in batches:
            with torch.no_grad():
                model.get_input(batch, model.first_stage_key)
        step(model, optimizer, batches[0])
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for batch in batches:
        for name, (model, optimizer) in runs.items():
            start = time.perf_counter()
            step(model, optimizer, batch)
            timings[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    print(f"config {args.config}, batch {config.data.params.batch_size}, {torch.get_num_threads()} threads, "
          f"{args.steps} interleaved steps each")
    for name, median in medians.items():
        print(f"{name:20s} median {median:.3f} s/step (min {min(timings[name]):.3f})")
    print(f"ratio cache / encoder every step: {medians['cache_first_stage'] / medians['encoder every step']:.2f}")


if __name__ == "__main__":
    main()
