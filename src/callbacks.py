"""Composer callbacks of this project (Composer's own ones are built by name in builders.py)."""
from __future__ import annotations

import json
import math
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch
from composer.callbacks import CheckpointSaver
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from src.config import ConfigError
from src.trainer import LossReader, host_all_reduce


class MostFrequentTokenBaseline(Callback):
    """Logs the MaskedAccuracy of always guessing the eval set's most frequent masked token.

    A model's MaskedAccuracy means little on its own; beside this number it says how much of the
    language the model has learned beyond token frequencies. Logged as
    `metrics/<eval label>/MostFrequentTokenAccuracy` at the end of each evaluation.
    """

    def __init__(self):
        self.counts: dict[str, torch.Tensor] = {}
        self.latest: dict[str, float] = {}

    def eval_start(self, state: State, logger: Logger) -> None:
        self.counts[state.dataloader_label] = torch.zeros(0, dtype=torch.long)

    def eval_batch_end(self, state: State, logger: Logger) -> None:
        labels = state.batch.get("labels")
        if labels is None:  # HuggingFaceModel.eval_forward moves the labels from the batch to the model
            labels = getattr(getattr(state.model, "module", state.model), "labels", None)
        if labels is None:
            return
        targets = labels[labels != -100].detach().to("cpu", torch.long)
        counts = self.counts[state.dataloader_label]
        batch_counts = torch.bincount(targets, minlength=counts.numel())
        if batch_counts.numel() > counts.numel():
            counts = torch.nn.functional.pad(counts, (0, batch_counts.numel() - counts.numel()))
        self.counts[state.dataloader_label] = counts + batch_counts

    def eval_end(self, state: State, logger: Logger) -> None:
        label = state.dataloader_label
        counts = self.counts.pop(label)
        # Ranks may have seen different vocabularies' worth of ids: pad to a common length, then sum.
        size = torch.tensor([counts.numel()])
        dist.all_reduce(size, reduce_operation="MAX")
        counts = torch.nn.functional.pad(counts, (0, int(size.item()) - counts.numel()))
        dist.all_reduce(counts, reduce_operation="SUM")
        total = counts.sum().item()
        if total == 0:
            return
        self.latest[label] = counts.max().item() / total
        logger.log_metrics({f"metrics/{label}/MostFrequentTokenAccuracy": self.latest[label]})


class BatchLog(Callback):
    """Appends one JSON line per training batch: `{"batch": n, "loss": ..., "sample_ids": [...]}`.

    `sample_ids` are the dataset indices the collator put in the batch (src/text_data.py), so a log says
    exactly which samples a run saw in which order, and with which loss: what a resumed run is compared
    on, and where to look when a batch goes bad. `path` may contain `{rank}` (one file per rank).
    A batch's line is written once its loss has been read: at its end, or with `async_loss`
    (src/trainer.py) one batch later.
    """

    def __init__(self, path: str):
        self.path = path
        self.sample_ids: list[int] = []
        self.waiting: dict[int, list[int]] = {}  # batch -> its sample ids, until its loss is read

    def after_dataloader(self, state: State, logger: Logger) -> None:
        ids = state.batch.get("sample_id") if isinstance(state.batch, Mapping) else None
        self.sample_ids = [] if ids is None else ids.tolist()

    def batch_end(self, state: State, logger: Logger) -> None:
        self.waiting[int(state.timestamp.batch)] = self.sample_ids
        self._write_read_batches(state)

    def fit_end(self, state: State, logger: Logger) -> None:
        self._write_read_batches(state)

    def _write_read_batches(self, state: State) -> None:
        losses = state.total_loss_dict if state.total_loss_dict is not None else {}
        loss_batch = getattr(losses, "batch", int(state.timestamp.batch))  # a plain dict: this batch's
        read = sorted(b for b in self.waiting if b <= loss_batch)
        if not read:
            return
        with open(self.path.format(rank=dist.get_global_rank()), "a") as file:
            for batch in read:
                loss = losses.get("loss/train/total") if batch == loss_batch else None
                record = {"batch": batch, "loss": loss, "sample_ids": self.waiting.pop(batch)}
                file.write(json.dumps(record) + "\n")


