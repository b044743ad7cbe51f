"""Sample many images from a diffusion model, with the original repository's flags and outputs.

    python scripts/sample_diffusion.py -r models/ldm/<name>/ -l outputs/samples -n 10 --batch_size 4 -c 100 -e 0.0
    python scripts/sample_diffusion.py -r logs/<run>/ -n 16 -v                       # vanilla DDPM, all T steps
    python scripts/sample_diffusion.py -r <class model> -n 8 --classes 0 1 2 --scale 3.0

`-r` is a model folder (config.yaml + model.safetensors or model.ckpt), a training log dir, or a
checkpoint inside either. Output (as the original; with `-l L` the folder is `L/<model folder name>`):
    <folder>/samples/<global step, 8 digits>/<%Y-%m-%d-%H-%M-%S>/img/sample_%06d.png
    <folder>/samples/.../numpy/<N>x<H>x<W>x3-samples.npz    (uint8, key arr_0)
    <folder>/samples/.../sampling_config.yaml                (the options of this run)
Unlike the original, class- and text-conditional models are sampled too (`--classes`, `--prompts`).
Trailing `dotted.key=value` arguments override the model config."""
from __future__ import annotations

import argparse
import datetime
import math
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from ldm_lite.checkpoint import atomic_write
from ldm_lite.sampling import (SamplingError, check_sampling_options, check_writable_folder, command_line_errors,
                               is_caption_model, load_for_sampling, sample_images, save_png)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-r", "--resume", type=str, required=True, help="load from logdir or checkpoint in logdir")
    parser.add_argument("-n", "--n_samples", type=int, default=50000, help="number of samples to draw")
    parser.add_argument("-e", "--eta", type=float, default=None,
                        help="eta for ddim sampling (0.0 yields deterministic sampling; default 1.0, 0 for plms/dpm)")
    parser.add_argument("-v", "--vanilla_sample", action="store_true", help="vanilla (DDPM ancestral) sampling instead of DDIM")
    parser.add_argument("-l", "--logdir", type=str, default="none", help="extra logdir")
    parser.add_argument("-c", "--custom_steps", type=int, default=50, help="number of steps for ddim sampling")
    parser.add_argument("--batch_size", type=int, default=10, help="the batch size")
    parser.add_argument("--sampler", type=str, default=None, help="ddim (default), plms, dpm or ddpm (= -v)")
    parser.add_argument("--classes", type=int, nargs="+", default=None, help="class labels, cycled over the samples")
    parser.add_argument("--prompts", type=str, nargs="+", default=None, help="captions, cycled over the samples")
    parser.add_argument("--scale", type=float, default=1.0, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=None, help="seed of batch 0 (batch i uses seed + i)")
    parser.add_argument("--device", type=str, default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(args: argparse.Namespace, overrides: list[str]) -> None:
    now = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    sampler = "ddpm" if args.vanilla_sample else (args.sampler or "ddim")
    if args.vanilla_sample and args.sampler not in (None, "ddpm"):
        raise SamplingError(f"-v (vanilla DDPM) and --sampler {args.sampler} contradict each other: give one")
    for name in ("n_samples", "batch_size"):
        if getattr(args, name) < 1:
            raise SamplingError(f"--{name} must be at least 1, got {getattr(args, name)}")
    loaded = load_for_sampling(args.resume, device=args.device, overrides=overrides)
    model = loaded.model
    eta = args.eta if args.eta is not None else (0.0 if sampler in ("plms", "dpm") else 1.0)
    check_sampling_options(model, sampler, args.custom_steps, eta)
    prompts = args.prompts if is_caption_model(model) or args.prompts else None
    seed = args.seed if args.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())

    folder = loaded.folder
    if args.logdir != "none":
        folder = Path(args.logdir) / loaded.folder.resolve().name
    run_dir = folder / "samples" / f"{loaded.global_step:08}" / now
    image_dir, numpy_dir = run_dir / "img", run_dir / "numpy"
    check_writable_folder(run_dir, "the output folder")

    batches = math.ceil(args.n_samples / args.batch_size)
    steps = model.num_timesteps if sampler == "ddpm" else args.custom_steps
    print(f"{sampler} sampling, {steps} steps, eta {eta}, {args.n_samples} samples in {batches} batches -> {run_dir}")
    all_images = []
    for batch in range(batches):
        size = min(args.batch_size, args.n_samples - batch * args.batch_size)
        images = sample_images(model, size, sampler, args.custom_steps, eta, prompts=prompts,
                               class_labels=args.classes, guidance_scale=args.scale, seed=seed + batch)
        if batch == 0:  # the first batch ran: inputs are valid, start writing
            options = dict(vars(args), sampler=sampler, eta=eta, seed=seed, overrides=overrides,
                           config_files=[str(path) for path in loaded.config_files], weights=str(loaded.weights))
            atomic_write(run_dir / "sampling_config.yaml",
                         lambda temporary: OmegaConf.save(OmegaConf.create(options), temporary))
        for image in images:
            save_png(image, image_dir / f"sample_{len(all_images):06}.png")
            all_images.append(((image.cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
    stacked = np.stack(all_images)
    numpy_path = numpy_dir / f"{'x'.join(str(size) for size in stacked.shape)}-samples.npz"

    def write_npz(temporary: str) -> None:
        with open(temporary, "wb") as handle:  # a handle: np.savez would append .npz to a path
            np.savez(handle, stacked)

    atomic_write(numpy_path, write_npz)
    print(f"wrote {len(stacked)} images to {image_dir} and {numpy_path}")


if __name__ == "__main__":
    arguments, extra = get_parser().parse_known_args()
    with command_line_errors("sample_diffusion", arguments.debug):
        main(arguments, extra)
    sys.exit(0)
