"""Inpainting with the original repository's flags and outputs.

    python scripts/inpaint.py --indir data/inpainting_examples/ --outdir outputs/inpainting_results --steps 50

`--indir` holds pairs `<n>.png` + `<n>_mask.png` (white = region to fill); the result is written to
`<outdir>/<n>.png`. A model trained for inpainting (concat-conditioned on the masked image and the
mask, as the original's) is used as such; any other model inpaints by latent blending (optionally
with RePaint resampling, `--resample_steps`). The known pixels are pasted back in pixel space.
Default model: the shipped `models/ldm/inpainting-emoji/`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ldm_lite.sampling import (SamplingError, check_sampling_options, check_writable_folder, command_line_errors,
                               default_model_folder, downsampling_factor, find_inpainting_pairs, inpaint_any_size,
                               is_inpainting_model, load_for_sampling, load_inpainting_pair, save_png,
                               shrink_to_working_size, working_size)

DEFAULT_MODEL = "inpainting-emoji"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--indir", type=str, nargs="?", default="data/inpainting_examples",
                        help="dir containing image-mask pairs (`example.png` and `example_mask.png`)")
    parser.add_argument("--outdir", type=str, nargs="?", default="outputs/inpainting_results",
                        help="dir to write results to")
    parser.add_argument("--steps", type=int, default=50, help="number of sampling steps")
    parser.add_argument("--sampler", type=str, default="ddim", help="ddim, plms, dpm or ddpm")
    parser.add_argument("--eta", type=float, default=None,
                        help="DDIM eta (default 1 for ddim: stochastic steps keep small models from drifting; "
                             "0 = deterministic, and the only choice for plms and dpm)")
    parser.add_argument("--resample_steps", type=int, default=1,
                        help="RePaint resampling per step (latent blending with ddim/ddpm only)")
    parser.add_argument("--prompt", type=str, default=None, help="caption, for text-conditioned models")
    parser.add_argument("--scale", type=float, default=1.0, help="classifier-free guidance scale (text models)")
    parser.add_argument("--seed", type=int, default=0, help="seed (each image uses seed + its index)")
    parser.add_argument("-r", "--resume", type=str, default=None, help="model folder, log dir or checkpoint")
    parser.add_argument("--config", type=str, default=None, help="model config (with --ckpt)")
    parser.add_argument("--ckpt", type=str, default=None, help="model weights (.safetensors or .ckpt)")
    parser.add_argument("--device", type=str, default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--verbose", action="store_true", help="show a progress bar per image")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(args: argparse.Namespace) -> None:
    pairs, skipped = find_inpainting_pairs(args.indir)
    for path in skipped:
        print(f"inpaint: skipping '{path}': not an image", file=sys.stderr)
    if args.config is None and args.ckpt is None and args.resume is None:
        args.resume = str(default_model_folder(DEFAULT_MODEL))
    loaded = load_for_sampling(args.resume, args.config, args.ckpt, args.device)
    model = loaded.model
    if args.eta is None:
        args.eta = 1.0 if args.sampler == "ddim" else 0.0
    check_sampling_options(model, args.sampler, args.steps, args.eta)
    trained_for_it = is_inpainting_model(model)
    if args.resample_steps < 1 or (args.resample_steps > 1 and (trained_for_it or args.sampler not in ("ddim", "ddpm"))):
        raise SamplingError(f"--resample_steps {args.resample_steps}: must be >= 1, and > 1 only for latent "
                            "blending (a model not trained for inpainting) with --sampler ddim or ddpm")
    factor, working = downsampling_factor(model), working_size(model)
    for image_path, mask_path in pairs:  # validate all before sampling any (not kept: images can be large)
        load_inpainting_pair(image_path, mask_path, factor, working)
    check_writable_folder(args.outdir, "--outdir")
    # The original's inpainting model saw the fill region as -1 (black); this project's datasets use 0.
    masked_fill = -1.0 if loaded.original else 0.0
    method = "trained inpainting model" if trained_for_it else "latent blending"
    outdir = Path(args.outdir)
    for index, (image_path, mask_path) in enumerate(pairs):
        image, mask = load_inpainting_pair(image_path, mask_path, factor, working)
        shrunk = shrink_to_working_size(model, image, mask)
        if shrunk is not None:
            print(f"inpaint: '{image_path}' is {image.shape[-1]}x{image.shape[-2]}, larger than the model's working "
                  f"size {working[1]}x{working[0]}: inpainting it at {shrunk[0].shape[-1]}x{shrunk[0].shape[-2]} "
                  "and pasting the fill back at full size", file=sys.stderr)
        result = inpaint_any_size(model, image, mask, sampler=args.sampler, steps=args.steps, eta=args.eta,
                                  seed=args.seed + index, resample_steps=args.resample_steps,
                                  prompts=[args.prompt] if args.prompt else None, guidance_scale=args.scale,
                                  masked_fill=masked_fill, verbose=args.verbose)
        path = save_png(result[0], outdir / f"{image_path.stem}.png")
        print(f"inpaint ({method}): {image_path} -> {path}")


if __name__ == "__main__":
    arguments = get_parser().parse_args()
    with command_line_errors("inpaint", arguments.debug):
        main(arguments)
    sys.exit(0)
