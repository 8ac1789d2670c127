"""The status patch the trainer sends: only its four fields, in the API's wire form."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelyard.api import TrainingJobStatus
from modelyard.api.training_job import CheckpointRef, ProducedModel, Progress, TrainingMetrics
from modelyard.training.report import PLURAL, build_status_patch, merge_patches

pytestmark = pytest.mark.unit


def test_the_patch_holds_the_trainers_fields_in_wire_form() -> None:
    patch = build_status_patch(
        progress=Progress(epoch=2, total_epochs=10, step=200, percent=20, eta_seconds=800),
        metrics=TrainingMetrics(train_loss=0.5, val_loss=0.6, val_accuracy=0.8, best_val_accuracy=0.8, best_epoch=2),
        last_checkpoint=CheckpointRef(
            uri="file:///store/checkpoints/j/checkpoint-epoch-0002.pt",
            epoch=2,
            time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
    )
    assert patch == {
        "status": {
            "progress": {"epoch": 2, "totalEpochs": 10, "step": 200, "percent": 20, "etaSeconds": 800},
            "metrics": {
                "trainLoss": 0.5,
                "valLoss": 0.6,
                "valAccuracy": 0.8,
                "bestValAccuracy": 0.8,
                "bestEpoch": 2,
            },
            "lastCheckpoint": {
                "uri": "file:///store/checkpoints/j/checkpoint-epoch-0002.pt",
                "epoch": 2,
                "time": "2026-01-02T03:04:05Z",
            },
        }
    }
    # What the API server would store validates against the status model the CRD is generated from.
    TrainingJobStatus.model_validate(patch["status"])
    assert PLURAL == "trainingjobs"


def test_the_model_is_patched_alone_and_the_operators_fields_never() -> None:
    patch = build_status_patch(model=ProducedModel(name="digits", tag="digits:abc"))
    assert patch == {"status": {"model": {"name": "digits", "tag": "digits:abc"}}}
    assert build_status_patch() == {"status": {}}
    operator_owned = {"phase", "conditions", "observedGeneration", "startTime", "completionTime", "restarts", "jobName"}
    full = build_status_patch(progress=Progress(), metrics=TrainingMetrics(), model=ProducedModel(name="m", tag="m:1"))
    assert operator_owned.isdisjoint(full["status"])


def test_queued_patches_merge_so_an_epoch_end_is_not_lost_behind_a_step() -> None:
    epoch_end = build_status_patch(
        progress=Progress(epoch=1, step=10),
        last_checkpoint=CheckpointRef(uri="file:///c1", epoch=1, time=datetime(2026, 1, 1, tzinfo=UTC)),
    )
    step = build_status_patch(progress=Progress(epoch=1, step=12))
    merged = merge_patches(epoch_end, step)
    assert merged["status"]["progress"]["step"] == 12
    assert merged["status"]["lastCheckpoint"]["uri"] == "file:///c1"
