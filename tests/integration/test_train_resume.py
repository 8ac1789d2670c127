"""Kill the trainer with SIGKILL after its first epoch, start it again: it resumes at the second epoch from the
checkpoint and ends exactly where a run that was never interrupted ends."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from modelyard.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from tests.integration.train_support import describe, digits, run_trainer, train_command, trainer_env, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EPOCHS = 3
STEPS_PER_EPOCH = 6


def _config(tmp_path: Path, name: str, data: Path) -> Path:
    work = tmp_path / name
    work.mkdir()
    return write_config(
        work / "job.yaml",
        data,
        work,
        training={"epochs": EPOCHS, "batchSize": 32, "maxStepsPerEpoch": STEPS_PER_EPOCH, "logEverySteps": 2},
    )


def _assert_same(left: Any, right: Any, where: str = "checkpoint") -> None:
    """Bit-for-bit equal, tensors included."""
    if isinstance(left, torch.Tensor):
        assert isinstance(right, torch.Tensor), where
        assert torch.equal(left, right), where
    elif isinstance(left, dict):
        assert isinstance(right, dict), where
        assert left.keys() == right.keys(), where
        for key in left:
            _assert_same(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, list | tuple):
        assert isinstance(right, list | tuple), where
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            _assert_same(a, b, f"{where}[{index}]")
    else:
        assert left == right, f"{where}: {left!r} != {right!r}"


def test_a_killed_run_resumes_at_the_next_epoch_and_ends_like_an_uninterrupted_one(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = digits(tmp_path_factory.getbasetemp()).train
    straight = run_trainer(_config(tmp_path, "straight", data))
    assert straight.returncode == 0, describe(straight)

    config = _config(tmp_path, "interrupted", data)
    checkpoints = tmp_path / "interrupted" / "ckpt" / "digits"
    process = subprocess.Popen(train_command(config), env=trainer_env(), stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{") and json.loads(line)["event"] == "epoch":
            process.send_signal(signal.SIGKILL)  # no clean-up of any kind: what a preempted pod gets
            break
    process.stdout.close()
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert [epoch for epoch, _ in list_checkpoints(checkpoints)] == [1]
    assert not list(checkpoints.glob(".*.tmp")), "a temporary file was left behind"
    after_kill = load_checkpoint(checkpoints / "checkpoint-epoch-0001.pt")

    resumed = run_trainer(config)
    assert resumed.returncode == 0, describe(resumed)
    assert resumed.of("resumed") == [resumed.of("resumed")[0]]
    assert resumed.of("resumed")[0]["epoch"] == 1
    assert resumed.of("resumed")[0]["nextEpoch"] == 2
    assert [event["epoch"] for event in resumed.of("epoch")] == [2, 3]
    first_step = resumed.of("step")[0]
    assert (first_step["epoch"], first_step["step"]) == (2, STEPS_PER_EPOCH + 2)  # counting on from epoch 1
    # The optimizer went on from its saved state: Adam's moments after epoch 1 are the ones epoch 2 started from.
    assert after_kill["optimizer"]["state"], "the checkpoint holds no optimizer state"
    assert after_kill["step"] == STEPS_PER_EPOCH

    # Same seed, same data order and augmentations (functions of seed and epoch), the same RNG states restored, the
    # same CPU kernels on the same thread count: the resumed run performs the very same floating-point operations,
    # so the tolerance is zero. Any drift would mean something was not restored.
    final_straight = load_checkpoint(latest_checkpoint(tmp_path / "straight" / "ckpt" / "digits"))  # type: ignore[arg-type]
    final_resumed = load_checkpoint(latest_checkpoint(checkpoints))  # type: ignore[arg-type]
    assert final_straight["epoch"] == final_resumed["epoch"] == EPOCHS
    for part in ("model", "optimizer", "scheduler", "step", "best", "rng"):
        _assert_same(final_straight[part], final_resumed[part], part)
    straight_accuracy = [event["valAccuracy"] for event in straight.of("epoch")]
    resumed_accuracy = [event["valAccuracy"] for event in resumed.of("epoch")]
    assert resumed_accuracy == straight_accuracy[1:]
    assert resumed.of("model_saved")[0]["metrics"] == straight.of("model_saved")[0]["metrics"]
