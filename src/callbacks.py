"""Composer callbacks of this project (Composer's own ones are built by name in builders.py)."""
from __future__ import annotations

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist


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
