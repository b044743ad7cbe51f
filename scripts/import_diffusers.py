"""Turn a diffusers folder (saved by diffusers' save_pretrained, or downloaded from the Hub) into an
ldm_lite model folder (config.yaml + model.safetensors) that the scripts and notebooks load like a
shipped model.

    python scripts/import_diffusers.py <diffusers pipeline folder> outputs/models/ldm/<name>
    python scripts/sample_diffusion.py -r outputs/models/ldm/<name> -n 16

A pipeline folder (model_index.json with unet/, vae/ or vqvae/, scheduler/ and the condition) becomes a
LatentDiffusion; an AutoencoderKL / VQModel folder a first stage. What cannot be represented (a
scheduler, block type or option ldm_lite lacks) is a one-line error. Only safetensors are read."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from ldm_lite.sampling import command_line_errors  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a diffusers pipeline folder (model_index.json) or autoencoder folder")
    parser.add_argument("out", type=Path, help="the ldm_lite model folder to write")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(arguments: list[str] | None = None) -> int:
    options = get_parser().parse_args(arguments)
    with command_line_errors("import_diffusers", options.debug):
        from ldm_lite.diffusers_interop import import_from_diffusers

        if not options.source.is_dir():
            raise FileNotFoundError(f"'{options.source}' is not a folder: give a diffusers pipeline or model folder")
        print(f"wrote {import_from_diffusers(options.source, options.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
