"""scripts/train_shipped_models.sh, the zoo's recipe, end to end with 2 steps per model on the CPU:
a first stage and the LDM that must train on it (not on the shipped one), exported in float16; a
model shipped from a chosen checkpoint and one trained on from its first export."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_shipped_models.sh"


def run_script(*arguments: str, tmp_path: Path) -> subprocess.CompletedProcess:
    environment = dict(os.environ, LOGDIR=str(tmp_path / "logs"), EXPORT=str(tmp_path / "models"),
                       HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(SCRIPT), *arguments], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=600)


def test_first_stage_then_ldm_on_it(tmp_path):
    result = run_script("--device", "cpu", "--max_steps", "2", "kl-f4-clipart64", "text2img-clipart64", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    first_stage = tmp_path / "models" / "first_stage_models" / "kl-f4-clipart64" / "model.safetensors"
    ldm = tmp_path / "models" / "ldm" / "text2img-clipart64"
    assert first_stage.is_file() and (ldm / "model.safetensors").is_file()
    with safe_open(str(ldm / "model.safetensors"), "pt") as weights:
        network = [key for key in weights.keys() if key.startswith(("model.", "model_ema."))]
        assert network and all(str(weights.get_slice(key).get_dtype()) == "F16" for key in network)
    ldm_log = (tmp_path / "logs" / "text2img-clipart64.log").read_text()
    assert str(first_stage) in ldm_log, "the LDM must train on the first stage this run exported"
    assert "max_steps" not in result.stderr


def test_chosen_checkpoint_and_continued_run(tmp_path):
    result = run_script("--device", "cpu", "--max_steps", "2", "emoji-uncond", "text-shapes-emoji", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # emoji-uncond ships step 12,000 of its run; a 2-step run has none, so last.ckpt is exported
    assert "emoji-uncond: " in result.stderr and "has no step=012000.ckpt" in result.stderr
    assert (tmp_path / "models" / "ldm" / "emoji-uncond" / "model.safetensors").is_file()
    # text-shapes-emoji trains on from its first export, which the second export replaces
    exported = tmp_path / "models" / "ldm" / "text-shapes-emoji" / "model.safetensors"
    continued_log = (tmp_path / "logs" / "text-shapes-emoji-continued.log").read_text()
    assert f"restored LatentDiffusion from {exported}" in continued_log
    assert result.stdout.count(f"wrote {exported.parent} from step 2") == 2  # the first run's, then the continued one's
    config = (exported.parent / "config.yaml").read_text()
    assert "models/ldm/text-shapes-emoji" not in config, "an exported config must not point at weights to reload"


def test_bad_options_are_refused(tmp_path):
    for arguments, message in ((["--device", "tpu"], "--device takes cuda or cpu"),
                               (["--max_steps", "0"], "--max_steps takes a positive integer"),
                               (["--fast"], "unknown option '--fast'"),
                               (["no-such-model"], "unknown model 'no-such-model'")):
        result = run_script(*arguments, tmp_path=tmp_path)
        assert result.returncode == 2 and message in result.stderr, (arguments, result.stderr)
