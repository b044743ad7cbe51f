"""Issue 23: what a careless or hostile user can do to the tools. Each test fails on the code before
the fix: image modes, the UNet and quantizer numerics, one-line errors, size guards, the run lock,
resuming with a new learning rate, exit codes and disk-full handling."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import main
from ldm_lite import sampling
from ldm_lite.checkpoint import load_model_folder
from ldm_lite.config import load_config
from ldm_lite.data.folder import load_image
from ldm_lite.data.transforms import pil_to_rgb_array
from ldm_lite.lr_schedule import WarmupCosine
from ldm_lite.run_lock import RunLock, RunLockedError
from ldm_lite.train import read_metrics
from ldm_lite.util import instantiate_from_config
from tests.conftest import ROOT, run_cli
from tests.test_interrupt import _wait_for_logdir, all_checkpoints_load, start, wait_for_step
from tests.test_scripts import inpainting_dir, models, run_script  # noqa: F401 (fixtures)

TOY = "tests/configs/toy.yaml"


def train_main(*arguments: str) -> int:
    """main.py in this process (its exit status; output goes to capsys)."""
    return main.main(list(arguments))

# ----------------------------------------------------------------------------- image modes (item 2)

GREY = np.linspace(0, 255, 48).round().astype(np.uint8).reshape(6, 8)


def image_in_mode(mode: str) -> tuple[Image.Image, np.ndarray]:
    """GREY as a Pillow image of `mode`, and the grey levels a reader must get back."""
    if mode == "1":
        return Image.fromarray(GREY).convert("1", dither=Image.Dither.NONE), np.where(GREY >= 128, 255, 0)
    if mode == "I;16":
        return Image.fromarray(GREY.astype(np.uint16) * 257), GREY  # a 16-bit PNG spans 0..65535
    if mode == "I":
        return Image.fromarray(GREY.astype(np.int32) * 257), GREY  # 16-bit levels in 32-bit integers
    if mode == "F":
        return Image.fromarray(GREY.astype(np.float32) / 255), GREY  # fractions in [0, 1]
    if mode == "CMYK":
        return Image.fromarray(GREY).convert("RGB").convert("CMYK"), GREY
    return Image.fromarray(GREY).convert(mode), GREY


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK"])
def test_every_pillow_mode_reads_as_its_grey_levels(mode, tmp_path):
    image, expected = image_in_mode(mode)
    assert image.mode == mode
    rgb = pil_to_rgb_array(image)
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 8, 3)
    assert np.abs(rgb.astype(int) - expected[..., None]).max() <= 1, mode
    path = tmp_path / ("image.tiff" if mode in ("I", "F", "CMYK") else "image.png")  # modes PNG cannot store
    image.save(path)
    assert np.abs(load_image(path).astype(int) - expected[..., None]).max() <= 1, mode


def test_grey_of_more_than_8_bits_is_scaled_by_its_range():
    eight_bit_levels = Image.fromarray(GREY.astype(np.int32))  # mode I holding 0..255
    assert np.array_equal(pil_to_rgb_array(eight_bit_levels)[..., 0], GREY)
    signed = Image.fromarray(GREY.astype(np.float32) * 2 - 255)  # -255..255: stretched to 0..255
    assert np.abs(pil_to_rgb_array(signed)[..., 0].astype(int) - GREY).max() <= 1
    transparent = Image.fromarray(np.dstack([GREY, GREY, GREY, np.zeros_like(GREY)]))
    assert (pil_to_rgb_array(transparent) == 255).all()  # alpha 0 shows the white background


def test_inpaint_reads_a_16_bit_grey_png(models, inpainting_dir, tmp_path, run_script):
    """A 16-bit greyscale image used to come out saturated (kept pixels white, exit status 0)."""
    grey = np.asarray(Image.open(inpainting_dir / "1.png").convert("L"))
    mask = np.asarray(Image.open(inpainting_dir / "1_mask.png"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(inpainting_dir / "1.png")
    Image.fromarray(mask.astype(np.uint16) * 257).save(inpainting_dir / "1_mask.png")
    assert Image.open(inpainting_dir / "1.png").mode == Image.open(inpainting_dir / "1_mask.png").mode == "I;16"
    result = run_script("scripts/inpaint.py", "--indir", str(inpainting_dir), "--outdir", str(tmp_path / "out"),
                        "--steps", "2", "-r", str(models["inpainting"]), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    inpainted = np.asarray(Image.open(tmp_path / "out" / "1.png"), dtype=np.int16)
    assert np.abs(inpainted - grey[..., None].astype(np.int16))[mask < 128].max() <= 1


def test_inpaint_widget_reads_a_16_bit_grey_png(tmp_path):
    from tests.test_widgets import build
    from ldm_lite.widgets import InpaintWidget

    levels = np.arange(256).reshape(16, 16)
    Image.fromarray(levels.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    image, _ = InpaintWidget(build("inpainting"), [tmp_path / "grey16.png"], steps=2).image_and_mask()
    assert np.abs((image[0].numpy() + 1) * 127.5 - levels).max() < 0.01


# ----------------------------------------------------------------------------- numerics vs the original (item 9)

def unet_with(**overrides) -> torch.nn.Module:
    from ldm_lite.modules.unet import UNetModel

    params = dict(image_size=8, in_channels=4, model_channels=32, out_channels=4, num_res_blocks=1,
                  attention_resolutions=[1, 2], channel_mult=[1, 2], num_heads=4, use_spatial_transformer=True,
                  context_dim=16)
    params.update(overrides)
    torch.manual_seed(0)
    return UNetModel(**params).eval()


@pytest.mark.parametrize("legacy", [True, False])
def test_num_heads_upsample_leaves_the_spatial_transformers_alone(legacy):
    """The original gives the decoder's SpatialTransformer `num_heads`; `num_heads_upsample` only
    reaches AttentionBlock. Both layouts (legacy or not) must load and compute as the original."""
    reference, upsample = unet_with(legacy=legacy), unet_with(legacy=legacy, num_heads_upsample=2)
    shapes = lambda model: {key: value.shape for key, value in model.state_dict().items()}  # noqa: E731
    assert shapes(upsample) == shapes(reference)
    with torch.no_grad():
        for parameter in reference.parameters():  # no zero-initialised layer: every path counts
            parameter.add_(0.05 * torch.randn_like(parameter))
    upsample.load_state_dict(reference.state_dict())
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.randn(2, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(upsample(x, t, context), reference(x, t, context))
    decoder_heads = [module.transformer_blocks[0].attn1.heads for module in upsample.output_blocks.modules()
                     if type(module).__name__ == "SpatialTransformer"]
    assert decoder_heads and set(decoder_heads) == {4}


def test_num_heads_upsample_sets_the_decoder_attention_blocks():
    unet = unet_with(use_spatial_transformer=False, num_heads_upsample=2, num_head_channels=-1)
    heads = lambda blocks: {module.num_heads for module in blocks.modules()  # noqa: E731
                            if type(module).__name__ == "AttentionBlock"}
    assert heads(unet.input_blocks) == heads(unet.middle_block) == {4} and heads(unet.output_blocks) == {2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_vector_quantizer_in_every_dtype(dtype):
    """Distances in float32 whatever the dtypes; z_q, loss and perplexity in the input's dtype."""
    from ldm_lite.modules.quantize import VectorQuantizer

    torch.manual_seed(0)
    quantizer = VectorQuantizer(16, 4).eval()
    quantizer.embedding.weight.data = torch.randn(16, 4)  # well separated codes
    z = quantizer.embedding.weight[torch.randint(0, 16, (2 * 3 * 3,))].view(2, 3, 3, 4).permute(0, 3, 1, 2)
    z = (z + 0.01 * torch.randn_like(z)).detach()
    _, _, (_, _, expected) = quantizer(z)
    for codebook_dtype in (torch.float32, dtype):  # a float32 codebook (autocast) and one in the input's dtype
        quantizer.to(codebook_dtype)
        z_q, loss, (perplexity, _, indices) = quantizer(z.to(dtype))
        assert z_q.dtype == loss.dtype == perplexity.dtype == dtype
        assert torch.equal(indices, expected)
        quantizer.float()


