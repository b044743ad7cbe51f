"""Interactive sampling in JupyterLab, built over the plain functions of `ldm_lite.sampling`.

`SamplerWidget(model)` shows the controls of a sampler (prompt or class, guidance scale, steps, eta,
sampler, seed, batch size), a Generate button with a progress bar and a live preview of the
predicted x0, the image grid and a Save button. `InpaintWidget(model)` picks an image, lets you
choose the box to fill, and inpaints it. Both keep their state in attributes, so tests (and
notebooks) can set values and call `generate()` / `click()` without a browser."""
from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Sequence

import ipywidgets as widgets
import torch
from einops import rearrange
from PIL import Image

from ldm_lite.data.transforms import pil_to_rgb_array
from ldm_lite.sampling import SAMPLERS, decode_latents, inpaint_any_size, is_caption_model, sample_images
from ldm_lite.util import images_to_grid

PREVIEW_SIZE = 256


def png_bytes(images: torch.Tensor, nrow: int | None = None, size: int | None = None) -> bytes:
    """An NCHW batch in [-1, 1] as the PNG bytes of one grid, scaled (nearest) so its width is `size`."""
    grid = Image.fromarray(images_to_grid(images, nrow))
    if size is not None and grid.width < size:
        factor = max(1, size // grid.width)
        grid = grid.resize((grid.width * factor, grid.height * factor), Image.NEAREST)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


class SamplerWidget:
    """Generate images from a text, class or unconditional (latent) diffusion model."""

    def __init__(self, model: torch.nn.Module, prompt: str = "", class_names: Sequence[str] | None = None,
                 preview_every: int = 5, output_folder: str | Path = "outputs/widget-samples") -> None:
        self.model = model
        self.preview_every = preview_every
        self.output_folder = Path(output_folder)
        self.images: torch.Tensor | None = None
        conditioning = getattr(model, "conditioning_key", None)
        self.prompt = widgets.Text(value=prompt, description="prompt", layout=widgets.Layout(width="420px"))
        number_of_classes = getattr(getattr(model, "cond_stage_model", None), "n_classes", None)
        names = list(class_names) if class_names else [str(index) for index in range(number_of_classes or 0)]
        self.class_label = widgets.Dropdown(options=[(name, index) for index, name in enumerate(names)],
                                            value=0 if names else None, description="class")
        self.guidance_scale = widgets.FloatSlider(value=3.0 if conditioning else 1.0, min=1.0, max=10.0, step=0.5,
                                                  description="guidance", disabled=conditioning is None)
        self.steps = widgets.IntSlider(value=25, min=1, max=200, description="steps")
        self.eta = widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.1, description="eta")  # 1: robust for small models
        self.sampler = widgets.Dropdown(options=list(SAMPLERS), value="ddim", description="sampler")
        self.seed = widgets.IntText(value=0, description="seed")
        self.batch_size = widgets.IntSlider(value=4, min=1, max=16, description="batch size")
        self.generate_button = widgets.Button(description="Generate", button_style="primary", icon="play")
        self.save_button = widgets.Button(description="Save", icon="save", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="progress")
        self.preview = widgets.Image(format="png", layout=widgets.Layout(width=f"{PREVIEW_SIZE}px"))
        self.grid = widgets.Image(format="png", layout=widgets.Layout(width=f"{PREVIEW_SIZE * 2}px"))
        self.status = widgets.Label(value="")
        self.generate_button.on_click(lambda _: self.generate())
        self.save_button.on_click(lambda _: self.save())
        condition = ([self.prompt] if is_caption_model(model) else [self.class_label] if number_of_classes else [])
        controls = widgets.VBox([*condition, self.guidance_scale, self.steps, self.eta, self.sampler, self.seed,
                                 self.batch_size, widgets.HBox([self.generate_button, self.save_button]),
                                 self.progress, self.status])
        self.widget = widgets.HBox([controls, widgets.VBox([widgets.Label("predicted x0"), self.preview]),
                                    widgets.VBox([widgets.Label("samples"), self.grid])])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _on_step(self, index: int, total: int, x_t: torch.Tensor, predicted_x0: torch.Tensor) -> None:
        self.progress.max, self.progress.value = total, index + 1
        if index % self.preview_every == 0 or index + 1 == total:
            self.preview.value = png_bytes(decode_latents(self.model, predicted_x0), size=PREVIEW_SIZE)

    def generate(self) -> torch.Tensor:
        """Sample with the current settings; shows and returns the images (NCHW in [-1, 1])."""
        self.generate_button.disabled = True
        self.status.value = "sampling ..."
        try:
            conditional = getattr(self.model, "conditioning_key", None) is not None
            self.images = sample_images(
                self.model, self.batch_size.value, sampler=self.sampler.value, steps=self.steps.value,
                eta=self.eta.value if self.sampler.value in ("ddim", "ddpm") else 0.0,
                prompts=[self.prompt.value] if is_caption_model(self.model) else None,
                class_labels=[self.class_label.value] if conditional and not is_caption_model(self.model) else None,
                guidance_scale=self.guidance_scale.value if conditional else 1.0, seed=self.seed.value,
                callback=self._on_step)
            self.grid.value = png_bytes(self.images, size=PREVIEW_SIZE * 2)
            self.save_button.disabled = False
            self.status.value = f"{len(self.images)} images, seed {self.seed.value}"
        except ValueError as error:  # bad settings: say so in the widget instead of a traceback
            self.status.value = f"error: {error}"
        finally:
            self.generate_button.disabled = False
        return self.images

    def save(self) -> Path:
        """Write the last grid to `output_folder/<time>_seed<seed>.png`."""
        if self.images is None:
            raise ValueError("nothing to save yet: click Generate first")
        self.output_folder.mkdir(parents=True, exist_ok=True)
        path = self.output_folder / f"{datetime.now():%Y-%m-%dT%H-%M-%S}_seed{self.seed.value}.png"
        path.write_bytes(png_bytes(self.images))
        self.status.value = f"saved {path}"
        return path


