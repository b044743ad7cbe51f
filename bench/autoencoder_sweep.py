"""Which lite KL f=4 autoencoder reaches the best validation PSNR in a fixed CPU-time budget?

Each candidate is the lite config plus overrides (network width, levels, batch, learning rate,
pixel loss). Two phases, because PSNR after k steps does not depend on the hardware but the time a
step costs does:

    python bench/autoencoder_sweep.py --time_steps          # here, on the 2-core CPU: seconds per step
    python bench/autoencoder_sweep.py --train --budget 600  # anywhere (a GPU is fastest): train each
                                                            # candidate for budget / (its CPU s/step) steps

`--time_steps` writes bench/autoencoder_sweep_cpu.json (seconds per step of each candidate, measured
through main.py with its data loader, on this machine); `--train` reads it, gives each candidate the
number of steps the CPU would do in the budget (so the cosine schedule ends where the CPU run would)
and runs them in parallel, printing validation PSNR. The winner then trains once on the CPU for the
real measurement (notebook 02 / the model card)."""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/autoencoder/lite_kl_f4_emoji32.yaml"
TIMINGS = ROOT / "bench" / "autoencoder_sweep_cpu.json"
DD = "model.params.ddconfig"
CANDIDATES: dict[str, list[str]] = {
    "c32-124-b8": [],
    "c32-122-b8": [f"{DD}.ch_mult=[1,2,2]"],
    "c32-122-b16": [f"{DD}.ch_mult=[1,2,2]", "data.params.batch_size=16"],
    "c32-122-b16-lr2x": [f"{DD}.ch_mult=[1,2,2]", "data.params.batch_size=16", "model.base_learning_rate=5e-4"],
    "c32-122-b32": [f"{DD}.ch_mult=[1,2,2]", "data.params.batch_size=32", "model.base_learning_rate=1.25e-4"],
    "c64-112-b16": [f"{DD}.ch=64", f"{DD}.ch_mult=[1,1,2]", "data.params.batch_size=16"],
    "c32-122-2rb-b16": [f"{DD}.ch_mult=[1,2,2]", f"{DD}.num_res_blocks=2", "data.params.batch_size=16"],
    "c32-122-b8-lr2x": [f"{DD}.ch_mult=[1,2,2]", "model.base_learning_rate=5e-4"],
    "c32-112-b8": [f"{DD}.ch_mult=[1,1,2]"],
    "c48-122-b16": [f"{DD}.ch=48", f"{DD}.ch_mult=[1,2,2]", "data.params.batch_size=16"],
    "c32-122-b16-l1": [f"{DD}.ch_mult=[1,2,2]", "data.params.batch_size=16",
                       "model.params.lossconfig.params.pixel_loss=l1"],
}


def main_py(name: str, overrides: list[str], steps: int, logdir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "--base", str(ROOT / CONFIG), "-t", "-n", name, "-l", str(logdir),
            "--max_steps", str(steps), *extra, *overrides]


def time_steps(steps: int = 60, logdir: Path = Path("/tmp/ae_sweep_timing")) -> None:
    """Seconds per step of each candidate not yet timed on this machine, from the progress bar's elapsed times."""
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    for name, overrides in CANDIDATES.items():
        if name in timings:
            continue
        quiet = ["lightning.trainer.val_check_interval=0", "lightning.callbacks.image_logger.params.batch_frequency=0"]
        run = subprocess.run(main_py(name, overrides + quiet, steps, logdir, []), capture_output=True, text=True, cwd=ROOT)
        elapsed = {int(m.group(1)): _seconds(m.group(2)) for m in re.finditer(r"(\d+)/\d+ \[(\d+:\d+)", run.stderr)}
        if run.returncode != 0 or 10 not in elapsed or steps not in elapsed:
            raise SystemExit(f"{name}: timing run failed:\n{run.stderr[-2000:]}")
        timings[name] = (elapsed[steps] - elapsed[10]) / (steps - 10)
        print(f"{name:20s} {timings[name]:.3f} s/step", flush=True)
        TIMINGS.write_text(json.dumps(timings, indent=1) + "\n")


def _seconds(clock: str) -> float:
    minutes, seconds = clock.split(":")
    return 60 * int(minutes) + int(seconds)


def train(budget: float, logdir: Path, parallel: int, device_args: list[str]) -> None:
    timings = json.loads(TIMINGS.read_text())
    pending = [(name, int(budget / timings[name])) for name in CANDIDATES]
    running: list[tuple[str, int, subprocess.Popen]] = []
    results = {}
    while pending or running:
        while pending and len(running) < parallel:
            name, steps = pending.pop(0)
            overrides = CANDIDATES[name] + [f"lightning.trainer.val_check_interval={max(1, steps // 8)}",
                                            "lightning.trainer.limit_val_batches=100000",
                                            "lightning.callbacks.image_logger.params.batch_frequency=0"]
            log = open(logdir / f"{name}.log", "w")
            running.append((name, steps, subprocess.Popen(main_py(name, overrides, steps, logdir, device_args),
                                                          stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)))
        time.sleep(2)
        for item in [item for item in running if item[2].poll() is not None]:
            running.remove(item)
            name, steps, process = item
            results[name] = (steps, _val_psnr(logdir, name) if process.returncode == 0 else [])
            print(f"{name:20s} {steps:5d} steps  val PSNR by step: "
                  + " ".join(f"{step}:{value:.2f}" for step, value in results[name][1]), flush=True)
    print("--- final validation PSNR at the CPU budget of", budget, "s")
    for name, (steps, curve) in sorted(results.items(), key=lambda item: -(item[1][1][-1][1] if item[1][1] else 0)):
        print(f"{name:20s} {steps:5d} steps  {curve[-1][1] if curve else float('nan'):.2f} dB")


def _val_psnr(logdir: Path, name: str) -> list[tuple[int, float]]:
    run = sorted(logdir.glob(f"*_{name}"))[-1]
    with open(run / "metrics.csv") as handle:
        return [(int(row["step"]), float(row["value"])) for row in csv.DictReader(handle) if row["name"] == "val/psnr"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time_steps", action="store_true")
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--budget", type=float, default=600.0, help="CPU seconds of training per candidate")
    parser.add_argument("--logdir", default="logs/autoencoder_sweep")
    parser.add_argument("--parallel", type=int, default=len(CANDIDATES))
    parser.add_argument("--precision", default="32")
    args = parser.parse_args()
    if args.time_steps:
        time_steps()
    if args.train:
        Path(args.logdir).mkdir(parents=True, exist_ok=True)
        train(args.budget, Path(args.logdir).resolve(), args.parallel, ["--precision", args.precision])
