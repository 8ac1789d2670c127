"""Where progress goes: the log (every rank's own events), the Prometheus gauges and the TrainingJob status (rank 0).

One object so the loop states what happened once and each audience gets its own form of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from modelyard.api.common import utcnow
from modelyard.api.training_job import CheckpointRef, ProducedModel, Progress, TrainingMetrics
from modelyard.training.config import RunContext
from modelyard.training.loop import Evaluation, StepReport
from modelyard.training.metrics import TrainerMetrics
from modelyard.training.progress import ProgressLog
from modelyard.training.report import StatusReporter, build_status_patch, kubernetes_api


@dataclass
class Plan:
    """The work of the whole run, to turn steps done into a share and an ETA."""

    total_epochs: int
    steps_per_epoch: int
    first_step: int  # steps already done before this process started (a resumed run)
    started: float = field(default_factory=time.monotonic)

    @property
    def total_steps(self) -> int:
        return self.total_epochs * self.steps_per_epoch

    def ratio(self, step: int) -> float:
        return min(step / max(self.total_steps, 1), 1.0)

    def eta_seconds(self, step: int) -> float | None:
        done_here = step - self.first_step
        if done_here <= 0:
            return None
        seconds_per_step = (time.monotonic() - self.started) / done_here
        return max(self.total_steps - step, 0) * seconds_per_step


class Telemetry:
    def __init__(self, log: ProgressLog, run: RunContext, *, device: torch.device, plan: Plan) -> None:
        self.log = log
        self.device = device
        self.plan = plan
        self.metrics: TrainerMetrics | None = None
        self.status: StatusReporter | None = None
        self._latest = TrainingMetrics()
        if not log.is_main:
            return
        namespace, name = run.job_namespace, run.job_name
        try:
            self.metrics = TrainerMetrics(
                namespace=namespace, trainingjob=name, port=run.metrics_port, address=run.metrics_address
            )
        except OSError as error:  # a taken port costs the endpoint, not the training run
            log.event("warning", message=f"metrics endpoint off: cannot listen on port {run.metrics_port} ({error})")
            self.metrics = TrainerMetrics(namespace=namespace, trainingjob=name, port=0)
        self.metrics.set(total_epochs=plan.total_epochs, epoch=0, step=plan.first_step)
        if run.status_reporting and run.job_name and run.job_namespace:
            try:
                api = kubernetes_api()
            except Exception as error:  # no API access means no status, never no training
                log.event("warning", message=f"status reporting is off: no Kubernetes API access ({error})")
            else:
                self.status = StatusReporter(
                    run.job_name, run.job_namespace, api=api, log=lambda text: log.event("warning", message=text)
                )

    def _gpu_memory(self) -> int:
        return torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else 0

    def _progress(self, epoch: int, step: int) -> Progress:
        eta = self.plan.eta_seconds(step)
        return Progress(
            epoch=epoch,
            total_epochs=self.plan.total_epochs,
            step=step,
            percent=int(100 * self.plan.ratio(step)),
            eta_seconds=None if eta is None else round(eta),
        )

    def step(self, report: StepReport | None) -> None:
        """A step ended; `report` is set at log intervals."""
        self.log.step(
            due=report is not None,
            **(
                {}
                if report is None
                else {
                    "epoch": report.epoch,
                    "step": report.step,
                    "loss": report.loss,
                    "lr": report.learning_rate,
                    "imagesPerSecond": report.images_per_second,
                    "dataWaitFraction": report.data_wait_fraction,
                }
            ),
        )
        if report is None or self.metrics is None:
            return
        eta = self.plan.eta_seconds(report.step)
        self.metrics.set(
            step=report.step,
            loss=report.loss,
            images_per_second=report.images_per_second,
            data_wait_fraction=report.data_wait_fraction,
            gpu_memory_bytes=self._gpu_memory(),
            eta_seconds=eta,
            progress_ratio=self.plan.ratio(report.step),
        )
        self._latest.images_per_second = report.images_per_second
        if self.status is not None:
            progress = self._progress(report.epoch - 1, report.step)
            self.status.update(build_status_patch(progress=progress, metrics=self._latest))

    def epoch_end(
        self,
        *,
        epoch: int,
        step: int,
        train_loss: float,
        evaluation: Evaluation,
        images_per_second: float,
        best_accuracy: float | None,
        best_epoch: int | None,
        checkpoint: Path | None,
    ) -> None:
        self._latest = TrainingMetrics(
            train_loss=train_loss,
            val_loss=evaluation.loss,
            val_accuracy=evaluation.accuracy,
            best_val_accuracy=best_accuracy,
            best_epoch=best_epoch,
            images_per_second=images_per_second,
        )
        self.log.end_epoch(
            epoch=epoch,
            totalEpochs=self.plan.total_epochs,
            step=step,
            trainLoss=train_loss,
            valLoss=evaluation.loss,
            valAccuracy=evaluation.accuracy,
            bestValAccuracy=best_accuracy,
            bestEpoch=best_epoch,
            imagesPerSecond=images_per_second,
            checkpoint=str(checkpoint) if checkpoint else None,
        )
        if self.metrics is not None:
            self.metrics.set(
                epoch=epoch,
                step=step,
                val_loss=evaluation.loss,
                val_accuracy=evaluation.accuracy,
                eta_seconds=self.plan.eta_seconds(step),
                progress_ratio=self.plan.ratio(step),
                gpu_memory_bytes=self._gpu_memory(),
            )
        if self.status is not None:
            reference = None
            if checkpoint is not None:
                reference = CheckpointRef(uri=checkpoint.resolve().as_uri(), epoch=epoch, time=utcnow())
            patch = build_status_patch(
                progress=self._progress(epoch, step), metrics=self._latest, last_checkpoint=reference
            )
            self.status.update(patch, urgent=True)

    def model_saved(self, name: str, tag: str) -> None:
        if self.status is not None:
            self.status.update(build_status_patch(model=ProducedModel(name=name, tag=tag)), urgent=True)

    def close(self) -> None:
        self.log.close_bar()
        if self.status is not None:
            self.status.close()
        if self.metrics is not None:
            self.metrics.close()
