"""Faults and bad inputs: kills, preemption, damaged checkpoints and data, NaN losses, bad configs, secrets.

docs/reliability.md is the table of them; each row names the test that proves it. To stay cheap the runs
are shared: one uninterrupted reference run, and two fault-injected runs of tests/scripts/fault_run.py
(SIGKILL in a checkpoint write, SIGTERM mid-batch) started together and resumed here, all compared to it.
"""
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import boto3
import pytest
import torch
from composer.core import Callback
from composer.utils import checkpoint as composer_checkpoint
from moto.server import ThreadedMotoServer

from main import main
from src import builders, checkpointing
from src.callbacks import NonFiniteLossError, NonFiniteLossGuard, Preempted
from src.checkpointing import CheckpointError, checkpoint_problem
from src.config import ConfigError, format_config, load_config, redact
from src.convert_dataset import main as convert_main
from src.mosaic_bert import create_mosaic_bert_mlm, read_state_dict
from src.text_data import DataConfigError, ShardError, build_text_dataloader
from src.tokenization import load_tokenizer
from tests.conftest import REPO_ROOT, TEST_YAML

RUN_BATCHES = 8
CHECKPOINT = "ep0-ba{}-rank0.pt"


def overrides(synthetic_data, folder: Path, *extra: str) -> list[str]:
    """A tiny run: 8 batches of 8 samples, a checkpoint every 2, autoresume, every batch logged."""
    return [f"data_local={synthetic_data['mds']}", f"tokenizer_name={synthetic_data['tokenizer']}",
            f"save_folder={folder}", f"callbacks.batch_log.path={folder}.jsonl", "autoresume=true",
            "max_seq_len=32", "global_train_batch_size=8", "device_train_microbatch_size=8",
            f"max_duration={RUN_BATCHES}ba", "save_interval=2ba", "save_num_checkpoints_to_keep=-1",
            "save_overwrite=false", "eval_loader=null", "eval_interval=1", "eval_subset_num_batches=-1",
            "train_loader.num_workers=0", "log_to_console=false", "model.model_config.hidden_size=32",
            "model.model_config.intermediate_size=64", "model.model_config.num_attention_heads=2",
            "model.model_config.num_hidden_layers=1", *extra]


def batch_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in Path(f"{folder}.jsonl").read_text().splitlines()]


def sample_ids(records: list[dict]) -> list[int]:
    return [i for record in records for i in record["sample_ids"]]


