"""Loading experiment configs: several YAML files merged left to right, then `a.b=c` overrides.

The layout follows the original repository: `model` (base_learning_rate, target, params), `data`
(target, params: batch_size, num_workers, train, validation) and `lightning` (callbacks, trainer).
Every trainer and callback key has a default here, so an override of a key that exists nowhere is a
typo and raises an error instead of silently adding a setting that nothing reads."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

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
    """One config file as a DictConfig; a missing file or a YAML error is a one-line ConfigError
    (YAML errors keep their line and column)."""
    path = Path(path)
    if not path.is_file():
        if "=" in path.name:
            raise ConfigError(f"config file '{path}' does not exist, and it looks like an override: put "
                              "dotted.key=value overrides after all the flags (main.py --base a.yaml -t key=value)")
        raise ConfigError(f"config file '{path}' does not exist: check the path given to --base")
    try:
        config = OmegaConf.load(path)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = f" ({error.context})" if error.context and error.problem else ""
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {error.problem or error.context}"
                          f"{context}") from None
    except Exception as error:  # OmegaConf's own errors (e.g. a broken ${interpolation})
        raise ConfigError(f"config file '{path}' cannot be read: {_first_line(error)}") from None
    if not isinstance(config, DictConfig):
        raise ConfigError(f"config file '{path}' holds a list, not a mapping: a config "
                          "has model, data and lightning sections (see configs/)")
    return config


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def apply_overrides(config: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Apply `dotted.key=value` overrides; a key that does not exist is an error."""
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override '{override}' has no '=': write it as dotted.key=value")
        key, _, value = override.partition("=")
        if OmegaConf.select(config, key, default=_MISSING) is _MISSING and not _constructor_takes(config, key):
            parent, _, leaf = key.rpartition(".")
            known = OmegaConf.select(config, parent) if parent else config
            choices = ", ".join(sorted(known.keys())) if isinstance(known, DictConfig) else "none"
            raise ConfigError(f"override key '{key}' does not exist in the config (keys at that level: {choices}; "
                              "under a 'params' mapping, also its target's constructor arguments)")
        checked = _checked_value(key, OmegaConf.select(config, key), _parse(value), value)
        OmegaConf.update(config, key, checked, merge=False)
    return config


def _constructor_takes(config: DictConfig, key: str) -> bool:
    """Whether a key absent from the config is a keyword of the constructor it would reach:
    `model.params.ckpt_path` is accepted when `model.target`'s class (or a base class it passes
    **kwargs on to) takes `ckpt_path`, so optional constructor arguments can be added by override."""
    parent, _, leaf = key.rpartition(".")
    owner, _, last = parent.rpartition(".")
    if last != "params":
        return False
    target = OmegaConf.select(config, f"{owner}.target" if owner else "target")
    if not isinstance(target, str):
        return False
    from ldm_lite.util import get_obj_from_str  # imports torch: only for keys the config lacks

    try:
        constructor = get_obj_from_str(target)
    except ValueError:
        return False
    classes = constructor.__mro__ if isinstance(constructor, type) else (constructor,)
    for cls in classes:
        function = cls.__init__ if isinstance(constructor, type) else cls
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):  # builtins without a signature
            return False
        if leaf in parameters and parameters[leaf].kind is not inspect.Parameter.VAR_KEYWORD:
            return True
        if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
            return False
    return False


_TYPE_NAMES = {bool: "a boolean (true or false)", int: "an integer", float: "a number",
               ListConfig: "a list ([a, b])", DictConfig: "a mapping ({key: value})"}


def _checked_value(key: str, current: Any, value: Any, text: str) -> Any:
    """`value` checked against the kind of the config's `current` value at `key`: a number for a
    number (an integer key turns 1e3 into 1000; a float written as 1 in a file may become 0.5), a
    boolean for a boolean, a list for a list, a mapping for a mapping. Anything else is a ConfigError
    naming the key, the expected type and the value. Strings, null and null keys accept anything."""
    expected = next((kind for kind in _TYPE_NAMES if isinstance(current, kind)), None)
    if expected is None or value is None:
        return value
    if expected in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if expected is int and float(value).is_integer() else value
    if isinstance(value, expected) and expected not in (int, float):
        return value
    has = "" if expected in (ListConfig, DictConfig) else f" (the config has {current!r})"
    raise ConfigError(f"override {key}={text}: expected {_TYPE_NAMES[expected]}{has}, got {text!r}")


def _parse(value: str):
    """Parse an override value as YAML (numbers, booleans, lists), keeping plain strings."""
    if value == "":
        return ""
    try:
        return OmegaConf.create(f"v: {value}").v
    except Exception as error:  # e.g. an unclosed [ or {
        raise ConfigError(f"override value {value!r} is not valid YAML ({_first_line(error)}): quote it or "
                          "close its brackets") from None


def load_config(bases: Iterable[str | Path], overrides: Iterable[str] = ()) -> DictConfig:
    """Merge the trainer defaults and each base file left to right, then apply `overrides`."""
    configs = [load_yaml(path) for path in bases]
    if not configs:
        raise ConfigError("no config given: pass at least one --base configs/<...>.yaml")
    merged = OmegaConf.merge(OmegaConf.create(TRAINER_DEFAULTS), *configs)
    if "model" not in merged:
        raise ConfigError("config has no 'model' section: see configs/ for the expected layout")
    return apply_overrides(merged, overrides)