class InpaintWidget:
    """Fill a chosen box of an image with the model (mask = 1 inside the box)."""

    def __init__(self, model: torch.nn.Module, image_paths: Sequence[str | Path], steps: int = 25) -> None:
        self.model = model
        self.image_paths = [Path(path) for path in image_paths]
        if not self.image_paths:
            raise ValueError("no images to inpaint: give image paths (e.g. data/inpainting_examples/*.png)")
        self.result: torch.Tensor | None = None
        self.choice = widgets.Dropdown(options=[(path.name, index) for index, path in enumerate(self.image_paths)],
                                       value=0, description="image")
        self.box = [widgets.FloatRangeSlider(value=(0.25, 0.75), min=0.0, max=1.0, step=0.05, description=axis)
                    for axis in ("x", "y")]
        self.steps = widgets.IntSlider(value=steps, min=1, max=200, description="steps")
        self.seed = widgets.IntText(value=0, description="seed")
        self.inpaint_button = widgets.Button(description="Inpaint", button_style="primary", icon="paint-brush")
        self.masked_view = widgets.Image(format="png", layout=widgets.Layout(width=f"{PREVIEW_SIZE}px"))
        self.result_view = widgets.Image(format="png", layout=widgets.Layout(width=f"{PREVIEW_SIZE}px"))
        self.status = widgets.Label(value="")
        for control in (self.choice, *self.box):
            control.observe(lambda _: self.show_mask(), names="value")
        self.inpaint_button.on_click(lambda _: self.inpaint())
        self.widget = widgets.HBox([
            widgets.VBox([self.choice, *self.box, self.steps, self.seed, self.inpaint_button, self.status]),
            widgets.VBox([widgets.Label("region to fill"), self.masked_view]),
            widgets.VBox([widgets.Label("inpainted"), self.result_view])])
        self.show_mask()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def image_and_mask(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The chosen image (1, 3, H, W) in [-1, 1] and the box mask (1, 1, H, W), 1 = fill."""
        with Image.open(self.image_paths[self.choice.value]) as image:
            pixels = torch.from_numpy(pil_to_rgb_array(image).copy()).float()
        image_tensor = rearrange(pixels / 127.5 - 1, "h w c -> 1 c h w")
        height, width = image_tensor.shape[-2:]
        mask = torch.zeros(1, 1, height, width)
        (x0, x1), (y0, y1) = self.box[0].value, self.box[1].value
        mask[..., round(y0 * height):round(y1 * height), round(x0 * width):round(x1 * width)] = 1.0
        return image_tensor, mask

    def show_mask(self) -> None:
        image, mask = self.image_and_mask()
        self.masked_view.value = png_bytes(image * (1 - mask) + mask * 0.6, size=PREVIEW_SIZE)

    def inpaint(self) -> torch.Tensor | None:
        image, mask = self.image_and_mask()
        self.status.value = "inpainting ..."
        try:
            self.result = inpaint_any_size(self.model, image, mask, steps=self.steps.value, eta=1.0,
                                           seed=self.seed.value)
            self.result_view.value = png_bytes(self.result, size=PREVIEW_SIZE)
            self.status.value = "done"
        except ValueError as error:
            self.status.value = f"error: {error}"
        return self.result
