"""Train a model from configs, with the original repository's command line.

    python main.py --base configs/autoencoder/lite_kl_f4_emoji32.yaml -t --gpus 0,
    python main.py --base configs/latent-diffusion/lite_emoji_uncond.yaml -t --max_steps 2000 model.base_learning_rate=2e-6
    python main.py -r logs/<run> -t --max_steps 4000          # continue a run where it stopped

Trailing `dotted.key=value` arguments override the merged config; a key that does not exist is an
error, unless it is an argument of the constructor its `params` mapping feeds (`model.params.ckpt_path=...`
trains on from a model folder's weights, models/README.md). Runs are written to `logs/<%Y-%m-%dT%H-%M-%S>_<name>/`."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import traceback
from pathlib import Path


def str_to_bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "y", "t"):
        return True
    if value.lower() in ("0", "false", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"'{value}' is not a boolean: use true or false")


def parse_gpus(value: str) -> list[int]:
    """`--gpus 0,` or `0,1` as in the original (Lightning's syntax) -> [0] or [0, 1]."""
    try:
        ids = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus '{value}' is not a list of GPU ids: write e.g. --gpus 0, or --gpus 0,1")
    if not ids:
        raise argparse.ArgumentTypeError("--gpus names no GPU: write e.g. --gpus 0,")
    return ids


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-b", "--base", nargs="*", default=[], metavar="config.yaml",
                        help="config files, merged left to right; later ones override earlier ones")
    parser.add_argument("-t", "--train", action="store_true", help="train")
    parser.add_argument("-n", "--name", default="", help="name of the run (the log dir's postfix)")
    parser.add_argument("-r", "--resume", default="", help="resume from a log dir or a checkpoint inside one")
    parser.add_argument("-s", "--seed", type=int, default=23, help="seed for seed_everything")
    parser.add_argument("-l", "--logdir", default="logs", help="folder for the runs' log dirs")
    parser.add_argument("--scale_lr", type=str_to_bool, nargs="?", const=True, default=True,
                        help="scale base_lr by accumulate x devices x batch size")
    parser.add_argument("--gpus", type=parse_gpus, default=None, help="GPU ids, e.g. '0,' or '0,1' (default: the best device)")
    parser.add_argument("--max_steps", type=int, default=None, help="stop after this many optimizer steps")
    parser.add_argument("--max_epochs", type=int, default=None, help="stop after this many epochs")
    parser.add_argument("--precision", choices=["32", "bf16", "16"], default=None, help="training precision")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    return parser


def resolve_resume(resume: str) -> tuple[Path, Path]:
    """`-r` takes a log dir or a checkpoint inside `<logdir>/checkpoints/` -> (log dir, checkpoint)."""
    path = Path(resume)
    if not path.exists():
        raise FileNotFoundError(f"cannot resume: '{resume}' does not exist; pass a log dir (logs/<run>) or its "
                                "checkpoints/last.ckpt")
    if path.is_file():
        return path.parent.parent, path
    checkpoint = path / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"cannot resume: '{checkpoint}' does not exist; the run '{resume}' saved no checkpoint")
    return path, checkpoint


def launch_on_gpus(gpus: list[int]) -> int:
    """Re-run this command with only the chosen GPUs visible: one process, or one per GPU under torchrun."""
    import torch

    available = torch.cuda.device_count()
    missing = [gpu for gpu in gpus if gpu >= available]
    if missing:
        raise ValueError(f"--gpus names GPU {missing[0]} but {available} CUDA device(s) are visible; "
                         "drop --gpus to use the best available device")
    environment = dict(os.environ, LDM_LITE_LAUNCHED="1")
    environment["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpus)
    command = [sys.executable, *(["-m", "torch.distributed.run", f"--nproc_per_node={len(gpus)}"]
                                 if len(gpus) > 1 else []), *sys.argv]
    return subprocess.call(command, env=environment)


def run(options: argparse.Namespace, overrides: list[str]) -> int:
    from ldm_lite.config import load_config
    from ldm_lite.train import fit, make_logdir

    if options.gpus is not None and not os.environ.get("LDM_LITE_LAUNCHED"):
        return launch_on_gpus(options.gpus)
    if options.name and options.resume:
        raise ValueError("-n/--name and -r/--resume cannot both be given: a resumed run keeps its log dir's name")
    checkpoint = None
    bases = list(options.base)
    if options.resume:
        logdir, checkpoint = resolve_resume(options.resume)
        bases = sorted(str(path) for path in (logdir / "configs").glob("*-project.yaml")) + bases
        if not bases:
            raise FileNotFoundError(f"cannot resume: '{logdir}/configs' holds no saved config")
    else:
        if not bases:
            raise ValueError("no config given: pass --base configs/<...>.yaml (see configs/)")
        name = options.name or Path(bases[0]).stem
        logdir = make_logdir(options.logdir, name)
    config = load_config(bases, overrides)
    trainer = config.lightning.trainer
    for key in ("max_steps", "max_epochs", "precision"):
        if getattr(options, key) is not None:
            trainer[key] = getattr(options, key)
    if not options.train:
        print("nothing to do: add -t to train (sampling lives in scripts/sample_diffusion.py and scripts/txt2img.py)")
        return 2
    fit(config, logdir=logdir, resume_from=checkpoint, seed=options.seed, scale_lr=options.scale_lr)
    print(f"Run written to {logdir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    options, unknown = parser.parse_known_args(argv)
    overrides = [argument for argument in unknown if "=" in argument and not argument.startswith("-")]
    if len(overrides) != len(unknown):
        parser.error(f"unrecognized arguments: {' '.join(a for a in unknown if a not in overrides)}")
    from ldm_lite.train import TrainingInterrupted

    try:
        return run(options, overrides)
    except TrainingInterrupted as interrupted:  # last.ckpt is saved and fit said so
        return 128 + interrupted.signal_number
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if options.debug:
            traceback.print_exc()
        else:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"error: {message} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
