"""Issue 23: what a careless or hostile user can do to the tools. Each test fails on the code before
the fix: image modes, the UNet and quantizer numerics, one-line errors, size guards, the run lock,
resuming with a new learning rate, exit codes and disk-full handling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_lite.data.folder import load_image
from ldm_lite.data.transforms import pil_to_rgb_array
from tests.test_scripts import inpainting_dir, models, run_script  # noqa: F401 (fixtures)

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
