"""Models in and out of diffusers (issue 24), proved on numbers: for every model folder under
models/ldm and models/first_stage_models (future models join by themselves), the exported UNet's
output equals ldm_lite's to 1e-4 relative (float32), the exported autoencoder decodes (and encodes)
as ldm_lite's does, a 10-step DDIM sample through the diffusers pipeline equals ldm_lite's sampler
from the same noise to 1e-3, and ldm_lite -> diffusers -> ldm_lite gives identical state dicts.
Tiny random models cover the options the shipped ones do not use, diffusers' own randomly
initialised saves cover the way in, and the calls the exported model cards document are run."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from ldm_lite.diffusers_interop import ConversionError, export_to_diffusers, latent_diffusion_from_diffusers, \
    load_diffusers  # noqa: E402
from ldm_lite.diffusers_interop.autoencoder import autoencoder_to_diffusers  # noqa: E402
from ldm_lite.diffusers_interop.cards import read_front_matter  # noqa: E402
from ldm_lite.diffusers_interop.export import export_latent_diffusion, load_source  # noqa: E402
from ldm_lite.diffusers_interop.unet import unet_to_diffusers  # noqa: E402
from ldm_lite.models.autoencoder import AutoencoderKL, VQModelInterface  # noqa: E402
from ldm_lite.models.diffusion import LatentDiffusion  # noqa: E402
from ldm_lite.modules.unet import UNetModel  # noqa: E402
from ldm_lite.samplers import DDIMSampler  # noqa: E402
from ldm_lite.sampling import decode_latents, inpaint, make_conditions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LDM_FOLDERS = sorted(path for path in (ROOT / "models" / "ldm").iterdir() if (path / "config.yaml").is_file())
FIRST_STAGE_FOLDERS = sorted(path for path in (ROOT / "models" / "first_stage_models").iterdir()
                             if (path / "config.yaml").is_file())
STEPS = 10
PROMPTS = ["a red circle at the top left", "an emoji of red apple"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is faster, and on a CPU shared with other jobs much faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours.double() - theirs.double()).abs().max() / ours.double().abs().max()).item()


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (zero-initialised output layers would hide a wrong mapping)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return module.eval()


def identical(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


class Exports:
    """Each shipped model loaded and exported once for the whole module."""

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[Path, tuple] = {}

    def __call__(self, folder: Path) -> tuple:
        if folder not in self.done:
            model = load_source(folder)[0]
            exported = export_to_diffusers(folder, self.root / f"{folder.parent.name}-{folder.name}")
            self.done[folder] = (model, exported)
        return self.done[folder]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    return Exports(tmp_path_factory.mktemp("diffusers"))


def unet_inputs(model: LatentDiffusion, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """Random x_t, timesteps across the schedule, and the condition as ldm_lite and as diffusers take it."""
    unet = model.model.diffusion_model
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(batch, unet.in_channels, unet.image_size, unet.image_size, generator=generator)
    t = torch.tensor([0, 421, 999])[:batch]
    cross = next((module for name, module in unet.named_modules() if name.endswith("attn2")), None)
    ours, theirs = {}, {}
    if cross is not None:
        tokens = 16 if model.cond_stage_key == "caption" else 1
        context = torch.randn(batch, tokens, cross.to_k.in_features, generator=generator)
        ours["context"], theirs["encoder_hidden_states"] = context, context
    if unet.num_classes is not None:
        labels = torch.arange(batch) % unet.num_classes
        ours["y"], theirs["class_labels"] = labels, labels
    return x, t, ours, theirs


# ----------------------------------------------------------------------------- the shipped models

@pytest.mark.parametrize("folder", LDM_FOLDERS, ids=lambda path: path.name)
def test_exported_unet_equals_ldm_lite(folder: Path, exports: Exports) -> None:
    model, exported = exports(folder)
    index = json.loads((exported.folder / "model_index.json").read_text())
    unet = getattr(diffusers, index["unet"][1]).from_pretrained(exported.folder, subfolder="unet").eval()
    x, t, ours, theirs = unet_inputs(model)
    with torch.no_grad():
        reference = model.model.diffusion_model(x, t, **ours)
        output = unet(x, t, **theirs).sample
    assert relative_error(reference, output) < 1e-4


@pytest.mark.parametrize("folder", LDM_FOLDERS + FIRST_STAGE_FOLDERS, ids=lambda path: path.name)
def test_exported_autoencoder_equals_ldm_lite(folder: Path, exports: Exports) -> None:
    model, exported = exports(folder)
    first_stage = getattr(model, "first_stage_model", model)
    if not hasattr(first_stage, "decoder"):
        pytest.skip("pixel space: no autoencoder")
    subfolder = next((name for name in ("vae", "vqvae") if (exported.folder / name).is_dir()), None)
    config = json.loads((exported.folder / (subfolder or "") / "config.json").read_text())
    vae = getattr(diffusers, config["_class_name"]).from_pretrained(exported.folder, subfolder=subfolder).eval()
    generator = torch.Generator().manual_seed(3)
    size = first_stage.decoder.z_shape[-1]
    z = torch.randn(2, first_stage.embed_dim, size, size, generator=generator) / float(getattr(model, "scale_factor", 1))
    images = torch.rand(2, 3, size * 4, size * 4, generator=generator) * 2 - 1
    with torch.no_grad():
        assert relative_error(first_stage.decode(z), vae.decode(z).sample) < 1e-4
        assert relative_error(first_stage.encode(images).mean, vae.encode(images).latent_dist.mean) < 1e-4
    if subfolder is not None:
        assert config["scaling_factor"] == pytest.approx(float(model.scale_factor))


def ldm_lite_samples(model: LatentDiffusion, x_T: torch.Tensor, **condition) -> torch.Tensor:
    """ldm_lite's own DDIM (eta 0) from x_T, decoded to [0, 1]."""
    cond, null = make_conditions(model, x_T.shape[0], guidance_scale=condition.get("guidance_scale", 1.0),
                                 prompts=condition.get("prompts"), class_labels=condition.get("class_labels"))
    latents = DDIMSampler.from_model(model).sample(tuple(x_T.shape), cond=cond, unconditional_cond=null,
                                                   guidance_scale=condition.get("guidance_scale", 1.0),
                                                   steps=STEPS, x_T=x_T)
    return (decode_latents(model, latents) + 1) / 2


