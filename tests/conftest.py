"""Shared test set-up. Tests run on the CPU only.

Triton kernels run through Triton's interpreter here: TRITON_INTERPRET must be set before any
module decorated with @triton.jit is imported, so it is set at the very top of this file.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import socket
import subprocess

import pytest

TEST_YAML = REPO_ROOT / "yamls" / "test" / "main.yaml"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """A small copy of the embedded default, prepared once per test session by the real command."""
    out_dir = tmp_path_factory.mktemp("synthetic")
    subprocess.run([sys.executable, "-m", "src.synthetic.prepare", "--out_dir", str(out_dir),
                    "--train_docs", "3000", "--val_docs", "300", "--glue_train_rows", "300"],
                   cwd=REPO_ROOT, check=True)
    return {"root": out_dir, "mds": out_dir / "synthetic-c4", "raw": out_dir / "synthetic-c4-raw",
            "tokenizer": out_dir / "tokenizer", "glue": out_dir / "synthetic-glue"}


def tiny_pretrain_config(synthetic_data, save_folder, *overrides: str):
    """yamls/test/main.yaml pointed at the session's data and `save_folder`, shrunk for tests."""
    from src.config import load_config

    return load_config(str(TEST_YAML), [
        f"data_local={synthetic_data['mds']}", f"tokenizer_name={synthetic_data['tokenizer']}",
        f"save_folder={save_folder}", "max_seq_len=64", "global_train_batch_size=16",
        "device_eval_batch_size=32", "device_train_microbatch_size=16", "max_duration=8ba",
        "eval_interval=8ba", "eval_subset_num_batches=2", "save_interval=8ba",
        "train_loader.num_workers=0", "eval_loader.num_workers=0", "console_log_interval=100ba",
        "model.model_config.hidden_size=64", "model.model_config.intermediate_size=128",
        "model.model_config.num_attention_heads=2", *overrides])


@pytest.fixture
def pretrain_cfg(synthetic_data, tmp_path):
    """tiny_pretrain_config with a fresh save folder per test."""
    return lambda *overrides: tiny_pretrain_config(synthetic_data, tmp_path / "ckpt", *overrides)


@pytest.fixture(autouse=True, scope="module")
def release_streaming_shared_memory():
    """After each test file, close the shared memory of the StreamingDatasets it is done with.

    streaming keeps every shared-memory block it opens until the process exits (an atexit handler holds
    each one), and each new dataset opens the blocks of every earlier one while it looks for a free name:
    a test process that builds a few hundred datasets runs out of file descriptors ("Too many open
    files"). Blocks a live dataset still uses (numpy views on them exist) cannot be closed and are kept.
    """
    yield
    import atexit
    import gc

    from streaming.base.shared.memory import SharedMemory

    gc.collect()  # datasets only a finished test referenced, and their views on the blocks
    for block in [obj for obj in gc.get_objects() if isinstance(obj, SharedMemory)]:
        try:
            block.cleanup()
        except BufferError:  # still in use
            continue
        atexit.unregister(block.cleanup)
