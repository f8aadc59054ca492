"""Fine-tune BERT on a classification (or regression) dataset named in the config.

    composer sequence_classification.py yamls/test/sequence_classification.yaml                        # HF BERT
    composer sequence_classification.py yamls/test/sequence_classification.yaml model.name=mosaic_bert
    composer sequence_classification.py yamls/finetuning/mosaic-bert-base-uncased.yaml load_path=CKPT

The `dataset` section says where the examples are (a hub dataset, a local folder or local files), which
one or two columns hold the text, which the label, and `num_labels` (1 = regression); `metrics` picks
what is reported. `load_path` starts from a pretraining checkpoint (its weights only).
"""
from __future__ import annotations

import sys
from typing import Optional

from composer import Trainer
from composer.utils import dist
from omegaconf import DictConfig

from src.builders import build_model, build_trainer, device_batch_size, start_run
from src.classification_data import (START_FROM_CHECKPOINT, build_classification_dataloader,
                                     build_classification_dataset, check_start_checkpoint, pop_classification_data)
from src.config import leftover_keys, pop_typed, report_unused, run_cli
from src.loggers import log_config


def main(cfg: DictConfig, return_trainer: bool = False, do_train: bool = True) -> Optional[Trainer]:
    config = start_run(cfg)
    seed = config["seed"]
    unused: list[str] = []

    dataset_cfg = pop_typed(config, "dataset", dict)
    data = pop_classification_data(dataset_cfg)
    num_workers = pop_typed(dataset_cfg, "num_workers", int, 0, section="dataset")
    unused.extend(f"dataset.{key}" for key in leftover_keys(dataset_cfg))
    model = build_model(pop_typed(config, "model", dict), unused, num_labels=data.num_labels,
                        metric_names=pop_typed(config, "metrics", list, None))

    train_batch = device_batch_size(pop_typed(config, "global_train_batch_size", int, positive=True))
    eval_batch = pop_typed(config, "device_eval_batch_size", int, positive=True)
    train_set = build_classification_dataset(data, data.train_split, model.tokenizer, train=True)
    eval_set = build_classification_dataset(data, data.eval_split, model.tokenizer)
    train_loader = build_classification_dataloader(train_set, model.tokenizer, data.max_seq_len, train_batch,
                                                   shuffle=True, num_workers=num_workers, seed=seed)
    eval_loader = build_classification_dataloader(eval_set, model.tokenizer, data.max_seq_len, eval_batch,
                                                  shuffle=False, num_workers=num_workers)

    load_path = config.get("load_path")
    if load_path:
        if "://" not in load_path:  # a remote one is fetched by the trainer
            check_start_checkpoint(model, load_path)
        for key, value in START_FROM_CHECKPOINT.items():
            config.setdefault(key, value)
    trainer = build_trainer(config, model, train_loader, eval_loader, unused)
    report_unused(unused + leftover_keys(config))
    log_config(trainer, cfg)

    if do_train:
        trainer.fit()
        summarize(trainer)
    return trainer if return_trainer else None


def summarize(trainer: Trainer) -> None:
    """The final eval metrics on one line."""
    metrics = trainer.state.eval_metrics.get("eval", {})
    if metrics and dist.get_global_rank() == 0:
        values = ", ".join(f"{name} {metric.compute().item():.4f}" for name, metric in metrics.items())
        print(f"Final eval: {values}", flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
