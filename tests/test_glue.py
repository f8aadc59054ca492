"""glue.py on the synthetic GLUE tasks: both models end to end, round 2 starting from MNLI, a failing job,
the parallel runner's processes (on CPU), and bad configs."""
import json
import shutil

import pytest
import torch
from omegaconf import OmegaConf
from streaming.base.util import clean_stale_shared_memory

import glue
import src.glue.finetuning_jobs as finetuning_jobs
from main import main as pretrain
from src.config import ConfigError, load_config
from src.glue.sweep import GlueSweep, run_in_processes
from tests.conftest import REPO_ROOT

GLUE_YAML = REPO_ROOT / "yamls" / "test" / "glue.yaml"
SHORT = {"mnli": {"trainer_kwargs": {"max_duration": "4ba", "batch_size": 16}},
         "rte": {"seeds": [19, 23], "trainer_kwargs": {"max_duration": "3ba", "batch_size": 16}}}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, synthetic_data):
    """A tiny checkpoint of each model, pretrained for 8 batches (the shape glue_cfg gives the models)."""
    checkpoints = {}
    for name in ("hf_bert", "mosaic_bert"):
        folder = tmp_path_factory.mktemp(name)
        clean_stale_shared_memory()
        pretrain(load_config(str(REPO_ROOT / "yamls" / "test" / "main.yaml"), [
            f"data_local={synthetic_data['mds']}", f"tokenizer_name={synthetic_data['tokenizer']}",
            f"save_folder={folder}", f"model.name={name}", "max_seq_len=64", "global_train_batch_size=16",
            "device_train_microbatch_size=16", "max_duration=8ba", "eval_interval=8ba",
            "eval_subset_num_batches=1", "save_interval=8ba", "train_loader.num_workers=0",
            "eval_loader.num_workers=0", "callbacks={}",
            "model.model_config.hidden_size=32", "model.model_config.intermediate_size=64",
            "model.model_config.num_attention_heads=2"]))
        checkpoints[name] = folder / "latest-rank0.pt"
    clean_stale_shared_memory()
    return checkpoints


@pytest.fixture
def glue_cfg(synthetic_data, tmp_path):
    def make(tasks, *overrides, glue_dir=None):
        cfg = load_config(str(GLUE_YAML), [
            f"tokenizer_name={synthetic_data['tokenizer']}", f"glue_data_dir={glue_dir or synthetic_data['glue']}",
            f"save_finetune_checkpoint_folder={tmp_path / 'finetune'}", "max_seq_len=48",
            "model.model_config.hidden_size=32", "model.model_config.intermediate_size=64",
            "model.model_config.num_attention_heads=2", "log_to_console=false", *overrides])
        cfg.tasks = OmegaConf.create(tasks)
        return cfg

    return make


@pytest.fixture
def trainers(monkeypatch, tmp_path):
    """Every job's trainer, with the model's weights as the job started (after loading its checkpoint), and
    the results file's job statuses at that moment."""
    built = {}
    build_trainer = finetuning_jobs.build_trainer

    def recording(cfg, model, *args, **kwargs):
        run_name = cfg["run_name"]
        trainer = build_trainer(cfg, model, *args, **kwargs)
        written = json.loads((tmp_path / "finetune" / "glue_results.json").read_text())
        built[run_name] = (trainer, {k: v.detach().clone() for k, v in trainer.state.model.state_dict().items()})
        built[run_name, "statuses"] = {f"{job['task']}{job['seed']}": job["status"]
                                       for job in written["jobs"].values()}
        return trainer

    monkeypatch.setattr(finetuning_jobs, "build_trainer", recording)
    return built


