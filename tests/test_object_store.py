"""The object-store paths against a real S3 API: moto's server on loopback, reached the standard way
(S3_ENDPOINT_URL and AWS credentials from the environment), by the real code (streaming's MDSWriter and
StreamingDataset, Composer's checkpoint upload and download, glue.py's checkpoint fetch)."""
import gc
import json

import boto3
import pytest
import torch
from composer.callbacks import CheckpointSaver
from moto.server import ThreadedMotoServer
from omegaconf import OmegaConf
from streaming.base.util import clean_stale_shared_memory

from main import main
from src.convert_dataset import main as convert_main
from tests.conftest import REPO_ROOT, tiny_pretrain_config

BUCKET = "bert-bucket"
DATA = f"s3://{BUCKET}/synthetic-c4"
RUN = "s3-run"
SAVE_FOLDER = f"s3://{BUCKET}/{{run_name}}/ckpt"


@pytest.fixture(scope="module")
def s3():
    """One S3-compatible server on 127.0.0.1 for the module, with a bucket, and the environment that points
    boto3 (hence streaming and Composer) at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"S3_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "NO_PROXY": host}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            patch.delenv(key, raising=False)
        # Composer polls for a finished upload before it uploads the `latest` symlink, every 30 s; its
        # comment invites tests to shorten that.
        init = CheckpointSaver.__init__

        def quick_polling_init(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self._symlink_upload_wait_before_next_try_in_seconds = 0.5

        patch.setattr(CheckpointSaver, "__init__", quick_polling_init)
        client = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"])
        client.create_bucket(Bucket=BUCKET)
        yield client
    server.stop()


def keys(client, prefix):
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def convert(synthetic_data, out_root, *splits):
    """`python src/convert_dataset.py --dataset json ... --out_root OUT_ROOT` (in this process: same code,
    without paying for a second interpreter's imports)."""
    raw = synthetic_data["raw"]
    return convert_main(["--dataset", "json", "--data_files", f"train={raw}/train/*.json.gz",
                         f"val={raw}/validation/*.json.gz", "--out_root", out_root, "--splits", *splits,
                         "--compression", "zstd"])


@pytest.fixture(scope="module")
def s3_dataset(s3, synthetic_data):
    """The embedded corpus converted to MDS straight into the bucket."""
    assert convert(synthetic_data, DATA, "train", "val") == 0


@pytest.fixture(scope="module")
def s3_run(s3, s3_dataset, synthetic_data, tmp_path_factory):
    """A pretraining that streams its data from the bucket and saves its checkpoints to it (8 batches)."""
    cache = tmp_path_factory.mktemp("cache")
    overrides = [f"data_remote={DATA}", f"data_local={cache}", f"run_name={RUN}"]
    clean_stale_shared_memory()
    trainer = main(tiny_pretrain_config(synthetic_data, SAVE_FOLDER, *overrides), return_trainer=True)
    weights = {k: v.detach().clone() for k, v in trainer.state.model.state_dict().items()}
    trainer.close()
    clean_stale_shared_memory()
    return {"cache": cache, "weights": weights, "overrides": overrides}


def test_convert_dataset_uploads_mds_to_s3(s3, s3_dataset, synthetic_data, capsys):
    for split, local in (("train", "train"), ("val", "val")):
        uploaded = keys(s3, f"synthetic-c4/{split}/")
        assert f"synthetic-c4/{split}/index.json" in uploaded
        index = json.loads(s3.get_object(Bucket=BUCKET, Key=f"synthetic-c4/{split}/index.json")["Body"].read())
        local_index = json.loads((synthetic_data["mds"] / local / "index.json").read_text())
        assert sum(s["samples"] for s in index["shards"]) == sum(s["samples"] for s in local_index["shards"])
        assert {f"synthetic-c4/{split}/{s['zip_data']['basename']}" for s in index["shards"]} <= set(uploaded)

    capsys.readouterr()
    assert convert(synthetic_data, DATA, "val") == 2
    assert f"{DATA}/val/index.json already exists" in capsys.readouterr().err
    assert convert(synthetic_data, "s3://no-such-bucket/c4", "val") == 2
    assert "cannot write to s3://no-such-bucket/c4/val: ClientError" in capsys.readouterr().err


def test_pretraining_streams_from_s3_and_saves_checkpoints_there(s3, s3_run):
    cached = sorted(p.name for p in (s3_run["cache"] / "train").iterdir())
    assert "index.json" in cached and any(name.startswith("shard.") for name in cached)
    saved = keys(s3, f"{RUN}/ckpt/")
    assert saved == [f"{RUN}/ckpt/ep0-ba8-rank0.pt", f"{RUN}/ckpt/latest-rank0.pt.symlink"]


def assert_same_weights(expected, actual):
    assert expected.keys() == actual.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=0, msg=name)


