"""Early stopping ends the run when the watched metric stops improving; a pod restarted after the end saves nothing
twice and trains no further."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.training.checkpoint import list_checkpoints
from tests.integration.train_support import describe, digits, run_trainer, stored_models, subset, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_stops_when_the_metric_stalls_and_a_restart_changes_nothing(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    train = subset(digits(tmp_path_factory.getbasetemp()).train, tmp_path / "train", 10)
    # No epoch can beat the first by a whole unit of accuracy: the second is the first without improvement.
    early_stopping = {"enabled": True, "patience": 1, "minDelta": 1.0}
    config = write_config(
        tmp_path / "job.yaml",
        train,
        tmp_path,
        training={"epochs": 5, "batchSize": 16, "maxStepsPerEpoch": 2, "earlyStopping": early_stopping},
    )
    first = run_trainer(config)
    assert first.returncode == 0, describe(first)
    assert [event["epoch"] for event in first.of("epoch")] == [1, 2]
    [stop] = first.of("early_stop")
    assert (stop["epoch"], stop["bestEpoch"], stop["metric"]) == (2, 1, "valAccuracy")
    [saved] = first.of("model_saved")
    assert saved["metrics"]["bestEpoch"] == 1

    again = run_trainer(config)
    assert again.returncode == 0, describe(again)
    assert not again.of("epoch")
    assert again.of("model_already_saved")[0]["tag"] == saved["tag"]
    assert [epoch for epoch, _ in list_checkpoints(tmp_path / "ckpt" / "digits")] == [1, 2]
    assert len(stored_models(tmp_path / "store")) == 1