# ----------------------------------------------------------------------------- two trainings of one run (items 1, 7)

@pytest.mark.slow
def test_a_second_training_of_a_live_run_is_refused(tmp_path):
    """The second process used to delete the first one's in-flight temporaries (crashing it), move
    last.ckpt back and duplicate metrics rows. Now it is refused; the first trains on."""
    first = start(tmp_path)
    try:
        logdir = _wait_for_logdir(tmp_path, first)
        checkpoints = logdir / "checkpoints"
        wait_for_step(checkpoints, 3, first)
        second = run_cli("main.py", "-r", str(logdir), "-t", "--max_steps", "9")
        assert second.returncode == 1, second.stdout
        error_lines = [line for line in second.stderr.splitlines() if "error:" in line]
        assert len(error_lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert f"is being trained by pid {first.pid} on host" in error_lines[0]
        reached = max(all_checkpoints_load(checkpoints).values())
        wait_for_step(checkpoints, reached + 6, first)  # the first run goes on saving
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130  # 128 + SIGINT, after saving
    assert "error:" not in stderr and "Traceback" not in stderr, stderr
    saved = torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"]
    assert f"received SIGINT: saved {checkpoints / 'last.ckpt'} at step {saved}" in stderr
    steps = [row for row in read_metrics(logdir / "metrics.csv")["train/rec_loss"][0]]
    assert steps == sorted(set(steps))  # no step logged twice
    assert not (logdir / "run.lock").exists()

    # A lock left by a process that has ended is stale: taken over, and its temporaries removed.
    (logdir / "run.lock").write_text('{"pid": 4242, "host": "elsewhere", "started": "yesterday"}\n')
    (checkpoints / ".last.ckpt.k1ll3d.tmp").write_bytes(b"partial")
    resumed = run_cli("main.py", "-r", str(logdir), "-t", "--max_steps", str(saved + 1))
    assert resumed.returncode == 0, resumed.stderr
    assert "was locked by pid 4242 on host elsewhere (since yesterday), which has ended" in resumed.stdout
    assert not list(checkpoints.glob(".*.tmp")) and not (logdir / "run.lock").exists()


def test_run_lock_names_its_holder_and_is_released(tmp_path):
    with RunLock(tmp_path / "run") as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
            RunLock(tmp_path / "run").acquire()  # flock is per open file: refused in-process too
    assert not (tmp_path / "run" / "run.lock").exists()
    with RunLock(tmp_path / "run") as again:
        assert again.stale_holder is None


# ----------------------------------------------------------------------------- resuming with a new learning rate (item 3)

def test_resume_applies_a_changed_learning_rate(tmp_path, capsys):
    assert train_main("--base", TOY, "-t", "--max_steps", "20", "-l", str(tmp_path)) == 0
    (logdir,) = tmp_path.iterdir()
    capsys.readouterr()
    assert train_main("-r", str(logdir / "checkpoints" / "step=000010.ckpt"), "-t", "--max_steps", "20",
                      "model.base_learning_rate=2e-4") == 0
    printed = capsys.readouterr().out
    assert "Setting learning rate to 1.60e-03" in printed  # 8 (batch) x 2e-4
    assert "The learning rate changed since the checkpoint (8.00e-04 -> 1.60e-03)" in printed
    steps, rates = read_metrics(logdir / "metrics.csv")["train/lr"]
    used = dict(zip(steps, rates))
    assert steps == sorted(set(steps))  # steps 11-20, logged before, were dropped and logged once again
    assert used[10] == pytest.approx(8e-4) and all(used[step] == pytest.approx(1.6e-3) for step in range(11, 21))
    newest = sorted((logdir / "configs").glob("*-project.yaml"))[-1]
    assert OmegaConf.load(newest).model.base_learning_rate == 2e-4
    last = torch.load(logdir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1.6e-3)


def test_resume_with_more_steps_stretches_the_cosine_schedule(tmp_path, capsys):
    """The schedule's length is the resumed run's --max_steps, not the checkpoint's (LambdaLR's state_dict
    carries its callable's attributes; models/README.md relies on this for long runs)."""
    cosine = ["lightning.trainer.lr_schedule=cosine", "lightning.trainer.lr_warmup_steps=0"]
    assert train_main("--base", TOY, "-t", "--max_steps", "10", "-l", str(tmp_path), *cosine) == 0
    (logdir,) = tmp_path.iterdir()
    assert train_main("-r", str(logdir), "-t", "--max_steps", "30") == 0
    capsys.readouterr()
    steps, rates = read_metrics(logdir / "metrics.csv")["train/lr"]
    used = dict(zip(steps, rates))
    peak = used[1] / WarmupCosine(0, 10, "cosine", 0.1)(1)  # the run's base learning rate (lr logged at step k: peak x f(k))
    stretched = WarmupCosine(0, 30, "cosine", 0.1)
    assert all(used[step] == pytest.approx(peak * stretched(step), rel=1e-4) for step in range(11, 31)), used


# ----------------------------------------------------------------------------- one clear line (items 4, 5, 7)

def assert_one_error_line(code: int, stderr: str, *words: str) -> None:
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, stderr
    for word in words:
        assert word in error_lines[0], error_lines[0]


@pytest.mark.parametrize("arguments, words", [
    (["--base", "BAD_YAML", "-t"], ["not valid YAML at line 3, column 10", "mapping values are not allowed"]),
    (["--base", TOY, "-t", "data.params.batch_size=abc"], ["data.params.batch_size=abc", "an integer", "'abc'"]),
    (["--base", TOY, "-t", "model.params.channels=abc"], ["model.params.channels=abc", "an integer", "'abc'"]),
    (["--base", TOY, "model.params.channels=3", "-t"], ["'model.params.channels=3'", "overrides after all the flags"]),
    (["--base", TOY, "-t", "model.base_learning_rate=1e37"], ["overflows float32", "base_learning_rate"]),
    (["--base", TOY, "-t", "--max_steps", "0"], ["max_steps is 0", "positive"]),
    (["--base", TOY, "-t", "--max_epochs", "0"], ["max_epochs is 0", "positive"]),
    (["--base", TOY, "-t", "--max_epochs", "-3"], ["max_epochs is -3", "positive"]),
])
def test_main_bad_input_gives_one_clear_line(arguments, words, tmp_path, capsys):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model:\n  target: x\n   params: 3\n")
    arguments = [str(bad_yaml) if argument == "BAD_YAML" else argument for argument in arguments]
    code = train_main(*arguments, "-l", str(tmp_path / "logs"))
    assert_one_error_line(code, capsys.readouterr().err, *words)
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())  # no run folder left


