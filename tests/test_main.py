"""main.py end to end on the embedded synthetic corpus (tiny model, CPU)."""
import os
import signal
import subprocess
import sys
import warnings

import pytest
import torch
from streaming.base.util import clean_stale_shared_memory

from main import main
from src.config import ConfigError, UnusedConfigWarning
from tests.conftest import REPO_ROOT, TEST_YAML, free_port


@pytest.fixture(autouse=True)
def fresh_shared_memory():
    clean_stale_shared_memory()
    yield
    clean_stale_shared_memory()


def evaluate(trainer):
    trainer.eval()
    metrics = trainer.state.eval_metrics["eval"]
    return metrics["MaskedAccuracy"].compute().item(), metrics["LanguageCrossEntropy"].compute().item()


@pytest.mark.parametrize("model_name", ["hf_bert", "mosaic_bert"])
def test_pretraining_learns(pretrain_cfg, model_name):
    cfg = pretrain_cfg("max_duration=120ba", "eval_interval=120ba", "save_interval=120ba",
                       "eval_subset_num_batches=4", "optimizer.lr=3.0e-3", f"model.name={model_name}")
    trainer = main(cfg, return_trainer=True, do_train=False)
    accuracy_before, loss_before = evaluate(trainer)
    trainer.fit()
    accuracy_after, loss_after = evaluate(trainer)
    # 120 tiny batches take the model from chance (1 / vocabulary) to at least the token-frequency level;
    # going far beyond it takes the demo's ~600 batches (docs/synthetic_data.md has the curve).
    assert accuracy_after > accuracy_before + 0.05, f"MaskedAccuracy {accuracy_before:.3f} -> {accuracy_after:.3f}"
    assert loss_after < loss_before - 1.5, f"eval cross entropy {loss_before:.2f} -> {loss_after:.2f}"


def test_checkpoint_reloads_with_equal_weights(pretrain_cfg, tmp_path):
    trained = main(pretrain_cfg(), return_trainer=True)
    checkpoint = tmp_path / "ckpt" / "latest-rank0.pt"
    assert checkpoint.is_file()
    clean_stale_shared_memory()
    reloaded = main(pretrain_cfg(f"load_path={checkpoint}", "seed=99"), return_trainer=True, do_train=False)
    assert int(reloaded.state.timestamp.batch) == 8
    trained_weights = trained.state.model.state_dict()
    reloaded_weights = reloaded.state.model.state_dict()
    assert trained_weights.keys() == reloaded_weights.keys()
    for name, value in trained_weights.items():
        torch.testing.assert_close(reloaded_weights[name], value, rtol=0, atol=0, msg=name)


def test_train_metrics_false_skips_them_and_keeps_evaluation(pretrain_cfg, tmp_path):
    metrics_file = tmp_path / "metrics.jsonl"
    trainer = main(pretrain_cfg("train_metrics=false", "max_duration=4ba", "eval_interval=4ba",
                                "save_folder=null", f"loggers.jsonl.path={metrics_file}"), return_trainer=True)
    assert trainer.state.train_metrics == {}
    logged = metrics_file.read_text()
    assert "metrics/train/" not in logged and "loss/train/total" in logged
    assert "metrics/eval/MaskedAccuracy" in logged


def run_two_ranks(script_and_args: list[str], env: dict, timeout_s: int = 180) -> tuple[int, str]:
    """`composer -n 2 script args...` from the repository root: (exit status, the output's tail).

    torch's TCPStore rendezvous, which streaming's `maybe_init_dist` enters first, hung here once on a
    loaded machine (session 10, py-spy: rank 0 waiting in `_create_c10d_store` for a worker, rank 1 past
    it with its store connection closed by the server). A hang gets a second try on another port, with
    every process of the first killed; a run that fails is not retried. (A normal run takes ~17 s.)"""
    launcher = os.path.join(os.path.dirname(sys.executable), "composer")
    for attempt in (1, 2):
        process = subprocess.Popen([launcher, "-n", "2", "--master_port", str(free_port()), *script_and_args],
                                   cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=timeout_s)
            return process.returncode, output[-6000:]
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the launcher and both ranks
            output, _ = process.communicate()
            if attempt == 1:
                warnings.warn(f"composer -n 2 hung for {timeout_s} s (output: {output[-500:]!r}); trying again")
    return -1, f"hung twice (>{timeout_s} s each); the second run's output:\n{output[-6000:]}"


