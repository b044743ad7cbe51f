"""Speed of one UNet training step (forward, backward, AdamW) on the CPU (or `--device cuda`): ldm-lite's lite
text-conditional UNet against diffusers' UNet2DConditionModel of the same architecture and parameter
count, in the same process, timed interleaved (the machine may be shared) with the median over repeats.
Both wall-clock time and process CPU time are reported: on a shared machine the CPU time (use
`--threads 1`, so that no thread spin-waits) is the steadier measure of the work each step costs.

    .venv/bin/python bench/unet_step.py [--batch 32] [--repeats 5] [--steps 3] [--threads N] [--modes fp32,channels_last,...]
    python bench/unet_step.py --device cuda --batch 256          # on a GPU (TF32 off: plain fp32 means fp32)

Modes of ldm-lite: fp32 (plain), channels_last, bf16 (autocast, + channels_last), compile
(torch.compile), compile_channels_last; all step with AdamW(fused=True), as `LatentDiffusion.configure_optimizers`
builds it. The peer runs plain fp32 twice: with torch's default AdamW (as diffusers' training scripts build
it) and with the same fused AdamW as ldm-lite. Prints seconds per step and the ratios ldm-lite / peer for
plain fp32 and for the best mode, against each peer."""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from ldm_lite.modules.unet import UNetModel

LITE_TEXT_UNET = dict(image_size=16, in_channels=4, out_channels=4, model_channels=64, channel_mult=[1, 2],
                      num_res_blocks=2, attention_resolutions=[1, 2], num_head_channels=32,
                      use_spatial_transformer=True, transformer_depth=1, context_dim=384)


PEER, PEER_FUSED = "diffusers fp32", "diffusers fp32 fused AdamW"


def build_peer() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(64, 128), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=384, attention_head_dim=(2, 4), norm_num_groups=32,  # heads (2, 4) x 32 channels
    )


class Runner:
    """One model in one mode: a step function and its optimizer."""

    def __init__(self, name: str, model: torch.nn.Module, peer: bool, fused: bool = True, channels_last: bool = False,
                 autocast: bool = False, compile: bool = False):
        self.name, self.peer, self.autocast = name, peer, autocast
        self.channels_last = channels_last
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward = torch.compile(model) if compile else model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused or None)
        self.device_type = next(model.parameters()).device.type

    def step(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, target: torch.Tensor) -> float:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        scope = torch.autocast(self.device_type, dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with scope:
            if self.peer:
                output = self.forward(x, t, encoder_hidden_states=context).sample
            else:
                output = self.forward(x, t, context=context)
        loss = F.mse_loss(output.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()  # waits for the device: the step's time is complete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round and mode")
    parser.add_argument("--modes", default="fp32,channels_last,bf16,compile")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours = UNetModel(**LITE_TEXT_UNET).to(device)
    peer = build_peer().to(device)
    ours_params, peer_params = (sum(p.numel() for p in m.parameters()) for m in (ours, peer))
    if ours_params != peer_params:
        raise SystemExit(f"parameter counts differ: ldm-lite {ours_params:,} vs diffusers {peer_params:,}")
    print(f"UNet: {ours_params:,} parameters each; batch {args.batch}, latents 4x16x16, context 8x384; "
          f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")

    def copy_of_ours() -> torch.nn.Module:
        model = UNetModel(**LITE_TEXT_UNET).to(device)
        model.load_state_dict(ours.state_dict())
        return model

    modes = {
        "fp32": lambda: Runner("ldm-lite fp32", copy_of_ours(), peer=False),
        "channels_last": lambda: Runner("ldm-lite fp32 channels_last", copy_of_ours(), peer=False, channels_last=True),
        "bf16": lambda: Runner("ldm-lite bf16 autocast channels_last", copy_of_ours(), peer=False, channels_last=True, autocast=True),
        "compile": lambda: Runner("ldm-lite compile", copy_of_ours(), peer=False, compile=True),
        "compile_channels_last": lambda: Runner("ldm-lite compile channels_last", copy_of_ours(), peer=False,
                                                channels_last=True, compile=True),
    }
    runners = [Runner(PEER, peer, peer=True, fused=False),
               Runner(PEER_FUSED, copy.deepcopy(peer), peer=True, fused=True)]
    runners += [modes[mode]() for mode in args.modes.split(",") if mode]

    x = torch.randn(args.batch, 4, 16, 16, device=device)
    t = torch.randint(0, 1000, (args.batch,), device=device)
    context = torch.randn(args.batch, 8, 384, device=device)
    target = torch.randn(args.batch, 4, 16, 16, device=device)
    for runner in runners:  # warm-up (and compilation)
        start = time.perf_counter()
        runner.step(x, t, context, target)
        runner.step(x, t, context, target)
        print(f"warm-up {runner.name}: {time.perf_counter() - start:.1f} s")

    wall: dict[str, list[float]] = {runner.name: [] for runner in runners}
    cpu: dict[str, list[float]] = {runner.name: [] for runner in runners}
    for _ in range(args.repeats):
        for runner in runners:
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                runner.step(x, t, context, target)
            wall[runner.name].append((time.perf_counter() - start) / args.steps)
            cpu[runner.name].append((time.process_time() - start_cpu) / args.steps)

    for label, times in (("wall-clock", wall), ("CPU time", cpu)):
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"--- {label} (median of {args.repeats} interleaved rounds of {args.steps} steps)")
        for name, value in median.items():
            spread = f"{min(times[name]):.3f}..{max(times[name]):.3f}"
            print(f"{name:40s} {value:.3f} s/step (rounds {spread})  ratio {value / median[PEER]:.2f}")
        plain = median.get("ldm-lite fp32")
        best_name = min((name for name in median if name.startswith("ldm-lite")), key=median.get)
        for peer_name in (PEER, PEER_FUSED):
            against = f"against {peer_name}"
            if plain is not None:
                print(f"{label} ratio plain fp32 {against}: {plain / median[peer_name]:.2f} (target <= 0.9)")
            print(f"{label} ratio best mode ({best_name}) {against}: {median[best_name] / median[peer_name]:.2f} "
                  f"(target <= 0.6)")


if __name__ == "__main__":
    main()
