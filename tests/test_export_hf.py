"""src.export_hf: Composer checkpoints (HF BERT and Mosaic BERT; MLM and classification) exported to
Hugging Face folders, loaded back offline with `from_pretrained(..., trust_remote_code=True)`, and giving
the Composer model's outputs."""
import json

import pytest
import torch
from streaming.base.util import clean_stale_shared_memory
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer
from transformers.dynamic_module_utils import get_imports, get_relative_import_files

from src import export_hf
from src.config import load_config
from tests.conftest import REPO_ROOT, TEST_YAML

TINY = ["model.model_config.hidden_size=32", "model.model_config.intermediate_size=64",
        "model.model_config.num_attention_heads=2"]
CASES = [("hf_bert", "mlm"), ("mosaic_bert", "mlm"), ("hf_bert", "classification"),
         ("mosaic_bert", "classification")]
SENTENCES = ["the old bridge in the city was built by a famous company .", "short one .",
             "is the review good ? the food was great and the staff were kind ."]


def mlm_overrides(synthetic_data, folder, model_name):
    return [f"data_local={synthetic_data['mds']}", f"tokenizer_name={synthetic_data['tokenizer']}",
            f"save_folder={folder}", f"model.name={model_name}", "max_seq_len=32", "global_train_batch_size=8",
            "device_train_microbatch_size=8", "device_eval_batch_size=16", "max_duration=3ba", "eval_interval=3ba",
            "eval_subset_num_batches=1", "save_interval=3ba", "train_loader.num_workers=0",
            "eval_loader.num_workers=0", "callbacks={}", *TINY]


@pytest.fixture(scope="module")
def trained(synthetic_data, tmp_path_factory):
    """Each (model, task): the trained Composer model and its checkpoint (3 batches of training)."""
    import main
    import sequence_classification

    runs = {}
    for model_name, task in CASES:
        folder = tmp_path_factory.mktemp(f"{model_name}-{task}")
        clean_stale_shared_memory()
        if task == "mlm":
            # Mosaic BERT trained with a speed switch on: the export turns it off (export_hf.EXPORT_OFF).
            switches = ["model.model_config.fused_geglu=true"] if model_name == "mosaic_bert" else []
            cfg = load_config(str(TEST_YAML), mlm_overrides(synthetic_data, folder, model_name) + switches)
            trainer = main.main(cfg, return_trainer=True)
        else:
            glue = synthetic_data["glue"]
            cfg = load_config(str(REPO_ROOT / "yamls" / "test" / "sequence_classification.yaml"), [
                f"tokenizer_name={synthetic_data['tokenizer']}", f"glue_data={glue}", f"save_folder={folder}",
                f"model.name={model_name}", "max_duration=3ba", "eval_interval=3ba", "eval_subset_num_batches=1",
                "save_interval=3ba", "global_train_batch_size=8", "dataset.max_seq_len=32", *TINY])
            trainer = sequence_classification.main(cfg, return_trainer=True)
        model = trainer.state.model.eval()
        trainer.close()
        runs[model_name, task] = {"model": model, "checkpoint": folder / "latest-rank0.pt"}
    clean_stale_shared_memory()
    return runs


AUTO_CLASSES = {"mlm": AutoModelForMaskedLM, "classification": AutoModelForSequenceClassification}


@pytest.mark.parametrize("model_name, task", CASES)
def test_exported_folder_loads_offline_and_gives_the_composer_models_outputs(trained, tmp_path, model_name, task):
    run = trained[model_name, task]
    out = tmp_path / "exported"
    assert export_hf.main([str(run["checkpoint"]), "--out_dir", str(out)]) == 0

    files = sorted(p.name for p in out.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files)
    config = json.loads((out / "config.json").read_text())
    if model_name == "mosaic_bert":
        assert set(export_hf.REMOTE_CODE_FILES) <= set(files)
        assert config["auto_map"] == export_hf.AUTO_MAP and config["model_type"] == "mosaic_bert"
        assert not any("src." in line for name in export_hf.REMOTE_CODE_FILES
                       for line in (out / name).read_text().splitlines() if line.lstrip().startswith(("from", "import")))
        # transformers copies the kernel along (it is imported relatively) without demanding Triton everywhere
        copied = {path.rsplit("/", 1)[-1] for path in get_relative_import_files(out / "bert_layers.py")}
        assert copied == set(export_hf.REMOTE_CODE_FILES) - {"bert_layers.py"}
        assert "triton" not in get_imports(out / "flash_attn_triton.py")
        assert "triton" not in get_imports(out / "fused_geglu.py")
        assert not any(config[switch] for switch in export_hf.EXPORT_OFF)
    else:
        assert "auto_map" not in config and config["model_type"] == "bert"

    loaded = AUTO_CLASSES[task].from_pretrained(out, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    expected_module = "transformers_modules." if model_name == "mosaic_bert" else "transformers.models.bert."
    assert type(loaded).__module__.startswith(expected_module)
    assert type(loaded).__name__ == export_hf.TASK_CLASSES[task]

    composer_model = run["model"]
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == composer_model.tokenizer(SENTENCES, padding=True)["input_ids"]
    with torch.no_grad():
        expected = composer_model(dict(batch)).logits
        actual = loaded(**batch).logits
    assert actual.shape == expected.shape
    assert expected.abs().sum() > 0
    torch.testing.assert_close(actual, expected)


def test_config_yaml_gives_the_architecture(trained, synthetic_data, tmp_path):
    run = trained["hf_bert", "mlm"]
    out = tmp_path / "exported"
    assert export_hf.main([str(run["checkpoint"]), "--out_dir", str(out), "--config", str(TEST_YAML),
                           f"tokenizer_name={synthetic_data['tokenizer']}", *TINY]) == 0
    loaded = AutoModelForMaskedLM.from_pretrained(out).eval()
    batch = AutoTokenizer.from_pretrained(out)(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, run["model"](dict(batch)).logits)


def test_mismatches_are_errors_not_random_layers(trained, synthetic_data, tmp_path, capsys):
    checkpoint = str(trained["mosaic_bert", "mlm"]["checkpoint"])
    assert export_hf.main([checkpoint, "--out_dir", str(tmp_path / "a"), "--task", "classification"]) == 2
    assert "--task classification does not match the checkpoint, which holds a mlm model" in capsys.readouterr().err
    assert export_hf.main([checkpoint, "--out_dir", str(tmp_path / "b"), "--config", str(TEST_YAML),
                           "model.name=mosaic_bert", f"tokenizer_name={synthetic_data['tokenizer']}"]) == 2
    assert "does not fit the BertForMaskedLM its config describes" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
