"""Training on a folder of your own images (README "Train on your own images"): the two make targets
in each mode (unconditional, classes, captions) on a generated folder, sampling from what they export,
and one clear line for each bad input a user meets.

The make targets' command lines are taken from `make -n` and run in this process (runpy), as the
sampling-script tests do: each run saves a Python start-up of several seconds."""
from __future__ import annotations

import contextlib
import io
import json
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from ldm_lite.checkpoint import load_state_dict_file
from ldm_lite.config import load_config
from ldm_lite.data.folder import ImageFolderDataset, class_names
from ldm_lite.pretrained import export_model, first_stage_from_folder
from ldm_lite.util import instantiate_from_config

from .conftest import ROOT

SHAPES = ("circle", "square", "triangle")
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220)}
SIZE = 16  # image side in the tests: 4x4 latents
# a UNet of one level, and no validation (it samples 50 DDIM steps for its image log)
TINY_UNET = ["model.params.unet_config.params.model_channels=32", "model.params.unet_config.params.channel_mult=[1]",
             "model.params.unet_config.params.attention_resolutions=[1]", "lightning.trainer.val_check_interval=0"]


def draw(shape: str, color: tuple[int, int, int], size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size, (240, 240, 230))
    left, top = (int(value) for value in rng.integers(1, 5, 2))
    box = (left, top, width - left - 1, height - top - 1)
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse(box, fill=color)
    elif shape == "square":
        pen.rectangle(box, fill=color)
    else:
        pen.polygon([(box[0], box[3]), (width // 2, box[1]), (box[2], box[3])], fill=color)
    return image


def make_folder(root: Path, per_class: int = 12) -> Path:
    """Three class folders of coloured shapes, 20x20 with a few of other sizes and modes; captions in
    `<image>.txt` sidecars (circles, squares) and a Hugging Face `metadata.jsonl` (triangles)."""
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        folder = root / shape
        folder.mkdir(parents=True)
        metadata = []
        for index in range(per_class):
            name, color = list(COLORS.items())[index % 3]
            image = draw(shape, color, (24, 18) if index == 1 else (20, 20), rng)
            if index == 2:
                image = image.convert("L")
            elif index == 3:
                image = image.convert("P", palette=Image.Palette.ADAPTIVE)
            elif index == 4:
                image = image.convert("RGBA")
            image.save(folder / f"{index:02}.png")
            caption = f"a {name} {shape}"
            if shape == "triangle":
                metadata.append(json.dumps({"file_name": f"{index:02}.png", "text": caption}))
            else:
                (folder / f"{index:02}.txt").write_text(caption + "\n")
        if shape == "triangle":
            (folder / "metadata.jsonl").write_text("\n".join(metadata) + "\n")
    (root / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return root


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run as fast on one thread, and a busy machine does not slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("own") / "images")


def run_python(*arguments: str) -> tuple[int, str, str]:
    """`python <script> <arguments>` in this process: (exit status, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv = sys.argv
    sys.argv = [str(ROOT / arguments[0]), *arguments[1:]]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            runpy.run_path(str(ROOT / arguments[0]), run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved_argv
    return code, stdout.getvalue(), stderr.getvalue()


def make(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", f"PYTHON={sys.executable}",
                           *arguments], cwd=ROOT, capture_output=True, text=True, timeout=60)


def run_make_target(*arguments: str) -> tuple[list[str], str]:
    """Run the Python commands of `make <arguments>` (from `make -n`, shell words expanded by bash when each
    command starts) in this process; returns their scripts, in order, and their combined stdout."""
    dry_run = make("-n", *arguments)
    assert dry_run.returncode == 0, dry_run.stderr
    scripts, output = [], ""
    for line in dry_run.stdout.replace("\\\n", " ").splitlines():
        line = line.removeprefix("HF_HUB_OFFLINE=1 ")
        if not line.startswith(sys.executable):
            continue  # the recipes' checks and messages
        words = subprocess.run(["bash", "-c", f"printf '%s\\0' {line.removeprefix(sys.executable)}"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
        code, stdout, stderr = run_python(*words)
        assert code == 0, f"{' '.join(words)}\n{stderr[-3000:]}"
        scripts.append(words[0])
        output += stdout
    return scripts, output


def assert_one_error_line(code: int, stderr: str, *words: str) -> None:
    assert code != 0
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]


# ----------------------------------------------------------------------------- the two commands

@pytest.mark.slow
def test_two_commands_in_each_mode_then_sampling(folder, tmp_path):
    common = [f"DATA={folder}", f"SIZE={SIZE}", "BATCH=4", "STEPS=3", f"LOGS={tmp_path / 'logs'}",
              f"MODELS={tmp_path / 'models'}"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scripts, output = run_make_target("own-autoencoder", *common, "ARGS=lightning.trainer.val_check_interval=0")
    assert scripts == ["main.py", "scripts/export_model.py"]
    assert sum("skipped 1 unreadable" in str(warning.message) for warning in caught) == 1  # broken.png, once
    # mixed sizes and modes: said once per split, never per image
    train_note = next(line for line in output.splitlines() if line.startswith("ImageFolderDataset (train"))
    assert "resized from 20x20..24x18 to 16x16" in train_note and "converted to RGB (from L, P, RGBA)" in train_note
    assert "3 classes (class_label name (files)): 0 circle (12), 1 square (13), 2 triangle (12)" in output
    first_stage = tmp_path / "models" / "first_stage_models" / "own-kl-f4"
    assert OmegaConf.load(first_stage / "config.yaml").model.params.ddconfig.resolution == SIZE

    for kind in ("uncond", "class", "text"):
        scripts, _ = run_make_target("own-ldm", f"KIND={kind}", *common, "ARGS=" + " ".join(TINY_UNET))
        assert scripts == ["main.py", "scripts/export_model.py"], kind
        exported = OmegaConf.load(tmp_path / "models" / "ldm" / f"own-{kind}" / "config.yaml").model.params
        assert exported.first_stage_config.target == "ldm_lite.models.autoencoder.AutoencoderKL"  # self-contained
        assert "ckpt_path" not in exported.first_stage_config.params
    assert exported.cond_stage_config.target.endswith("FrozenMiniLMEmbedder")
    classes = OmegaConf.load(tmp_path / "models" / "ldm" / "own-class" / "config.yaml").model.params.cond_stage_config
    assert classes.params.n_classes == 3  # counted by make from the class folders

    samples = tmp_path / "samples"
    models = tmp_path / "models" / "ldm"
    for arguments in (["-r", str(models / "own-uncond")], ["-r", str(models / "own-class"), "--classes", "0", "2", "--scale", "3"]):
        code, _, stderr = run_python("scripts/sample_diffusion.py", *arguments, "-l", str(samples), "-n", "2",
                                     "--batch_size", "2", "-c", "2", "-e", "0", "--device", "cpu")
        assert code == 0, stderr
    code, _, stderr = run_python("scripts/txt2img.py", "-r", str(models / "own-text"), "--prompt", "a red circle",
                                 "--n_samples", "2", "--ddim_steps", "2", "--scale", "3", "--outdir",
                                 str(samples / "txt2img"), "--device", "cpu")
    assert code == 0, stderr
    images = sorted(samples.rglob("*.png"))
    assert len([path for path in images if "sample_" in path.name]) == 4
    assert Image.open(samples / "txt2img" / "samples" / "0000.png").size == (SIZE, SIZE)


# ----------------------------------------------------------------------------- the data

def test_folder_captions_classes_and_split(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = ImageFolderDataset(folder, size=SIZE, required_keys=["caption", "class_label"], n_classes=3)
        validation = ImageFolderDataset(folder, size=SIZE, split="validation", required_keys=["caption", "class_label"])
    assert len(train) + len(validation) == 36 and len(validation) >= 1
    items = [dataset[index] for dataset in (train, validation) for index in range(len(dataset))]
    for item in items:
        assert item["image"].shape == (SIZE, SIZE, 3) and item["image"].dtype == np.float32
        assert item["caption"].split()[-1] == SHAPES[item["class_label"]] == item["human_label"]
    assert class_names(folder) == list(SHAPES)


def test_partial_captions_become_empty_and_a_lone_class_keeps_its_image(tmp_path):
    rng = np.random.default_rng(1)
    for shape, count in (("circle", 5), ("square", 1)):
        (tmp_path / shape).mkdir()
        for index in range(count):
            draw(shape, COLORS["red"], (16, 16), rng).save(tmp_path / shape / f"{index}.png")
    (tmp_path / "circle" / "0.txt").write_text("a red circle")
    with pytest.warns(UserWarning, match=r"1 class folder\(s\) hold a single image \(first: square\)"):
        train = ImageFolderDataset(tmp_path, size=16, validation_fraction=0.9)
    assert "square" in [item["human_label"] for item in (train[i] for i in range(len(train)))]
    assert {train[i]["caption"] for i in range(len(train))} <= {"a red circle", ""}  # every item has one: batches collate


def test_metadata_csv_and_its_errors(tmp_path):
    draw("circle", COLORS["blue"], (16, 16), np.random.default_rng(0)).save(tmp_path / "a.png")
    draw("square", COLORS["blue"], (16, 16), np.random.default_rng(0)).save(tmp_path / "b.png")
    (tmp_path / "metadata.csv").write_text("file_name,text\na.png,a blue circle\nb.png,\"a blue square, small\"\n")
    dataset = ImageFolderDataset(tmp_path, size=16, validation_fraction=0.0, required_keys=["caption"])
    assert sorted(dataset[i]["caption"] for i in range(2)) == ["a blue circle", "a blue square, small"]
    (tmp_path / "metadata.csv").write_text("image,text\na.png,a blue circle\n")
    with pytest.raises(ValueError, match="no file_name column"):
        ImageFolderDataset(tmp_path, size=16)


# ----------------------------------------------------------------------------- what a user hits

@pytest.fixture(scope="module")
def first_stage_export(tmp_path_factory) -> Path:
    """An untrained export of configs/autoencoder/folder_kl_f4.yaml at SIZE px (what own-autoencoder writes)."""
    config = load_config([ROOT / "configs" / "autoencoder" / "folder_kl_f4.yaml"],
                         [f"data.params.train.params.size={SIZE}"])
    torch.manual_seed(0)
    return export_model(instantiate_from_config(config.model), config, tmp_path_factory.mktemp("export") / "own-kl-f4")


def train_ldm(kind: str, folder: Path, first_stage: Path, tmp_path: Path, *overrides: str) -> tuple[int, str, str]:
    return run_python("main.py", "--base", f"configs/latent-diffusion/folder_{kind}.yaml", "-t", "-l", str(tmp_path / "logs"),
                      "--max_steps", "1", f"data.params.train.params.root={folder}", f"data.params.train.params.size={SIZE}",
                      f"model.params.image_size={SIZE // 4}", "data.params.batch_size=4",
                      f"model.params.first_stage_config.params.folder={first_stage}", *TINY_UNET, *overrides)


def test_bad_folders_give_one_line(tmp_path, first_stage_export, folder):
    (tmp_path / "empty").mkdir()
    code, _, stderr = train_ldm("uncond", tmp_path / "empty", first_stage_export, tmp_path)
    assert_one_error_line(code, stderr, "no images found under", "put your images there")

    code, _, stderr = train_ldm("uncond", tmp_path / "absent", first_stage_export, tmp_path)
    assert_one_error_line(code, stderr, "does not exist")

    code, _, stderr = run_python("main.py", "--base", "configs/autoencoder/folder_kl_f4.yaml", "-t", "-l", str(tmp_path / "logs"))
    assert_one_error_line(code, stderr, "no image folder given", "data.params.train.params.root=<folder>")

    broken = tmp_path / "broken"
    broken.mkdir()
    draw("circle", COLORS["red"], (16, 16), np.random.default_rng(0)).save(broken / "good.png")
    for index in range(3):
        (broken / f"{index}.jpg").write_text("version https://git-lfs.github.com/spec/v1\n")  # a Git LFS pointer
    code, _, stderr = train_ldm("uncond", broken, first_stage_export, tmp_path, "data.params.train.params.validation_fraction=0")
    assert_one_error_line(code, stderr, "3 of 4 image files in the train split", "cannot be read", "more than 50%")

    code, _, stderr = train_ldm("uncond", folder, first_stage_export, tmp_path, "data.params.batch_size=64")
    assert_one_error_line(code, stderr, "fewer than one batch of 64", "data.params.batch_size")


def test_class_and_caption_requirements_give_one_line(tmp_path, first_stage_export, folder):
    code, _, stderr = train_ldm("class", folder, first_stage_export, tmp_path)  # the config's n_classes: 10
    assert_one_error_line(code, stderr, "has 3 class folders", "n_classes=10", "n_classes=3")

    loose = tmp_path / "loose"
    loose.mkdir()
    for index in range(5):
        draw("circle", COLORS["red"], (16, 16), np.random.default_rng(index)).save(loose / f"{index}.png")
    code, _, stderr = train_ldm("class", loose, first_stage_export, tmp_path)
    assert_one_error_line(code, stderr, "5 image(s) lie directly in", "move each image into a subfolder")

    code, _, stderr = train_ldm("text", loose, first_stage_export, tmp_path)
    assert_one_error_line(code, stderr, "images in the train split", "have no caption", "<image>.txt", "metadata.jsonl")


def test_first_stage_problems_give_one_line(tmp_path, first_stage_export, folder):
    code, _, stderr = train_ldm("uncond", folder, tmp_path / "not-made-yet", tmp_path)
    assert_one_error_line(code, stderr, "not-made-yet' does not exist yet", "make own-autoencoder DATA=<your folder>")

    code, _, stderr = train_ldm("uncond", folder, first_stage_export, tmp_path, "data.params.train.params.size=32")
    assert_one_error_line(code, stderr, f"was trained on {SIZE}x{SIZE} images, these are 32x32",
                          "make own-autoencoder DATA=<your folder> SIZE=32", f"train the LDM at {SIZE} px")

    code, _, stderr = train_ldm("uncond", folder, first_stage_export, tmp_path, "model.params.image_size=8")
    assert_one_error_line(code, stderr, "make 4x4 latents", "model.params.image_size=4")


def test_the_original_missing_first_stage_names_its_download():
    """The original repository's most asked error, FileNotFoundError models/first_stage_models/kl-f8/model.ckpt."""
    from ldm_lite.models.diffusion import resolve_weights_path

    with pytest.raises(FileNotFoundError, match=r"download_models.sh kl-f8`; to train on your own images instead: "
                                                r"`make own-autoencoder DATA=<folder>`"):
        resolve_weights_path("models/first_stage_models/kl-f8/model.ckpt")


def test_first_stage_from_folder_matches_the_export(first_stage_export):
    model = first_stage_from_folder(str(first_stage_export), image_size=SIZE, latent_size=SIZE // 4, latent_channels=4)
    saved = instantiate_from_config(OmegaConf.load(first_stage_export / "config.yaml").model)
    saved.load_state_dict(load_state_dict_file(first_stage_export / "model.safetensors"))
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    torch.testing.assert_close(model.encode(x).mode(), saved.encode(x).mode())
    with pytest.raises(ValueError, match="makes 4-channel latents but model.params.channels is 3"):
        first_stage_from_folder(str(first_stage_export), latent_channels=3)


def test_make_targets_check_their_variables():
    result = make("own-autoencoder")
    assert result.returncode != 0 and "error: no image folder given: make own-autoencoder DATA=<folder" in result.stderr
    result = make("own-ldm", "DATA=somewhere", "KIND=pixels")
    assert result.returncode != 0 and "error: KIND=pixels is not a kind of model: use KIND=uncond, class or text" in result.stderr