@pytest.mark.parametrize("folder", LDM_FOLDERS, ids=lambda path: path.name)
def test_ddim_sample_through_diffusers_equals_ldm_lite(folder: Path, exports: Exports) -> None:
    model, exported = exports(folder)
    pipe = diffusers.DiffusionPipeline.from_pretrained(exported.folder, trust_remote_code=True)
    assert type(pipe).__name__ == exported.pipeline
    shape = (2, model.channels, model.image_size, model.image_size)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(11))
    if exported.pipeline in ("LDMPipeline", "DDIMPipeline"):  # stock pipelines draw the noise themselves
        images = pipe(batch_size=2, generator=torch.Generator().manual_seed(11), num_inference_steps=STEPS,
                      eta=0.0, output_type="np").images
        theirs = torch.from_numpy(images).permute(0, 3, 1, 2)
        ours = ldm_lite_samples(model, x_T)
    elif exported.kind == "inpainting":
        generator = torch.Generator().manual_seed(5)
        side = model.image_size * 4
        image = torch.rand(2, 3, side, side, generator=generator) * 2 - 1
        mask = torch.zeros(2, 1, side, side)
        mask[..., side // 4: 3 * side // 4, side // 8: side // 2] = 1
        ours = (inpaint(model, image, mask, steps=STEPS, eta=0.0, seed=11) + 1) / 2
        theirs = pipe(image=image, mask_image=mask, num_inference_steps=STEPS, latents=x_T, output_type="pt").images
    else:
        condition = {"prompts": PROMPTS} if exported.kind == "text" else {"class_labels": [3, 7]}
        ours = ldm_lite_samples(model, x_T, guidance_scale=3.0, **condition)
        arguments = {"prompt": PROMPTS} if exported.kind == "text" else {"class_labels": [3, 7]}
        theirs = pipe(**arguments, guidance_scale=3.0, num_inference_steps=STEPS, latents=x_T, output_type="pt").images
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < 1e-3  # images in [0, 1]
    assert ours.std() > 0.05  # a real image, not a constant


@pytest.mark.parametrize("folder", LDM_FOLDERS, ids=lambda path: path.name)
def test_round_trip_gives_identical_state_dicts(folder: Path, exports: Exports) -> None:
    model, exported = exports(folder)
    back, config = latent_diffusion_from_diffusers(exported.folder)
    assert identical(model.state_dict(), back.state_dict())
    assert back.parameterization == model.parameterization and back.conditioning_key == model.conditioning_key


def test_documented_component_calls_sample_what_the_pipeline_does(exports: Exports) -> None:
    """The component calls of the exported card (no code from the folder) sample what the pipeline does."""
    for folder in LDM_FOLDERS:
        model, exported = exports(folder)
        if exported.pipeline != "LdmLitePipeline":
            continue
        card = (exported.folder / "README.md").read_text()
        assert card.startswith("---\n") and read_front_matter(exported.folder / "README.md")["library_name"] == "diffusers"
        code = re.findall(r"```python\n(.*?)```", card, flags=re.S)[1]
        namespace: dict = {}
        exec(code.replace("steps, eta = 50,", f"steps, eta = {STEPS},"), namespace)  # noqa: S102 - our own card
        pipe = diffusers.DiffusionPipeline.from_pretrained(exported.folder, trust_remote_code=True)
        generator = torch.Generator().manual_seed(0)
        if exported.kind == "inpainting":
            image, mask = namespace["image"], namespace["mask"]
            torch.rand(image.shape, generator=generator)  # the card draws the example image first
            latents = torch.randn(1, model.channels, model.image_size, model.image_size, generator=generator)
            theirs = pipe(image=image, mask_image=mask, num_inference_steps=STEPS, latents=latents, output_type="pt")
        elif exported.kind == "text":
            theirs = pipe(prompt=namespace["prompts"], guidance_scale=3.0, num_inference_steps=STEPS,
                          generator=generator, output_type="pt")
        else:
            theirs = pipe(class_labels=namespace["labels"], guidance_scale=3.0, num_inference_steps=STEPS,
                          generator=generator, output_type="pt")
        assert (namespace["images"] - (theirs.images * 2 - 1)).abs().max() < 1e-4, folder.name


# ----------------------------------------------------------------------------- model cards

MODEL_CARDS = sorted(card for card in (ROOT / "models").glob("**/README.md") if (card.parent / "config.yaml").is_file())


@pytest.mark.parametrize("card", MODEL_CARDS, ids=lambda path: path.parent.name)
def test_every_model_card_has_hub_front_matter(card: Path) -> None:
    metadata = read_front_matter(card)
    assert {"license", "library_name", "pipeline_tag", "tags", "datasets"} <= set(metadata), card
    assert metadata["license"] in ("cc-by-4.0", "cc-by-sa-3.0", "mit", "other")
    if metadata["license"] == "other":
        assert metadata["license_name"] and metadata["license_link"]


def test_exported_card_carries_the_licence_and_the_upload_command(exports: Exports) -> None:
    folder = next(path for path in LDM_FOLDERS if path.name == "text-shapes-emoji")
    _, exported = exports(folder)
    metadata = read_front_matter(exported.folder / "README.md")
    assert metadata["license"] == read_front_matter(folder / "README.md")["license"] == "cc-by-4.0"
    assert metadata["pipeline_tag"] == "text-to-image" and "ldm-lite" in metadata["tags"]
    assert f"huggingface-cli upload <user>/text-shapes-emoji {exported.folder} ." in \
        (exported.folder / "README.md").read_text()


# ----------------------------------------------------------------------------- tiny models: the options

TINY_UNETS = {
    "self-attention, heads of 8 channels": dict(num_head_channels=8),
    "two heads, scale-shift norm, class labels": dict(num_heads=2, use_scale_shift_norm=True, num_classes=5),
    "new attention order": dict(num_head_channels=8, use_new_attention_order=True),
    "transformer depth 2": dict(num_head_channels=8, use_spatial_transformer=True, context_dim=12, transformer_depth=2),
    "transformer, fixed heads, class labels": dict(num_heads=2, use_spatial_transformer=True, context_dim=12,
                                                   num_classes=3),
}


def tiny_unet(**options) -> UNetModel:
    return randomize(UNetModel(image_size=8, in_channels=3, model_channels=16, out_channels=2, num_res_blocks=2,
                               attention_resolutions=[2], channel_mult=[1, 2, 2], norm_num_groups=8, **options))


@pytest.mark.parametrize("options", TINY_UNETS.values(), ids=TINY_UNETS.keys())
def test_tiny_unet_options_convert_both_ways(options: dict) -> None:
    unet = tiny_unet(**options)
    converted = unet_to_diffusers(unet)
    generator = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 3, 8, 8, generator=generator), torch.tensor([3, 700])
    ours, theirs = {}, {}
    if "context_dim" in options:
        ours["context"] = theirs["encoder_hidden_states"] = torch.randn(2, 5, 12, generator=generator)
    if "num_classes" in options:
        ours["y"] = theirs["class_labels"] = torch.tensor([1, 2])
    with torch.no_grad():
        reference = unet(x, t, **ours)
        assert relative_error(reference, converted(x, t, **theirs).sample) < 1e-5
        back = load_diffusers_model(converted)
        assert relative_error(reference, back(x, t, **ours)) < 1e-6
    if not options.get("use_new_attention_order"):  # diffusers keeps no qkv order: it comes back in the legacy one
        assert identical(unet.state_dict(), back.state_dict())