def listing(folder: Path) -> dict[str, str]:
    """name -> symlink target ('' for plain files)."""
    return {p.name: (os.readlink(p) if p.is_symlink() else "") for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def runs(synthetic_data, tmp_path_factory):
    """The reference run here while the two fault runs go on in subprocesses; then both are resumed here."""
    root = tmp_path_factory.mktemp("reliability")
    faults = {"killed": "--sigkill-in-checkpoint=3", "preempted": "--sigterm-at-batch=3"}
    processes = {}
    for name, fault in faults.items():
        with open(root / f"{name}.out", "w") as out:
            processes[name] = subprocess.Popen(
                [sys.executable, "tests/scripts/fault_run.py", fault, str(TEST_YAML),
                 *overrides(synthetic_data, root / name)], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    main(load_config(str(TEST_YAML), overrides(synthetic_data, root / "reference")))
    result = {"root": root, "returncode": {}, "output": {}, "after_fault": {}}
    for name, process in processes.items():
        result["returncode"][name] = process.wait(timeout=600)
        result["output"][name] = (root / f"{name}.out").read_text()
        result["after_fault"][name] = listing(root / name)
        shutil.copy(f"{root / name}.jsonl", f"{root / name}-before-resume.jsonl")
    for name in faults:
        main(load_config(str(TEST_YAML), overrides(synthetic_data, root / name)))
    return result


def test_sigkill_then_autoresume_continues_with_the_same_samples_and_losses(runs):
    root = runs["root"]
    reference = batch_log(root / "reference")
    killed = batch_log(root / "killed-before-resume")
    resumed = batch_log(root / "killed")[len(killed):]
    assert runs["returncode"]["killed"] == -signal.SIGKILL
    assert [r["batch"] for r in reference] == list(range(1, RUN_BATCHES + 1))
    # Killed while writing its 3rd checkpoint (batch 6): it had saved batches 2 and 4.
    assert [r["batch"] for r in killed] == [1, 2, 3, 4, 5, 6]
    assert killed == reference[:6]
    # Resumed from batch 4: batches 5-6 are done again, and everything equals the uninterrupted run.
    assert [r["batch"] for r in resumed] == [5, 6, 7, 8]
    assert resumed == reference[4:], "losses or samples after the resume differ from the uninterrupted run"
    seen = sample_ids(killed[:4]) + sample_ids(resumed)
    assert seen == sample_ids(reference) and len(set(seen)) == len(seen) == 8 * RUN_BATCHES


def test_kill_during_a_checkpoint_write_leaves_latest_on_a_whole_checkpoint(runs):
    folder = runs["root"] / "killed"
    after_kill = runs["after_fault"]["killed"]
    partial = [name for name in after_kill if name.startswith(checkpointing.PARTIAL_PREFIX)]
    # The write of batch 6's checkpoint was cut; only a hidden partial file shows it, never the final name.
    assert len(partial) == 1 and partial[0].endswith(CHECKPOINT.format(6))
    assert after_kill == {partial[0]: "", CHECKPOINT.format(2): "", CHECKPOINT.format(4): "",
                          "latest-rank0.pt": CHECKPOINT.format(4)}
    # The autoresume deleted the partial file and saved 6 and 8 whole.
    after_resume = listing(folder)
    assert after_resume == {CHECKPOINT.format(b): "" for b in (2, 4, 6, 8)} | {"latest-rank0.pt": CHECKPOINT.format(8)}
    assert all(checkpoint_problem(folder / name) is None for name in after_resume)


def test_sigterm_saves_the_current_batch_exits_143_and_resumes_from_it(runs):
    root = runs["root"]
    assert runs["returncode"]["preempted"] == 143
    assert f"SIGTERM received: stopped after batch 3; saved {root / 'preempted' / CHECKPOINT.format(3)}" \
        in runs["output"]["preempted"]
    assert runs["after_fault"]["preempted"] == {CHECKPOINT.format(2): "", CHECKPOINT.format(3): "",
                                                "latest-rank0.pt": CHECKPOINT.format(3)}
    reference = batch_log(root / "reference")
    before = batch_log(root / "preempted-before-resume")
    assert before == reference[:3]
    assert batch_log(root / "preempted")[3:] == reference[3:]


def test_preempted_main_raises_systemexit_143(pretrain_cfg, monkeypatch, tmp_path):
    """In-process, main() turns the stop into Preempted (a SystemExit with status 143)."""
    class SigtermAtFirstBatch(Callback):
        def after_forward(self, state, logger):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setitem(builders.CALLBACKS, "sigterm", SigtermAtFirstBatch)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted) as raised:
        main(pretrain_cfg("callbacks.sigterm={}", "save_interval=100ba", "max_seq_len=16"))
    assert raised.value.code == 143
    assert str(raised.value) == f"preempted after batch 1; checkpoint: {tmp_path / 'ckpt' / CHECKPOINT.format(1)}"
    assert signal.getsignal(signal.SIGTERM) is handler  # put back when the fit ended


def damaged_copy(source: Path, target: Path, how: str) -> Path:
    data = bytearray(source.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def test_truncated_or_flipped_checkpoint_is_refused_naming_the_file(runs, synthetic_data, tmp_path):
    good = runs["root"] / "reference" / CHECKPOINT.format(8)
    truncated = damaged_copy(good, tmp_path / "truncated.pt", "truncated")
    cfg = load_config(str(TEST_YAML), overrides(synthetic_data, tmp_path / "run", "autoresume=false",
                                                f"load_path={truncated}"))
    with pytest.raises(CheckpointError, match=f"checkpoint {truncated} is truncated or damaged: its zip directory"):
        main(cfg, do_train=False)
    # torch.load itself reads a checkpoint with flipped bytes without complaint; the CRC check does not.
    flipped = damaged_copy(good, tmp_path / "flipped.pt", "flipped")
    torch.load(flipped, weights_only=False)
    with pytest.raises(CheckpointError, match=f"checkpoint {flipped} is corrupted: its record .* CRC-32"):
        composer_checkpoint.safe_torch_load(str(flipped))


def test_autoresume_falls_back_to_the_newest_whole_checkpoint(runs, synthetic_data, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(runs["root"] / "reference", folder, symlinks=True)
    (folder / "latest-rank0.pt").unlink()  # a kill between Composer's remove and re-create of the link
    damaged_copy(folder / CHECKPOINT.format(8), folder / CHECKPOINT.format(8), "truncated")
    with pytest.warns(UserWarning, match=f"{CHECKPOINT.format(8)} is truncated"):
        trainer = main(load_config(str(TEST_YAML), overrides(synthetic_data, folder)), return_trainer=True,
                       do_train=False)
    assert int(trainer.state.timestamp.batch) == 6
    assert os.readlink(folder / "latest-rank0.pt") == CHECKPOINT.format(6)
    assert (folder / f"{CHECKPOINT.format(8)}.corrupt").is_file() and not (folder / CHECKPOINT.format(8)).exists()
    # A kill after the rename of a new checkpoint but before the link moved: `latest` is one behind.
    (folder / "latest-rank0.pt").unlink()
    (folder / "latest-rank0.pt").symlink_to(CHECKPOINT.format(4))
    with pytest.warns(UserWarning, match="latest-rank0.pt pointed to ep0-ba4-rank0.pt; resuming from the newest"):
        checkpointing.recover_latest_checkpoint(str(folder), "test-main", "ep{epoch}-ba{batch}-rank{rank}.pt",
                                                "latest-rank{rank}.pt")
    assert os.readlink(folder / "latest-rank0.pt") == CHECKPOINT.format(6)


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_load_without_running_code(runs, tmp_path, monkeypatch):
    own = runs["root"] / "reference" / CHECKPOINT.format(8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "bert.embeddings.word_embeddings.weight" in read_state_dict(str(own))  # weights_only=True
    marker = tmp_path / "code-ran"
    hostile = tmp_path / "hostile.pt"
    torch.save({"state": {"model": {}}, "payload": RunsCode(marker)}, hostile)
    for load in (composer_checkpoint.safe_torch_load, read_state_dict):
        with pytest.raises(CheckpointError, match=f"checkpoint {hostile} was not loaded: unpickling it needs "
                           "builtins.getattr, pathlib.Path, pathlib.PosixPath, .* set TRUST_CHECKPOINT_CODE=1"):
            load(str(hostile))
    assert not marker.exists()
    monkeypatch.setenv(checkpointing.TRUST_ENV, "1")
    with pytest.warns(UserWarning, match=rf"TRUST_CHECKPOINT_CODE=1: loading {hostile} with torch.load\(weights_only"):
        composer_checkpoint.safe_torch_load(str(hostile))
    assert marker.exists()


class FaultProbe(Callback):
    """Records gradient norms before and after clipping, and makes the loss of batch `nan_at` NaN."""

    def __init__(self, nan_at: int):
        self.nan_at = nan_at
        self.norms: list[tuple[float, float]] = []

    @staticmethod
    def grad_norm(state) -> float:
        grads = [p.grad for p in state.model.parameters() if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()

    def after_loss(self, state, logger):
        if int(state.timestamp.batch) + 1 == self.nan_at:
            state.loss = state.loss * float("nan")

    def after_backward(self, state, logger):
        self.norms.append((self.grad_norm(state), float("nan")))

    def after_train_batch(self, state, logger):  # GradientClipping has run: algorithms go before callbacks
        self.norms[-1] = (self.norms[-1][0], self.grad_norm(state))


@pytest.fixture(scope="module")
def nan_run(synthetic_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nan") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(builders.CALLBACKS, "fault_probe", FaultProbe)
        trainer = main(load_config(str(TEST_YAML), overrides(
            synthetic_data, folder, "callbacks.fault_probe.nan_at=3", "stop_on_non_finite_loss=before_update",
            "algorithms.gradient_clipping.clipping_threshold=0.001")), return_trainer=True, do_train=False)
        with pytest.raises(NonFiniteLossError) as raised:
            trainer.fit()
    probe = next(cb for cb in trainer.state.callbacks if isinstance(cb, FaultProbe))
    return {"folder": folder, "trainer": trainer, "error": str(raised.value), "norms": probe.norms}


def test_nan_loss_stops_at_its_batch_before_any_update(nan_run):
    folder = nan_run["folder"]
    assert nan_run["error"].startswith("the training loss of batch 3 (epoch 0) is not finite (nan)")
    assert f"the last checkpoint, {folder / CHECKPOINT.format(2)}, is from before it" in nan_run["error"]
    assert "Sample ids in this batch (on this rank): [" in nan_run["error"]
    assert listing(folder) == {CHECKPOINT.format(2): "", "latest-rank0.pt": CHECKPOINT.format(2)}
    assert [r["batch"] for r in batch_log(folder)] == [1, 2]
    saved = read_state_dict(str(folder / CHECKPOINT.format(2)))
    for name, value in nan_run["trainer"].state.model.model.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0, msg=name)


def test_by_default_a_nan_loss_stops_the_run_before_its_checkpoint(synthetic_data, tmp_path):
    """The default guard reads the loss Composer has already gathered (no GPU wait): the bad update
    reaches the weights in memory, but no checkpoint is written from it."""
    folder = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(builders.CALLBACKS, "fault_probe", FaultProbe)
        trainer = main(load_config(str(TEST_YAML), overrides(synthetic_data, folder, "callbacks.fault_probe.nan_at=3")),
                       return_trainer=True, do_train=False)
        with pytest.raises(NonFiniteLossError) as raised:
            trainer.fit()
    error = str(raised.value)
    assert error.startswith("the training loss of batch 3 (epoch 0) is not finite (loss/train/total nan); "
                            "training stopped before any checkpoint was written from it")
    assert f"the last checkpoint, {folder / CHECKPOINT.format(2)}, is from before it" in error
    assert "Sample ids in this batch (on this rank): [" in error
    assert listing(folder) == {CHECKPOINT.format(2): "", "latest-rank0.pt": CHECKPOINT.format(2)}


def test_gradient_clipping_threshold_from_the_config_is_applied(nan_run):
    norms = nan_run["norms"]
    assert len(norms) == 2  # batches 1 and 2 (batch 3 stopped before its backward pass)
    for before, after in norms:
        assert before > 0.01 and after == pytest.approx(0.001, rel=1e-4)


@pytest.mark.parametrize("setting, guards", [([], [False]), (["stop_on_non_finite_loss=before_update"], [True]),
                                             (["stop_on_non_finite_loss=false"], [])])
def test_the_guard_is_on_unless_turned_off(pretrain_cfg, setting, guards):
    trainer = main(pretrain_cfg(*setting), return_trainer=True, do_train=False)
    assert [cb.before_update for cb in trainer.state.callbacks if isinstance(cb, NonFiniteLossGuard)] == guards
    trainer.close()


def test_infinite_loss_is_caught_too():
    from types import SimpleNamespace
    state = SimpleNamespace(loss={"total": torch.tensor(float("-inf"))}, timestamp=SimpleNamespace(batch=41, epoch=2),
                            batch={"sample_id": torch.tensor([5, 9])}, callbacks=[],
                            total_loss_dict={"loss/train/total": float("-inf")})
    with pytest.raises(NonFiniteLossError, match=r"batch 42 \(epoch 2\) is not finite \(-inf\).*\[5, 9\]"):
        NonFiniteLossGuard(before_update=True).after_loss(state, None)
    with pytest.raises(NonFiniteLossError, match=r"batch 41 \(epoch 2\) is not finite \(loss/train/total -inf\)"):
        NonFiniteLossGuard().batch_end(state, None)


@pytest.mark.parametrize("override, pattern", [
    (["global_train_batch_size=-8"], r"global_train_batch_size must be positive, got -8"),
    (["device_eval_batch_size=0"], r"device_eval_batch_size must be positive, got 0"),
    (["device_train_microbatch_size=0"], r"device_train_microbatch_size must be a positive integer or auto, got 0"),
    (["save_overwrite=maybe"], r"save_overwrite must be true or false, got 'maybe' \(str\)"),
    (["stop_on_non_finite_loss=sometimes"], r"stop_on_non_finite_loss must be true, false or before_update, "
                                            r"got 'sometimes'"),
    (["max_duration=[8]"], r"max_duration must be a string or an integer, got \[8\] \(list\)"),
    (["max_seq_len=256"], r"train_loader.dataset.max_seq_len \(256\) is longer than the model's 128 position "
                          r"embeddings: use max_seq_len <= 128"),
    (["model.model_config.vocab_size=100"], r"model: the tokenizer .* has \d+ tokens but the model's vocabulary has 100"),
    (["model.name=mosaic_bert", "model.model_config.vocab_size=100"],
     r"model: model_config.vocab_size \(100\) is smaller than the tokenizer's \d+ tokens"),
])
def test_bad_values_are_explained(pretrain_cfg, override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        main(pretrain_cfg(*override), do_train=False)


def test_malformed_yaml_shows_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: hf_bert\n  model_config: {hidden_size: 64\nmax_duration: 8ba\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML at line 4, column 13: expected .,. or .}., "
                                          r"but got .:.\n    max_duration: 8ba$"):
        load_config(str(bad))


def test_mosaic_bert_alibi_trains_past_its_position_table(pretrain_cfg):
    trainer = main(pretrain_cfg("model.name=mosaic_bert", "max_seq_len=64", "max_duration=1ba", "save_interval=1ba",
                                "model.model_config.max_position_embeddings=16",
                                "model.model_config.alibi_starting_size=16", "eval_loader=null",
                                "eval_interval=1", "eval_subset_num_batches=-1"), return_trainer=True)
    assert int(trainer.state.timestamp.batch) == 1
    assert trainer.state.batch["attention_mask"].sum(dim=1).max() > 16
    assert torch.isfinite(torch.tensor(trainer.state.total_loss_dict["loss/train/total"]))


def test_pretrained_weights_with_a_smaller_vocabulary_than_the_tokenizer(pretrain_cfg, synthetic_data, tmp_path):
    import transformers
    tokens = len(load_tokenizer(str(synthetic_data["tokenizer"])))
    hf_folder = tmp_path / "hf-bert"
    transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=50, hidden_size=64, intermediate_size=128, num_attention_heads=2, num_hidden_layers=2,
        max_position_embeddings=128)).save_pretrained(hf_folder)
    with pytest.raises(ConfigError, match=f"has {tokens} tokens but the model's vocabulary has 50"):
        main(pretrain_cfg("model.use_pretrained=true", f"model.pretrained_model_name={hf_folder}"), do_train=False)
    mosaic = create_mosaic_bert_mlm(pretrained_model_name=None, model_config={
        "vocab_size": 48, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
        "num_hidden_layers": 2}).model
    torch.save(mosaic.state_dict(), tmp_path / "mosaic.pt")
    with pytest.raises(ConfigError, match=f"mosaic.pt has 48 token embeddings .* but the tokenizer has {tokens} tokens"):
        main(pretrain_cfg("model.name=mosaic_bert", f"model.pretrained_checkpoint={tmp_path / 'mosaic.pt'}"),
             do_train=False)


# Data ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hashed_mds(tmp_path_factory):
    """40 short documents converted by the CLI with --hashes xxh64 (one shard)."""
    root = tmp_path_factory.mktemp("hashed")
    (root / "docs.json").write_text("".join(json.dumps({"text": f"document {i} " + "word " * 20}) + "\n"
                                            for i in range(40)))
    assert convert_main(["--dataset", "json", "--data_files", f"train={root / 'docs.json'}",
                         "--out_root", str(root / "mds"), "--splits", "train", "--hashes", "xxh64"]) == 0
    return root / "mds"


def loader_cfg(local, remote=None, **dataset):
    return {"name": "text", "num_workers": 0, "dataset": {
        "local": str(local), "remote": remote and str(remote), "split": "train", "shuffle": False,
        "max_seq_len": 16, **dataset}}


def count_samples(cfg, tokenizer) -> int:
    loader = build_text_dataloader(cfg, tokenizer, 4)
    count = sum(len(batch["sample_id"]) for batch in loader)
    del loader
    gc.collect()  # releases the dataset's shared memory, so the same local folder can be opened again
    return count


@pytest.fixture(scope="module")
def tokenizer(synthetic_data):
    return load_tokenizer(str(synthetic_data["tokenizer"]))


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_convert_dataset_records_shard_hashes(hashed_mds):
    shards = json.loads((hashed_mds / "train" / "index.json").read_text())["shards"]
    assert [set(shard["raw_data"]["hashes"]) for shard in shards] == [{"xxh64"}]
    assert convert_main(["--dataset", "json", "--data_files", "train=x", "--out_root", "y", "--hashes", "md6"]) == 2


def test_flipped_bytes_in_a_local_shard_fail_hash_validation(hashed_mds, tokenizer, tmp_path):
    shutil.copytree(hashed_mds, tmp_path / "mds")
    shard = tmp_path / "mds" / "train" / "shard.00000.mds"
    assert count_samples(loader_cfg(tmp_path / "mds", validate_hash="xxh64"), tokenizer) == 40
    flip_a_byte(shard)
    with pytest.raises(DataConfigError, match=f"shard {shard} does not match its xxh64 hash in index.json"):
        build_text_dataloader(loader_cfg(tmp_path / "mds", validate_hash="xxh64"), tokenizer, 4)
    shutil.copytree(hashed_mds, tmp_path / "unhashed")
    index = tmp_path / "unhashed" / "train" / "index.json"
    index.write_text(index.read_text().replace('"xxh64"', '"sha1"'))
    with pytest.raises(DataConfigError, match="converted without xxh64 hashes .* --hashes xxh64"):
        build_text_dataloader(loader_cfg(tmp_path / "unhashed", validate_hash="xxh64"), tokenizer, 4)


def test_corrupted_remote_shard_is_named_and_not_kept_in_the_cache(hashed_mds, tokenizer, tmp_path):
    remote, cache = tmp_path / "remote", tmp_path / "cache"
    shutil.copytree(hashed_mds, remote)
    flip_a_byte(remote / "train" / "shard.00000.mds")
    cached = cache / "train" / "shard.00000.mds"
    with pytest.raises(ShardError, match=f"shard {cached} does not match its xxh64 hash .* local copy was deleted"):
        count_samples(loader_cfg(cache, remote, validate_hash="xxh64"), tokenizer)
    gc.collect()
    assert not cached.exists()
    shutil.copy(hashed_mds / "train" / "shard.00000.mds", remote / "train" / "shard.00000.mds")  # repaired
    assert count_samples(loader_cfg(cache, remote, validate_hash="xxh64"), tokenizer) == 40


def test_missing_shard_is_named(hashed_mds, tokenizer, tmp_path):
    shutil.copytree(hashed_mds, tmp_path / "mds")
    (tmp_path / "mds" / "train" / "shard.00000.mds").unlink()
    with pytest.raises(DataConfigError, match="lacks 1 of the 1 shard files its index.json lists: shard.00000.mds"):
        build_text_dataloader(loader_cfg(tmp_path / "mds"), tokenizer, 4)
    with pytest.raises(ShardError, match="a shard listed in index.json is missing: .*shard.00000.mds"):
        count_samples(loader_cfg(tmp_path / "cache", tmp_path / "mds"), tokenizer)
    gc.collect()


def test_unreachable_remote_fails_after_bounded_retries_and_leaves_the_cache_usable(hashed_mds, tokenizer,
                                                                                      tmp_path, monkeypatch):
    def serve():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        monkeypatch.setenv("S3_ENDPOINT_URL", f"http://{host}:{port}")
        return server

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(key, raising=False)
    server = serve()
    client = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])
    client.create_bucket(Bucket="reliability")
    for path in (hashed_mds / "train").iterdir():
        client.upload_file(str(path), "reliability", f"mds/train/{path.name}")
    server.stop()
    cache = tmp_path / "cache"
    cfg = loader_cfg(cache, "s3://reliability/mds", download_retry=1)
    started = time.monotonic()
    with pytest.raises(DataConfigError, match=r"(?s)could not read the dataset index from s3://reliability/mds "
                                              r"\(split train\) after 2 attempts: .*S3_ENDPOINT_URL"):
        build_text_dataloader(cfg, tokenizer, 4)
    assert time.monotonic() - started < 60
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    server = serve()  # back up (moto keeps the bucket in this process): the same cache folder works
    try:
        assert count_samples(cfg, tokenizer) == 40
    finally:
        server.stop()


# Secrets ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, shown", [
    ("hf_token", "hf_abc", "***"), ("wandb_api_key", "abc", "***"), ("aws_secret_access_key", "abc", "***"),
    ("db_password", "abc", "***"), ("credentials", "abc", "***"),
    ("remote", "s3://AKIA:abc@bucket/c4", "s3://***@bucket/c4"),
    ("mirror", "https://user@example.com/data", "https://***@example.com/data"),
    ("tokenizer_name", "bert-base-uncased", "bert-base-uncased"), ("load_ignore_keys", ["state/x"], ["state/x"]),
])
def test_redact(key, value, shown):
    assert redact({"section": {key: value}}) == {"section": {key: shown}}


