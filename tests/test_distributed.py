"""Data-parallel training on 2 CPU processes (gloo) through torchrun and accelerate."""
import pytest
import torch

from tests.conftest import run_cli


@pytest.mark.slow
def test_two_processes_hold_identical_weights_and_only_rank0_logs(tmp_path):
    result = run_cli("-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                     "tests/distributed_fit.py", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of 2 done" in result.stdout and "rank 1 of 2 done" in result.stdout
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    checkpoint = torch.load(tmp_path / "logdir" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)
        torch.testing.assert_close(rank0[key], checkpoint["state_dict"][key], rtol=0, atol=0)
    # Batch 8 per process, 2 processes: the learning rate is scaled by 2 devices.
    assert "Setting learning rate to 1.60e-03" in result.stdout
    # One metrics file, one set of configs: written by rank 0 only.
    assert len(list((tmp_path / "logdir" / "configs").iterdir())) == 1