def test_inf_loss_in_float32_does_not_suggest_float32(tmp_path, capsys):
    code = train_main("--base", TOY, "-t", "model.base_learning_rate=1e36", "-l", str(tmp_path))
    stderr = capsys.readouterr().err
    assert_one_error_line(code, stderr, "loss is inf", "lower the learning rate")
    assert "precision" not in stderr


def write_run(folder: Path, checkpoint: dict | None) -> Path:
    """A main.py log dir with the toy config and `checkpoint` (None: a truncated file) as last.ckpt."""
    (folder / "configs").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    OmegaConf.save(load_config([ROOT / TOY]), folder / "configs" / "2026-01-01T00-00-00-project.yaml")
    path = folder / "checkpoints" / "last.ckpt"
    torch.save(checkpoint or {"state_dict": {"weight": torch.zeros(5000)}}, path)
    if checkpoint is None:
        path.write_bytes(path.read_bytes()[:5000])  # torch.load: OSError [Errno 22] Invalid argument
    return folder


def test_truncated_checkpoint(tmp_path, capsys, run_script):
    run = write_run(tmp_path / "run", None)
    assert_one_error_line(train_main("-r", str(run), "-t"), capsys.readouterr().err,
                          "last.ckpt' is truncated or corrupt (5000 bytes")
    result = run_script("scripts/export_model.py", str(run), str(tmp_path / "exported"))
    assert_one_error_line(result.returncode, result.stderr, "last.ckpt' is truncated or corrupt")
    assert not (tmp_path / "exported").exists()


