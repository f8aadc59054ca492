"""Classification and regression metrics that take the model's logits as they come.

Composer names each metric after its class (`metrics/eval/<ClassName>`), so the thin subclasses below
exist to give short, readable names and to turn logits into what each torchmetrics class expects.
"""
from __future__ import annotations

from typing import Optional

import torch
from torchmetrics import Metric
from torchmetrics.classification import BinaryF1Score, MulticlassAccuracy, MulticlassMatthewsCorrCoef
from torchmetrics.regression import MeanSquaredError, PearsonCorrCoef, SpearmanCorrCoef


class Accuracy(MulticlassAccuracy):
    def __init__(self, num_labels: int):
        super().__init__(num_classes=num_labels, average="micro")


class F1(BinaryF1Score):
    """F1 of the positive class (label 1), as GLUE reports it for MRPC and QQP."""

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        super().update(logits.argmax(dim=-1), target)


class MatthewsCorrelation(MulticlassMatthewsCorrCoef):
    def __init__(self, num_labels: int):
        super().__init__(num_classes=num_labels)


class PearsonCorrelation(PearsonCorrCoef):
    def update(self, predictions: torch.Tensor, target: torch.Tensor) -> None:
        super().update(predictions.reshape(-1).float(), target.reshape(-1).float())


class SpearmanCorrelation(SpearmanCorrCoef):
    def update(self, predictions: torch.Tensor, target: torch.Tensor) -> None:
        super().update(predictions.reshape(-1).float(), target.reshape(-1).float())


class MSE(MeanSquaredError):
    def update(self, predictions: torch.Tensor, target: torch.Tensor) -> None:
        super().update(predictions.reshape(-1).float(), target.reshape(-1).float())


CLASSIFICATION_METRICS = {
    "accuracy": Accuracy,
    "f1": lambda num_labels: F1(),
    "matthews": MatthewsCorrelation,
}
REGRESSION_METRICS = {
    "pearson": lambda _: PearsonCorrelation(),
    "spearman": lambda _: SpearmanCorrelation(),
    "mse": lambda _: MSE(),
}


def classification_metrics(num_labels: int, names: Optional[list[str]] = None) -> list[Metric]:
    """Metrics by name; num_labels == 1 means regression. Defaults: accuracy, or Pearson and Spearman."""
    regression = num_labels == 1
    available = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    names = names or (["pearson", "spearman"] if regression else ["accuracy"])
    unknown = [name for name in names if name not in available]
    if unknown:
        kind = "regression (num_labels: 1)" if regression else "classification"
        raise ValueError(f"unknown metric(s) {', '.join(unknown)} for {kind}; valid: {', '.join(available)}")
    if "f1" in names and num_labels != 2:
        raise ValueError(f"metric f1 needs num_labels: 2 (binary), got {num_labels}")
    return [available[name](num_labels) for name in names]
