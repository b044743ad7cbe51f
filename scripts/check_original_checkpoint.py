"""Check that a released CompVis checkpoint loads into ldm_lite, and make its folder usable.

    python scripts/check_original_checkpoint.py models/first_stage_models/kl-f8 [--meta]

The folder is one that `scripts/download_models.sh` fills: `models/ldm/<name>/model.ckpt` or
`models/first_stage_models/<name>/model.ckpt`. The model is built from the original config recorded
in `tests/compat/compvis_state_dicts.json` (looked up by folder name), the file is read with
`weights_only=True` and loaded with `strict=True`. On success the folder gets a `config.yaml`
(`model: {target, params}`), so the sampling scripts can use it directly. `--meta` builds the model
on the meta device: keys and shapes are checked without allocating the model (the file is still read)."""
from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from ldm_lite.checkpoint import CheckpointError, atomic_write, load_state_dict_file, load_weights  # noqa: E402
from ldm_lite.util import count_params, instantiate_from_config  # noqa: E402

COMPAT_JSON = REPOSITORY_ROOT / "tests" / "compat" / "compvis_state_dicts.json"
LATENT_DIFFUSION_TARGET = "ldm.models.diffusion.ddpm.LatentDiffusion"
# Two LDMs whose folders are not named after their config: the original README puts the 1.45B
# text-to-image model in models/ldm/text2img-large/ and the ImageNet notebook the cin256-v2 model.
LDM_ENTRY_BY_FOLDER = {
    "text2img-large": "configs/latent-diffusion/txt2img-1p4B-eval.yaml",
    "cin256-v2": "configs/latent-diffusion/cin256-v2.yaml",
}


class CheckFailed(Exception):
    """One line saying what is wrong and how to fix it."""


def compat_entry_name(folder: Path) -> str:
    """The json key for `<...>/ldm/<name>` or `<...>/first_stage_models/<name>`."""
    folder = folder.resolve()
    kind, name = folder.parent.name, folder.name
    if kind == "first_stage_models":
        return f"models/first_stage_models/{name}"
    if kind == "ldm":
        return LDM_ENTRY_BY_FOLDER.get(name, f"models/ldm/{name}/config.yaml")
    raise CheckFailed(f"'{folder}' is not a model folder: expected models/ldm/<name> or models/first_stage_models/<name>")


def folder_name(entry_name: str) -> str:
    """The inverse of `compat_entry_name`: the folder a json entry's model is downloaded to."""
    for folder, entry in LDM_ENTRY_BY_FOLDER.items():
        if entry == entry_name:
            return folder
    return Path(entry_name).parent.name if entry_name.startswith("models/ldm/") else Path(entry_name).name


def model_config(folder: Path) -> dict[str, Any]:
    """`{target, params}` of the released model in `folder`, from its compat-json entry."""
    entries = json.loads(COMPAT_JSON.read_text())
    key = compat_entry_name(folder)
    if key not in entries:
        known = sorted(folder_name(name) for name in entries)
        raise CheckFailed(f"no released model is named '{folder.name}' ({key} is not in {COMPAT_JSON.name}); "
                          f"known names: {', '.join(known)}")
    params = copy.deepcopy(entries[key]["config"])
    if folder.resolve().parent.name == "ldm":
        return {"target": LATENT_DIFFUSION_TARGET, "params": params}
    # A first stage is kept for inference: its training loss (perceptual net + discriminator) is not
    # built, as in the LDM configs' first_stage_config; the file's `loss.*` keys are then dropped.
    target = params.pop("target")
    params["lossconfig"] = {"target": "torch.nn.Identity"}
    return {"target": target, "params": params}


def build(config: dict[str, Any], on_meta_device: bool) -> torch.nn.Module:
    try:
        if on_meta_device:
            with torch.device("meta"):
                return instantiate_from_config(copy.deepcopy(config))
        return instantiate_from_config(copy.deepcopy(config))
    except Exception as error:  # a class or option ldm_lite does not implement yet
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckFailed(f"ldm_lite cannot build {config['target']} yet ({type(error).__name__}: {message}); "
                          "this released model needs a class or option ldm_lite does not implement") from None


def check(folder: Path, on_meta_device: bool = False) -> str:
    """Load `folder/model.ckpt` into the model built from its original config; write `folder/config.yaml`."""
    config = model_config(folder)
    checkpoint = folder / "model.ckpt"
    if not checkpoint.is_file():
        raise CheckFailed(f"'{checkpoint}' does not exist: run scripts/download_models.sh {folder.name}")
    model = build(config, on_meta_device)
    try:
        state_dict = load_state_dict_file(checkpoint)
        with warnings.catch_warnings():  # loading into meta tensors is a no-op that torch warns about
            warnings.filterwarnings("ignore", message=".*meta parameter.*")
            load_weights(model, state_dict, strict=True, source=f"'{checkpoint}'")
    except CheckpointError as error:
        raise CheckFailed(str(error)) from None
    header = f"# {folder.name}: released CompVis model, config from {COMPAT_JSON.name} (inference)\n"
    text = header + OmegaConf.to_yaml(OmegaConf.create({"model": config}))
    atomic_write(folder / "config.yaml", lambda temporary: Path(temporary).write_text(text))
    return f"OK {folder.name}: {len(model.state_dict())} tensors, {count_params(model):,} parameters"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="models/ldm/<name> or models/first_stage_models/<name>")
    parser.add_argument("--meta", action="store_true", help="check keys and shapes only (model on the meta device)")
    arguments = parser.parse_args(argv)
    try:
        print(check(arguments.folder, arguments.meta))
    except CheckFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