def test_export_model_to_a_file(tmp_path, run_script):
    model = instantiate_from_config(load_config([ROOT / TOY]).model)
    run = write_run(tmp_path / "run", {"state_dict": model.state_dict(), "global_step": 3})
    (tmp_path / "taken").write_text("a file")
    result = run_script("scripts/export_model.py", str(run), str(tmp_path / "taken"))
    assert_one_error_line(result.returncode, result.stderr, "'" + str(tmp_path / "taken") + "': it is a file")
    assert run_script("scripts/export_model.py", str(run), str(tmp_path / "model")).returncode == 0


def test_export_model_chooses_a_checkpoint(tmp_path, run_script):
    model = instantiate_from_config(load_config([ROOT / TOY]).model)
    run = write_run(tmp_path / "run", {"state_dict": model.state_dict(), "global_step": 3})
    torch.save({"state_dict": model.state_dict(), "global_step": 2}, run / "checkpoints" / "step=000002.ckpt")
    result = run_script("scripts/export_model.py", str(run), str(tmp_path / "model"), "--checkpoint", "step=000002.ckpt")
    assert result.returncode == 0 and "from step 2" in result.stdout, result.stderr
    result = run_script("scripts/export_model.py", str(run), str(tmp_path / "other"), "--checkpoint", "step=000009.ckpt")
    assert_one_error_line(result.returncode, result.stderr, "no checkpoints/step=000009.ckpt (kept: last.ckpt, step=000002.ckpt)")


