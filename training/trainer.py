"""A whole training run, as `modelyard train` and the training pod run it.

Data → model → resume from the latest checkpoint → epochs (train, validate, keep the best, checkpoint, report) →
the best model into the BentoML store with a summary. Every rank runs this; only rank 0 writes.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler

from modelyard.api.training_job import ClassBalancing, DataSpec, InputPipeline, TrainingJobSpec
from modelyard.training import checkpoint, distributed, export
from modelyard.training.config import LoadedConfig, RunContext, changed_fields
from modelyard.training.data import (
    BadImageTracker,
    DataSplit,
    EpochSampler,
    ImageDataset,
    Sample,
    SampleKey,
    ShardSampler,
    balanced_sample_weights,
    load_split,
    make_loader,
    read_rgb,
)
from modelyard.training.errors import ConfigError
from modelyard.training.gpu_pipeline import make_gpu_loader
from modelyard.training.loop import BatchSource, Trainee, evaluate, prepare_trainee, steps_per_epoch, train_epoch
from modelyard.training.model import AttentionClassifier, build_model, parameters_digest
from modelyard.training.progress import ProgressLog
from modelyard.training.selection import BestSoFar
from modelyard.training.telemetry import Plan, Telemetry
from modelyard.training.transforms import RgbImage, eval_transform, train_transform

RESULT_FILE = "result.json"
WARMUP_CANDIDATES = 64


def _readable(samples: list[Sample]) -> Iterator[tuple[RgbImage, int]]:
    """Pixels and label of each sample that still decodes (a bad image was already counted during training)."""
    for sample in samples:
        try:
            yield read_rgb(sample.path), sample.label
        except (OSError, ValueError):
            continue


@dataclass
class TrainingResult:
    model: AttentionClassifier | None  # the best epoch's weights, on the CPU, in eval mode; None on other ranks
    class_names: list[str]
    model_tag: str | None  # None on ranks other than 0
    best_epoch: int | None
    metrics: dict[str, float]
    summary: dict[str, Any]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_training(
    config: LoadedConfig, run: RunContext | None = None, *, log: ProgressLog | None = None
) -> TrainingResult:
    """Train as `config` says, resuming from the latest checkpoint in the run's checkpoint folder."""
    run = run if run is not None else RunContext.from_env(config)
    context = distributed.setup(config.spec.resources)
    log = log if log is not None else ProgressLog(rank=context.rank, world_size=context.world_size)
    try:
        return _Run(config.spec, run, context, log).execute()
    finally:
        distributed.teardown(context)


def make_batches(
    data: DataSpec,
    samples: Sequence[Sample],
    sampler: Sampler[SampleKey],
    batch_size: int,
    device: torch.device,
    *,
    train: bool,
) -> BatchSource:
    """The training (augmented) or validation batches of `data.pipeline`, for the trainer and the benchmark alike:
    decoded and transformed by DataLoader workers (cpu), or read by the workers and decoded and transformed on
    `device` (gpu)."""
    if data.pipeline is InputPipeline.GPU:
        return make_gpu_loader(samples, sampler, batch_size, data, device, train=train)
    transform = (
        train_transform(data.image_size, data.augmentation, data.normalization)
        if train
        else eval_transform(data.image_size, data.normalization)
    )
    dataset = ImageDataset(samples, transform)
    return make_loader(dataset, sampler, batch_size, data.num_workers, train=train, pin=device.type == "cuda")


