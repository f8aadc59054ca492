"""Masked-language-model pretraining of BERT with Composer.

    composer main.py yamls/test/main.yaml                        # Hugging Face BERT on the embedded data
    composer main.py yamls/test/main.yaml model.name=mosaic_bert  # Mosaic BERT
    composer main.py yamls/main/mosaic-bert-base-uncased.yaml     # the real recipe (C4)
"""
from __future__ import annotations

import logging
import sys
from typing import Optional

from composer import Trainer
from composer.utils import dist
from omegaconf import DictConfig

from src.builders import build_model, build_trainer, check_sequence_length, device_batch_size, start_run
from src.callbacks import MostFrequentTokenBaseline, Preempted, PreemptionCheckpoint, non_finite_loss_guards
from src.config import leftover_keys, pop_typed, report_unused, run_cli
from src.loggers import log_config
from src.text_data import build_text_dataloader

log = logging.getLogger(__name__)


def main(cfg: DictConfig, return_trainer: bool = False, do_train: bool = True) -> Optional[Trainer]:
    config = start_run(cfg)
    seed = config["seed"]
    unused: list[str] = []

    model = build_model(pop_typed(config, "model", dict), unused)
    train_batch = device_batch_size(pop_typed(config, "global_train_batch_size", int, positive=True))
    eval_batch = pop_typed(config, "device_eval_batch_size", int, positive=True)
    train_loader_cfg = pop_typed(config, "train_loader", dict)
    check_sequence_length(model, train_loader_cfg, "train_loader")
    train_loader = build_text_dataloader(train_loader_cfg, model.tokenizer, train_batch,
                                         seed=seed, unused=unused, section="train_loader")
    eval_loader_cfg = pop_typed(config, "eval_loader", dict, None)
    eval_loader = None
    if eval_loader_cfg:
        check_sequence_length(model, eval_loader_cfg, "eval_loader")
        # Evaluation keeps one mask per sample, so that its figures compare from one evaluation to the next.
        eval_loader = build_text_dataloader(eval_loader_cfg, model.tokenizer, eval_batch, seed=seed, unused=unused,
                                            section="eval_loader", remask_each_epoch=False)

    preemption = PreemptionCheckpoint()
    guard = non_finite_loss_guards(pop_typed(config, "stop_on_non_finite_loss", (bool, str), True))
    trainer = build_trainer(config, model, train_loader, eval_loader, unused, extra_callbacks=[*guard, preemption])
    report_unused(unused + leftover_keys(config))
    log_config(trainer, cfg)

    if do_train:
        trainer.fit()
        if preemption.stopped_at is not None:  # SIGTERM: exit 143 once the checkpoint is written
            raise Preempted(f"preempted after batch {preemption.stopped_at}; checkpoint: {preemption.checkpoint}")
        summarize(trainer)
    return trainer if return_trainer else None


def summarize(trainer: Trainer) -> None:
    """One line a person reads: the final eval MaskedAccuracy beside the most-frequent-token guess."""
    metrics = trainer.state.eval_metrics.get("eval", {})
    if "MaskedAccuracy" not in metrics or dist.get_global_rank() != 0:
        return
    accuracy = metrics["MaskedAccuracy"].compute().item()
    line = f"Final eval MaskedAccuracy: {accuracy:.4f}"
    baseline = next((cb.latest.get("eval") for cb in trainer.state.callbacks
                     if isinstance(cb, MostFrequentTokenBaseline)), None)
    if baseline:
        line += (f" | always guessing the most frequent token: {baseline:.4f}"
                 f" | {accuracy / baseline:.1f}x the guess")
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
