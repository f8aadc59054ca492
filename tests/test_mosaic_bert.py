import inspect
from pathlib import Path

import pytest
import torch
import transformers
from composer import Trainer
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from src.bert_layers import BertForMaskedLM
from src.mosaic_bert import (
    CONFIG_KEYS,
    create_mosaic_bert_classification,
    create_mosaic_bert_mlm,
    load_pretrained_weights,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            hidden_dropout_prob=0.0)


def mlm_batches(n_batches=2, batch_size=4, seqlen=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n_batches * batch_size):
        length = int(torch.randint(3, seqlen + 1, (1,), generator=generator))
        input_ids = torch.zeros(seqlen, dtype=torch.long)
        input_ids[:length] = torch.randint(1, 40, (length,), generator=generator)
        attention_mask = (input_ids != 0).long()
        labels = torch.full((seqlen,), -100)
        labels[: length: 2] = input_ids[: length: 2]
        samples.append(dict(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=torch.zeros(seqlen, dtype=torch.long), labels=labels))
    return samples


def test_mlm_metrics_get_logits_and_labels_of_the_same_tokens():
    torch.manual_seed(0)
    composer_model = create_mosaic_bert_mlm(pretrained_model_name=None, model_config=TINY).eval()
    batch = next(iter(DataLoader(mlm_batches(), batch_size=4)))
    assert batch["attention_mask"][0, -1] == 0
    batch["labels"][0, -1] = 7  # a label on padding has no output, so it is not counted
    outputs = composer_model(batch)
    logits = composer_model.eval_forward(batch, outputs)
    predicted = (batch["labels"] != -100) & batch["attention_mask"].bool()
    assert logits.shape == (int(predicted.sum()), 40)
    for metric in composer_model.get_metrics(is_train=False).values():
        metric.reset()
        composer_model.update_metric(batch, logits, metric)
    metrics = composer_model.get_metrics(is_train=False)
    torch.testing.assert_close(metrics["LanguageCrossEntropy"].compute(), outputs.loss)
    accuracy = (logits.argmax(-1) == batch["labels"][predicted]).float().mean()
    torch.testing.assert_close(metrics["MaskedAccuracy"].compute(), accuracy)


def test_composer_checkpoint_of_mlm_loads_into_classifier_encoder(tmp_path, capsys):
    torch.manual_seed(0)
    mlm = create_mosaic_bert_mlm(pretrained_model_name=None, model_config=TINY)
    initial = {key: value.clone() for key, value in mlm.model.state_dict().items()}
    # Composer computes the training metrics on every batch, and the eval metrics here at the end: both
    # see the masked-only logits.
    trainer = Trainer(
        model=mlm, train_dataloader=DataLoader(mlm_batches(), batch_size=4), max_duration="2ba",
        eval_dataloader=DataLoader(mlm_batches(seed=1), batch_size=4), eval_interval="2ba",
        optimizers=torch.optim.AdamW(mlm.parameters(), lr=1e-2),
        save_folder=str(tmp_path), save_interval="2ba", save_filename="mlm.pt", device="cpu",
        progress_bar=False, log_to_console=False,
    )
    trainer.fit()
    trainer.close()
    for split in ("train", "eval"):
        loss = trainer.state.train_metric_values if split == "train" else trainer.state.eval_metric_values
        assert 0 < float(loss["LanguageCrossEntropy"]) < 10
    trained = mlm.model.state_dict()

    classifier = create_mosaic_bert_classification(
        num_labels=3, pretrained_model_name=None, pretrained_checkpoint=str(tmp_path / "mlm.pt"),
        model_config=TINY,
    )
    loaded = classifier.model.state_dict()
    encoder_keys = [key for key in trained if key.startswith("bert.")]
    assert len(encoder_keys) == len([k for k in loaded if k.startswith("bert.") and "pooler" not in k])
    for key in encoder_keys:
        torch.testing.assert_close(loaded[key], trained[key], rtol=0, atol=0, msg=key)
    assert not torch.equal(trained["bert.encoder.layer.0.attention.Wqkv.weight"],
                           initial["bert.encoder.layer.0.attention.Wqkv.weight"])
    report = capsys.readouterr().out
    assert ("missing (left as initialized): bert.pooler.dense.weight, bert.pooler.dense.bias, "
            "classifier.weight, classifier.bias") in report
    assert "unexpected (ignored): head.dense.weight, head.dense.bias, head.LayerNorm.weight" in report