def test_load_path_on_s3_restores_the_run(s3_run, synthetic_data):
    cfg = tiny_pretrain_config(synthetic_data, SAVE_FOLDER, *s3_run["overrides"], "run_name=s3-reload",
                               f"load_path=s3://{BUCKET}/{RUN}/ckpt/ep0-ba8-rank0.pt", "seed=99")
    trainer = main(cfg, return_trainer=True, do_train=False)
    assert int(trainer.state.timestamp.batch) == 8
    assert_same_weights(s3_run["weights"], trainer.state.model.state_dict())
    trainer.close()


def test_autoresume_finds_the_latest_checkpoint_on_s3(s3, s3_run, synthetic_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Composer downloads the remote `latest` to ./s3:/<bucket>/<run>/ckpt/
    resumed_at = []
    for max_duration in (12, 16):  # two restarts: the second must not reuse the first one's download
        cfg = tiny_pretrain_config(synthetic_data, SAVE_FOLDER, *s3_run["overrides"], "autoresume=true",
                                   f"data_local={tmp_path}/cache-{max_duration}",  # not the module run's cache
                                   f"max_duration={max_duration}ba", f"eval_interval={max_duration}ba",
                                   "save_interval=4ba")
        trainer = main(cfg, return_trainer=True, do_train=False)
        resumed_at.append(int(trainer.state.timestamp.batch))
        if max_duration == 12:
            assert_same_weights(s3_run["weights"], trainer.state.model.state_dict())
        trainer.fit()
        assert int(trainer.state.timestamp.batch) == max_duration
        trainer.close()
        # The next restart's datasets reuse this run's cache folder: release this run's streaming shared
        # memory now rather than whenever the garbage collector gets to it.
        del trainer
        gc.collect()
        clean_stale_shared_memory()
    assert resumed_at == [8, 12]
    assert {f"{RUN}/ckpt/ep0-ba12-rank0.pt", f"{RUN}/ckpt/ep0-ba16-rank0.pt"} <= set(keys(s3, f"{RUN}/ckpt/"))


def test_glue_starts_from_a_checkpoint_on_s3(s3_run, synthetic_data, tmp_path):
    import glue
    from src.config import load_config

    remote = f"s3://{BUCKET}/{RUN}/ckpt/ep0-ba8-rank0.pt"
    cfg = load_config(str(REPO_ROOT / "yamls" / "test" / "glue.yaml"), [
        f"tokenizer_name={synthetic_data['tokenizer']}", f"glue_data_dir={synthetic_data['glue']}",
        f"starting_checkpoint_load_path={remote}", f"local_pretrain_checkpoint_folder={tmp_path / 'fetched'}",
        f"save_finetune_checkpoint_folder={tmp_path / 'finetune'}", "max_seq_len=48",
        "model.model_config.hidden_size=64", "model.model_config.intermediate_size=128",
        "model.model_config.num_attention_heads=2", "log_to_console=false"])
    cfg.tasks = OmegaConf.create({"rte": {"trainer_kwargs": {"max_duration": "2ba", "batch_size": 16}}})
    results = glue.train(cfg)

    assert glue.exit_status(results) == 0
    fetched = list((tmp_path / "fetched").iterdir())
    assert len(fetched) == 1 and fetched[0].name.endswith("ep0-ba8-rank0.pt")
    assert_same_weights(s3_run["weights"], torch.load(fetched[0], weights_only=False)["state"]["model"])
    (job,) = results["jobs"].values()
    assert job["status"] == "ok" and job["start_checkpoint"] == str(fetched[0])


def test_export_hf_reads_a_checkpoint_on_s3(s3_run, tmp_path):
    from transformers import AutoModelForMaskedLM

    from src import export_hf

    out = tmp_path / "exported"
    assert export_hf.main([f"s3://{BUCKET}/{RUN}/ckpt/ep0-ba8-rank0.pt", "--out_dir", str(out)]) == 0
    exported = AutoModelForMaskedLM.from_pretrained(out).state_dict()
    assert_same_weights(s3_run["weights"], {f"model.{k}": v for k, v in exported.items()})
