"""Loading experiment configs: several YAML files merged left to right, then `a.b=c` overrides.

The layout follows the original repository: `model` (base_learning_rate, target, params), `data`
(target, params: batch_size, num_workers, train, validation) and `lightning` (callbacks, trainer).
Every trainer and callback key has a default here, so an override of a key that exists nowhere is a
typo and raises an error instead of silently adding a setting that nothing reads."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig, OmegaConf

TRAINER_DEFAULTS: dict = {
    "lightning": {
        "trainer": {
            "max_steps": 1000,  # optimizer steps; -1 = limited by max_epochs only
            "max_epochs": 1000,
            "precision": "32",  # "32" | "bf16" | "16" (fp16 needs CUDA)
            "accumulate_grad_batches": 1,
            "val_check_interval": 500,  # validate every N optimizer steps
            "limit_val_batches": 8,
            "log_every_n_steps": 10,
            "lr_warmup_steps": 0,
            "lr_schedule": "constant",  # "constant" | "cosine" (decays to lr_min_ratio x lr at max_steps)
            "lr_min_ratio": 0.1,
            "gradient_clip_val": 0.0,  # 0 = no clipping
            "channels_last": False,
            # Original Lightning keys that have no meaning here; accepted so original configs load.
            "benchmark": True,
            "gpus": None,
            "num_nodes": 1,
        },
        "callbacks": {
            "image_logger": {"params": {"batch_frequency": 500, "max_images": 8, "increase_log_steps": False}},
            "checkpoint": {"params": {"every_n_train_steps": 1000}},
        },
    }
}


_MISSING = object()


class ConfigError(ValueError):
    """A config file or override is wrong; the message says what and how to fix it."""


def load_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist: check the path given to --base")
    try:
        return OmegaConf.load(path)
    except Exception as error:  # yaml.YAMLError and OmegaConf errors carry the line number
        raise ConfigError(f"config file '{path}' is not valid YAML: {error}") from None


def apply_overrides(config: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Apply `dotted.key=value` overrides; a key that does not exist is an error."""
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override '{override}' has no '=': write it as dotted.key=value")
        key, _, value = override.partition("=")
        if OmegaConf.select(config, key, default=_MISSING) is _MISSING:
            parent, _, leaf = key.rpartition(".")
            known = OmegaConf.select(config, parent) if parent else config
            choices = ", ".join(sorted(known.keys())) if isinstance(known, DictConfig) else "none"
            raise ConfigError(f"override key '{key}' does not exist in the config (keys at that level: {choices})")
        OmegaConf.update(config, key, _parse(value), merge=False)
    return config


def _parse(value: str):
    """Parse an override value as YAML (numbers, booleans, lists), keeping plain strings."""
    if value == "":
        return ""
    return OmegaConf.create(f"v: {value}").v


def load_config(bases: Iterable[str | Path], overrides: Iterable[str] = ()) -> DictConfig:
    """Merge the trainer defaults and each base file left to right, then apply `overrides`."""
    configs = [load_yaml(path) for path in bases]
    if not configs:
        raise ConfigError("no config given: pass at least one --base configs/<...>.yaml")
    merged = OmegaConf.merge(OmegaConf.create(TRAINER_DEFAULTS), *configs)
    if "model" not in merged:
        raise ConfigError("config has no 'model' section: see configs/ for the expected layout")
    return apply_overrides(merged, overrides)