def load_diffusers_model(model: torch.nn.Module, folder: Path | None = None) -> torch.nn.Module:
    """`model` saved by diffusers and loaded back by ldm_lite."""
    import tempfile

    with tempfile.TemporaryDirectory() as temporary:
        model.save_pretrained(folder or temporary, safe_serialization=True)
        return load_diffusers(folder or temporary)


@pytest.mark.parametrize("options, message", [
    (dict(num_head_channels=8, resblock_updown=True), "resblock_updown"),
    (dict(num_head_channels=8, conv_resample=False), "conv_resample"),
    (dict(num_heads=2, num_heads_upsample=4), "different widths"),
    (dict(num_head_channels=12, use_spatial_transformer=True, context_dim=12, legacy=False), "heads"),
    (dict(num_head_channels=8, n_embed=7), "codebook"),
])
def test_unet_options_diffusers_lacks_are_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(ConversionError, match=message) as error:
        unet_to_diffusers(tiny_unet(**options))
    assert "\n" not in str(error.value)


TINY_AUTOENCODER = dict(double_z=True, z_channels=3, resolution=16, in_channels=3, out_ch=3, ch=16, ch_mult=[1, 2, 2],
                        num_res_blocks=1, attn_resolutions=[8], dropout=0.0, num_groups=8)


