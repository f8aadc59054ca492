"""Run main.py (as its CLI does) with one fault injected, for tests/test_reliability.py.

    python tests/scripts/fault_run.py --sigkill-in-checkpoint N CONFIG.yaml [key=value ...]
    python tests/scripts/fault_run.py --sigterm-at-batch N CONFIG.yaml [key=value ...]

--sigkill-in-checkpoint N: SIGKILL this process while it writes its N-th checkpoint, after torch.save has
    written half of the file's bytes (nothing after that runs: no handler, no atexit).
--sigterm-at-batch N: send this process SIGTERM during the forward pass of batch N (1-based), the way a
    scheduler's signal arrives in the middle of a step.
"""
import argparse
import io
import os
import signal
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[2])

import torch
from composer.core import Callback

from main import main
from src import builders
from src.config import run_cli


def kill_in_checkpoint_write(n: int) -> None:
    real_save = torch.save
    calls = 0

    def save(obj, f, *args, **kwargs):
        nonlocal calls
        calls += 1
        if calls < n:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save


class SigtermAtBatch(Callback):
    def __init__(self, batch: int):
        self.batch = batch

    def after_forward(self, state, logger):
        if int(state.timestamp.batch) + 1 == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)


parser = argparse.ArgumentParser()
parser.add_argument("--sigkill-in-checkpoint", type=int)
parser.add_argument("--sigterm-at-batch", type=int)
args, argv = parser.parse_known_args()
if args.sigkill_in_checkpoint:
    kill_in_checkpoint_write(args.sigkill_in_checkpoint)
if args.sigterm_at_batch:
    builders.CALLBACKS["sigterm_at_batch"] = SigtermAtBatch
    argv.append(f"callbacks.sigterm_at_batch.batch={args.sigterm_at_batch}")
sys.exit(run_cli(main, argv))
