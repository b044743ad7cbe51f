"""One prepared run for a CUDA GPU: correctness against CPU references, the entry points end to end,
then speed. A lent GPU's time is short, so everything is in this one script; it prints a summary
table last and writes the full log of each part under `--out`.

    LDM_LITE_CACHE=<folder with the emoji cache> python bench/gpu_check.py --out results/

1. Correctness (TF32 off, so fp32 means fp32): the shipped text model's UNet and the shipped
   autoencoder on CUDA against the same weights in float64 on the CPU, as ||out - ref|| / ||ref||
   (fp32 should land far under 1e-3, bf16 autocast between 1e-3 and 2e-2); DDIM sampling of the
   shipped MNIST and emoji models on CUDA against the CPU from the same x_T.
2. Entry points on CUDA: main.py trains the toy config in bf16 and resumes it; sample_diffusion.py and
   inpaint.py write their outputs.
3. Speed: bench/unet_step.py, bench/autoencoder.py, bench/sampling.py with --device cuda, and (with
   `--sweep`) bench/autoencoder_sweep.py --train, which runs the CPU-budgeted candidates in parallel.
4. With `--shapes-steps N`: the shapes bar with more training than a CPU session allows. The text model
   of lite_text_shapes_emoji.yaml trains N steps in the background while the f=2 first stage trains and
   then the f=2 model of lite_text_shapes_emoji_f2.yaml on it (N steps too); both are scored by
   bench/conditioning_accuracy.py shapes. Alone (`--skip correctness,entry,speed`) with N = 5000, it
   should fit one 10-minute device command (not yet measured).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ldm_lite.checkpoint import load_model_folder, load_state_dict_file  # noqa: E402
from ldm_lite.modules.unet import UNetModel  # noqa: E402
from ldm_lite.sampling import load_for_sampling, make_conditions, sample_latents, decode_latents, latent_shape  # noqa: E402

RESULTS: list[tuple[str, str, str]] = []  # (check, value, verdict)


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    output, reference = output.detach().double().cpu(), reference.detach().double().cpu()
    if not torch.isfinite(output).all():
        return float("inf")
    return ((output - reference).norm() / reference.norm()).item()


def record(check: str, error: float, limit: float) -> None:
    RESULTS.append((check, f"{error:.2e}", "ok" if error <= limit else f"FAIL (limit {limit:.0e})"))
    print(f"{check}: {error:.2e} (limit {limit:.0e})", flush=True)


def check_unet(device: torch.device) -> None:
    """Trained text UNet: CUDA fp32 and bf16 autocast against CPU float64."""
    from omegaconf import OmegaConf

    folder = ROOT / "models" / "ldm" / "text-shapes-emoji"
    params = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml").model.params.unet_config.params)
    prefix = "model.diffusion_model."
    state = {k[len(prefix):]: v.float() for k, v in load_state_dict_file(folder / "model.safetensors").items()
             if k.startswith(prefix)}
    reference_model = UNetModel(**params).double().eval()
    reference_model.load_state_dict(state)
    model = UNetModel(**params).to(device).eval()
    model.load_state_dict(state)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, 8, 8, generator=generator)
    t = torch.randint(0, 1000, (32,), generator=generator)
    context = torch.randn(32, 12, params["context_dim"], generator=generator)
    with torch.no_grad():
        reference = reference_model(x.double(), t, context=context.double())
        output = model(x.to(device), t.to(device), context=context.to(device))
        record("UNet fp32 CUDA vs float64 CPU", relative_error(output, reference), 1e-4)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            output = model(x.to(device), t.to(device), context=context.to(device))
        record("UNet bf16 autocast CUDA vs float64 CPU", relative_error(output.float(), reference), 2e-2)
        model = model.to(memory_format=torch.channels_last)
        output = model(x.to(device).contiguous(memory_format=torch.channels_last), t.to(device), context=context.to(device))
        record("UNet fp32 channels_last CUDA vs float64 CPU", relative_error(output, reference), 1e-4)


def check_autoencoder(device: torch.device) -> None:
    """Shipped autoencoder: reconstructions of real emoji on CUDA against CPU float64."""
    from ldm_lite.data.emoji import EmojiDataset

    dataset = EmojiDataset(size=32, split="validation")
    images = torch.stack([torch.as_tensor(dataset[i]["image"]) for i in range(32)]).permute(0, 3, 1, 2).contiguous()
    folder = ROOT / "models" / "first_stage_models" / "kl-f4-emoji32"
    reference_model = load_model_folder(folder).double().eval()
    model = load_model_folder(folder).float().to(device).eval()
    with torch.no_grad():
        reference = reference_model.decode(reference_model.encode(images.double()).mode())
        output = model.decode(model.encode(images.to(device)).mode())
        record("autoencoder fp32 CUDA vs float64 CPU", relative_error(output, reference), 1e-4)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            output = model.decode(model.encode(images.to(device)).mode())
        record("autoencoder bf16 autocast CUDA vs float64 CPU", relative_error(output.float(), reference), 2e-2)


def check_sampling(device: torch.device) -> None:
    """DDIM (eta 0, guidance) and DDPM-like stochastic DDIM (eta 1, same seed) on CUDA against the CPU."""
    for name, labels in (("mnist-class", list(range(10)) * 2), ("emoji-uncond", None)):
        runs = {}
        for where in (torch.device("cpu"), device):
            model = load_for_sampling(ROOT / "models" / "ldm" / name, device=where).model
            batch = 20 if labels else 16
            cond, null = make_conditions(model, batch, class_labels=labels, guidance_scale=3.0 if labels else 1.0)
            shape = latent_shape(model, batch)
            x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(where)
            latents = sample_latents(model, shape, "ddim", 25, 0.0, cond, null, 3.0 if labels else 1.0, x_T=x_T)
            runs[where.type] = decode_latents(model, latents)
        record(f"DDIM-25 eta 0 sampling {name}: CUDA vs CPU images", relative_error(runs["cuda"], runs["cpu"]), 1e-3)


def run_command(label: str, command: list[str], out: Path, limit: float = 600) -> str:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=limit)
    seconds = time.perf_counter() - start
    (out / f"{label}.log").write_text(result.stdout + "\n--- stderr\n" + result.stderr)
    verdict = "ok" if result.returncode == 0 else f"FAIL (exit {result.returncode})"
    RESULTS.append((label, f"{seconds:.1f} s", verdict))
    print(f"--- {label}: {verdict} in {seconds:.1f} s\n{result.stdout[-3000:]}", flush=True)
    if result.returncode != 0:
        print(result.stderr[-3000:], flush=True)
    return result.stdout


def check_entry_points(out: Path) -> None:
    python = sys.executable
    with tempfile.TemporaryDirectory() as scratch:
        run_command("main.py toy bf16 20 steps", [python, "main.py", "--base", "tests/configs/toy.yaml", "-t",
                                                  "--precision", "bf16", "-l", scratch, "-n", "toy"], out)
        run_directory = next(Path(scratch).glob("*_toy"))
        run_command("main.py toy resume to 40", [python, "main.py", "-r", str(run_directory), "-t", "--max_steps", "40",
                                                 "--precision", "bf16"], out)
        run_command("sample_diffusion.py emoji-uncond 64", [python, "scripts/sample_diffusion.py", "-r",
                                                            "models/ldm/emoji-uncond", "-l", f"{scratch}/samples",
                                                            "-n", "64", "--batch_size", "64", "-c", "50"], out)
        found = len(list(Path(scratch, "samples").rglob("sample_*.png")))
        RESULTS.append(("sample_diffusion.py pngs written", str(found), "ok" if found == 64 else "FAIL"))
        run_command("inpaint.py examples", [python, "scripts/inpaint.py", "--indir", "data/inpainting_examples/",
                                            "--outdir", f"{scratch}/inpainting", "--steps", "50"], out)
        found = len(list(Path(scratch, "inpainting").glob("*.png")))
        RESULTS.append(("inpaint.py pngs written", str(found), "ok" if found > 0 else "FAIL"))


def start_command(label: str, command: list[str], out: Path) -> subprocess.Popen:
    """`command` in the background, its output in `out/<label>.log`."""
    return subprocess.Popen(command, stdout=open(out / f"{label}.log", "w"), stderr=subprocess.STDOUT, cwd=ROOT)


def start_sweep(out: Path) -> subprocess.Popen:
    """bench/autoencoder_sweep.py --train in the background (it only needs the GPU's spare capacity)."""
    return start_command("autoencoder_sweep", [sys.executable, "bench/autoencoder_sweep.py", "--train", "--logdir",
                                               str(out / "sweep")], out)


def speed(out: Path) -> None:
    python = sys.executable
    run_command("unet_step batch 32", [python, "bench/unet_step.py", "--device", "cuda", "--batch", "32",
                                       "--repeats", "5", "--steps", "10", "--modes", "fp32,channels_last,bf16"], out)
    run_command("unet_step batch 256", [python, "bench/unet_step.py", "--device", "cuda", "--batch", "256",
                                        "--repeats", "5", "--steps", "10", "--modes", "fp32,bf16,compile"], out)
    run_command("autoencoder step batch 128", [python, "bench/autoencoder.py", "--device", "cuda", "--batch", "128",
                                               "--repeats", "20"], out)
    run_command("autoencoder step batch 128 bf16", [python, "bench/autoencoder.py", "--device", "cuda", "--batch",
                                                    "128", "--repeats", "20", "--bf16", "--channels-last"], out)
    run_command("sampling 16x DDIM-50 guided", [python, "bench/sampling.py", "--device", "cuda", "--repeats", "3"], out)


def shapes_experiment(out: Path, steps: int) -> None:
    """Train the f=4 and f=2 text models `steps` steps each and score them on held-out shapes captions."""
    python = sys.executable
    logs = out / "shapes"
    train = [python, "main.py", "-t", "--gpus", "0,", "-l", str(logs)]
    started = time.perf_counter()
    f4 = start_command("shapes f4 text model", train + ["--base", "configs/latent-diffusion/lite_text_shapes_emoji.yaml",
                                                       "--max_steps", str(steps), "-n", "f4-text"], out)
    run_command("shapes f2 first stage", train + ["--base", "configs/autoencoder/lite_kl_f2_shapes_emoji32.yaml",
                                                 "-n", "f2-autoencoder"], out)
    first_stage = next(logs.glob("*_f2-autoencoder")) / "checkpoints" / "last.ckpt"
    run_command("shapes f2 text model", train + ["--base", "configs/latent-diffusion/lite_text_shapes_emoji_f2.yaml",
                                                "--max_steps", str(steps), "-n", "f2-text",
                                                f"model.params.first_stage_config.params.ckpt_path={first_stage}"], out)
    f4.wait()
    RESULTS.append(("shapes f4 text model", f"{time.perf_counter() - started:.1f} s",
                    "ok" if f4.returncode == 0 else f"FAIL (exit {f4.returncode})"))
    for name in ("f4-text", "f2-text"):
        run = next(logs.glob(f"*_{name}"))
        run_command(f"shapes export {name}", [python, "scripts/export_model.py", str(run), str(out / name)], out)
        run_command(f"shapes accuracy {name}", [python, "bench/conditioning_accuracy.py", "shapes", "--model",
                                                str(out / name), "--count", "100", "--scale", "3", "--eta", "1",
                                                "--device", "cuda"], out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/gpu")
    parser.add_argument("--sweep", action="store_true", help="also run bench/autoencoder_sweep.py --train")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: correctness,entry,speed")
    parser.add_argument("--shapes-steps", type=int, default=0,
                        help="also train and score the f=4 and f=2 text models this many steps (0: no)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script checks a GPU")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}", flush=True)
    skip = set(args.skip.split(","))
    sweep = start_sweep(out) if args.sweep else None
    for part, function in (("correctness", lambda: (check_unet(device), check_autoencoder(device),
                                                    check_sampling(device))),
                           ("entry", lambda: check_entry_points(out)), ("speed", lambda: speed(out)),
                           ("shapes", lambda: shapes_experiment(out, args.shapes_steps) if args.shapes_steps else None)):
        if part == "speed" and sweep is not None:  # timings want the GPU to themselves
            waited = time.perf_counter()
            try:
                sweep.wait(timeout=480)
            except subprocess.TimeoutExpired:
                sweep.kill()
            verdict = "ok" if sweep.returncode == 0 else f"FAIL (exit {sweep.returncode})"
            RESULTS.append(("autoencoder sweep (waited for)", f"{time.perf_counter() - waited:.1f} s", verdict))
            print((out / "autoencoder_sweep.log").read_text()[-3000:], flush=True)
        if part not in skip:
            try:
                function()
            except Exception as error:  # one broken part must not hide the others' results
                RESULTS.append((part, type(error).__name__, f"FAIL: {error}"))
                print(f"{part} failed: {error!r}", flush=True)
    table = "\n".join(f"{check:50s} {value:>12s}  {verdict}" for check, value, verdict in RESULTS)
    (out / "summary.txt").write_text(table + "\n")
    print("=== summary\n" + table)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
