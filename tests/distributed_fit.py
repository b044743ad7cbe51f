"""Run by tests/test_distributed.py under torchrun: trains the toy model on 2 CPU processes and
saves each rank's final weights, so the test can compare them."""
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from ldm_lite.config import load_config
from ldm_lite.train import fit

output = Path(sys.argv[1])
config = load_config([Path(__file__).parent / "configs" / "toy.yaml"], ["lightning.trainer.max_steps=6"])
model = fit(config, logdir=output / "logdir", progress=False)
state = PartialState()
torch.save(model.state_dict(), output / f"rank{state.process_index}.pt")
print(f"rank {state.process_index} of {state.num_processes} done")
