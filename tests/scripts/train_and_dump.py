"""Run main.py's main() under the composer launcher, then save each rank's final weights.

    composer -n 2 tests/scripts/train_and_dump.py CONFIG.yaml OUT_DIR [key=value ...]
"""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[2])

import torch
from composer.utils import dist

from main import main
from src.config import load_config

config_path, out_dir, *overrides = sys.argv[1:]
trainer = main(load_config(config_path, overrides), return_trainer=True)
weights = {k: v.detach().cpu() for k, v in trainer.state.model.state_dict().items()}
torch.save({"weights": weights, "batches": int(trainer.state.timestamp.batch),
            "world_size": dist.get_world_size()}, Path(out_dir) / f"rank{dist.get_global_rank()}.pt")