@pytest.mark.parametrize("kind", ["kl", "kl without attention", "vq"])
def test_tiny_autoencoders_convert_both_ways(kind: str) -> None:
    identity = {"target": "torch.nn.Identity"}
    if kind == "vq":
        model = VQModelInterface(embed_dim=5, n_embed=7, ddconfig=dict(TINY_AUTOENCODER, double_z=False), lossconfig=identity)
    else:
        extra = dict(attn_type="none", attn_resolutions=[]) if kind == "kl without attention" else {}
        model = AutoencoderKL(embed_dim=3, ddconfig=dict(TINY_AUTOENCODER, **extra), lossconfig=identity)
    randomize(model)
    converted = autoencoder_to_diffusers(model, 0.5)
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1
    z = torch.randn(2, model.embed_dim, 4, 4, generator=generator)
    with torch.no_grad():
        assert relative_error(model.decode(z), converted.decode(z).sample) < 1e-5
        encoded = converted.encode(images)
        theirs = encoded.latents if kind == "vq" else encoded.latent_dist.mean
        assert relative_error(model.encode(images) if kind == "vq" else model.encode(images).mean, theirs) < 1e-5
    back = load_diffusers_model(converted)
    assert type(back) is type(model) and identical(model.state_dict(), back.state_dict())


