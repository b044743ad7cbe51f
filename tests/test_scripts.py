"""The sampling scripts on tiny randomly initialised models saved to tmp_path (config.yaml +
model.safetensors): outputs where the original puts them, and one clear error line, exit status 1
and no output file for each kind of bad input.

The main paths run as subprocesses; the many bad-input cases run the same `__main__` in this
process (runpy), which skips a few seconds of imports each."""
from __future__ import annotations

import copy
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_lite.checkpoint import CheckpointError, save_model
from ldm_lite.util import instantiate_from_config

from .conftest import ROOT, run_cli

pytestmark = pytest.mark.filterwarnings("ignore")

FIRST_STAGE = {
    "target": "ldm_lite.models.autoencoder.AutoencoderKL",
    "params": {"embed_dim": 4, "lossconfig": {"target": "torch.nn.Identity"},
               "ddconfig": {"double_z": True, "z_channels": 4, "resolution": 16, "in_channels": 3, "out_ch": 3,
                            "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}},
}  # f = 2: 16x16 images, 8x8x4 latents


def unet(in_channels: int = 4, context_dim: int | None = None) -> dict:
    params = {"image_size": 8, "in_channels": in_channels, "out_channels": 4, "model_channels": 32,
              "num_res_blocks": 1, "attention_resolutions": [], "channel_mult": [1], "num_head_channels": 32}
    if context_dim is not None:
        params.update(attention_resolutions=[1], use_spatial_transformer=True, context_dim=context_dim)
    return {"target": "ldm_lite.modules.unet.UNetModel", "params": params}


def ldm_config(cond_stage_key: str, conditioning_key: str | None, cond_stage_config, unet_config) -> dict:
    params = {"linear_start": 0.00085, "linear_end": 0.012, "timesteps": 20, "first_stage_key": "image",
              "cond_stage_key": cond_stage_key, "image_size": 8, "channels": 4, "scale_factor": 0.5,
              "conditioning_key": conditioning_key, "cond_stage_config": cond_stage_config,
              "unet_config": unet_config, "first_stage_config": copy.deepcopy(FIRST_STAGE)}
    return {"model": {"base_learning_rate": 1e-4, "target": "ldm_lite.models.diffusion.LatentDiffusion", "params": params}}


CONFIGS = {
    "text": ldm_config("caption", "crossattn",
                       {"target": "ldm_lite.modules.encoders.BERTEmbedder",
                        "params": {"n_embed": 32, "n_layer": 1, "max_seq_len": 8}}, unet(context_dim=32)),
    "class": ldm_config("class_label", "crossattn",
                        {"target": "ldm_lite.modules.encoders.ClassEmbedder",
                         "params": {"embed_dim": 32, "n_classes": 3, "null_class": True}}, unet(context_dim=32)),
    "uncond": ldm_config("image", None, "__is_unconditional__", unet()),
    "inpainting": ldm_config("masked_image", "concat", "__is_first_stage__", unet(in_channels=9)),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    folders = {}
    for name, config in CONFIGS.items():
        torch.manual_seed(0)
        model = instantiate_from_config(config["model"])
        folders[name] = save_model(model, config, root / name)
    return folders


@pytest.fixture
def inpainting_dir(tmp_path) -> Path:
    folder = tmp_path / "examples"
    folder.mkdir()
    generator = np.random.default_rng(0)
    for index in range(2):
        Image.fromarray(generator.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{index}.png")
        mask = np.zeros((16, 16), np.uint8)
        mask[4:12, 4:12] = 255
        Image.fromarray(mask).save(folder / f"{index}_mask.png")
    return folder


@pytest.fixture
def run_script(monkeypatch, capsys):
    """Run `scripts/<name>` with arguments in this process; returns (returncode, stdout, stderr)."""
    def run(*arguments: str) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", [str(ROOT / arguments[0]), *arguments[1:]])
        capsys.readouterr()
        try:
            runpy.run_path(str(ROOT / arguments[0]), run_name="__main__")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(arguments, code, captured.out, captured.err)
    return run


def all_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def assert_clean_error(result, *words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr
    for word in words:
        assert word in error_lines[0], error_lines[0]


# ----------------------------------------------------------------------------- txt2img

def test_txt2img_writes_samples_and_grid(models, tmp_path, run_script):
    outdir = tmp_path / "txt2img"
    (outdir / "samples").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(outdir / "samples" / "0004.png")  # numbering continues after 0004
    arguments = ["scripts/txt2img.py", "--prompt", "a red circle!", "--n_samples", "2", "--n_iter", "2",
                 "--ddim_steps", "3", "--scale", "3.0", "--ddim_eta", "0.0", "--seed", "1", "--outdir", str(outdir),
                 "--config", str(models["text"] / "config.yaml"), "--ckpt", str(models["text"] / "model.safetensors"),
                 "--device", "cpu"]
    result = run_cli(*arguments)
    assert result.returncode == 0, result.stderr
    samples = sorted(path.name for path in (outdir / "samples").iterdir())
    assert samples == ["0004.png", "0005.png", "0006.png", "0007.png", "0008.png"]
    assert Image.open(outdir / "samples" / "0005.png").size == (16, 16)
    grid = Image.open(outdir / "a-red-circle.png")
    assert grid.size == (2 + 2 * 18, 2 + 2 * 18)  # 2 rows (n_iter) x 2 columns (n_samples), padding 2
    again = run_script(*arguments[:-2], "--plms", "--H", "32", "--W", "16", "--device", "cpu")
    assert again.returncode == 0, again.stderr
    assert Image.open(outdir / "samples" / "0009.png").size == (16, 32)


@pytest.mark.parametrize("extra,words", [
    (["--sampler", "euler"], ["unknown sampler", "euler"]),
    (["--ddim_steps", "0"], ["steps=0"]),
    (["--ddim_steps", "21"], ["steps=21", "20"]),
    (["--H", "15"], ["height 15", "factor 2"]),
    (["--plms", "--ddim_eta", "0.5"], ["plms", "eta"]),
])
def test_txt2img_bad_input(models, tmp_path, run_script, extra, words):
    result = run_script("scripts/txt2img.py", "--outdir", str(tmp_path / "out"), "-r", str(models["text"]),
                     "--n_samples", "1", "--ddim_steps", "2", "--device", "cpu", *extra)
    assert_clean_error(result, *words)
    assert all_files(tmp_path / "out") == []


def test_checkpoint_that_does_not_fit_its_config(models, tmp_path, run_script):
    result = run_cli("scripts/txt2img.py", "--outdir", str(tmp_path / "out"), "--device", "cpu",
                     "--config", str(models["text"] / "config.yaml"), "--ckpt", str(models["class"] / "model.safetensors"))
    assert_clean_error(result, "does not fit")
    assert all_files(tmp_path / "out") == []
    with pytest.raises(CheckpointError, match="does not fit"):  # --debug lets the exception (and traceback) through
        run_script("scripts/txt2img.py", "--outdir", str(tmp_path / "out"), "--device", "cpu", "--debug",
                   "--config", str(models["text"] / "config.yaml"), "--ckpt", str(models["class"] / "model.safetensors"))


# ----------------------------------------------------------------------------- sample_diffusion

def test_sample_diffusion_unconditional_and_vanilla(models, tmp_path, run_script):
    result = run_cli("scripts/sample_diffusion.py", "-r", str(models["uncond"]), "-l", str(tmp_path / "logs"),
                     "-n", "5", "--batch_size", "2", "-c", "4", "-e", "0.0", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "logs" / "uncond" / "samples" / "00000000").iterdir()
    assert sorted(path.name for path in (run_dir / "img").iterdir()) == [f"sample_{i:06}.png" for i in range(5)]
    samples = np.load(run_dir / "numpy" / "5x16x16x3-samples.npz")["arr_0"]
    assert samples.shape == (5, 16, 16, 3) and samples.dtype == np.uint8
    assert np.array_equal(samples[3], np.asarray(Image.open(run_dir / "img" / "sample_000003.png")))
    assert (run_dir / "sampling_config.yaml").is_file()
    vanilla = run_script("scripts/sample_diffusion.py", "-r", str(models["uncond"] / "model.safetensors"),
                      "-l", str(tmp_path / "vanilla"), "-n", "1", "--batch_size", "1", "-v", "--device", "cpu")
    assert vanilla.returncode == 0, vanilla.stderr
    assert "ddpm sampling, 20 steps" in vanilla.stdout


def test_sample_diffusion_class_conditional_with_guidance(models, tmp_path, run_script):
    result = run_script("scripts/sample_diffusion.py", "-r", str(models["class"]), "-l", str(tmp_path / "logs"),
                     "-n", "3", "--batch_size", "3", "-c", "3", "-e", "0.0", "--classes", "0", "2",
                     "--scale", "2.0", "--sampler", "dpm", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "logs").rglob("sample_*.png"))) == 3


@pytest.mark.parametrize("extra,words", [
    ([], ["class-conditional", "--classes"]),
    (["--classes", "7"], ["class labels"]),
    (["--classes", "0", "--sampler", "plms", "-e", "0.3"], ["plms", "eta"]),
    (["model.params.nonsense", "--classes", "0"], ["nonsense", "dotted.key=value"]),
])
def test_sample_diffusion_bad_input(models, tmp_path, run_script, extra, words):
    result = run_script("scripts/sample_diffusion.py", "-r", str(models["class"]), "-l", str(tmp_path / "logs"),
                     "-n", "1", "--batch_size", "1", "-c", "2", "--device", "cpu", *extra)
    assert_clean_error(result, *words)
    assert all_files(tmp_path / "logs") == []


# ----------------------------------------------------------------------------- inpaint

@pytest.mark.parametrize("model,extra", [("inpainting", []), ("uncond", ["--resample_steps", "2"])])
def test_inpaint_keeps_the_known_pixels(models, tmp_path, inpainting_dir, run_script, model, extra):
    (inpainting_dir / "notes.txt").write_text("not an image")
    outdir = tmp_path / "results"
    result = (run_cli if model == "inpainting" else run_script)("scripts/inpaint.py", "--indir", str(inpainting_dir), "--outdir", str(outdir), "--steps", "3",
                     "-r", str(models[model]), "--device", "cpu", *extra)
    assert result.returncode == 0, result.stderr
    assert "notes.txt" in result.stderr and "not an image" in result.stderr
    assert sorted(path.name for path in outdir.iterdir()) == ["0.png", "1.png"]
    original = np.asarray(Image.open(inpainting_dir / "1.png"), dtype=np.int16)
    inpainted = np.asarray(Image.open(outdir / "1.png"), dtype=np.int16)
    keep = np.asarray(Image.open(inpainting_dir / "1_mask.png")) < 128
    assert np.abs(inpainted - original)[keep].max() <= 1  # kept pixels survive (up to uint8 rounding)
    assert np.abs(inpainted - original)[~keep].mean() > 5  # the hole was filled with something new


def test_inpaint_bad_inputs(models, tmp_path, inpainting_dir, run_script):
    def run(indir):
        return run_script("scripts/inpaint.py", "--indir", str(indir), "--outdir", str(tmp_path / "out"),
                       "--steps", "2", "-r", str(models["inpainting"]), "--device", "cpu")

    Image.new("RGB", (16, 16)).save(inpainting_dir / "7.png")  # an image without a mask
    assert_clean_error(run(inpainting_dir), "7.png", "no mask")
    (inpainting_dir / "7.png").unlink()
    Image.new("L", (8, 8)).save(inpainting_dir / "1_mask.png")  # mask of another size
    assert_clean_error(run(inpainting_dir), "1_mask.png", "8x8", "16x16")
    for name, size in (("1.png", (15, 16)), ("1_mask.png", (15, 16))):  # not divisible by f = 2
        Image.new("RGB" if name == "1.png" else "L", size).save(inpainting_dir / name)
    assert_clean_error(run(inpainting_dir), "15x16", "factor 2")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("nothing")
    assert_clean_error(run(empty), "no <n>.png")
    assert all_files(tmp_path / "out") == []


def test_original_config_and_lightning_checkpoint(models, tmp_path, run_script):
    """An original-style folder: config.yaml with ldm.* targets + model.ckpt holding state_dict and global_step."""
    config = copy.deepcopy(CONFIGS["uncond"])
    config["model"]["target"] = "ldm.models.diffusion.ddpm.LatentDiffusion"
    params = config["model"]["params"]
    params["unet_config"]["target"] = "ldm.modules.diffusionmodules.openaimodel.UNetModel"
    params["first_stage_config"]["target"] = "ldm.models.autoencoder.AutoencoderKL"
    folder = tmp_path / "original_model"
    folder.mkdir()
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    OmegaConf.save(OmegaConf.create(config), folder / "config.yaml")
    state_dict = load_file(str(models["uncond"] / "model.safetensors"))
    torch.save({"state_dict": state_dict, "global_step": 1234, "epoch": 3}, folder / "model.ckpt")
    result = run_script("scripts/sample_diffusion.py", "-r", str(folder), "-n", "2", "--batch_size", "2", "-c", "2",
                        "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert len(list((folder / "samples" / "00001234").rglob("sample_*.png"))) == 2
