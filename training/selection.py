"""Which epoch's model is the best, and when to stop because none is getting better (early stopping)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.api.training_job import MetricName
from modelyard.training.loop import Evaluation


@dataclass
class BestSoFar:
    metric: MetricName
    min_delta: float
    value: float | None = None
    epoch: int | None = None
    metrics: dict[str, float] | None = None
    epochs_without_improvement: int = 0

    def offer(self, epoch: int, evaluation: Evaluation, train_loss: float) -> bool:
        value = evaluation.accuracy if self.metric is MetricName.VAL_ACCURACY else evaluation.loss
        sign = 1.0 if self.metric.higher_is_better else -1.0
        if self.value is None or sign * (value - self.value) > self.min_delta:
            self.value, self.epoch, self.epochs_without_improvement = value, epoch, 0
            self.metrics = {"valAccuracy": evaluation.accuracy, "valLoss": evaluation.loss, "trainLoss": train_loss}
            return True
        self.epochs_without_improvement += 1
        return False

    def state(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "epoch": self.epoch,
            "metrics": self.metrics,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.value, self.epoch, self.metrics = state["value"], state["epoch"], state["metrics"]
        self.epochs_without_improvement = state["epochs_without_improvement"]
