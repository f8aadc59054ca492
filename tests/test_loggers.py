"""Loggers named in the YAML, each read back from what it wrote: W&B's offline run file (decoded with
wandb's own protobuf records), TensorBoard's event file, Composer's text log, our JSON lines; and the
plot of the JSON lines."""
import json
import struct
import time

import pytest
from streaming.base.util import clean_stale_shared_memory

from main import main
from src import plot_metrics

STEPS = 6


@pytest.fixture(scope="module")
def logged_run(synthetic_data, tmp_path_factory):
    """One tiny run with all four loggers (W&B offline, in its own WANDB_DIR)."""
    out = tmp_path_factory.mktemp("logs")
    from src.config import load_config
    from tests.conftest import TEST_YAML

    cfg = load_config(str(TEST_YAML), [
        f"data_local={synthetic_data['mds']}", f"tokenizer_name={synthetic_data['tokenizer']}",
        "save_folder=", "run_name=logged-run", "max_seq_len=32", "global_train_batch_size=8",
        "device_eval_batch_size=16", f"max_duration={STEPS}ba", "eval_interval=3ba", "eval_subset_num_batches=1",
        "train_loader.num_workers=0", "eval_loader.num_workers=0", "console_log_interval=100ba",
        "callbacks.speed_monitor.window_size=2", "optimizer.lr=1.0e-3", "model.model_config.hidden_size=32",
        "model.model_config.intermediate_size=64", "model.model_config.num_attention_heads=2",
        "loggers.wandb.project=bert-tests", f"loggers.tensorboard.log_dir={out}/tensorboard",
        f"loggers.file.filename={out}/{{run_name}}.log", f"loggers.jsonl.path={out}/{{run_name}}/metrics.jsonl"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(out))
        patch.setenv("WANDB_SILENT", "true")
        clean_stale_shared_memory()
        main(cfg)
        clean_stale_shared_memory()
    return out


def read_wandb_records(path):
    """The records of a .wandb file: a LevelDB-style log (32 KiB blocks of [crc32, length, type] + chunk) after
    a 7-byte ':W&B' header, each record a `wandb_internal_pb2.Record`."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunks, position, block = [], [], 7, 32768
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if position + 7 + length > len(data):  # a record still being written by W&B's service process
            break
        chunks.append(data[position + 7:position + 7 + length])
        position += 7 + length
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE/LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
        elif kind == 0:
            break
    return records


def test_wandb_offline_run_has_the_config_and_metrics(logged_run):
    run_files = list(logged_run.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 1, f"one offline run expected under {logged_run}/wandb: {run_files}"
    (run_file,) = run_files
    # W&B's service process may still be flushing the file when the run returns: read until it has
    # written the run's exit record (or 60 s have passed, and let the assertions below say what is missing).
    for _ in range(60):
        records = read_wandb_records(run_file)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(1)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "bert-tests" and run.display_name == "logged-run"
    config = {}
    for record in records:
        if record.WhichOneof("record_type") == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    assert config["max_duration"] == f"{STEPS}ba"
    assert config["optimizer"]["lr"] == 1.0e-3, config["optimizer"]  # as overridden: the resolved config
    assert config["model"]["model_config"]["hidden_size"] == 32
    assert config["composer_version"] == "0.32.1"
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    losses = {row["_step"]: row["loss/train/total"] for row in history if "loss/train/total" in row}
    assert sorted(losses) == list(range(STEPS)), history
    assert all(0 < loss < 20 for loss in losses.values())
    assert [row["_step"] for row in history if "metrics/eval/MaskedAccuracy" in row] == [3, 6], history
    assert any("throughput/samples_per_sec" in row for row in history)


def test_tensorboard_event_file_has_the_scalars(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = {}
    for events in logged_run.glob("tensorboard/**/events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(event.step for event in accumulator.Scalars(tag))
    assert sorted(scalars["loss/train/total"]) == list(range(STEPS))
    assert sorted(scalars["metrics/eval/MaskedAccuracy"]) == [3, 6]


def test_file_logger_writes_metrics_and_config(logged_run):
    text = (logged_run / "logged-run.log").read_text()
    assert f"[metric][batch={STEPS - 1}]: loss/train/total: " in text
    assert "[hyperparameter]: max_duration: " in text


def test_jsonl_logger_writes_one_object_per_line(logged_run):
    lines = [json.loads(line) for line in (logged_run / "logged-run" / "metrics.jsonl").read_text().splitlines()]
    hyperparameters = {}
    for line in lines:
        hyperparameters.update(line.get("hyperparameters", {}))
    assert hyperparameters["global_train_batch_size"] == 8
    assert hyperparameters["model"]["name"] == "hf_bert" and hyperparameters["composer_version"] == "0.32.1"
    steps = [line["step"] for line in lines if "loss/train/total" in line]
    assert steps == list(range(STEPS))
    eval_steps = [line["step"] for line in lines if "metrics/eval/MaskedAccuracy" in line]
    assert eval_steps == [3, 6]


def test_plot_metrics_draws_the_four_panels(logged_run, tmp_path, monkeypatch):
    metrics = logged_run / "logged-run" / "metrics.jsonl"
    series = plot_metrics.read_series(metrics)
    figure = plot_metrics.plot(series)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["Loss", "MaskedAccuracy", "Learning rate", "Throughput (samples/s)"]
    curves = {ax.get_title(): sorted(line.get_label() for line in ax.get_lines()) for ax in figure.axes}
    assert curves == {"Loss": ["eval cross entropy", "train loss"], "MaskedAccuracy": ["eval", "train"],
                      "Learning rate": ["DecoupledAdamW/group0"], "Throughput (samples/s)": ["all devices"]}
    (loss,) = [line for line in figure.axes[0].get_lines() if line.get_label() == "train loss"]
    assert list(loss.get_xdata()) == list(range(STEPS))

    out = tmp_path / "plot.png"
    assert plot_metrics.main([str(metrics), "--out", str(out)]) == 0
    from PIL import Image

    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1100, 700)


def test_plot_metrics_explains_a_missing_or_wrong_file(tmp_path, capsys):
    assert plot_metrics.main([str(tmp_path / "none.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text("step,loss\n1,2\n")
    assert plot_metrics.main([str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl:1 is not JSON" in capsys.readouterr().err