def tiny_ldm(unet: dict, first_stage: dict | None, **params) -> LatentDiffusion:
    latent = first_stage is not None
    first_stage_config = {"target": "ldm_lite.models.autoencoder.AutoencoderKL",
                          "params": {"embed_dim": 3, "ddconfig": TINY_AUTOENCODER, "lossconfig": {"target": "torch.nn.Identity"}}
                          } if latent else {"target": "ldm_lite.models.autoencoder.IdentityFirstStage"}
    unet_params = dict(image_size=4 if latent else 8, in_channels=3, out_channels=3, model_channels=16, num_res_blocks=1,
                       attention_resolutions=[2], channel_mult=[1, 2], norm_num_groups=8, num_head_channels=8, **unet)
    model = LatentDiffusion(first_stage_config=first_stage_config, unet_config={
        "target": "ldm_lite.modules.unet.UNetModel", "params": unet_params}, image_size=unet_params["image_size"],
        channels=3, use_ema=False, **params)
    return randomize(model)


def test_pixel_space_unconditional_model_samples_with_ddim_pipeline(tmp_path: Path) -> None:
    """Pixel space (x0 clipped), x0-prediction and a schedule diffusers has no name for (trained_betas)."""
    model = tiny_ldm({}, None, cond_stage_config="__is_unconditional__", beta_schedule="sqrt", parameterization="x0")
    exported = export_latent_diffusion(model, tmp_path / "pixel")
    assert exported.pipeline == "DDIMPipeline"
    pipe = diffusers.DiffusionPipeline.from_pretrained(exported.folder)
    config = pipe.scheduler.config
    assert config.clip_sample and config.prediction_type == "sample" and len(config.trained_betas) == 1000
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(4), num_inference_steps=STEPS,
                  use_clipped_model_output=True, output_type="np").images
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    ours = ldm_lite_samples(model, x_T)
    assert (ours - torch.from_numpy(images).permute(0, 3, 1, 2)).abs().max() < 1e-3 and ours.std() > 0.05
    back = latent_diffusion_from_diffusers(exported.folder)[0].state_dict()
    for key, value in model.state_dict().items():  # the schedule comes back from float32 betas: to float32 rounding
        assert torch.equal(value, back[key]) if key.startswith("model.") else torch.allclose(value, back[key], rtol=1e-6)


def test_class_label_model_samples_with_the_shipped_pipeline(tmp_path: Path) -> None:
    """A class added to the timestep embedding ("adm"): UNet2DModel with num_class_embeds, eta > 0 with shared noise."""
    model = tiny_ldm({"num_classes": 4}, {}, cond_stage_config={"target": "torch.nn.Identity"},
                     cond_stage_key="class_label", conditioning_key="adm", beta_schedule="sqrt_linear",
                     linear_start=1e-4, linear_end=2e-2, scale_factor=0.7, scale_by_std=True)
    exported = export_latent_diffusion(model, tmp_path / "adm")
    pipe = diffusers.DiffusionPipeline.from_pretrained(exported.folder, trust_remote_code=True)
    assert pipe.scheduler.config.beta_schedule == "linear"
    # Both draw x_T and then one noise per step from the generator seeded 9.
    theirs = pipe(class_labels=[1, 2], guidance_scale=2.0, num_inference_steps=STEPS, eta=0.5,
                  generator=torch.Generator().manual_seed(9), output_type="latent").images
    labels = torch.tensor([1, 2])
    sampler = DDIMSampler.from_model(model)
    ours = sampler.sample((2, 3, 4, 4), cond=labels, unconditional_cond=torch.full_like(labels, 3), guidance_scale=2.0,
                          steps=STEPS, eta=0.5, seed=9)
    assert relative_error(ours, theirs) < 1e-4
    assert identical(model.state_dict(), latent_diffusion_from_diffusers(exported.folder)[0].state_dict())


# ----------------------------------------------------------------------------- diffusers' own saves -> ldm_lite

