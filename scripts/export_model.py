"""Turn a training run into a model folder (config.yaml + model.safetensors, EMA weights swapped in).

    python scripts/export_model.py logs/<run> models/ldm/<name> [--half] [--first_stage <weights>] [--checkpoint step=012000.ckpt]

This is how the shipped models under models/ were made from their main.py runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from ldm_lite.checkpoint import CheckpointError, load_training_checkpoint, load_weights  # noqa: E402
from ldm_lite.config import load_config  # noqa: E402
from ldm_lite.pretrained import export_model  # noqa: E402
from ldm_lite.sampling import command_line_errors  # noqa: E402
from ldm_lite.util import instantiate_from_config  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a log dir written by main.py")
    parser.add_argument("folder", type=Path, help="the model folder to write")
    parser.add_argument("--half", action="store_true", help="store parameters in float16 (half the size)")
    parser.add_argument("--first_stage", default=None, metavar="PATH",
                        help="leave the first stage out and point the config at this weights file instead "
                             "(relative to the repository root), e.g. the shipped autoencoder's model.safetensors")
    parser.add_argument("--checkpoint", default="last.ckpt", metavar="NAME",
                        help="which file of the run's checkpoints/ to export (default last.ckpt; e.g. step=012000.ckpt)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(options: argparse.Namespace) -> None:
    configs = sorted((options.run / "configs").glob("*-project.yaml"))
    checkpoint_path = options.run / "checkpoints" / options.checkpoint
    if not configs:
        raise CheckpointError(f"'{options.run}' is not a main.py run (no configs/*-project.yaml)")
    if not checkpoint_path.is_file():
        kept = ", ".join(sorted(path.name for path in (options.run / "checkpoints").glob("*.ckpt"))) or "none"
        raise CheckpointError(f"'{options.run}' has no checkpoints/{options.checkpoint} (kept: {kept}): "
                              "choose one with --checkpoint")
    config = load_config(configs)
    model = instantiate_from_config(config.model)
    checkpoint = load_training_checkpoint(checkpoint_path)
    load_weights(model, checkpoint["state_dict"], source=f"checkpoint '{checkpoint_path}'")
    folder = export_model(model.eval(), config, options.folder, half_precision=options.half,
                          first_stage_weights=options.first_stage)
    print(f"wrote {folder} from step {checkpoint['global_step']}")


if __name__ == "__main__":
    arguments = get_parser().parse_args()
    with command_line_errors("export_model", arguments.debug):
        main(arguments)
    sys.exit(0)
