"""scripts/download_models.sh and scripts/check_original_checkpoint.py without internet: a refused
connection stands for the offline case, and a local HTTP server stands for ommer-lab.com."""
from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
import torch

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DOWNLOAD = REPOSITORY_ROOT / "scripts" / "download_models.sh"
CHECK = REPOSITORY_ROOT / "scripts" / "check_original_checkpoint.py"
_spec = importlib.util.spec_from_file_location("check_original_checkpoint", CHECK)
check_original_checkpoint = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_original_checkpoint)

UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused


def run_download(arguments: list[str], models: Path, base: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "LDM_LITE_MODELS_DIR": str(models), "LDM_LITE_DOWNLOAD_BASE": base,
                   "LDM_LITE_CONNECT_TIMEOUT": "2", "PYTHON": sys.executable}
    return subprocess.run(["bash", str(DOWNLOAD), *arguments], env=environment, capture_output=True, text=True,
                          timeout=120)


def run_check(folder: Path, *options: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """The check script's `main`, in this process (a subprocess would spend seconds importing torch)."""
    status = check_original_checkpoint.main([str(folder), *options])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def released_layout(folder: Path) -> dict[str, torch.Tensor]:
    """Zero tensors with the released checkpoint's keys, shapes and dtypes (model built on the meta
    device). All are views of one shared storage per dtype, so the saved file stays a few MB."""
    model = check_original_checkpoint.build(check_original_checkpoint.model_config(folder), on_meta_device=True)
    layout = model.state_dict()
    shared = {dtype: torch.zeros(max(value.numel() for value in layout.values() if value.dtype == dtype), dtype=dtype)
              for dtype in {value.dtype for value in layout.values()}}
    return {key: shared[value.dtype][:value.numel()].view(value.shape) for key, value in layout.items()}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, the folder it serves, the paths requested so far)."""
    served, requests = tmp_path / "served", []
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", served, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("models_exist", [False, True])
def test_offline_fails_fast_with_one_clear_message(tmp_path: Path, models_exist: bool) -> None:
    models = tmp_path / "models"
    if models_exist:
        models.mkdir()
    result = run_download(["kl-f8", "celeba256"], models, UNREACHABLE)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "download_models.sh: error: cannot reach 127.0.0.1:9: download_models.sh needs internet; "
        "the shipped lite models under models/ work offline"]
    assert (list(models.rglob("*")) == []) if models_exist else not models.exists()


def test_usage_and_unknown_names(tmp_path: Path) -> None:
    no_arguments = run_download([], tmp_path / "models", UNREACHABLE)
    assert no_arguments.returncode == 2 and "usage:" in no_arguments.stderr and "kl-f8" in no_arguments.stderr
    unknown = run_download(["kl-f3"], tmp_path / "models", UNREACHABLE)
    assert unknown.returncode == 1 and "unknown model 'kl-f3'" in unknown.stderr
    assert not (tmp_path / "models").exists()


def test_downloads_unpacks_checks_and_skips_present_files(tmp_path: Path, server: tuple[str, Path, list[str]]) -> None:
    base, served, requests = server
    models = tmp_path / "models"
    folder = models / "first_stage_models" / "vq-f4-noattn"
    # A released first-stage file is a training checkpoint: weights under state_dict, plus loss.* keys.
    state_dict = released_layout(folder)
    state_dict["loss.discriminator.main.0.weight"] = torch.zeros(64, 3, 4, 4)
    torch.save({"state_dict": state_dict, "global_step": 7}, tmp_path / "model.ckpt")
    with zipfile.ZipFile(served / "vq-f4-noattn.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.write(tmp_path / "model.ckpt", "model.ckpt")

    result = run_download(["vq-f4-noattn"], models, base)
    assert result.returncode == 0, result.stderr
    assert "OK vq-f4-noattn: 185 tensors, 53,219,486 parameters" in result.stdout
    assert sorted(path.name for path in models.rglob("*") if path.is_file()) == ["config.yaml", "model.ckpt"]
    assert (folder / "model.ckpt").read_bytes() == (tmp_path / "model.ckpt").read_bytes()
    assert "target: ldm.models.autoencoder.VQModel" in (folder / "config.yaml").read_text()
    from ldm_lite.checkpoint import load_model_folder  # the written folder is usable as it is

    assert load_model_folder(folder).quantize.embedding.weight.shape == (8192, 3)

    downloads = [path for path in requests if path.endswith(".zip")]
    again = run_download(["vq-f4-noattn"], models, base)
    assert again.returncode == 0 and "not downloading it again" in again.stdout
    assert [path for path in requests if path.endswith(".zip")] == downloads == ["/vq-f4-noattn.zip"]


def test_direct_checkpoint_download_and_failed_check(tmp_path: Path, server: tuple[str, Path, list[str]]) -> None:
    """cin256-v2 is published as a bare model.ckpt; one of the wrong layout is kept but fails the check."""
    base, served, _ = server
    (served / "nitro" / "cin").mkdir(parents=True)
    torch.save({"state_dict": {"model.diffusion_model.out.2.weight": torch.zeros(2, 2)}},
               served / "nitro" / "cin" / "model.ckpt")
    models = tmp_path / "models"
    result = run_download(["--quick-check", "cin256-v2"], models, base)
    assert result.returncode == 1
    assert "does not fit the model built from its config" in result.stderr
    assert "failed: cin256-v2" in result.stderr
    folder = models / "ldm" / "cin256-v2"
    assert sorted(path.name for path in models.rglob("*") if path.is_file()) == ["model.ckpt"]
    assert not (folder / "config.yaml").exists()


def test_missing_http_file_is_reported(tmp_path: Path, server: tuple[str, Path, list[str]]) -> None:
    base, _, _ = server
    result = run_download(["kl-f8"], tmp_path / "models", base)
    assert result.returncode == 1 and "downloading" in result.stderr and "kl-f8.zip failed" in result.stderr
    assert not [path for path in (tmp_path / "models").rglob("*") if path.is_file()]


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with a long stream of zeros, one small chunk at a time."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1000 * 4096))
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(bytes(4096))
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:  # the client went away
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_download_leaves_no_files(tmp_path: Path, signal_number: int) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    models = tmp_path / "models"
    environment = {**os.environ, "LDM_LITE_MODELS_DIR": str(models), "PYTHON": sys.executable,
                   "LDM_LITE_DOWNLOAD_BASE": f"http://127.0.0.1:{httpd.server_address[1]}/"}
    process = subprocess.Popen(["bash", str(DOWNLOAD), "kl-f8"], env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(600):  # until the first bytes have arrived
            if any(path.is_file() and path.stat().st_size > 0 for path in models.rglob("*")):
                break
            time.sleep(0.05)
        process.send_signal(signal_number)
        assert process.wait(timeout=30) == 128 + signal_number
    finally:
        process.kill()
        httpd.shutdown()
        httpd.server_close()
    assert list(models.rglob("*")) == []


def test_check_without_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, output, error = run_check(tmp_path / "models" / "ldm" / "celeba256", capsys=capsys)
    assert status == 1 and output == ""
    assert error == (f"error: '{tmp_path}/models/ldm/celeba256/model.ckpt' does not exist: "
                     "run scripts/download_models.sh celeba256\n")


def test_check_names_unknown_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, _, error = run_check(tmp_path / "models" / "ldm" / "celeba1024", capsys=capsys)
    assert status == 1 and "no released model is named 'celeba1024'" in error
    assert "celeba256, cin256, cin256-v2, ffhq256," in error and "text2img-large, text2img256, vq-f16" in error
    status, _, error = run_check(tmp_path / "celeba256", capsys=capsys)
    assert status == 1 and "is not a model folder" in error


def test_check_refuses_pickled_objects(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "models" / "first_stage_models" / "kl-f4"
    folder.mkdir(parents=True)
    torch.save({"state_dict": {}, "callback": zipfile.ZipInfo("x")}, folder / "model.ckpt")
    status, _, error = run_check(folder, "--meta", capsys=capsys)
    assert status == 1 and error.count("\n") == 1 and "cannot be read safely" in error
    assert not (folder / "config.yaml").exists()


def test_meta_check_accepts_the_released_layout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "models" / "first_stage_models" / "kl-f32"
    folder.mkdir(parents=True)
    torch.save({"state_dict": released_layout(folder)}, folder / "model.ckpt")
    status, output, error = run_check(folder, "--meta", capsys=capsys)
    assert status == 0, error
    assert output.strip() == "OK kl-f32: 436 tensors, 103,880,131 parameters"
    assert "lossconfig:\n      target: torch.nn.Identity" in (folder / "config.yaml").read_text()


def test_meta_check_rejects_a_wrong_shape(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "models" / "first_stage_models" / "kl-f32"
    folder.mkdir(parents=True)
    state_dict = released_layout(folder)
    state_dict["quant_conv.weight"] = torch.zeros(32, 32, 1, 1)
    torch.save({"state_dict": state_dict}, folder / "model.ckpt")
    status, _, error = run_check(folder, "--meta", capsys=capsys)
    assert status == 1 and "1 of another shape (e.g. quant_conv.weight" in error


def test_unimplemented_class_is_one_clear_line() -> None:
    config = {"target": "ldm.models.diffusion.ddpm.LatentUpscaleDiffusion", "params": {}}
    with pytest.raises(check_original_checkpoint.CheckFailed, match="ldm_lite cannot build .*LatentUpscaleDiffusion"):
        check_original_checkpoint.build(config, on_meta_device=True)
