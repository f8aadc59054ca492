"""Our own Composer loggers: metrics as JSON lines (`jsonl`), and Composer's W&B logger made to work with
current wandb releases.

    loggers:
      jsonl:
        path: ./runs/{run_name}/metrics.jsonl

Each line is one `log_metrics` call: `{"step": <batch>, "<metric name>": <value>, ...}` with Composer's metric
names (`loss/train/total`, `metrics/eval/MaskedAccuracy`, `lr-DecoupledAdamW/group0`,
`throughput/samples_per_sec`, ...); lines `{"hyperparameters": {...}}` hold Composer's hyperparameters and
the run's config (`log_config`). `python -m src.plot_metrics FILE --out plot.png` draws the file.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional, TextIO

import numpy as np
import torch
from composer.core import State
from composer.loggers import Logger, LoggerDestination
from composer.loggers import WandBLogger as ComposerWandBLogger
from composer.utils import dist, format_name_with_dist
from omegaconf import DictConfig, OmegaConf

from src.config import redact


def plain(value: Any) -> Any:
    """A JSON-ready copy: tensors and numpy scalars to numbers, NaN/inf to null (JSON has neither)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.tolist()  # a number for a 0-d tensor
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def log_config(trainer, cfg: DictConfig | Mapping[str, Any]) -> None:
    """Give every logger the run's whole config (interpolations resolved, secrets masked) as hyperparameters:
    W&B's run config, TensorBoard's hparams, a `{"hyperparameters": ...}` line of the jsonl file."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    trainer.logger.log_hyperparameters(redact(plain))


class JSONLinesLogger(LoggerDestination):
    """Appends one JSON object per `log_metrics` call to `path` (`{run_name}`, `{rank}` are filled in).

    Only global rank 0 writes unless `rank_zero_only` is false (then put `{rank}` in the path). The file is
    appended to, so a resumed run continues it; each line is flushed as it is written.
    """

    def __init__(self, path: str = "./runs/{run_name}/metrics.jsonl", rank_zero_only: bool = True):
        self.path_template = path
        self.rank_zero_only = rank_zero_only
        self.path: Optional[str] = None
        self.file: Optional[TextIO] = None
        self.pending: list[dict[str, Any]] = []  # lines logged before init (the hyperparameters)

    @property
    def enabled(self) -> bool:
        return not self.rank_zero_only or dist.get_global_rank() == 0

    def init(self, state: State, logger: Logger) -> None:
        del logger  # unused
        if not self.enabled:
            return
        self.path = format_name_with_dist(self.path_template, state.run_name)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.file = open(self.path, "a", encoding="utf-8")
        for line in self.pending:
            self._write(line)
        self.pending.clear()

    def _write(self, line: dict[str, Any]) -> None:
        if self.file is None:
            self.pending.append(line)
            return
        self.file.write(json.dumps(plain(line)) + "\n")
        self.file.flush()

    def log_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        if self.enabled:
            self._write({"hyperparameters": hyperparameters})

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        if self.enabled:
            self._write({"step": step, **metrics})

    def close(self, state: State, logger: Logger) -> None:
        del state, logger  # unused
        if self.file is not None:
            self.file.close()
            self.file = None


class WandBLogger(ComposerWandBLogger):
    """Composer's W&B logger, working with current wandb releases.

    Composer 0.32.1 (its last release) reads the run's address with `wandb.run.get_url()`, which wandb has
    since removed in favour of the `url` property; without it the Trainer fails at INIT. Everything else is
    Composer's.
    """

    def init(self, state: State, logger: Logger) -> None:
        from wandb.sdk.wandb_run import Run

        if not hasattr(Run, "get_url"):
            Run.get_url = lambda run: run.url  # the name Composer calls
        super().init(state, logger)
