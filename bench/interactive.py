"""Is a shipped text model interactive? Wall time of what scripts/txt2img.py does per click:
4 samples, 25 DDIM steps with classifier-free guidance (one batched UNet pass of 2 x 4 per step),
text encoding and decoding included (model loading excluded). Target (issue 21): <= 3 s on 2 CPU cores.

    python bench/interactive.py                                   # every models/ldm/text* folder
    python bench/interactive.py models/ldm/text2img-clipart64 --threads 2 --repeats 5

All models run in the same process, alternating, so the ratio to the first one (the peer) holds
even when the machine's speed drifts; the figure printed is the median of `--repeats` runs."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from ldm_lite.sampling import decode_latents, latent_shape, load_for_sampling, make_conditions, sample_latents

ROOT = Path(__file__).resolve().parents[1]
SAMPLES, STEPS, SCALE = 4, 25, 3.0
PROMPT = "a red apple"


def one_click(model: torch.nn.Module, seed: int) -> float:
    """Seconds for one txt2img request of SAMPLES images (encode prompt, sample, decode)."""
    start = time.perf_counter()
    with torch.no_grad():
        cond, unconditional = make_conditions(model, SAMPLES, prompts=[PROMPT], guidance_scale=SCALE)
        latents = sample_latents(model, latent_shape(model, SAMPLES), "ddim", STEPS, eta=0.0, cond=cond,
                                 unconditional_cond=unconditional, guidance_scale=SCALE, seed=seed)
        decode_latents(model, latents)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="model folders (default: models/ldm/text*)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the target is for 2 cores)")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    folders = [Path(folder) for folder in options.models] or sorted((ROOT / "models" / "ldm").glob("text*"))
    if not folders:
        print("no text models found under models/ldm/", file=sys.stderr)
        return 1
    models = {folder.name: load_for_sampling(folder, device="cpu").model for folder in folders}
    for model in models.values():
        one_click(model, seed=0)  # warm-up: caches the prompt's encoding like a second click would
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(options.repeats):
        for name, model in models.items():
            seconds[name].append(one_click(model, seed=repeat + 1))
    peer = next(iter(models))
    print(f"{SAMPLES} samples, {STEPS} guided DDIM steps (scale {SCALE}), {options.threads} threads, "
          f"median of {options.repeats}; peer = {peer}")
    for name, model in models.items():
        median = statistics.median(seconds[name])
        shape = "x".join(map(str, latent_shape(model, 1)[1:]))
        parameters = sum(parameter.numel() for parameter in model.model.parameters()) / 1e6
        ratio = median / statistics.median(seconds[peer])
        print(f"{name:24s} latents {shape:8s} UNet {parameters:5.2f}M  {median:6.2f} s  ({ratio:.2f}x peer)  "
              f"target <= 3 s: {'met' if median <= 3.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
