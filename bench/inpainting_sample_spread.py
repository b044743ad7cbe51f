"""How much of an inpainting model's hole PSNR is lost to drawing one sample (issue 21).

    python bench/inpainting_sample_spread.py <model folder> [--count 200] [--samples 4] [--data <training config>]

PSNR rewards the posterior mean. If a fill x is an independent draw from the posterior p(x | kept
pixels) and m is that posterior's mean, then E||x - x0||^2 = E||m - x0||^2 + E||x - m||^2, and
for a perfect sampler both terms equal the posterior variance: one sample's squared error is twice
the best deterministic fill's (10 log10 2 = 3.0 dB of PSNR). A classical fill (OpenCV's Telea and
Navier-Stokes) is deterministic and smooth, closer to a mean than to a sample. This bench measures
how far the average of K samples from the same masks moves the model's hole PSNR, next to the
classical fills and DDIM with eta = 0, on `count` held-out items with bench/quality.py's masks.
The averages are not a method the project ships (they blur): they say whether a PSNR gap to the
classical fills is a gap of the sampler's spread or of the model's errors, which is why the LDM
paper reports FID and LPIPS for inpainting, not PSNR (Rombach et al. 2022, Sec. 4.5)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))
sys.path.insert(0, str(REPOSITORY_ROOT / "bench"))

from quality import (SETTINGS, dataset_leaves, draw, find_data_config, inpaint_items, load_split,  # noqa: E402
                     make_masks, proportional_counts)

from ldm_lite.evaluation.feature_net import EVALUATION_MODELS, load_feature_net  # noqa: E402
from ldm_lite.evaluation.inpainting_metrics import BASELINES, inpainting_scores  # noqa: E402
from ldm_lite.sampling import command_line_errors, is_inpainting_model, load_for_sampling  # noqa: E402


class SpreadError(ValueError):
    """The model or the options cannot be measured; the message says why."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an inpainting model folder")
    parser.add_argument("--count", type=int, default=200, help="held-out items (with bench/quality.py's masks)")
    parser.add_argument("--samples", type=int, default=4, help="samples per item to average (K)")
    parser.add_argument("--data", type=Path, default=None, help="training config whose data section is the domain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    with command_line_errors("bench/inpainting_sample_spread.py", options.debug):
        if options.samples < 2:
            raise SpreadError(f"--samples must be at least 2 to average, got {options.samples}")
        started = time.perf_counter()
        loaded = load_for_sampling(options.model)
        if not is_inpainting_model(loaded.model):
            raise SpreadError(f"'{options.model}' is not an inpainting model (its UNet takes no mask): "
                              "pass an inpainting model folder")
        data, source = find_data_config(loaded.config, loaded.folder, options.data)
        held_out = [load_split(leaf, held_out=True) for leaf in dataset_leaves(data.params.validation)]
        rng = np.random.default_rng(options.seed)
        originals = draw(held_out, proportional_counts([len(part.images) for part in held_out], options.count), rng).images
        masks, _ = make_masks(options.count, originals.shape[-2], originals.shape[-1], options.seed)
        print(f"{options.model}: {options.count} held-out items from {source}, {options.samples} samples each "
              f"(DDIM {SETTINGS['inpainting']['steps']} steps, eta 1), mean hole {masks.mean():.1%}")
        stochastic, deterministic = dict(SETTINGS["inpainting"], eta=1.0), dict(SETTINGS["inpainting"], eta=0.0)
        samples = [inpaint_items(loaded.model, originals, masks, stochastic, options.seed + 1000 * index, options.batch_size)
                   for index in range(options.samples)]
        rows: dict[str, torch.Tensor] = {"one sample (eta 1)": samples[0]}
        for k in range(2, options.samples + 1):
            rows[f"mean of {k} samples"] = torch.stack(samples[:k]).mean(0)
        rows["one sample, DDIM eta 0"] = inpaint_items(loaded.model, originals, masks, deterministic, options.seed,
                                                        options.batch_size)
        for name, baseline in BASELINES.items():
            rows[name] = baseline(originals, masks)
        net = load_feature_net(EVALUATION_MODELS / "feature-net", verbose=False).model
        print(f"\n{'fill':28s} {'PSNR hole dB':>13s} {'SSIM hole':>10s} {'feature distance':>17s}")
        for name, images in rows.items():
            scores = inpainting_scores(net.features, images, originals, masks)
            print(f"{name:28s} {scores['psnr_hole']:13.2f} {scores['ssim_hole']:10.3f} "
                  f"{scores['feature_distance']:17.2f}")
        print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
