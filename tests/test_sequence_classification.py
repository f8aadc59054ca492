"""sequence_classification.py on local files made from the synthetic GLUE tasks (tiny model, CPU)."""
import json

import pandas as pd
import pytest
import torch

from sequence_classification import main
from src.config import ConfigError, load_config
from src.synthetic.glue_tasks import make_split
from src.synthetic.language import World
from tests.conftest import REPO_ROOT

TEST_YAML = REPO_ROOT / "yamls" / "test" / "sequence_classification.yaml"
TINY = ["model.model_config.hidden_size=32", "model.model_config.intermediate_size=64",
        "model.model_config.num_attention_heads=2"]


@pytest.fixture
def finetune_cfg(synthetic_data):
    def make(*overrides: str):
        return load_config(str(TEST_YAML), [
            f"tokenizer_name={synthetic_data['tokenizer']}", f"glue_data={synthetic_data['glue']}",
            "max_duration=4ba", "eval_interval=4ba", "global_train_batch_size=16", "device_eval_batch_size=64",
            "log_to_console=false", *TINY, *overrides])

    return make


def final_metrics(trainer):
    return {name: metric.compute().item() for name, metric in trainer.state.eval_metrics["eval"].items()}


def test_local_csv_with_two_text_columns(finetune_cfg, synthetic_data, tmp_path):
    for split in ("train", "validation"):
        table = pd.read_parquet(synthetic_data["glue"] / "mrpc" / f"{split}.parquet")
        table.rename(columns={"sentence1": "first", "sentence2": "second", "label": "paraphrase"}).to_csv(
            tmp_path / f"{split}.csv", index=False)
    trainer = main(finetune_cfg(
        f"dataset.data_files.train={tmp_path / 'train.csv'}",
        f"dataset.data_files.validation={tmp_path / 'validation.csv'}",
        "dataset.text_columns=[first,second]", "dataset.label_column=paraphrase", "metrics=[accuracy,f1]"),
        return_trainer=True)

    batch = next(iter(trainer.state.train_dataloader))
    assert batch["input_ids"].shape == (16, 64)
    assert (batch["token_type_ids"] == 1).any(), "the second column is the second segment"
    assert batch["labels"].dtype == torch.int64
    assert int(trainer.state.timestamp.batch) == 4
    metrics = final_metrics(trainer)
    assert sorted(metrics) == ["Accuracy", "F1"]
    assert 0.0 <= metrics["Accuracy"] <= 1.0


def test_regression(finetune_cfg, synthetic_data, tmp_path):
    stsb = synthetic_data["glue"] / "stsb"
    trainer = main(finetune_cfg(f"dataset.data_files.train={stsb}/train.parquet",
                                f"dataset.data_files.validation={stsb}/validation.parquet",
                                "dataset.text_columns=[sentence1,sentence2]", "dataset.num_labels=1",
                                "metrics=[pearson,spearman,mse]", f"loggers.jsonl.path={tmp_path}/metrics.jsonl"),
                   return_trainer=True)

    # The loggers get the whole config, as main.py's do.
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = {}
    for line in lines:
        logged.update(line.get("hyperparameters", {}))
    assert logged["dataset"]["num_labels"] == 1 and logged["metrics"] == ["pearson", "spearman", "mse"]

    assert next(iter(trainer.state.train_dataloader))["labels"].dtype == torch.float32
    metrics = final_metrics(trainer)
    assert sorted(metrics) == ["MSE", "PearsonCorrelation", "SpearmanCorrelation"]
    assert all(-1.0 <= metrics[name] <= 1.0 for name in ("PearsonCorrelation", "SpearmanCorrelation"))
    assert metrics["MSE"] > 0


