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