class NonFiniteLossError(RuntimeError):
    pass


def _losses(loss: Any) -> list[torch.Tensor]:
    if isinstance(loss, torch.Tensor):
        return [loss]
    if isinstance(loss, Mapping):
        return [value for value in loss.values() if isinstance(value, torch.Tensor)]
    if isinstance(loss, Sequence):
        return [value for value in loss if isinstance(value, torch.Tensor)]
    return []


def latest_checkpoint(state: State) -> Optional[str]:
    saver = next((cb for cb in state.callbacks if isinstance(cb, CheckpointSaver)), None)
    return saver.saved_checkpoints[-1] if saver and saver.saved_checkpoints else None


class NonFiniteLossGuard(Callback):
    """Stops training at the first NaN or infinite loss, before a checkpoint is written from it.

    By default it reads the batch's loss at `BATCH_END` from `state.total_loss_dict`: Python floats that
    Composer has already averaged over the ranks (a NaN on any rank makes every rank's average NaN, so all
    ranks stop together) and already waited for, so the check costs the step nothing. The bad batch's
    update has then reached the weights in memory, but `BATCH_END` comes before `BATCH_CHECKPOINT`: no
    checkpoint is written from it, and the last checkpoint stays the last good one.

    `before_update=True` checks at `AFTER_LOSS` instead, before the backward pass and the optimizer step, so
    the weights in memory also stay those of the previous batch (to inspect them). That needs the loss's
    value in the middle of the step: one GPU wait per batch (3,588 vs 3,734 samples/s, -4%, side by side
    on two H200s; docs/performance.md). The message names the batch and its sample ids either way.
    """

    def __init__(self, before_update: bool = False):
        self.before_update = before_update

    def after_loss(self, state: State, logger: Logger) -> None:
        if not self.before_update:
            return
        losses = _losses(state.loss)
        # One flag computed on the device and one wait for it (`.item()`): the check costs the step a
        # single synchronization, not one per loss plus one for the all-reduce. Every rank joins the
        # all-reduce, even one without a loss tensor.
        if losses:
            flag = torch.stack([(~torch.isfinite(loss.detach())).any() for loss in losses]).any()
            flag = flag.to(torch.int32).reshape(1)
        else:
            flag = state.device.tensor_to_device(torch.zeros(1, dtype=torch.int32))
        dist.all_reduce(flag, reduce_operation="MAX")
        if flag.item():
            values = ", ".join(str(loss.detach().float().cpu().tolist()) for loss in losses)
            self._stop(state, values, "training stopped before the optimizer step, so no weight was updated from it")

    def batch_end(self, state: State, logger: Logger) -> None:
        if not self.before_update:
            self.check_losses(state)

    def check_losses(self, state: State) -> None:
        """Stop if the losses last read (`state.total_loss_dict`) are not finite. With `async_loss` they are
        the previous batch's, and src/trainer.py also calls this before each checkpoint."""
        losses = getattr(state, "total_loss_dict", None) or {}  # None when fp16 loss scaling skipped the step
        if all(math.isfinite(value) for value in losses.values()):
            return
        values = ", ".join(f"{name} {value}" for name, value in losses.items())
        self._stop(state, values, "training stopped before any checkpoint was written from it (its update "
                                  "reached the weights in memory; stop_on_non_finite_loss: before_update "
                                  "stops before the update, at one GPU wait per batch)",
                   batch=getattr(losses, "batch", None), ids=getattr(losses, "sample_ids", None))

    def _stop(self, state: State, values: str, what_happened: str, batch: Optional[int] = None,
              ids: Optional[torch.Tensor] = None) -> None:
        if batch is None:  # the current batch
            batch = int(state.timestamp.batch) + (1 if self.before_update else 0)
            ids = state.batch.get("sample_id") if isinstance(state.batch, Mapping) else None
        checkpoint = latest_checkpoint(state)
        raise NonFiniteLossError(
            f"the training loss of batch {batch} (epoch {int(state.timestamp.epoch)}) is not finite ({values}); "
            + what_happened
            + (f"; the last checkpoint, {checkpoint}, is from before it" if checkpoint else "")
            + (f". Sample ids in this batch (on this rank): {ids.tolist()}" if ids is not None else "")
            + ". Usual causes: a learning rate too high (optimizer.lr), no gradient clipping "
              "(algorithms.gradient_clipping), fp16 overflow (use precision: amp_bf16), or bad data in those samples."
        )


