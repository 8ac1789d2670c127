"""The optimisation recipe: warm-up and cosine schedule, precision choice, gradient accumulation, the NaN guard."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from torch import nn

from modelyard.api.training_job import Precision, TrainingSpec
from modelyard.training.data import BadImageTracker, Batch
from modelyard.training.distributed import Distributed
from modelyard.training.errors import ConfigError, DivergedError
from modelyard.training.loop import (
    StepReport,
    Trainee,
    make_optimizer,
    make_scheduler,
    steps_per_epoch,
    train_epoch,
)
from modelyard.training.precision import make_scaler, resolve_precision

pytestmark = pytest.mark.unit

CPU = Distributed(0, 1, 0, torch.device("cpu"))


def _learning_rates(training: TrainingSpec, steps: int) -> list[float]:
    model = nn.Linear(2, 2)
    optimizer = make_optimizer(model, training)
    scheduler = make_scheduler(optimizer, training, steps)
    rates = []
    for _ in range(training.epochs * steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warms_up_linearly_then_anneals_towards_zero() -> None:
    rates = _learning_rates(TrainingSpec(epochs=4, learning_rate=0.1, warmup_epochs=1), steps=10)
    assert rates[:10] == pytest.approx([0.01 * (step + 1) for step in range(10)])
    assert rates[10] == pytest.approx(0.1)  # the peak, where the cosine starts
    assert rates[10 + 15] == pytest.approx(0.05)  # half-way through the cosine
    assert rates[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 29 / 30)))
    assert all(later <= earlier for earlier, later in itertools.pairwise(rates[10:]))


def test_a_constant_schedule_stays_at_the_peak_after_warm_up() -> None:
    rates = _learning_rates(TrainingSpec(epochs=2, learning_rate=0.1, warmup_epochs=0, scheduler="constant"), 5)
    assert rates == pytest.approx([0.1] * 10)


def test_weight_decay_spares_biases_and_norm_scales() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    decayed, spared = make_optimizer(model, TrainingSpec(weight_decay=0.01)).param_groups
    assert decayed["weight_decay"] == 0.01
    assert [p.ndim for p in decayed["params"]] == [2]
    assert spared["weight_decay"] == 0.0
    assert len(spared["params"]) == 3


def test_auto_precision_is_fp32_on_the_cpu_and_only_fp16_gets_a_scaler() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision(Precision.AUTO, cpu) is Precision.FP32
    assert resolve_precision(Precision.BF16, cpu) is Precision.BF16
    assert make_scaler(Precision.FP16, cpu) is not None
    assert make_scaler(Precision.BF16, cpu) is None


def test_steps_per_epoch_counts_accumulation_and_the_cap() -> None:
    assert steps_per_epoch(10, TrainingSpec(gradient_accumulation_steps=3)) == 4
    assert steps_per_epoch(10, TrainingSpec(max_steps_per_epoch=2)) == 2
    with pytest.raises(ConfigError, match="smaller than one batch"):
        steps_per_epoch(0, TrainingSpec())


def _trainee(model: nn.Module, training: TrainingSpec, steps: int) -> Trainee:
    optimizer = make_optimizer(model, training)
    return Trainee(
        model=model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, training, steps),
        scaler=None,
        dtype=None,
        criterion=nn.CrossEntropyLoss(),
        device=torch.device("cpu"),
        channels_last=False,
    )


def _epoch(trainee: Trainee, batches: list[Batch], training: TrainingSpec) -> list[StepReport]:
    reports: list[StepReport] = []
    tracker = BadImageTracker(100, 0.0, lambda path, error: None)
    loader: Any = batches  # a DataLoader is only iterated and measured
    train_epoch(
        trainee, loader, epoch=1, first_step=0, training=training, max_steps=100, context=CPU,
        bad_images=tracker, on_step=lambda report: reports.append(report) if report else None,
    )  # fmt: skip
    return reports


def _batches(count: int, size: int, seed: int = 0) -> list[Batch]:
    generator = torch.Generator().manual_seed(seed)
    return [
        Batch(torch.randn(size, 3, 2, 2, generator=generator), torch.randint(0, 3, (size,), generator=generator), [])
        for _ in range(count)
    ]


def test_accumulating_two_half_batches_equals_one_whole_batch() -> None:
    whole = _batches(1, 16)
    halves = [Batch(whole[0].images[:8], whole[0].labels[:8], []), Batch(whole[0].images[8:], whole[0].labels[8:], [])]
    results = []
    for batches, accumulation in ((whole, 1), (halves, 2)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        training = TrainingSpec(gradient_accumulation_steps=accumulation, warmup_epochs=0, learning_rate=0.1)
        _epoch(_trainee(model, training, 1), batches, training)
        results.append(model[1].weight.detach().clone())
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_reports_come_every_log_interval_and_at_the_end() -> None:
    training = TrainingSpec(log_every_steps=3, warmup_epochs=0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    reports = _epoch(_trainee(model, training, 7), _batches(7, 4), training)
    assert [report.step for report in reports] == [3, 6, 7]
    assert all(report.loss > 0 and report.images_per_second > 0 for report in reports)


def test_a_nan_loss_stops_the_epoch_with_a_clear_error() -> None:
    training = TrainingSpec(log_every_steps=100, warmup_epochs=0)
    batches = _batches(4, 4)
    batches[2].images[0, 0, 0, 0] = float("nan")
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(DivergedError, match=r"NaN or infinite \(epoch 1, by step 4\).*last good checkpoint is kept"):
        _epoch(_trainee(model, training, 4), batches, training)


def test_a_step_that_fp16s_scaler_skips_does_not_advance_the_schedule() -> None:
    """At an overflowing loss scale the scaler skips the update; the schedule must wait for a real one (and PyTorch
    must not be told the scheduler ran ahead of the optimizer)."""
    training = TrainingSpec(warmup_epochs=1, learning_rate=0.1, log_every_steps=100)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    trainee = _trainee(model, training, 4)
    trainee.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # scaled gradients overflow to inf
    before = model[1].weight.detach().clone()
    [batch] = _batches(1, 4)
    _epoch(trainee, [Batch(batch.images * 1e6, batch.labels, [])], training)  # gradients ~1e6 x 2^127: inf
    assert torch.equal(model[1].weight, before)  # skipped
    assert trainee.scheduler.last_epoch == 0
    assert trainee.scaler.get_scale() == 2.0**126
    _epoch(trainee, _batches(1, 4, seed=1), training)  # a sane scale now: a real step, and the schedule moves
    assert trainee.scheduler.last_epoch == 1
