"""One GLUE fine-tuning job (a task and a seed), table-driven: `TASK_DEFAULTS` holds each task's
hyperparameters (the seed's: mosaicml/examples' per-task job classes), `run_job` builds the model,
dataloaders and trainer through src/builders.py and returns the final validation metrics.

A job is a plain `GlueJob` (picklable), so that glue.py can run it in this process or in a worker
process of its own.
"""
from __future__ import annotations

import atexit
import gc
import time
import traceback
from dataclasses import dataclass
from typing import Any, Optional

import torch
from composer.core import Evaluator
from composer.utils import reproducibility

from src.builders import TRAINER_KEYS, TRAINING_KEYS, build_model, build_trainer
from src.classification_data import (START_FROM_CHECKPOINT, build_classification_dataloader,
                                     build_classification_dataset)
from src.config import leftover_keys, report_unused
from src.glue.data import GLUE_TASKS
from src.loggers import log_config
from src.metrics import classification_metrics

# epochs, batch size, learning rate (weight decay = lr / 10, except RTE's = lr) and eval interval per task.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    task: {"max_duration": epochs, "batch_size": batch, "lr": lr, "weight_decay": decay, "eval_interval": every}
    for task, epochs, batch, lr, decay, every in (
        ("mnli", "3ep", 48, 5.0e-5, 5.0e-6, "2300ba"),
        ("rte", "3ep", 16, 1.0e-5, 1.0e-5, "100ba"),
        ("qqp", "5ep", 16, 3.0e-5, 3.0e-6, "2000ba"),
        ("cola", "10ep", 32, 5.0e-5, 5.0e-6, "250ba"),
        ("mrpc", "10ep", 32, 8.0e-5, 8.0e-6, "100ba"),
        ("qnli", "10ep", 16, 1.0e-5, 1.0e-6, "1000ba"),
        ("sst2", "3ep", 16, 3.0e-5, 3.0e-6, "500ba"),
        ("stsb", "10ep", 32, 3.0e-5, 3.0e-6, "200ba"),
    )
}
# Only MNLI keeps a checkpoint by default: its final one is where RTE, MRPC and STS-B start. A rerun
# of the sweep overwrites its checkpoints.
CHECKPOINT_DEFAULTS = {"mnli": {"save_num_checkpoints_to_keep": 1, "save_weights_only": True}}
# Keys of tasks.<task>.trainer_kwargs: the job's own, and every trainer key of src/builders.py.
JOB_KEYS = ("batch_size", "lr", "weight_decay", "max_seq_len")
TRAINER_KWARGS = (*JOB_KEYS, *TRAINER_KEYS, *TRAINING_KEYS)


@dataclass
class GlueJob:
    """Everything one job needs. `trainer` is a trainer config for `src.builders.build_trainer` (optimizer,
    scheduler, algorithms, callbacks, loggers and trainer keys), without load_path (`start_checkpoint`)."""

    task: str
    seed: int
    run_name: str
    model: dict[str, Any]
    trainer: dict[str, Any]
    batch_size: int
    max_seq_len: int
    data_dir: Optional[str] = None
    start_checkpoint: Optional[str] = None


def job_settings(task: str, trainer_kwargs: dict[str, Any], max_seq_len: int) -> dict[str, Any]:
    """The task's defaults with the config's `tasks.<task>.trainer_kwargs` on top."""
    return {"max_seq_len": max_seq_len, "save_num_checkpoints_to_keep": 0, "save_overwrite": True,
            **TASK_DEFAULTS[task], **CHECKPOINT_DEFAULTS.get(task, {}), **trainer_kwargs}


def metric_class_names(task_name: str) -> dict[str, str]:
    """Our metric names (`accuracy`) -> the names Composer reports them under (`Accuracy`)."""
    task = GLUE_TASKS[task_name]
    metrics = classification_metrics(task.num_labels, list(task.metrics))
    return {name: type(metric).__name__ for name, metric in zip(task.metrics, metrics)}


def run_job(job: GlueJob) -> dict[str, Any]:
    """Fine-tune, evaluate on the task's validation split(s); metrics as `{"accuracy_matched": 0.84, ...}`."""
    reproducibility.seed_all(job.seed)
    task = GLUE_TASKS[job.task]
    unused: list[str] = []
    model = build_model(job.model, unused, num_labels=task.num_labels, metric_names=list(task.metrics))
    tokenizer = model.tokenizer
    data = task.data(job.max_seq_len, job.data_dir)
    train_set = build_classification_dataset(data, "train", tokenizer, train=True)
    train_loader = build_classification_dataloader(train_set, tokenizer, job.max_seq_len, job.batch_size,
                                                   shuffle=True, seed=job.seed)
    class_names = metric_class_names(job.task)
    evaluators = []
    for split, suffix in task.eval_splits:
        eval_set = build_classification_dataset(data, split, tokenizer)
        loader = build_classification_dataloader(eval_set, tokenizer, job.max_seq_len, job.batch_size,
                                                 shuffle=False)
        evaluators.append(Evaluator(label=f"glue_{task.name}{suffix}", dataloader=loader,
                                    metric_names=list(class_names.values())))
    trainer_cfg = dict(job.trainer)
    if job.start_checkpoint:
        trainer_cfg.update(load_path=job.start_checkpoint, **START_FROM_CHECKPOINT)
    trainer = build_trainer(trainer_cfg, model, train_loader, evaluators, unused)
    report_unused(unused + leftover_keys(trainer_cfg))
    log_config(trainer, {"task": job.task, "seed": job.seed, "start_checkpoint": job.start_checkpoint,
                         "max_seq_len": job.max_seq_len, "batch_size": job.batch_size, "model": job.model,
                         "trainer": job.trainer})
    try:
        trainer.fit()
        metrics = {f"{name}{suffix}": trainer.state.eval_metrics[f"glue_{task.name}{suffix}"][class_name]
                   .compute().item()
                   for _, suffix in task.eval_splits for name, class_name in class_names.items()}
        checkpoints = list(trainer.saved_checkpoints)
    finally:
        trainer.close()
        atexit.unregister(trainer.engine._close)  # it would keep the trainer (and its GPU memory) alive
    return {"metrics": metrics, "final_checkpoint": checkpoints[-1] if checkpoints else None}


def run_job_safely(job: GlueJob) -> dict[str, Any]:
    """`run_job`, with a failure (an exception, CUDA out of memory) returned as a result, not raised."""
    started = time.time()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"[glue] {job.run_name}: starting on {device}, from {job.start_checkpoint or 'scratch'}", flush=True)
    try:
        result = {"status": "ok", **run_job(job)}
    except Exception as error:  # noqa: BLE001 - one job's failure must not stop the others
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc(limit=-4)}
    gc.collect()  # the finished trainer, before the next job in this process
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    result.update(seconds=round(time.time() - started, 1), device=device, start_checkpoint=job.start_checkpoint)
    print(f"[glue] {job.run_name}: {result['status']} after {result['seconds']}s", flush=True)
    return result