def test_a_hung_two_rank_run_is_killed_whole_and_tried_once_more(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text("import time\ntime.sleep(3600)\n")
    with pytest.warns(UserWarning, match="hung for 8 s"):
        returncode, output = run_two_ranks([str(script)], {**os.environ}, timeout_s=8)
    assert returncode == -1 and output.startswith("hung twice")
    survivors = subprocess.run(["pgrep", "-f", str(script)], capture_output=True, text=True).stdout.split()
    assert survivors == []  # neither attempt left a rank behind


@pytest.mark.parametrize("async_loss, own_host_group, microbatch", [("false", "0", 4), ("true", "1", 2)])
def test_two_processes_train_and_agree(synthetic_data, tmp_path, async_loss, own_host_group, microbatch):
    """Two ranks end with the same weights and counts; also with the loss read one batch late, the
    ranks' host-side numbers agreed through a gloo group of the trainer's own (as on GPUs), DDP's
    gradients as views of its buckets, and each rank's 4 samples in two microbatches (DDP's no_sync for
    the first, the trainer's own_gradients between them)."""
    overrides = [f"data_local={synthetic_data['mds']}", f"tokenizer_name={synthetic_data['tokenizer']}",
                 f"save_folder={tmp_path / 'ckpt'}", "max_seq_len=32", "global_train_batch_size=8",
                 f"device_train_microbatch_size={microbatch}", "max_duration=4ba", "eval_interval=4ba",
                 "eval_subset_num_batches=1", "train_loader.num_workers=0", "eval_loader.num_workers=0",
                 "model.model_config.hidden_size=32", "model.model_config.intermediate_size=64",
                 "model.model_config.num_attention_heads=2", f"async_loss={async_loss}",
                 f"ddp_gradient_as_bucket_view={async_loss}"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OWN_HOST_GROUP": own_host_group}
    returncode, output = run_two_ranks(["tests/scripts/train_and_dump.py", str(TEST_YAML), str(tmp_path), *overrides],
                                       env)
    assert returncode == 0, output
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["batches"] for r in ranks] == [4, 4]
    assert [r["samples"] for r in ranks] == [32, 32]  # 8 per batch, summed over the ranks
    assert [r["own_host_group"] for r in ranks] == [own_host_group == "1"] * 2
    assert [r["gradient_as_bucket_view"] for r in ranks] == [async_loss == "true"] * 2
    # the process group exists before the datasets, so streaming makes none of its own on MASTER_PORT
    assert [(r["datasets"], r["streaming_made_groups"]) for r in ranks] == [(2, 0), (2, 0)]
    assert ranks[0]["losses"] == ranks[1]["losses"] and 0 < ranks[0]["losses"]["loss/train/total"] < 20
    for name, value in ranks[0]["weights"].items():
        torch.testing.assert_close(ranks[1]["weights"][name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("override, message", [
    ("model.name=roberta", "unknown model 'roberta' in model; valid: hf_bert, mosaic_bert"),
    ("optimizer.name=adamax", "unknown optimizer 'adamax' in optimizer; valid: adamw, composer_decoupled_adamw, decoupled_adamw"),
    ("scheduler.name=cyclic", "unknown scheduler 'cyclic' in scheduler; valid: constant, constant_with_warmup"),
    ("callbacks.speedmonitor={}", "unknown callback 'speedmonitor' in callbacks.speedmonitor; valid: "),
    ("loggers.weights_and_biases={}", "unknown logger 'weights_and_biases' in loggers.weights_and_biases; valid: "),
    ("algorithms.alibi={}", "unknown algorithm 'alibi' in algorithms.alibi; valid: ema, fused_layernorm"),
    ("global_train_batch_size=0", "global_train_batch_size must be positive, got 0"),
    ("global_train_batch_size=big", "global_train_batch_size must be an integer, got 'big'"),
])
def test_bad_names_and_values_are_explained(pretrain_cfg, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        main(pretrain_cfg(override), do_train=False)


def test_missing_data_folder_names_path_and_command(pretrain_cfg, tmp_path):
    with pytest.raises(ConfigError, match=f"no MDS dataset at {tmp_path}/gone/train.*make data"):
        main(pretrain_cfg(f"data_local={tmp_path}/gone"), do_train=False)


def test_tokenizer_folder_that_does_not_exist(pretrain_cfg, tmp_path):
    with pytest.raises(ConfigError, match=f"tokenizer folder {tmp_path}/no-tokenizer does not exist"):
        main(pretrain_cfg(f"tokenizer_name={tmp_path}/no-tokenizer"), do_train=False)


def test_global_batch_not_divisible_by_world_size(pretrain_cfg, monkeypatch):
    from composer.utils import dist
    monkeypatch.setattr(dist, "get_world_size", lambda: 3)
    with pytest.raises(ConfigError, match=r"global_train_batch_size \(16\) is not divisible by the number of devices \(3\)"):
        main(pretrain_cfg(), do_train=False)


def test_unread_keys_are_reported_by_name(pretrain_cfg):
    with pytest.warns(UnusedConfigWarning, match="optimizer.learning_rate, train_loader.dataset.shufle, warmup"):
        main(pretrain_cfg("warmup=3", "optimizer.learning_rate=1", "train_loader.dataset.shufle=true"),
             do_train=False)


def test_cli_turns_config_errors_into_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: hf_bert\n   oops: [1, 2\n")
    result = subprocess.run([sys.executable, "main.py", str(bad)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "is not valid YAML at line 3" in result.stderr and "Traceback" not in result.stderr