def test_hub_style_folder_and_split_names(finetune_cfg, synthetic_data):
    """`dataset.path` to a folder of <split>.parquet files, as glue_data_dir uses; MNLI's own split names."""
    trainer = main(finetune_cfg("dataset.data_files=null", f"dataset.path={synthetic_data['glue']}/mnli",
                                "dataset.text_columns=[premise,hypothesis]", "dataset.num_labels=3",
                                "dataset.eval_split=validation_mismatched", "metrics=[accuracy]"),
                   return_trainer=True, do_train=False)
    assert len(trainer.state.evaluators[0].dataloader.dataloader.dataset) == 300


@pytest.mark.parametrize("overrides, message", [
    (["dataset.num_labels=3", "metrics=[accuracy]"],
     "dataset.num_labels is 3 but the train split of dataset.data_files has no example of class(es) 2"),
    (["dataset.text_columns=[premise,hypothesis]"], "no column 'premise'; the columns are sentence, label, idx"),
    (["metrics=[accuracy,spearman]"], "unknown metric(s) spearman for classification; valid: accuracy, f1"),
    (["load_path=/no/such/checkpoint.pt"], "load_path: the checkpoint /no/such/checkpoint.pt does not exist"),
    (["frozen_parameters=[word_embedings]"], "frozen_parameters: 'word_embedings' matches no parameter of the "
                                             "model; its names look like model.bert.embeddings.word_embeddings"),
])
def test_bad_inputs_are_explained(finetune_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        main(finetune_cfg(*overrides), do_train=False)


def test_frozen_parameters_do_not_train(finetune_cfg):
    trainer = main(finetune_cfg("frozen_parameters=[word_embeddings, 'encoder\\.layer\\.0\\.']"),
                   return_trainer=True, do_train=False)
    before = {name: p.detach().clone() for name, p in trainer.state.model.named_parameters()}
    frozen = {name for name in before if "word_embeddings" in name or ".encoder.layer.0." in name}
    assert "model.bert.embeddings.word_embeddings.weight" in frozen and len(frozen) > 1
    optimized = {id(p) for group in trainer.state.optimizers[0].param_groups for p in group["params"]}
    trainer.fit()

    for name, parameter in trainer.state.model.named_parameters():
        assert (id(parameter) in optimized) == (name not in frozen), name
        if name in frozen:
            assert torch.equal(parameter, before[name]), f"{name} trained"
    changed = [name for name, p in trainer.state.model.named_parameters() if not torch.equal(p, before[name])]
    assert "model.classifier.weight" in changed and "model.bert.encoder.layer.1.attention.self.query.weight" in changed


def test_labels_beyond_num_labels(finetune_cfg, synthetic_data):
    mnli = synthetic_data["glue"] / "mnli"
    with pytest.raises(ConfigError, match="dataset.num_labels is 2 but the train split of dataset.data_files has "
                                          "labels 0, 1, 2 in column 'label'.*set dataset.num_labels: 3"):
        main(finetune_cfg(f"dataset.data_files.train={mnli}/train.parquet",
                          f"dataset.data_files.validation={mnli}/validation_matched.parquet",
                          "dataset.text_columns=[premise,hypothesis]"), do_train=False)



def test_sst2_is_learned(synthetic_data, tmp_path):
    """The test config's model (hidden 128) learns the synthetic SST-2 (300 training rows) from scratch, on
    new sentences with the training split's sentiment words. (The validation split's words are held out:
    only pretraining teaches them, tests/test_pretraining_matters.py.)"""
    seen_words = make_split(World(seed=0), "sst2", "train", 300, seed=1)  # the fixture's world, other rows
    pd.DataFrame(seen_words).to_parquet(tmp_path / "seen_words.parquet")
    trainer = main(load_config(str(TEST_YAML), [
        f"tokenizer_name={synthetic_data['tokenizer']}", f"glue_data={synthetic_data['glue']}", "max_duration=10ep",
        "eval_interval=10ep", "optimizer.lr=1.0e-3", "metrics=[accuracy]", "log_to_console=false",
        f"dataset.data_files.validation={tmp_path / 'seen_words.parquet'}"]), return_trainer=True)
    assert final_metrics(trainer)["Accuracy"] >= 0.75
