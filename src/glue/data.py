"""The eight GLUE tasks (WNLI left out): their columns, labels, evaluation splits and metrics, and loading.

The data comes from the hub's `nyu-mll/glue`, or from a local copy (`glue_data_dir`) holding one folder
per task: saved by `datasets`' `save_to_disk`, or with one `<split>.parquet` file per split (the layout
of the synthetic tasks that `make data` writes to data/synthetic-glue).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from src.classification_data import ClassificationData
from src.config import ConfigError

HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    """`eval_splits` maps each validation split to the suffix of its metric names (MNLI has two).

    `metrics` are reported; `scored_metrics` enter the GLUE average (the seed averages only
    Spearman for STS-B, and reports Pearson beside it here).
    """

    name: str
    text_columns: tuple[str, ...]
    num_labels: int
    metrics: tuple[str, ...]
    scored_metrics: tuple[str, ...]
    eval_splits: tuple[tuple[str, str], ...] = (("validation", ""),)

    def metric_keys(self, metric_names: Optional[tuple[str, ...]] = None) -> list[str]:
        """The names a job's results use: `accuracy`, `f1`, ..., or `accuracy_matched` for MNLI."""
        return [f"{metric}{suffix}" for _, suffix in self.eval_splits for metric in metric_names or self.metrics]

    def data(self, max_seq_len: int, data_dir: Optional[str] = None) -> ClassificationData:
        if data_dir:
            return ClassificationData(text_columns=list(self.text_columns), num_labels=self.num_labels,
                                      path=str(Path(data_dir) / self.name), max_seq_len=max_seq_len)
        return ClassificationData(text_columns=list(self.text_columns), num_labels=self.num_labels,
                                  path=HUB_DATASET, name=self.name, max_seq_len=max_seq_len)


GLUE_TASKS = {task.name: task for task in (
    GlueTask("mnli", ("premise", "hypothesis"), 3, ("accuracy",), ("accuracy",),
             (("validation_matched", "_matched"), ("validation_mismatched", "_mismatched"))),
    GlueTask("qqp", ("question1", "question2"), 2, ("accuracy", "f1"), ("accuracy", "f1")),
    GlueTask("qnli", ("question", "sentence"), 2, ("accuracy",), ("accuracy",)),
    GlueTask("sst2", ("sentence",), 2, ("accuracy",), ("accuracy",)),
    GlueTask("cola", ("sentence",), 2, ("matthews",), ("matthews",)),
    GlueTask("stsb", ("sentence1", "sentence2"), 1, ("spearman", "pearson"), ("spearman",)),
    GlueTask("mrpc", ("sentence1", "sentence2"), 2, ("accuracy", "f1"), ("accuracy", "f1")),
    GlueTask("rte", ("sentence1", "sentence2"), 2, ("accuracy",), ("accuracy",)),
)}


def glue_task(name: str) -> GlueTask:
    if name not in GLUE_TASKS:
        raise ConfigError(f"unknown GLUE task {name!r} in tasks; valid: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[name]


def check_glue_data_dir(data_dir: str, task_names: list[str]) -> None:
    """Each task to run has its folder in a local copy (the splits are checked when a job loads them)."""
    missing = [name for name in task_names if not (Path(data_dir) / name).is_dir()]
    if missing:
        raise ConfigError(
            f"glue_data_dir {data_dir} has no folder for {', '.join(missing)} (expected <dir>/<task>/, saved "
            f"by datasets' save_to_disk or holding <split>.parquet files); `make data` writes the synthetic "
            f"tasks to data/synthetic-glue")
