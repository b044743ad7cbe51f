"""The widgets, driven as a user would: set values, click, read what is shown (tiny random models)."""
from __future__ import annotations

import copy
import io

import pytest
import torch
from PIL import Image

from ldm_lite.util import instantiate_from_config
from ldm_lite.widgets import InpaintWidget, SamplerWidget
from tests.test_scripts import CONFIGS


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return instantiate_from_config(CONFIGS[name]["model"]).eval()


def shown(image_widget) -> Image.Image:
    return Image.open(io.BytesIO(image_widget.value))


def test_text_widget_generates_previews_and_saves(tmp_path):
    widget = SamplerWidget(build("text"), prompt="a red circle", preview_every=2, output_folder=tmp_path)
    widget.steps.value, widget.batch_size.value, widget.seed.value = 4, 3, 7
    widget.sampler.value = "dpm"
    assert widget.save_button.disabled
    widget.generate_button.click()
    assert widget.images.shape == (3, 3, 16, 16)
    assert widget.progress.value == widget.progress.max == 4
    assert shown(widget.preview).size[0] > 0 and shown(widget.grid).size[0] > 0
    assert "3 images, seed 7" in widget.status.value
    first = widget.images.clone()
    widget.generate_button.click()  # same seed, deterministic sampler: same images
    torch.testing.assert_close(widget.images, first)
    widget.save_button.click()
    (saved,) = tmp_path.glob("*_seed7.png")
    assert Image.open(saved).size == (2 * 18 + 2, 2 * 18 + 2)  # three 16 px images on a 2x2 grid, 2 px padding


def test_class_widget_offers_the_classes_and_uses_the_chosen_one():
    widget = SamplerWidget(build("class"), class_names=["zero", "one", "two"])
    assert [label for label, _ in widget.class_label.options] == ["zero", "one", "two"]
    widget.steps.value, widget.batch_size.value = 2, 2
    widget.class_label.value = 2
    widget.generate_button.click()
    assert widget.images.shape[0] == 2 and "error" not in widget.status.value


def test_bad_settings_show_an_error_instead_of_raising():
    widget = SamplerWidget(build("text"), prompt="x")
    widget.steps.value = 50  # the tiny model has T = 20 steps
    widget.generate_button.click()
    assert widget.status.value.startswith("error:") and "steps" in widget.status.value
    assert not widget.generate_button.disabled


def test_save_before_generate_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Generate first"):
        SamplerWidget(build("uncond"), output_folder=tmp_path).save()


def test_inpaint_widget_fills_only_the_box(tmp_path):
    image = Image.new("RGB", (16, 16), (200, 30, 30))
    path = tmp_path / "red.png"
    image.save(path)
    widget = InpaintWidget(build("inpainting"), [path], steps=3)
    before = widget.masked_view.value
    widget.box[0].value = (0.0, 0.5)
    assert widget.masked_view.value != before  # the preview follows the box
    widget.inpaint_button.click()
    original, mask = widget.image_and_mask()
    assert widget.status.value == "done"
    outside = (widget.result.cpu() - original).abs() * (1 - mask)
    assert outside.max() < 1e-6
    assert mask.sum() == 16 * 8 * 0.5  # x from 0 to 0.5, y from 0.25 to 0.75


def test_text_widget_shows_64_pixel_samples_like_the_flagship():
    config = copy.deepcopy(CONFIGS["text"]["model"])
    config["params"]["image_size"] = config["params"]["unet_config"]["params"]["image_size"] = 32  # f = 2: 64 px
    torch.manual_seed(0)
    widget = SamplerWidget(instantiate_from_config(config).eval(), prompt="a yellow heart", preview_every=1)
    widget.steps.value, widget.batch_size.value = 2, 4
    widget.generate_button.click()
    assert widget.images.shape == (4, 3, 64, 64) and "4 images" in widget.status.value
    grid_side = 2 * 66 + 2  # 2x2 grid of 64 px images, 2 px padding
    assert shown(widget.grid).size == (3 * grid_side,) * 2  # enlarged by a whole factor, to at most 512 px
    assert shown(widget.preview).size == (grid_side,) * 2  # already wider than 256 // 2: not enlarged