def test_diffusers_saved_unets_load_into_ldm_lite(tmp_path: Path) -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(3)
    x, t = torch.randn(2, 4, 16, 16, generator=generator), torch.tensor([10, 900])
    context = torch.randn(2, 7, 24, generator=generator)
    cases = [
        (diffusers.UNet2DModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64),
                               layers_per_block=2, attention_head_dim=16, norm_num_groups=16,
                               down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                               up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")), {}),
        (diffusers.UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                                        layers_per_block=1, cross_attention_dim=24, attention_head_dim=(2, 4),
                                        norm_num_groups=16, use_linear_projection=True,
                                        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                                        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
         {"encoder_hidden_states": context}),
    ]
    for model, condition in cases:
        randomize(model)
        ours = load_diffusers_model(model, tmp_path / type(model).__name__)
        with torch.no_grad():
            reference = model(x, t, **condition).sample
            output = ours(x, t, context=condition.get("encoder_hidden_states"))
        assert isinstance(ours, UNetModel) and relative_error(reference, output) < 1e-5


def test_diffusers_saved_vq_pipeline_loads_and_samples_in_ldm_lite(tmp_path: Path) -> None:
    """An LDMPipeline as the Hub's CompVis/ldm-celebahq-256 (UNet2DModel + VQModel + DDIMScheduler), random
    and small: ldm_lite's LatentDiffusion built from it samples what diffusers samples."""
    torch.manual_seed(0)
    vqvae = randomize(diffusers.VQModel(block_out_channels=(16, 32), layers_per_block=1, latent_channels=3,
                                        num_vq_embeddings=32, norm_num_groups=8, sample_size=16, scaling_factor=1.0,
                                        down_block_types=("DownEncoderBlock2D",) * 2,
                                        up_block_types=("UpDecoderBlock2D",) * 2))
    unet = randomize(diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                                           layers_per_block=1, attention_head_dim=8, norm_num_groups=8,
                                           down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                           up_block_types=("AttnUpBlock2D", "UpBlock2D")), seed=1)
    scheduler = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195,
                                        clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = diffusers.LDMPipeline(vqvae=vqvae, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(tmp_path / "ldm")
    model = load_diffusers(tmp_path / "ldm")
    assert isinstance(model.first_stage_model, VQModelInterface) and model.linear_start == 0.0015
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(2), num_inference_steps=STEPS,
                  output_type="np").images
    ours = ldm_lite_samples(model, torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2)))
    assert (ours - torch.from_numpy(images).permute(0, 3, 1, 2)).abs().max() < 1e-3


def test_what_ldm_lite_lacks_is_a_one_line_error(tmp_path: Path) -> None:
    unet = diffusers.UNet2DModel(sample_size=8, block_out_channels=(16, 32), norm_num_groups=8, layers_per_block=1,
                                 down_block_types=("DownBlock2D", "SkipDownBlock2D"),
                                 up_block_types=("SkipUpBlock2D", "UpBlock2D"))
    with pytest.raises(ConversionError, match="SkipDownBlock2D has no ldm_lite counterpart"):
        load_diffusers_model(unet, tmp_path / "skip")
    fourier = diffusers.UNet2DModel(sample_size=8, block_out_channels=(16, 32), norm_num_groups=8, layers_per_block=1,
                                    time_embedding_type="fourier", down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                    up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    with pytest.raises(ConversionError, match="time_embedding_type='fourier'"):
        load_diffusers_model(fourier, tmp_path / "fourier")


# ----------------------------------------------------------------------------- the command lines

def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_and_import_scripts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    export, import_ = load_script("export_diffusers"), load_script("import_diffusers")
    source = FIRST_STAGE_FOLDERS[0]
    assert export.main([str(source), str(tmp_path / "vae")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert import_.main([str(tmp_path / "vae"), str(tmp_path / "back")]) == 0
    original, back = load_source(source)[0], load_source(tmp_path / "back")[0]
    assert identical(original.state_dict(), back.state_dict())
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for arguments, message in [([str(source), str(tmp_path / "vae")], "exists and is not empty"),
                               ([str(source), str(tmp_path / "mine"), "--overwrite"], "not a diffusers folder"),
                               ([str(tmp_path / "nothing"), str(tmp_path / "out")], "does not exist")]:
        with pytest.raises(SystemExit) as stop:
            export.main(arguments)
        error = capsys.readouterr().err
        assert stop.value.code == 1 and message in error and error.count("\n") == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
