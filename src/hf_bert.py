"""Hugging Face BERT (the baseline), wrapped as Composer models for MLM and classification."""
from __future__ import annotations

import logging
from typing import Any, Optional

import transformers
from composer.metrics.nlp import LanguageCrossEntropy, MaskedAccuracy
from composer.models import HuggingFaceModel

from src.config import ConfigError
from src.metrics import classification_metrics
from src.tokenization import load_tokenizer

log = logging.getLogger(__name__)


class ModelConfigError(ConfigError):
    pass


def load_bert_config(pretrained_model_name: Optional[str], use_pretrained: bool,
                     model_config: Optional[dict[str, Any]]) -> transformers.BertConfig:
    """The base architecture (from the hub or a local folder), with `model_config` on top.

    Training from scratch needs only the architecture. When the name cannot be resolved offline, HF's
    `BertConfig()` defaults are used: they are bert-base-uncased's architecture.
    """
    config = None
    if pretrained_model_name:
        try:
            config = transformers.AutoConfig.from_pretrained(pretrained_model_name)
        except OSError as error:
            if use_pretrained:
                raise ModelConfigError(
                    f"use_pretrained is true but {pretrained_model_name!r} could not be loaded: {error}"
                ) from error
            log.info("%s is not reachable; starting from transformers.BertConfig() defaults "
                     "(bert-base-uncased's architecture)", pretrained_model_name)
    if config is None:
        config = transformers.BertConfig()
    for key, value in (model_config or {}).items():
        setattr(config, key, value)
    return config


def fit_vocab_to_tokenizer(config, tokenizer_name: Optional[str], use_pretrained: bool,
                           explicit_vocab_size: bool) -> Optional[transformers.PreTrainedTokenizerBase]:
    """A model trained from scratch takes the tokenizer's vocabulary size; a pretrained one must cover it."""
    if not tokenizer_name:
        return None
    tokenizer = load_tokenizer(tokenizer_name)
    if use_pretrained or explicit_vocab_size:
        if config.vocab_size < len(tokenizer):
            raise ModelConfigError(
                f"the tokenizer {tokenizer_name!r} has {len(tokenizer)} tokens but the model's vocabulary has "
                f"{config.vocab_size}: use the tokenizer the model was trained with, or set "
                f"model.model_config.vocab_size >= {len(tokenizer)}"
            )
    else:
        config.vocab_size = len(tokenizer)
    return tokenizer


def create_hf_bert_mlm(pretrained_model_name: str = "bert-base-uncased", use_pretrained: bool = False,
                       model_config: Optional[dict[str, Any]] = None, tokenizer_name: Optional[str] = None,
                       gradient_checkpointing: bool = False) -> HuggingFaceModel:
    """transformers' BertForMaskedLM with SDPA attention, reporting cross entropy and masked accuracy."""
    config = load_bert_config(pretrained_model_name, use_pretrained, model_config)
    tokenizer = fit_vocab_to_tokenizer(config, tokenizer_name, use_pretrained,
                                       "vocab_size" in (model_config or {}))
    config._attn_implementation = "sdpa"
    if use_pretrained:
        model = transformers.BertForMaskedLM.from_pretrained(pretrained_model_name, config=config)
    else:
        model = transformers.BertForMaskedLM(config)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    metrics = [LanguageCrossEntropy(ignore_index=-100), MaskedAccuracy(ignore_index=-100)]
    return HuggingFaceModel(model=model, tokenizer=tokenizer, use_logits=True, metrics=metrics)


def create_hf_bert_classification(num_labels: int, pretrained_model_name: str = "bert-base-uncased",
                                  use_pretrained: bool = False, model_config: Optional[dict[str, Any]] = None,
                                  tokenizer_name: Optional[str] = None, gradient_checkpointing: bool = False,
                                  metric_names: Optional[list[str]] = None) -> HuggingFaceModel:
    """transformers' BertForSequenceClassification; num_labels=1 is regression (MSE loss)."""
    model_config = dict(model_config or {})
    model_config["num_labels"] = num_labels
    config = load_bert_config(pretrained_model_name, use_pretrained, model_config)
    tokenizer = fit_vocab_to_tokenizer(config, tokenizer_name, use_pretrained,
                                       "vocab_size" in model_config)
    config._attn_implementation = "sdpa"
    if use_pretrained:
        model = transformers.BertForSequenceClassification.from_pretrained(pretrained_model_name, config=config)
    else:
        model = transformers.BertForSequenceClassification(config)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return HuggingFaceModel(model=model, tokenizer=tokenizer, use_logits=True,
                            metrics=classification_metrics(num_labels, metric_names))
