"""Files copied into exported diffusers folders: they import only torch, diffusers and transformers,
so `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` runs them without ldm_lite."""
