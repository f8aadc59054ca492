"""Mosaic BERT (src/bert_layers.py) wrapped as Composer models, and loading pretrained weights into it.

- `create_mosaic_bert_mlm` / `create_mosaic_bert_classification`: the entry points `src.builders` calls
  for `model.name: mosaic_bert`. Both return a `composer.models.HuggingFaceModel`.
- `load_pretrained_weights`: a Composer checkpoint of a Mosaic BERT (pretraining -> fine-tuning), a
  plain state dict, or Hugging Face BERT weights (mapped by `hf_bert_to_mosaic_state_dict`).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch
from composer.metrics.nlp import LanguageCrossEntropy, MaskedAccuracy
from composer.models import HuggingFaceModel
from transformers.utils import cached_file

from src.bert_layers import BertForMaskedLM, BertForSequenceClassification, BertPreTrainedModel
from src.checkpointing import load_checkpoint_file
from src.configuration_bert import BertConfig
from src.metrics import classification_metrics
from src.tokenization import load_tokenizer

log = logging.getLogger(__name__)

# The architecture, read from the base config and settable in model_config; the task's keys, only the
# latter (a base config's labels belong to another task).
ARCHITECTURE_KEYS = set(BertConfig.__annotations__)
CONFIG_KEYS = ARCHITECTURE_KEYS | {"num_labels", "problem_type", "id2label", "label2id"}


def create_mosaic_bert_mlm(
    pretrained_model_name: Optional[str] = "bert-base-uncased",
    pretrained_checkpoint: Optional[str] = None,
    model_config: Optional[Mapping[str, Any]] = None,
    tokenizer_name: Optional[str] = None,
    gradient_checkpointing: bool = False,
) -> HuggingFaceModel:
    """Mosaic BERT for masked language modelling, reporting LanguageCrossEntropy and MaskedAccuracy.

    `pretrained_model_name` (hub name or folder) gives the base architecture, `model_config` overrides its
    fields, the tokenizer (if named) sets `vocab_size`, and `pretrained_checkpoint` (see
    `load_pretrained_weights`) initializes the weights.
    """
    tokenizer = load_tokenizer(tokenizer_name) if tokenizer_name else None
    config = load_mosaic_bert_config(pretrained_model_name, model_config, tokenizer)
    model = BertForMaskedLM(config)
    _finish(model, pretrained_checkpoint, gradient_checkpointing, tokenizer)
    metrics = [LanguageCrossEntropy(ignore_index=-100), MaskedAccuracy(ignore_index=-100)]
    return MaskedLMHuggingFaceModel(model=model, tokenizer=tokenizer, metrics=metrics)


def create_mosaic_bert_classification(
    num_labels: int,
    pretrained_model_name: Optional[str] = "bert-base-uncased",
    pretrained_checkpoint: Optional[str] = None,
    model_config: Optional[Mapping[str, Any]] = None,
    tokenizer_name: Optional[str] = None,
    gradient_checkpointing: bool = False,
    metric_names: Optional[list[str]] = None,
) -> HuggingFaceModel:
    """Mosaic BERT for sequence classification (num_labels == 1: regression, MSE loss).

    Metrics are those of the HF BERT classifier (`src.metrics.classification_metrics`: accuracy by default,
    Pearson and Spearman for regression; `metric_names` picks others). A `pretrained_checkpoint` from MLM
    pretraining loads its encoder; the pooler and classifier start from their initialization.
    """
    tokenizer = load_tokenizer(tokenizer_name) if tokenizer_name else None
    model_config = {**(model_config or {}), "num_labels": num_labels}
    config = load_mosaic_bert_config(pretrained_model_name, model_config, tokenizer)
    model = BertForSequenceClassification(config)
    _finish(model, pretrained_checkpoint, gradient_checkpointing, tokenizer)
    return HuggingFaceModel(model=model, tokenizer=tokenizer, use_logits=True,
                            metrics=classification_metrics(num_labels, metric_names))


def load_mosaic_bert_config(
    pretrained_model_name: Optional[str],
    model_config: Optional[Mapping[str, Any]] = None,
    tokenizer: Any = None,
) -> BertConfig:
    """The base config's BERT fields, then `model_config` on top, then the tokenizer's vocabulary size.

    The base is read as a plain `config.json` (an HF BERT or a saved Mosaic BERT), and only its
    architecture fields are kept (not e.g. `position_embedding_type`, nor another task's labels). A name that cannot be resolved
    (offline, no such folder) falls back to `BertConfig()`, which is bert-base-uncased's architecture.
    With a tokenizer, `vocab_size` is its length rounded up to a multiple of 8 (tensor-core friendly
    matmuls for the embeddings and the MLM decoder), unless `model_config` sets `vocab_size` itself.
    """
    model_config = dict(model_config or {})
    unknown = sorted(set(model_config) - CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"unknown model_config key(s) for mosaic_bert: {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(CONFIG_KEYS))}"
        )
    base: dict[str, Any] = {}
    if pretrained_model_name:
        try:
            base, _ = BertConfig.get_config_dict(pretrained_model_name)
        except OSError as error:
            log.info("%s is not reachable (%s); starting from BertConfig() defaults (bert-base-uncased's "
                     "architecture)", pretrained_model_name, error)
    kwargs = {key: value for key, value in base.items() if key in ARCHITECTURE_KEYS}
    if tokenizer is not None and "vocab_size" not in model_config:
        kwargs["vocab_size"] = -(-len(tokenizer) // 8) * 8
    if tokenizer is not None and model_config.get("vocab_size", len(tokenizer)) < len(tokenizer):
        raise ValueError(f"model_config.vocab_size ({model_config['vocab_size']}) is smaller than the tokenizer's "
                         f"{len(tokenizer)} tokens: set it >= {len(tokenizer)}, or leave it out to follow the "
                         "tokenizer")
    kwargs.update(model_config)
    return BertConfig(**kwargs)


def _finish(
    model: BertPreTrainedModel, pretrained_checkpoint: Optional[str], gradient_checkpointing: bool, tokenizer: Any
) -> None:
    if pretrained_checkpoint:
        load_pretrained_weights(model, pretrained_checkpoint, len(tokenizer) if tokenizer is not None else None)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()


class MaskedLMHuggingFaceModel(HuggingFaceModel):
    """A HuggingFaceModel for `BertForMaskedLM`, whose logits exist only where a token is predicted.

    Given labels, the model returns logits `(n_predicted, vocab_size)` (see `BertForMaskedLM.forward`), in
    training and in evaluation alike; the metrics then get the labels of exactly those tokens, so
    LanguageCrossEntropy and MaskedAccuracy see matching `(n_predicted, vocab)` / `(n_predicted,)` shapes.
    """

    def __init__(self, model: BertForMaskedLM, tokenizer: Any, metrics: list) -> None:
        super().__init__(model=model, tokenizer=tokenizer, use_logits=True, metrics=metrics)

    def eval_forward(self, batch: Mapping[str, Any], outputs: Any = None) -> torch.Tensor:
        labels = batch["labels"]
        predicted = labels != -100
        if batch.get("attention_mask") is not None:
            predicted &= batch["attention_mask"].bool()
        self.labels = labels[predicted]
        outputs = outputs if outputs else self.forward(batch)
        return outputs["logits"]


# Loading weights ---------------------------------------------------------------------------------------

# Rows indexed by token id: a checkpoint with a smaller vocabulary (e.g. HF's 30522 where this model
# rounded up to 30528) fills the first rows and leaves the extra ones as initialized.
VOCAB_ROWS = ("bert.embeddings.word_embeddings.weight", "head.decoder.weight", "head.decoder.bias")


def load_pretrained_weights(model: BertPreTrainedModel, checkpoint: str, tokens: Optional[int] = None) -> None:
    """Load `checkpoint` into `model`, printing the keys that were missing or unexpected.

    `checkpoint` is one of:
    - a Composer checkpoint file (`state['model']`, keys prefixed with `model.`), e.g. from MLM pretraining:
      its encoder loads into a classifier, and the MLM head it has is reported as unexpected;
    - a `.safetensors` file, or another `torch.save`d state dict;
    - an HF model folder or hub name holding `model.safetensors` or `pytorch_model.bin`.
    Hugging Face BERT weights (recognized by `attention.self.query`) are mapped first. A tensor whose shape
    does not fit raises ValueError naming it and both shapes, and so does a checkpoint with fewer token
    embeddings than the tokenizer's `tokens` (its extra ids would index untrained rows).
    """
    state_dict = read_state_dict(checkpoint)
    if any(".attention.self.query." in key for key in state_dict):
        state_dict = hf_bert_to_mosaic_state_dict(state_dict, model.config.use_glu)
    model_state = model.state_dict()
    for key, tensor in list(state_dict.items()):
        expected = model_state.get(key)
        if expected is None or expected.shape == tensor.shape:
            continue
        rows = tensor.shape[0]
        if key in VOCAB_ROWS and tokens is not None and rows < tokens:
            raise ValueError(
                f"{checkpoint} has {rows} token embeddings ({key}) but the tokenizer has {tokens} tokens: ids "
                f">= {rows} would use untrained rows. Use the tokenizer the checkpoint was trained with."
            )
        if key in VOCAB_ROWS and rows < expected.shape[0] and tensor.shape[1:] == expected.shape[1:]:
            state_dict[key] = torch.cat([tensor.to(expected.dtype), expected[rows:]])
            continue
        raise ValueError(
            f"cannot load {key!r} from {checkpoint}: the checkpoint has shape {tuple(tensor.shape)}, the "
            f"model {tuple(expected.shape)}. Build the model with the checkpoint's config (model_config, "
            "tokenizer)."
        )
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    # A tied weight (the MLM decoder) is loaded through the tensor it is tied to.
    tied = getattr(model, "_tied_weights_keys", None) or {}
    missing = [key for key in missing if tied.get(key) not in state_dict]
    loaded = len(state_dict) - len(unexpected)
    print(f"Loaded {loaded} tensors from {checkpoint} into {type(model).__name__}.")
    print(f"  missing (left as initialized): {', '.join(missing) or 'none'}")
    print(f"  unexpected (ignored): {', '.join(unexpected) or 'none'}")


def read_state_dict(checkpoint: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file or HF model (see `load_pretrained_weights`), on the CPU."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        path = _hf_weights_file(checkpoint)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    # Composer checkpoints pickle the whole trainer state (timestamps, RNG states): weights_only=True with
    # an allowlist of those few types; a file that needs more is refused (src/checkpointing.py).
    loaded = load_checkpoint_file(path)
    if "state" in loaded:
        return {key.removeprefix("model."): value for key, value in loaded["state"]["model"].items()}
    return loaded


def _hf_weights_file(name: str) -> Path:
    for filename in ("model.safetensors", "pytorch_model.bin"):
        resolved = cached_file(name, filename, _raise_exceptions_for_missing_entries=False)
        if resolved:
            return Path(resolved)
    raise FileNotFoundError(
        f"pretrained_checkpoint {name!r} is neither a file nor an HF model folder / hub name with "
        "model.safetensors or pytorch_model.bin (offline, only local paths resolve)."
    )


# HF BERT name -> Mosaic BERT name, for the modules the two share. Anything else passes through
# unchanged, so position embeddings, the NSP head or (with GLU) the plain MLP show up as unexpected.
_LAYER = r"^(bert\.encoder\.layer\.\d+)\."
HF_BERT_RENAMES = [
    (_LAYER + r"attention\.output\.dense\.", r"\1.attention.wo."),
    (_LAYER + r"attention\.output\.LayerNorm\.", r"\1.attention.layernorm."),
    # The LayerNorm after the feed-forward block sits at the same place with or without GLU.
    (_LAYER + r"output\.LayerNorm\.", r"\1.mlp.layernorm."),
    (r"^cls\.predictions\.transform\.dense\.", "head.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "head.LayerNorm."),
    (r"^cls\.predictions\.decoder\.weight$", "head.decoder.weight"),
    (r"^cls\.predictions\.(decoder\.)?bias$", "head.decoder.bias"),
]
HF_BERT_PLAIN_MLP_RENAMES = [
    (_LAYER + r"intermediate\.dense\.", r"\1.mlp.wi."),
    (_LAYER + r"output\.dense\.", r"\1.mlp.wo."),
]
_HF_QKV = re.compile(_LAYER + r"attention\.self\.(query|key|value)\.(weight|bias)$")


def hf_bert_to_mosaic_state_dict(
    hf_state: Mapping[str, torch.Tensor], use_glu: bool
) -> dict[str, torch.Tensor]:
    """Rename an HF BERT state dict to Mosaic BERT's names.

    Query, key and value are stacked (in that order) into the fused `Wqkv`; TF-era `LayerNorm.gamma/beta`
    become `weight/bias`; the plain MLP maps only when `use_glu` is false (a GLU has other shapes).
    """
    renames = HF_BERT_RENAMES + ([] if use_glu else HF_BERT_PLAIN_MLP_RENAMES)
    mapped: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in hf_state.items():
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
        match = _HF_QKV.match(key)
        if match:
            layer, projection, kind = match.groups()
            qkv.setdefault((layer, kind), {})[projection] = tensor
            continue
        for pattern, replacement in renames:
            if re.match(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        mapped[key] = tensor
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise ValueError(
                f"{layer}.attention.self has {sorted(parts)} {kind}s; query, key and value are needed"
            )
        mapped[f"{layer}.attention.Wqkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return mapped
