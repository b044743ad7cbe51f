"""Text-to-image sampling with the original repository's flags and outputs.

    python scripts/txt2img.py --prompt "a cat face" --ddim_eta 0.0 --n_samples 4 \\
        --n_iter 2 --scale 5.0 --ddim_steps 50

Writes each image to `<outdir>/samples/%04d.png` (continuing the numbering already there) and a grid
of n_iter rows x n_samples columns to `<outdir>/<prompt>.png`. The model is `--config/--ckpt`, or
`-r <model folder or log dir>`, by default the shipped flagship `models/ldm/text2img-clipart64/`
(`-r models/ldm/text-shapes-emoji` for the shapes model)."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch
from PIL import Image

from ldm_lite.checkpoint import atomic_write
from ldm_lite.sampling import (SamplingError, check_sampling_options, check_writable_folder, command_line_errors,
                               default_model_folder, filename_from_prompt, is_caption_model, latent_shape,
                               load_for_sampling, sample_images, save_png)
from ldm_lite.samplers import SAMPLERS
from ldm_lite.util import images_to_grid

DEFAULT_MODEL = "text2img-clipart64"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", type=str, default="a painting of a virus monster playing guitar",
                        help="the prompt to render")
    parser.add_argument("--outdir", type=str, default="outputs/txt2img-samples", help="dir to write results to")
    parser.add_argument("--ddim_steps", type=int, default=50, help="number of sampling steps")
    parser.add_argument("--plms", action="store_true", help="use PLMS sampling (same as --sampler plms)")
    parser.add_argument("--sampler", type=str, default=None, help=f"one of {', '.join(SAMPLERS)} (default ddim)")
    parser.add_argument("--ddim_eta", type=float, default=0.0, help="DDIM eta (eta=0.0 is deterministic sampling)")
    parser.add_argument("--n_iter", type=int, default=1, help="sample this often (rows of the grid)")
    parser.add_argument("--H", type=int, default=None, help="image height in pixels (default: the model's training size)")
    parser.add_argument("--W", type=int, default=None, help="image width in pixels (default: the model's training size)")
    parser.add_argument("--n_samples", type=int, default=4, help="how many samples per iteration (batch size)")
    parser.add_argument("--scale", type=float, default=5.0,
                        help="unconditional guidance scale: eps = eps(x, empty) + scale * (eps(x, cond) - eps(x, empty))")
    parser.add_argument("--seed", type=int, default=None, help="seed of iteration 0 (iteration i uses seed + i)")
    parser.add_argument("-r", "--resume", type=str, default=None, help="model folder, log dir or checkpoint")
    parser.add_argument("--config", type=str, default=None, help="model config (with --ckpt)")
    parser.add_argument("--ckpt", type=str, default=None, help="model weights (.safetensors or .ckpt)")
    parser.add_argument("--device", type=str, default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--verbose", action="store_true", help="show a progress bar per batch")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def next_sample_index(sample_path: Path) -> int:
    numbers = [int(path.stem) for path in sample_path.glob("*.png") if re.fullmatch(r"\d+", path.stem)]
    return max(numbers, default=-1) + 1


def main(args: argparse.Namespace) -> None:
    sampler = args.sampler or ("plms" if args.plms else "ddim")
    if args.plms and sampler != "plms":
        raise SamplingError(f"--plms and --sampler {sampler} contradict each other: give one of them")
    for name in ("n_samples", "n_iter"):
        if getattr(args, name) < 1:
            raise SamplingError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.config is None and args.ckpt is None and args.resume is None:
        args.resume = str(default_model_folder(DEFAULT_MODEL))
    loaded = load_for_sampling(args.resume, args.config, args.ckpt, args.device)
    model = loaded.model
    if not is_caption_model(model):
        raise SamplingError(f"'{loaded.weights}' is not a text-to-image model (its condition is "
                            f"'{model.cond_stage_key}'): use scripts/sample_diffusion.py")
    check_sampling_options(model, sampler, args.ddim_steps, args.ddim_eta)
    latent_shape(model, args.n_samples, args.H, args.W)  # validates H and W
    check_writable_folder(args.outdir, "--outdir")
    seed = args.seed if args.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())

    rows = []
    for iteration in range(args.n_iter):
        rows.append(sample_images(model, args.n_samples, sampler, args.ddim_steps, args.ddim_eta,
                                  prompts=[args.prompt], guidance_scale=args.scale, seed=seed + iteration,
                                  height=args.H, width=args.W, verbose=args.verbose))
    images = torch.cat(rows)

    outdir = Path(args.outdir)
    sample_path = outdir / "samples"
    first = next_sample_index(sample_path)
    for offset, image in enumerate(images):
        save_png(image, sample_path / f"{first + offset:04}.png")
    grid = Image.fromarray(images_to_grid(images, nrow=args.n_samples))
    grid_path = outdir / f"{filename_from_prompt(args.prompt)}.png"
    atomic_write(grid_path, lambda temporary: grid.save(temporary, format="PNG"))
    print(f"{sampler} sampler, {args.ddim_steps} steps, seed {seed}: wrote {len(images)} samples to "
          f"{sample_path}/{first:04}.png.. and the grid {grid_path}")


if __name__ == "__main__":
    arguments = get_parser().parse_args()
    with command_line_errors("txt2img", arguments.debug):
        main(arguments)
    sys.exit(0)