class _Run:
    def __init__(self, spec: TrainingJobSpec, run: RunContext, context: distributed.Distributed, log: ProgressLog):
        self.spec, self.run, self.context, self.log = spec, run, context, log
        self.training = spec.training
        self.wire_spec = spec.to_wire()
        self.directory = run.checkpoint_dir
        self.started = time.monotonic()

    def execute(self) -> TrainingResult:
        spec, context, training = self.spec, self.context, self.training
        seed_everything(training.seed)
        split = load_split(spec.data, spec.model.num_classes, training.seed)
        bad_images = BadImageTracker(
            len(split.train) + len(split.val),
            spec.data.max_bad_image_fraction,
            lambda path, error: self.log.event("bad_image", every_rank=True, path=path, error=error),
        )
        train_sampler = EpochSampler(
            len(split.train),
            training.seed,
            rank=context.rank,
            world_size=context.world_size,
            weights=(
                balanced_sample_weights([sample.label for sample in split.train], spec.model.num_classes)
                if spec.data.class_balancing is ClassBalancing.WEIGHTED_SAMPLER
                else None
            ),
        )
        val_sampler = ShardSampler(len(split.val), context.rank, context.world_size)
        train_loader = make_batches(
            spec.data, split.train, train_sampler, training.batch_size, context.device, train=True
        )
        val_loader = make_batches(spec.data, split.val, val_sampler, training.batch_size, context.device, train=False)
        steps = steps_per_epoch(len(train_loader), training)

        base_model = build_model(spec.model)  # same seed on every rank: the same start
        trainee, precision = prepare_trainee(base_model, training, context, steps)
        torch.manual_seed(training.seed + context.rank)  # but each rank its own dropout masks
        best = BestSoFar(training.early_stopping.metric, training.early_stopping.min_delta)
        # Into the unwrapped model: DDP and torch.compile see the loaded weights in place.
        start_epoch, step, finished, history = self._resume(base_model, trainee, best)

        if not finished:
            self.log.event(
                "start", every_rank=True, epoch=start_epoch, totalEpochs=training.epochs, worldSize=context.world_size,
                device=str(context.device), precision=precision.value, pipeline=spec.data.pipeline.value,
                trainImages=len(split.train), valImages=len(split.val), imagesPerRank=len(train_sampler),
                stepsPerEpoch=steps,
            )  # fmt: skip
            plan = Plan(training.epochs, steps, step)
            telemetry = Telemetry(self.log, self.run, device=context.device, plan=plan)
            try:
                step, history = self._epochs(
                    trainee, base_model, start_epoch, step, steps, train_loader, val_loader, train_sampler,
                    bad_images, best, telemetry, history,
                )  # fmt: skip
                return self._finish(base_model, split, best, history, bad_images, telemetry)
            finally:
                telemetry.close()
        return self._finish(base_model, split, best, history, bad_images, None)

    def _resume(self, model: nn.Module, trainee: Trainee, best: BestSoFar) -> tuple[int, int, bool, list[Any]]:
        """(first epoch to run, steps done, finished, per-epoch history) from the latest checkpoint, if any."""
        # Rank 0 reads the checkpoint and hands it to the others, so pods need not share the checkpoint folder.
        latest = checkpoint.latest_checkpoint(self.directory) if self.context.is_main else None
        loaded = [(latest, checkpoint.load_checkpoint(latest) if latest is not None else None)]
        if self.context.enabled:
            torch.distributed.broadcast_object_list(loaded, src=0)
        latest, state = loaded[0]
        if latest is None or state is None:
            return 1, 0, False, []
        if state["config"].get("model") != self.wire_spec.get("model"):
            raise ConfigError(
                f"the checkpoints in {self.directory} were written for another model "
                f"({state['config'].get('model')}); use another checkpoint folder to train this one"
            )
        model.load_state_dict(state["model"])
        changed = changed_fields(state["config"], self.wire_spec)
        if changed:
            self.log.event("config_changed", checkpoint=str(latest), fields=changed)
        previous_optimizer = state["config"].get("training", {}).get("optimizer", "adamw")
        if previous_optimizer == self.training.optimizer.value:
            trainee.optimizer.load_state_dict(state["optimizer"])
        else:
            self.log.event("optimizer_reset", reason=f"training.optimizer changed from {previous_optimizer}")
        trainee.scheduler.load_state_dict(state["scheduler"])
        self._apply_recipe(trainee)
        if trainee.scaler is not None and state.get("scaler"):
            trainee.scaler.load_state_dict(state["scaler"])
        best.load(state["best"])
        checkpoint.restore_rng_state(state["rng"][min(self.context.rank, len(state["rng"]) - 1)])
        epoch = int(state["epoch"])
        finished = bool(state.get("stopped_early")) or epoch >= self.training.epochs
        self.log.event("resumed", every_rank=True, checkpoint=str(latest), epoch=epoch, nextEpoch=epoch + 1)
        return epoch + 1, int(state["step"]), finished, list(state.get("history", []))

    def _apply_recipe(self, trainee: Trainee) -> None:
        """The spec's learning rate and weight decay over the ones restored with the optimizer and scheduler: a
        resumed run follows the config it was started with, not the checkpoint's."""
        scheduler, training = trainee.scheduler, self.training
        scheduler.base_lrs = [training.learning_rate] * len(trainee.optimizer.param_groups)
        factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
        for group, weight_decay in zip(trainee.optimizer.param_groups, (training.weight_decay, 0.0), strict=True):
            group["initial_lr"] = training.learning_rate
            group["lr"] = training.learning_rate * factor
            group["weight_decay"] = weight_decay

    def _epochs(
        self,
        trainee: Trainee,
        base_model: nn.Module,
        start_epoch: int,
        step: int,
        steps: int,
        train_loader: BatchSource,
        val_loader: BatchSource,
        sampler: EpochSampler,
        bad_images: BadImageTracker,
        best: BestSoFar,
        telemetry: Telemetry,
        history: list[Any],
    ) -> tuple[int, list[Any]]:
        training, context = self.training, self.context
        for epoch in range(start_epoch, training.epochs + 1):
            sampler.set_epoch(epoch)
            self.log.start_epoch(epoch, training.epochs, steps)
            result = train_epoch(
                trainee, train_loader, epoch=epoch, first_step=step, training=training, max_steps=steps,
                context=context, bad_images=bad_images, on_step=telemetry.step,
            )  # fmt: skip
            step += result.steps
            evaluation = evaluate(base_model, val_loader, trainee, context=context, bad_images=bad_images)
            improved = best.offer(epoch, evaluation, result.train_loss)
            stop_early = (
                training.early_stopping.enabled and best.epochs_without_improvement >= training.early_stopping.patience
            )
            images_per_second = result.images * context.world_size / max(result.seconds, 1e-9)
            history.append(
                {"epoch": epoch, "trainLoss": result.train_loss, "valLoss": evaluation.loss,
                 "valAccuracy": evaluation.accuracy, "imagesPerSecond": images_per_second,
                 "dataWaitFraction": result.data_wait_seconds / max(result.seconds, 1e-9)}
            )  # fmt: skip
            saved = None
            if context.is_main:
                if improved:
                    checkpoint.save_torch(self.directory / checkpoint.best_file(epoch), base_model.state_dict())
                state = {
                    "model": base_model.state_dict(),
                    "optimizer": trainee.optimizer.state_dict(),
                    "scheduler": trainee.scheduler.state_dict(),
                    "scaler": trainee.scaler.state_dict() if trainee.scaler is not None else None,
                    "step": step,
                    "best": best.state(),
                    "history": history,
                    "stopped_early": stop_early,
                    "rng": self._gather_rng_states(),
                }
                saved = checkpoint.save_checkpoint(self.directory, epoch, state, self.wire_spec)
                for stale in self.directory.glob("best-epoch-*.pt"):
                    if best.epoch is not None and stale.name != checkpoint.best_file(best.epoch):
                        stale.unlink(missing_ok=True)
            else:
                self._gather_rng_states()
            telemetry.epoch_end(
                epoch=epoch, step=step, train_loss=result.train_loss, evaluation=evaluation,
                images_per_second=images_per_second, best_accuracy=(best.metrics or {}).get("valAccuracy"),
                best_epoch=best.epoch, checkpoint=saved,
            )  # fmt: skip
            if stop_early:
                self.log.event(
                    "early_stop", epoch=epoch, metric=best.metric.value, bestEpoch=best.epoch, bestValue=best.value
                )
                break
        return step, history

    def _gather_rng_states(self) -> list[dict[str, Any]]:
        """Every rank's generator states, in rank order, for rank 0 to store (each rank resumes its own)."""
        own = checkpoint.rng_state()
        if not self.context.enabled:
            return [own]
        gathered: list[Any] = [None] * self.context.world_size
        torch.distributed.all_gather_object(gathered, own)
        return gathered

    def _finish(
        self,
        base_model: nn.Module,
        split: DataSplit,
        best: BestSoFar,
        history: list[Any],
        bad_images: BadImageTracker,
        telemetry: Telemetry | None,
    ) -> TrainingResult:
        self.log.event("finished", every_rank=True, parametersDigest=parameters_digest(base_model))
        if best.epoch is None:
            raise ConfigError("no epoch was completed, so there is no model to save")
        metrics = {**(best.metrics or {}), "bestEpoch": float(best.epoch)}
        summary = {
            "bestEpoch": best.epoch,
            "metrics": best.metrics,
            "epochs": len(history),
            "history": history,
            "wallTimeSeconds": time.monotonic() - self.started,
            "imagesPerSecond": float(np.mean([entry["imagesPerSecond"] for entry in history])) if history else None,
            "badImages": sorted(bad_images.seen),
            "datasetDigest": split.digest,
            "trainingJob": self.run.training_job,
            "worldSize": self.context.world_size,
            "device": str(self.context.device),
        }
        if not self.context.is_main:
            return TrainingResult(None, split.class_names, None, best.epoch, metrics, summary)
        # Only rank 0 wrote the best weights (other pods may not even see its checkpoint folder).
        model = build_model(self.spec.model, load_pretrained=False)
        best_weights = self.directory / checkpoint.best_file(best.epoch)
        model.load_state_dict(torch.load(best_weights, map_location="cpu", weights_only=True))
        model.eval()
        tag = self._export(model, split, metrics, summary)
        if telemetry is not None:
            telemetry.model_saved(self.spec.output.model_name, tag)
        return TrainingResult(model, split.class_names, tag, best.epoch, metrics, summary)

    def _export(self, model: nn.Module, split: DataSplit, metrics: dict[str, float], summary: dict[str, Any]) -> str:
        """The model tag: saved now, or the one a previous process of this run already saved."""
        result_path = self.directory / RESULT_FILE
        if result_path.is_file():
            previous = json.loads(result_path.read_text())
            same_run = (previous.get("bestEpoch"), previous.get("epochs")) == (summary["bestEpoch"], summary["epochs"])
            if same_run and previous.get("modelTag"):
                self.log.event("model_already_saved", tag=previous["modelTag"])
                return str(previous["modelTag"])
        transform = eval_transform(self.spec.data.image_size, self.spec.data.normalization)
        # A bounded look at the validation set; the decoded pixels are exactly what the service will decode.
        warmup = export.choose_warmup_image(
            model, _readable(split.val[:WARMUP_CANDIDATES]), split.class_names, transform
        )
        if warmup is None:
            self.log.event(
                "no_warmup_image",
                reason=f"none of the first {WARMUP_CANDIDATES} validation images "
                "was classified with a clear margin; the service will only check that predictions are stable",
            )
        tag = export.save_to_store(
            model, spec=self.spec, class_names=split.class_names, metrics=metrics, dataset_digest=split.digest,
            training_job=self.run.training_job, summary=summary, store=self.run.store_dir, warmup=warmup,
        )  # fmt: skip
        checkpoint.save_json(
            result_path, {"modelTag": tag, "bestEpoch": summary["bestEpoch"], "epochs": summary["epochs"]}
        )
        self.log.event("model_saved", tag=tag, store=str(self.run.store_dir), metrics=metrics)
        return tag