def _hf_bert_folder(tmp_path, **overrides) -> tuple[Path, transformers.BertForMaskedLM]:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=37, **overrides)
    hf = transformers.BertForMaskedLM(config)
    with torch.no_grad():
        for parameter in hf.parameters():
            parameter.normal_()  # biases and LayerNorms too, so that a mix-up cannot go unnoticed
    hf.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf", hf


def test_hf_bert_weights_map_onto_mosaic_bert(tmp_path, capsys):
    folder, hf = _hf_bert_folder(tmp_path)
    mosaic = create_mosaic_bert_mlm(pretrained_model_name=str(folder), pretrained_checkpoint=str(folder),
                                    model_config={"use_glu": False}).model
    config = mosaic.config
    assert (config.hidden_size, config.intermediate_size, config.vocab_size) == (32, 37, 30)
    source = hf.state_dict()
    target = mosaic.state_dict()
    same_name = ["bert.embeddings.word_embeddings.weight", "bert.embeddings.token_type_embeddings.weight",
                 "bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias"]
    expected = {key: source[key] for key in same_name}
    expected |= {
        "head.dense.weight": source["cls.predictions.transform.dense.weight"],
        "head.dense.bias": source["cls.predictions.transform.dense.bias"],
        "head.LayerNorm.weight": source["cls.predictions.transform.LayerNorm.weight"],
        "head.LayerNorm.bias": source["cls.predictions.transform.LayerNorm.bias"],
        "head.decoder.weight": source["bert.embeddings.word_embeddings.weight"],
        "head.decoder.bias": source["cls.predictions.bias"],
    }
    for i in range(2):
        hf_layer, layer = f"bert.encoder.layer.{i}.", f"bert.encoder.layer.{i}."
        for kind in ("weight", "bias"):
            expected[layer + f"attention.Wqkv.{kind}"] = torch.cat(
                [source[hf_layer + f"attention.self.{name}.{kind}"] for name in ("query", "key", "value")])
            expected[layer + f"attention.wo.{kind}"] = source[hf_layer + f"attention.output.dense.{kind}"]
            expected[layer + f"attention.layernorm.{kind}"] = \
                source[hf_layer + f"attention.output.LayerNorm.{kind}"]
            expected[layer + f"mlp.wi.{kind}"] = source[hf_layer + f"intermediate.dense.{kind}"]
            expected[layer + f"mlp.wo.{kind}"] = source[hf_layer + f"output.dense.{kind}"]
            expected[layer + f"mlp.layernorm.{kind}"] = source[hf_layer + f"output.LayerNorm.{kind}"]
    assert sorted(expected) == sorted(target)  # every Mosaic BERT tensor has an HF source
    for key, tensor in expected.items():
        torch.testing.assert_close(target[key], tensor, rtol=0, atol=0, msg=key)
    report = capsys.readouterr().out
    assert "missing (left as initialized): none" in report
    assert "unexpected (ignored): bert.embeddings.position_embeddings.weight" in report


def test_hf_bert_weights_into_glu_model_leave_the_mlp_out(tmp_path, capsys):
    folder, _ = _hf_bert_folder(tmp_path)
    create_mosaic_bert_mlm(pretrained_model_name=str(folder), pretrained_checkpoint=str(folder))
    report = capsys.readouterr().out
    assert "missing (left as initialized): bert.encoder.layer.0.mlp.gated_layers.weight, " \
           "bert.encoder.layer.0.mlp.wo.weight, bert.encoder.layer.0.mlp.wo.bias" in report
    assert "bert.encoder.layer.0.intermediate.dense.weight" in report.split("unexpected (ignored):")[1]


