"""Run main.py's main() under the composer launcher, then save each rank's final weights and counts.

    composer -n 2 tests/scripts/train_and_dump.py CONFIG.yaml OUT_DIR [key=value ...]

With OWN_HOST_GROUP=1 the trainer agrees on host-side numbers through a gloo group of its own, as it does
when the default group is NCCL (on GPUs), instead of through the default gloo group.
"""
import os
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[2])

import torch
from composer.utils import dist

from main import main
from src import trainer as trainer_module
from src.config import load_config

if os.environ.get("OWN_HOST_GROUP") == "1":
    trainer_module.torch_dist.get_backend = lambda group=None: "nccl"

config_path, out_dir, *overrides = sys.argv[1:]
trainer = main(load_config(config_path, overrides), return_trainer=True)
weights = {k: v.detach().cpu() for k, v in trainer.state.model.state_dict().items()}
torch.save({"weights": weights, "batches": int(trainer.state.timestamp.batch),
            "samples": int(trainer.state.timestamp.sample), "world_size": dist.get_world_size(),
            "losses": dict(trainer.state.total_loss_dict), "own_host_group": trainer_module._host_group is not None},
           Path(out_dir) / f"rank{dist.get_global_rank()}.pt")
