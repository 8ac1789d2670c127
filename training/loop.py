"""The optimisation recipe and one epoch of it: optimizer, warm-up + cosine schedule, mixed precision, gradient
accumulation and clipping, the NaN/inf guard, and evaluation.

Values leave the device only at log intervals and epoch ends, so a GPU is never made to wait for the host between
steps; the NaN/inf guard is a flag kept on the device and checked there.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from modelyard.api.training_job import Optimizer, Precision, Scheduler, TrainingSpec
from modelyard.training.data import BadImageTracker, Batch
from modelyard.training.distributed import Distributed, all_reduce_max, all_reduce_sum, wrap_model
from modelyard.training.errors import ConfigError, DivergedError
from modelyard.training.precision import autocast, autocast_dtype, make_scaler, resolve_precision


def make_optimizer(model: nn.Module, training: TrainingSpec) -> torch.optim.Optimizer:
    # Weight decay on weight matrices and kernels only: decaying norms' scales and biases only hurts.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": training.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if training.optimizer is Optimizer.SGD:
        return torch.optim.SGD(groups, lr=training.learning_rate, momentum=0.9, nesterov=True)
    # One fused kernel for the whole update on CUDA instead of a dozen launches per parameter group.
    fused = all(p.is_cuda for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=training.learning_rate, fused=fused or None)


def make_scheduler(
    optimizer: torch.optim.Optimizer, training: TrainingSpec, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmupEpochs`, then cosine annealing to zero at the last step (or constant)."""
    total = max(training.epochs * steps_per_epoch, 1)
    warmup = min(round(training.warmup_epochs * steps_per_epoch), total)
    cosine = training.scheduler is Scheduler.COSINE

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not cosine:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def steps_per_epoch(batches: int, training: TrainingSpec) -> int:
    steps = math.ceil(batches / training.gradient_accumulation_steps)
    if training.max_steps_per_epoch is not None:
        steps = min(steps, training.max_steps_per_epoch)
    if steps < 1:
        raise ConfigError("an epoch has no optimizer step: the training set is smaller than one batch per process")
    return steps


@dataclass
class StepReport:
    epoch: int
    step: int  # optimizer steps since the start of training
    loss: float  # mean over the interval
    learning_rate: float
    images_per_second: float  # all processes
    data_wait_fraction: float


@dataclass
class EpochResult:
    train_loss: float
    images: int  # this process
    steps: int
    seconds: float
    data_wait_seconds: float


@dataclass
class Trainee:
    """What a training step touches."""

    model: nn.Module  # possibly DDP-wrapped and compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    dtype: torch.dtype | None
    criterion: nn.Module
    device: torch.device
    channels_last: bool


def prepare_trainee(
    model: nn.Module, training: TrainingSpec, context: Distributed, steps_per_epoch: int
) -> tuple[Trainee, Precision]:
    """Everything between a built model and the first step, for the trainer and the benchmarks alike (so a benchmark
    measures what trains): the model on the device in the recipe's memory format, optimizer, schedule, loss-scaler,
    loss, cuDNN autotuning, the DDP wrap and torch.compile. `model` itself stays the unwrapped module (its
    parameters are the ones trained): load a checkpoint into it and save it, not `trainee.model`."""
    device = context.device
    model.to(device)
    if training.channels_last:
        model.to(memory_format=torch.channels_last)
    precision = resolve_precision(training.precision, device)
    optimizer = make_optimizer(model, training)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
    wrapped = wrap_model(model, context)
    compiled = torch.compile(wrapped, mode=compile_mode(training)) if training.compile else wrapped
    trainee = Trainee(
        model=compiled,  # type: ignore[arg-type]
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, training, steps_per_epoch),
        scaler=make_scaler(precision, device),
        dtype=autocast_dtype(precision),
        criterion=nn.CrossEntropyLoss(label_smoothing=training.label_smoothing),
        device=device,
        channels_last=training.channels_last,
    )
    return trainee, precision


def compile_mode(training: TrainingSpec) -> str | None:
    """torch.compile's mode for the recipe: reduce-overhead is the one that replays CUDA graphs (on a CPU it compiles
    as the default mode does)."""
    return "reduce-overhead" if training.cuda_graphs else None