def test_truncated_safetensors_names_the_file(models, tmp_path, run_script):
    folder = tmp_path / "model"
    shutil.copytree(models["uncond"], folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    result = run_script("scripts/sample_diffusion.py", "-r", str(folder), "-n", "1", "-c", "2", "--device", "cpu")
    assert_one_error_line(result.returncode, result.stderr, f"'{weights}' is truncated or corrupt")


def test_full_disk_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    """torch.save on a full disk fails with '[enforce fail at inline_container.cc:672] ... unexpected
    pos'; the message now says that the disk is full, where, and which checkpoint is kept."""
    real_save, calls = torch.save, []

    def save_on_a_disk_that_fills(state, path):
        calls.append(path)
        if len(calls) <= 2:  # step=000010.ckpt and last.ckpt at step 10 fit, nothing after
            return real_save(state, path)
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", save_on_a_disk_that_fills)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    code = train_main("--base", TOY, "-t", "--max_steps", "30", "-l", str(tmp_path))
    (logdir,) = tmp_path.iterdir()
    last = logdir / "checkpoints" / "last.ckpt"
    assert_one_error_line(code, capsys.readouterr().err, f"the disk holding {logdir} is full",
                          f"the last good checkpoint, {last} at step 10, is kept", f"main.py -r {logdir} -t")
    monkeypatch.undo()
    assert torch.load(last, weights_only=True)["global_step"] == 10
    assert not list((logdir / "checkpoints").glob(".*.tmp"))


def test_full_disk_at_the_start_leaves_no_run_folder(tmp_path, capsys, monkeypatch):
    def no_space(*arguments, **keywords):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(OmegaConf, "save", no_space)
    code = train_main("--base", TOY, "-t", "--max_steps", "5", "-l", str(tmp_path))
    assert_one_error_line(code, capsys.readouterr().err, "is full")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- size guards (item 6)

def test_memory_guard_refuses_what_does_not_fit_before_sampling(models, tmp_path, run_script, monkeypatch):
    monkeypatch.setattr(sampling, "available_memory", lambda device: 20 * 2**20)  # 20 MB free
    result = run_script("scripts/txt2img.py", "--prompt", "a red circle", "--outdir", str(tmp_path / "out"),
                        "-r", str(models["text"]), "--H", "512", "--W", "256", "--n_samples", "2", "--ddim_steps", "2",
                        "--device", "cpu")
    assert_one_error_line(result.returncode, result.stderr, "sampling 2 image(s) of 256x512 needs about",
                          "is free on cpu: the largest size that fits is ")
    fits = re.search(r"fits is (\d+)x(\d+)", result.stderr)
    width, height = int(fits.group(1)), int(fits.group(2))
    assert height == 2 * width and width % 2 == 0  # aspect kept, a multiple of f x 2 ** (UNet levels - 1)
    assert not (tmp_path / "out").exists()
    again = run_script("scripts/txt2img.py", "--prompt", "a red circle", "--outdir", str(tmp_path / "out"),
                       "-r", str(models["text"]), "--H", str(height), "--W", str(width), "--n_samples", "2",
                       "--ddim_steps", "2", "--device", "cpu")
    assert again.returncode == 0, again.stderr


def test_memory_guard_without_patches(models):
    loaded = sampling.load_for_sampling(models["text"], device="cpu")
    with pytest.raises(sampling.SamplingError, match="largest size that fits"):
        sampling.check_memory(loaded.model, 4, 2**17, 2**17, guided=True)  # terabytes


@pytest.mark.slow
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's peak-RSS reset")
def test_memory_estimate_is_close_to_the_measured_peak():
    """On CPU the growth of the peak resident memory while sampling lies within the estimate, and
    the estimate within twice it, for a UNet with AttentionBlock (quadratic SDPA) and a decoder."""
    result = run_cli("-c", MEASURE_PEAK)
    assert result.returncode == 0, result.stderr
    measured, estimated = map(float, result.stdout.split())
    assert measured <= estimated <= 2 * measured, (measured, estimated)


MEASURE_PEAK = """
import copy, torch
from ldm_lite import sampling
from ldm_lite.util import instantiate_from_config
from tests.test_scripts import CONFIGS
config = copy.deepcopy(CONFIGS["uncond"]["model"])
config["params"]["unet_config"]["params"].update(attention_resolutions=[1])
torch.manual_seed(0)
model = instantiate_from_config(config).eval()
estimate = sampling.sampling_memory(model, 2, 96, 96, guided=False)
sampling.sample_images(model, 1, steps=2, height=16, width=16)
status = lambda field: int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])
open("/proc/self/clear_refs", "w").write("5")  # the peak resident size starts again from here
resident = status("VmRSS:")
sampling.sample_images(model, 2, steps=1, height=96, width=96)
print((status("VmHWM:") - resident) * 1024, estimate)
"""


def test_output_folder_is_checked_before_sampling(models, tmp_path, run_script):
    (tmp_path / "file").write_text("not a folder")
    result = run_script("scripts/txt2img.py", "--prompt", "x", "--outdir", str(tmp_path / "file" / "out"),
                        "-r", str(models["text"]), "--n_samples", "1", "--ddim_steps", "2", "--device", "cpu")
    assert_one_error_line(result.returncode, result.stderr, f"'{tmp_path / 'file'}' is a file")


def test_inpaint_shrinks_images_larger_than_the_working_size(models, inpainting_dir, tmp_path, run_script):
    generator = np.random.default_rng(1)
    Image.fromarray(generator.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(inpainting_dir / "0.png")
    mask = np.zeros((24, 40), np.uint8)
    mask[5:15, 10:30] = 255
    Image.fromarray(mask).save(inpainting_dir / "0_mask.png")
    result = run_script("scripts/inpaint.py", "--indir", str(inpainting_dir), "--outdir", str(tmp_path / "out"),
                        "--steps", "2", "-r", str(models["inpainting"]), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "is 40x24, larger than the model's working size 16x16: inpainting it at 16x8" in result.stderr
    inpainted = np.asarray(Image.open(tmp_path / "out" / "0.png"), dtype=np.int16)
    original = np.asarray(Image.open(inpainting_dir / "0.png"), dtype=np.int16)
    assert inpainted.shape == original.shape
    assert np.abs(inpainted - original)[mask < 128].max() <= 1  # kept pixels exact at full size
    assert np.abs(inpainted - original)[mask >= 128].mean() > 5


# ----------------------------------------------------------------------------- configs are code (item 8)

def test_safe_targets_refuse_a_config_that_runs_code(models, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(models["uncond"], folder)
    config = OmegaConf.load(folder / "config.yaml")
    config.model.params.first_stage_config.params.lossconfig.target = "os.getcwd"  # could be os.system
    OmegaConf.save(config, folder / "config.yaml")
    monkeypatch.setenv("LDM_LITE_SAFE_TARGETS", "1")
    with pytest.raises(sampling.SamplingError, match=r"lossconfig.target 'os.getcwd' is outside the allowed"):
        sampling.load_for_sampling(folder, device="cpu")
    with pytest.raises(ValueError, match="'os.getcwd' is outside the allowed targets"):
        load_model_folder(folder)
    assert load_model_folder(models["uncond"]) is not None  # this library's own targets pass
    assert "Configs are code" in instantiate_from_config.__doc__