@pytest.mark.parametrize("model_name", ["hf_bert", "mosaic_bert"])
def test_glue_end_to_end(glue_cfg, pretrained, trainers, tmp_path, model_name):
    cfg = glue_cfg(SHORT, f"model.name={model_name}", f"starting_checkpoint_load_path={pretrained[model_name]}")
    results = glue.train(cfg)

    assert glue.exit_status(results) == 0
    written = json.loads((tmp_path / "finetune" / "glue_results.json").read_text())
    assert written["jobs"] == results["jobs"]
    jobs = {(job["task"], job["seed"]): job for job in written["jobs"].values()}
    assert sorted(jobs) == [("mnli", 19), ("rte", 19), ("rte", 23)]
    assert sorted(jobs["mnli", 19]["metrics"]) == ["accuracy_matched", "accuracy_mismatched"]
    for seed in (19, 23):
        assert list(jobs["rte", seed]["metrics"]) == ["accuracy"]
        assert 0.0 <= jobs["rte", seed]["metrics"]["accuracy"] <= 1.0
    assert sorted(written["tasks"]["rte"]["metrics"]["accuracy"]["seeds"]) == ["19", "23"]
    scores = [written["tasks"][task]["score"] for task in ("mnli", "rte")]
    assert written["glue_average"] == pytest.approx(sum(scores) / 2)
    assert (tmp_path / "finetune" / "glue_results.md").read_text().count("| accuracy |") == 1
    assert (tmp_path / "finetune" / "glue_results.png").stat().st_size > 0

    # Each job's result is in the file as soon as it ends.
    statuses = trainers["test-glue_task=rte_seed=23", "statuses"]
    assert statuses == {"mnli19": "ok", "rte19": "ok", "rte23": "pending"}

    # Round 2 starts from the final MNLI weights (of seed 19; RTE seed 23 has no MNLI run of its own).
    mnli_trainer, _ = trainers["test-glue_task=mnli_seed=19"]
    assert int(mnli_trainer.state.timestamp.batch) == 4
    mnli_final = mnli_trainer.state.model.state_dict()
    _, pretrain_start = trainers["test-glue_task=mnli_seed=19"]
    for seed in (19, 23):
        assert jobs["rte", seed]["start_checkpoint"] == jobs["mnli", 19]["final_checkpoint"]
        _, rte_start = trainers[f"test-glue_task=rte_seed={seed}"]
        encoder = [name for name in rte_start if ".classifier." not in name]
        assert any(name.startswith("model.bert.encoder.") for name in encoder)
        for name in encoder:
            torch.testing.assert_close(rte_start[name], mnli_final[name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(pretrain_start[name], mnli_final[name]) for name in encoder)


def test_failed_job_is_recorded_and_the_others_finish(glue_cfg, synthetic_data, tmp_path):
    glue_dir = tmp_path / "glue"
    for task in ("cola", "sst2"):
        shutil.copytree(synthetic_data["glue"] / task, glue_dir / task)
    (glue_dir / "sst2" / "validation.parquet").write_bytes(b"not a parquet file")
    tasks = {"cola": {"trainer_kwargs": {"max_duration": "2ba", "batch_size": 16}},
             "sst2": {"seeds": [19, 23], "trainer_kwargs": {"max_duration": "2ba", "batch_size": 16}}}
    results = glue.train(glue_cfg(tasks, "starting_checkpoint_load_path=", glue_dir=glue_dir))

    assert glue.exit_status(results) == 1
    jobs = {(job["task"], job["seed"]): job for job in results["jobs"].values()}
    assert jobs["cola", 19]["status"] == "ok" and "matthews" in jobs["cola", 19]["metrics"]
    for seed in (19, 23):
        assert jobs["sst2", seed]["status"] == "failed"
        assert "validation.parquet" in jobs["sst2", seed]["error"] or "Parquet" in jobs["sst2", seed]["error"]
    written = json.loads((tmp_path / "finetune" / "glue_results.json").read_text())
    assert written["tasks"]["sst2"]["failed_seeds"] == [19, 23] and written["tasks"]["sst2"]["score"] is None
    assert written["glue_average_over"] == ["cola"]
    table = (tmp_path / "finetune" / "glue_results.md").read_text()
    assert "| accuracy | - | failed | failed |" in table
    assert "| SST2 | failed |" in table and "(over 1 of 2 tasks)" in table


def test_processes_report_results_and_failures(glue_cfg, synthetic_data, tmp_path):
    """The parallel runner, with CPU 'devices': each job in its own spawned process, a failure recorded."""
    tasks = {"cola": {"trainer_kwargs": {"max_duration": "1ba", "batch_size": 8}},
             "sst2": {"trainer_kwargs": {"max_duration": "1ba", "batch_size": 8}}}
    config = OmegaConf.to_container(glue_cfg(tasks, "starting_checkpoint_load_path="), resolve=True)
    sweep = GlueSweep.pop_from(config)
    jobs = {job.task: job for job in sweep.jobs(0, {19: None})}
    jobs["sst2"].data_dir = str(tmp_path / "nowhere")
    results = {}
    run_in_processes(list(jobs.values()), ["", ""], lambda job, result: results.update({job.task: result}))
    assert results["cola"]["status"] == "ok" and set(results["cola"]["metrics"]) == {"matthews"}
    assert results["sst2"]["status"] == "failed" and "nowhere" in results["sst2"]["error"]


@pytest.mark.parametrize("tasks, override, message", [
    ({"mnli": {}, "wnli": {}}, None,
     "unknown GLUE task 'wnli' in tasks; valid: mnli, qqp, qnli, sst2, cola, stsb, mrpc, rte"),
    ({"rte": {"trainer_kwargs": {"max_durration": "1ep"}}}, None,
     "tasks.rte.trainer_kwargs: unknown key(s) max_durration; valid: "),
    ({"rte": {"seeds": 19}}, None, "tasks.rte.seeds must be a non-empty list of integers, got 19"),
    ({"rte": {}}, "starting_checkpoint_load_path=/no/such/ckpt.pt",
     "starting_checkpoint_load_path: the checkpoint /no/such/ckpt.pt does not exist"),
])
def test_bad_configs_are_explained(glue_cfg, tasks, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        glue.train(glue_cfg(tasks, *([override] if override else [])))


def test_checkpoint_of_the_other_model_is_refused(glue_cfg, pretrained):
    cfg = glue_cfg({"rte": {}}, "model.name=mosaic_bert", f"starting_checkpoint_load_path={pretrained['hf_bert']}")
    with pytest.raises(ConfigError, match="lacks .* encoder weights .* another model.name"):
        glue.train(cfg)