class BatchSource(Protocol):
    """What an epoch iterates: a DataLoader of `Batch`es, or the gpu pipeline's DeviceLoader."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Batch]: ...


def to_device(batch: Batch, trainee: Trainee) -> tuple[torch.Tensor, torch.Tensor]:
    memory_format = torch.channels_last if trainee.channels_last else torch.contiguous_format
    images = batch.images.to(trainee.device, non_blocking=True, memory_format=memory_format)
    return images, batch.labels.to(trainee.device, non_blocking=True)


def _timed(loader: BatchSource) -> Iterator[tuple[Batch, float]]:
    """Each batch with the seconds spent waiting for it (with the gpu pipeline: also preparing it on the device)."""
    iterator = iter(loader)
    while True:
        started = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield batch, time.perf_counter() - started


def train_epoch(
    trainee: Trainee,
    loader: BatchSource,
    *,
    epoch: int,
    first_step: int,
    training: TrainingSpec,
    max_steps: int,
    context: Distributed,
    bad_images: BadImageTracker,
    on_step: Callable[[StepReport | None], None],
) -> EpochResult:
    """One pass (or `max_steps` optimizer steps); `on_step` gets a report every logEverySteps steps, None between."""
    model, optimizer, accumulation = trainee.model, trainee.optimizer, training.gradient_accumulation_steps
    model.train()
    # DDP all-reduces gradients on every backward; inside an accumulation window only the last one needs it. With
    # torch.compile, no_sync is on the DDP module the compiled wrapper holds.
    inner = getattr(model, "_orig_mod", model)
    ddp = inner if isinstance(inner, DistributedDataParallel) else None
    device = trainee.device
    loss_sum = torch.zeros((), device=device)
    nonfinite = torch.zeros((), device=device)
    interval_loss = torch.zeros((), device=device)
    interval_images = images_seen = steps = micro = 0
    epoch_start = interval_start = time.perf_counter()
    data_wait = interval_wait = 0.0
    batches_left = len(loader)
    for batch, waited in _timed(loader):
        data_wait += waited
        interval_wait += waited
        batches_left -= 1
        bad_images.record(batch.bad)
        images, labels = to_device(batch, trainee)
        micro += 1
        window_closes = micro == accumulation or batches_left == 0
        sync = ddp.no_sync() if ddp is not None and not window_closes else None
        with sync or contextlib.nullcontext():
            with autocast(device, trainee.dtype):
                logits = model(images)
            loss = trainee.criterion(logits.float(), labels)
            # Averaged over the window (a short last window at the epoch's end counts a little less).
            backward_loss = loss / accumulation
            if trainee.scaler is not None:
                trainee.scaler.scale(backward_loss).backward()
            else:
                backward_loss.backward()
        detached = loss.detach()
        nonfinite = torch.maximum(nonfinite, (~torch.isfinite(detached)).float())
        loss_sum += detached * labels.numel()
        interval_loss += detached * labels.numel()
        images_seen += labels.numel()
        interval_images += labels.numel()
        if not window_closes:
            continue
        if _optimizer_step(trainee, training):
            trainee.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        steps += 1
        micro = 0
        last = steps >= max_steps or batches_left == 0
        if steps % training.log_every_steps == 0 or last:
            _check_finite(nonfinite, context, epoch, first_step + steps)
            elapsed = max(time.perf_counter() - interval_start, 1e-9)
            on_step(
                StepReport(
                    epoch=epoch,
                    step=first_step + steps,
                    loss=float(interval_loss.item()) / max(interval_images, 1),
                    learning_rate=float(optimizer.param_groups[0]["lr"]),
                    images_per_second=interval_images * context.world_size / elapsed,
                    data_wait_fraction=min(interval_wait / elapsed, 1.0),
                )
            )
            interval_loss.zero_()
            interval_images, interval_wait, interval_start = 0, 0.0, time.perf_counter()
        else:
            on_step(None)
        if last:
            break
    _check_finite(nonfinite, context, epoch, first_step + steps)
    return EpochResult(
        train_loss=float(loss_sum.item()) / max(images_seen, 1),
        images=images_seen,
        steps=steps,
        seconds=time.perf_counter() - epoch_start,
        data_wait_seconds=data_wait,
    )


def _optimizer_step(trainee: Trainee, training: TrainingSpec) -> bool:
    """Clip and step; False when fp16's scaler skipped the step (inf/NaN gradients, its scale then backs off), so
    that the schedule advances with the updates actually made."""
    parameters = [p for group in trainee.optimizer.param_groups for p in group["params"]]
    if trainee.scaler is not None:
        trainee.scaler.unscale_(trainee.optimizer)  # clip the true gradients, not the scaled ones
    if training.gradient_clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(parameters, training.gradient_clip_norm)
    if trainee.scaler is not None:
        scale = trainee.scaler.get_scale()  # a host sync, paid by fp16 only
        trainee.scaler.step(trainee.optimizer)
        trainee.scaler.update()
        return trainee.scaler.get_scale() >= scale
    trainee.optimizer.step()
    return True


def _check_finite(nonfinite: torch.Tensor, context: Distributed, epoch: int, step: int) -> None:
    if all_reduce_max(nonfinite.clone(), context).item() > 0:
        raise DivergedError(
            f"the training loss became NaN or infinite (epoch {epoch}, by step {step}); training stopped and the "
            "last good checkpoint is kept. Lower training.learningRate, keep training.gradientClipNorm set, "
            "or use training.precision=bf16/fp32 instead of fp16"
        )


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    images: int


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: BatchSource,
    trainee: Trainee,
    *,
    context: Distributed,
    bad_images: BadImageTracker,
) -> Evaluation:
    """Loss and accuracy over the whole validation set (each rank a shard; sums combined across ranks)."""
    model.eval()
    totals = torch.zeros(3, device=trainee.device, dtype=torch.float64)  # loss sum, correct, images
    for batch, _ in _timed(loader):
        bad_images.record(batch.bad)
        images, labels = to_device(batch, trainee)
        with autocast(trainee.device, trainee.dtype):
            logits = model(images)
        losses = nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
        totals[0] += losses.double()
        totals[1] += (logits.argmax(dim=1) == labels).sum().double()
        totals[2] += labels.numel()
    loss_sum, correct, count = all_reduce_sum(totals, context).tolist()
    if count == 0:
        return Evaluation(loss=math.nan, accuracy=0.0, images=0)
    return Evaluation(loss=loss_sum / count, accuracy=correct / count, images=int(count))
