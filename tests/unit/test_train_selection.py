"""Which epoch is the best, and early stopping's count of epochs without improvement."""

from __future__ import annotations

import pytest

from modelyard.api.training_job import MetricName
from modelyard.training.loop import Evaluation
from modelyard.training.selection import BestSoFar

pytestmark = pytest.mark.unit


def test_accuracy_must_rise_by_more_than_min_delta() -> None:
    best = BestSoFar(MetricName.VAL_ACCURACY, min_delta=0.01)
    assert best.offer(1, Evaluation(loss=1.0, accuracy=0.50, images=10), train_loss=2.0)
    assert not best.offer(2, Evaluation(loss=0.9, accuracy=0.505, images=10), train_loss=1.5)  # within min_delta
    assert best.offer(3, Evaluation(loss=0.8, accuracy=0.60, images=10), train_loss=1.0)
    assert not best.offer(4, Evaluation(loss=0.7, accuracy=0.55, images=10), train_loss=0.9)
    assert (best.epoch, best.value, best.epochs_without_improvement) == (3, 0.60, 1)
    assert best.metrics == {"valAccuracy": 0.60, "valLoss": 0.8, "trainLoss": 1.0}


def test_loss_must_fall_and_the_state_survives_a_checkpoint() -> None:
    best = BestSoFar(MetricName.VAL_LOSS, min_delta=0.0)
    best.offer(1, Evaluation(loss=1.0, accuracy=0.1, images=10), train_loss=1.0)
    assert not best.offer(2, Evaluation(loss=1.2, accuracy=0.9, images=10), train_loss=1.0)  # accuracy is not it
    restored = BestSoFar(MetricName.VAL_LOSS, min_delta=0.0)
    restored.load(best.state())
    assert (restored.epoch, restored.value, restored.epochs_without_improvement) == (1, 1.0, 1)
    assert restored.offer(3, Evaluation(loss=0.5, accuracy=0.5, images=10), train_loss=0.4)
