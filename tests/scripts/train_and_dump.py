"""Run main.py's main() under the composer launcher, then save each rank's final weights and counts.

    composer -n 2 tests/scripts/train_and_dump.py CONFIG.yaml OUT_DIR [key=value ...]

With OWN_HOST_GROUP=1 the trainer agrees on host-side numbers through a gloo group of its own, as it does
when the default group is NCCL (on GPUs), instead of through the default gloo group.
"""
import os
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[2])

import streaming.base.dataset
import torch
from composer.utils import dist

from main import main
from src import trainer as trainer_module
from src.config import load_config

if os.environ.get("OWN_HOST_GROUP") == "1":  # src/trainer.py alone sees the default group as NCCL
    class _DefaultGroupLooksNccl:
        def __getattr__(self, name):
            return getattr(torch.distributed, name)

        @staticmethod
        def get_backend(group=None):
            return "nccl"

    trainer_module.torch_dist = _DefaultGroupLooksNccl()

# How many temporary process groups streaming made itself (it does when none exists yet; expected: none).
streaming_groups = []
_maybe_init_dist = streaming.base.dataset.maybe_init_dist
streaming.base.dataset.maybe_init_dist = lambda: streaming_groups.append(_maybe_init_dist()) or streaming_groups[-1]

config_path, out_dir, *overrides = sys.argv[1:]
trainer = main(load_config(config_path, overrides), return_trainer=True)
weights = {k: v.detach().cpu() for k, v in trainer.state.model.state_dict().items()}
torch.save({"weights": weights, "batches": int(trainer.state.timestamp.batch),
            "samples": int(trainer.state.timestamp.sample), "world_size": dist.get_world_size(),
            "losses": dict(trainer.state.total_loss_dict), "own_host_group": trainer_module._host_group is not None,
            "gradient_as_bucket_view": getattr(trainer.state.model, "gradient_as_bucket_view", None),
            "streaming_made_groups": sum(streaming_groups), "datasets": len(streaming_groups)},
           Path(out_dir) / f"rank{dist.get_global_rank()}.pt")