def test_printed_config_and_loggers_never_see_secrets(pretrain_cfg, monkeypatch, capsys):
    from composer.loggers import InMemoryLogger
    monkeypatch.setitem(builders.LOGGERS, "in_memory", InMemoryLogger)
    cfg = pretrain_cfg("loggers.in_memory={}", "wandb_api_key=s3cr3t-1", "mirror=https://me:s3cr3t-2@host/x",
                       "max_duration=1ba", "eval_loader=null", "eval_interval=1", "eval_subset_num_batches=-1",
                       "save_interval=1ba")
    with pytest.warns(UserWarning, match="mirror, wandb_api_key"):
        trainer = main(cfg, return_trainer=True)
    printed = capsys.readouterr().out
    assert "wandb_api_key: '***'" in printed and "https://***@host/x" in printed and "s3cr3t" not in printed
    assert "s3cr3t" not in format_config(cfg)
    logged = next(d for d in trainer.logger.destinations if isinstance(d, InMemoryLogger))
    assert "s3cr3t" not in repr(logged.hyperparameters) + repr(logged.data)
    if "wandb_api_key" in logged.hyperparameters:  # main.py logs the whole config (src/loggers.py:log_config)
        assert logged.hyperparameters["wandb_api_key"] == "***"
        assert logged.hyperparameters["mirror"] == "https://***@host/x"


def test_no_code_path_trusts_remote_code():
    """No call in the project passes trust_remote_code (src/export_hf.py's docstring tells users to, for the
    folders it exports; tests/test_export_hf.py does so on the folder it just exported)."""
    import ast
    calls = []
    for path in [*REPO_ROOT.glob("*.py"), *(REPO_ROOT / "src").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and any(k.arg == "trust_remote_code" for k in node.keywords):
                calls.append(f"{path}:{node.lineno}")
    assert calls == []