def non_finite_loss_guards(setting: bool | str) -> list[NonFiniteLossGuard]:
    """`stop_on_non_finite_loss`: true (free: checked at batch end, before any checkpoint of the batch),
    before_update (before the optimizer step, at one GPU wait per batch) or false."""
    if setting not in (True, False, "before_update"):
        raise ConfigError(f"stop_on_non_finite_loss must be true, false or before_update, got {setting!r}")
    return [NonFiniteLossGuard(before_update=setting == "before_update")] if setting else []


PREEMPTED_EXIT_STATUS = 143  # 128 + SIGTERM, what Composer's own handler and most shells use


class Preempted(SystemExit):
    """Raised by main.main() after a SIGTERM: the checkpoint is saved; the process exits with status 143."""

    def __init__(self, message: str):
        super().__init__(PREEMPTED_EXIT_STATUS)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PreemptionCheckpoint(Callback):
    """On SIGTERM (what Slurm, Kubernetes and most schedulers send before they kill a job): finish the
    current batch, save a checkpoint of it, skip evaluation and stop.

    The handler only sets a flag, so a checkpoint being written when the signal arrives is finished first.
    The flag is acted on at BATCH_END, or at BATCH_CHECKPOINT when the signal came during an evaluation;
    ranks agree through an all-reduce, so all of them stop after the same batch. The checkpoint is written
    by the trainer's own CheckpointSaver (the same file names, `latest` link and uploads as any other), so a
    restart with `autoresume: true` continues from it. Without a save_folder the run stops unsaved.
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGTERM,)):
        self.signals = tuple(signals)
        self.received: Optional[int] = None
        self.stopped_at: Optional[int] = None
        self.checkpoint: Optional[str] = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def fit_start(self, state: State, logger: Logger) -> None:
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def batch_end(self, state: State, logger: Logger) -> None:
        self._maybe_stop(state, logger)

    def batch_checkpoint(self, state: State, logger: Logger) -> None:
        self._maybe_stop(state, logger)

    def _maybe_stop(self, state: State, logger: Logger) -> None:
        if self.stopped_at is not None:
            return
        if dist.get_world_size() > 1:  # the ranks agree, on the CPU (no wait for the GPU)
            self.received = self.received or int(host_all_reduce([self.received or 0], op="max")[0])
        if not self.received:
            return
        self.stopped_at = int(state.timestamp.batch)
        saver = next((cb for cb in state.callbacks if isinstance(cb, CheckpointSaver)), None)
        if saver is not None and saver.last_checkpoint_batch != state.timestamp.batch:
            for reader in (cb for cb in state.callbacks if isinstance(cb, LossReader)):
                reader.read_now(check=True)  # async_loss: the batch's loss is checked before it is saved
            saver._save_checkpoint(state, logger)
        self.checkpoint = latest_checkpoint(state) if saver is not None else None
        for evaluator in state.evaluators:
            evaluator.eval_interval = lambda state, event: False
        state.stop_training()
        if dist.get_global_rank() == 0:
            print(f"{signal.Signals(self.received).name} received: stopped after batch {self.stopped_at}; "
                  + (f"saved {self.checkpoint}" if self.checkpoint else "no save_folder, so nothing was saved"),
                  file=sys.stderr, flush=True)

    def fit_end(self, state: State, logger: Logger) -> None:
        self.post_close()

    def post_close(self) -> None:  # the handlers that were there before fit_start (Composer's own)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
