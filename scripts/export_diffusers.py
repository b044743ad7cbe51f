"""Export an ldm_lite model (a model folder or a main.py run) as a diffusers folder, in safetensors,
with a Hub-style model card (README.md) that shows how to load and sample it.

    python scripts/export_diffusers.py models/ldm/text-shapes-emoji outputs/diffusers/text-shapes-emoji
    python scripts/export_diffusers.py logs/<run> outputs/diffusers/<name> --overwrite

Unconditional latent models load with diffusers' LDMPipeline, unconditional pixel-space models with
DDIMPipeline, text / class / inpainting models with the LdmLitePipeline the folder carries
(`DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`) or with the component calls in
its README; an autoencoder folder becomes a diffusers AutoencoderKL / VQModel. No upload: see the
card for the `huggingface-cli upload` command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from ldm_lite.sampling import command_line_errors  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="an ldm_lite model folder (config.yaml + model.safetensors) "
                                                  "or a main.py log dir")
    parser.add_argument("out", type=Path, help="the diffusers folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace `out` when it exists and is not empty")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(arguments: list[str] | None = None) -> int:
    options = get_parser().parse_args(arguments)
    with command_line_errors("export_diffusers", options.debug):
        try:
            import diffusers  # noqa: F401
        except ImportError:
            raise ImportError("exporting needs the diffusers package: pip install diffusers") from None
        from ldm_lite.diffusers_interop import export_to_diffusers

        exported = export_to_diffusers(options.source, options.out, overwrite=options.overwrite)
        how = f"load it with {exported.pipeline}" if exported.pipeline else "load it with AutoencoderKL/VQModel"
        print(f"wrote {exported.folder} ({exported.kind}; {how}, see its README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
