"""Models in and out of diffusers (issue 24): ldm_lite's UNet, autoencoders and latent diffusion models
as diffusers pipeline folders, and diffusers folders (saved by diffusers or downloaded from the Hub) as
ldm_lite modules.

    python scripts/export_diffusers.py models/ldm/text-shapes-emoji outputs/diffusers/text-shapes-emoji
    python scripts/import_diffusers.py <diffusers folder> outputs/models/ldm/<name>

    from ldm_lite.diffusers_interop import export_to_diffusers, load_diffusers
    model = load_diffusers("<diffusers folder>")   # a LatentDiffusion, UNetModel or first stage

The weight mappings are in `unet.py` and `autoencoder.py`, the folder layout and the scheduler in
`export.py` and `load.py`, the model cards in `cards.py`; `components/` holds the two files an
exported folder carries for diffusers (the pipeline and the class-token embedder)."""
from ldm_lite.diffusers_interop.common import ConversionError
from ldm_lite.diffusers_interop.export import Export, export_first_stage, export_latent_diffusion, \
    export_to_diffusers, scheduler_config
from ldm_lite.diffusers_interop.load import import_from_diffusers, latent_diffusion_from_diffusers, load_diffusers

__all__ = ["ConversionError", "Export", "export_first_stage", "export_latent_diffusion", "export_to_diffusers",
           "scheduler_config", "import_from_diffusers", "latent_diffusion_from_diffusers", "load_diffusers"]