def test_a_tensor_that_does_not_fit_names_itself_and_both_shapes(tmp_path):
    folder, _ = _hf_bert_folder(tmp_path)
    message = (r"cannot load 'bert.encoder.layer.0.mlp.wi.bias' from .*: "
               r"the checkpoint has shape \(37,\), the model \(40,\)")
    with pytest.raises(ValueError, match=message):
        create_mosaic_bert_mlm(pretrained_model_name=str(folder), pretrained_checkpoint=str(folder),
                               model_config={"use_glu": False, "intermediate_size": 40})


def test_tokenizer_sets_vocab_size_rounded_up_to_8_and_smaller_checkpoint_vocab_fills_first_rows(tmp_path):
    folder, hf = _hf_bert_folder(tmp_path)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(25)]
    tokenizer = transformers.BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    assert len(tokenizer) == 30
    mosaic = create_mosaic_bert_mlm(pretrained_model_name=str(folder), pretrained_checkpoint=str(folder),
                                    tokenizer_name=str(tmp_path / "tokenizer"),
                                    model_config={"use_glu": False})
    embeddings = mosaic.model.bert.embeddings.word_embeddings.weight
    assert mosaic.model.config.vocab_size == 32 and embeddings.shape == (32, 32)
    torch.testing.assert_close(embeddings[:30], hf.bert.embeddings.word_embeddings.weight, rtol=0, atol=0)
    torch.testing.assert_close(mosaic.model.head.decoder.bias[:30], hf.cls.predictions.bias, rtol=0, atol=0)


def test_unknown_model_config_key_is_an_error_naming_it():
    with pytest.raises(ValueError, match="unknown model_config key.*: use_gul; valid: "):
        create_mosaic_bert_mlm(pretrained_model_name=None, model_config={**TINY, "use_gul": False})


def test_classification_reports_hf_bert_classifier_metrics():
    classifier = create_mosaic_bert_classification(3, pretrained_model_name=None, model_config=TINY)
    regression = create_mosaic_bert_classification(1, pretrained_model_name=None, model_config=TINY)
    assert list(classifier.get_metrics()) == ["Accuracy"]
    assert list(regression.get_metrics()) == ["PearsonCorrelation", "SpearmanCorrelation"]
    batch = {key: value[:2] for key, value in next(iter(DataLoader(mlm_batches(), batch_size=4))).items()}
    batch["labels"] = torch.tensor([0, 2])
    logits = classifier.eval_forward(dict(batch))
    assert logits.shape == (2, 3)


def test_gradient_checkpointing_switch_reaches_every_layer():
    model = create_mosaic_bert_mlm(pretrained_model_name=None, model_config=TINY, gradient_checkpointing=True)
    assert all(layer.gradient_checkpointing for layer in model.model.bert.encoder.layer)


def test_main_yaml_model_section_fits_the_factory():
    cfg = OmegaConf.load(REPO_ROOT / "yamls" / "main" / "mosaic-bert-base-uncased.yaml")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    assert model_cfg.pop("name") == "mosaic_bert"
    assert set(model_cfg) <= set(inspect.signature(create_mosaic_bert_mlm).parameters)
    assert set(model_cfg["model_config"]) <= CONFIG_KEYS
    assert model_cfg["tokenizer_name"] == "bert-base-uncased"
    assert cfg.algorithms == {"fused_layernorm": {}}


def test_load_pretrained_weights_reads_a_plain_state_dict(tmp_path, capsys):
    torch.manual_seed(0)
    source = create_mosaic_bert_mlm(pretrained_model_name=None, model_config=TINY).model
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    target = BertForMaskedLM(source.config)
    load_pretrained_weights(target, str(tmp_path / "weights.pt"))
    for key, tensor in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], tensor, rtol=0, atol=0, msg=key)
    assert "missing (left as initialized): none" in capsys.readouterr().out
