"""Bad data and a diverging run, each through `modelyard train` as a real process: the exit code and the message
say what is wrong, and nothing good is lost."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from modelyard.training.checkpoint import list_checkpoints
from modelyard.training.errors import ConfigError, DatasetError, DivergedError
from tests.integration.train_support import describe, digits, run_trainer, stored_models, subset, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def small(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """20 training and 5 validation digits per class, as separate folders (so every image is read each epoch)."""
    dataset = digits(tmp_path_factory.getbasetemp())
    return subset(dataset.train, tmp_path / "train", 20), subset(dataset.held_out, tmp_path / "val", 5)


def _corrupt(train: Path, val: Path) -> list[Path]:
    """A file of garbage in the training set and a cut-off PNG in the validation set."""
    garbage = train / "3" / "garbage.png"
    garbage.write_bytes(b"\x00\x01 definitely not an image")
    truncated = val / "7" / "truncated.png"
    truncated.write_bytes(next((val / "7").glob("digits-*.png")).read_bytes()[:60])
    return [garbage, truncated]


def test_corrupt_images_are_skipped_counted_and_logged_with_their_path(
    tmp_path: Path, small: tuple[Path, Path]
) -> None:
    train, val = small
    corrupt = _corrupt(train, val)
    # 201 training images in 3 batches of 67: every image is read, none dropped with a last partial batch.
    config = write_config(
        tmp_path / "job.yaml", train, tmp_path, training={"batchSize": 67}, data={"valPath": str(val)}
    )
    finished = run_trainer(config, "data.maxBadImageFraction=0.01")  # 252 images: 2 allowed
    assert finished.returncode == 0, describe(finished)
    assert sorted(event["path"] for event in finished.of("bad_image")) == sorted(map(str, corrupt))
    assert finished.of("epoch")[0]["valAccuracy"] is not None
    [model] = stored_models(tmp_path / "store")
    summary = json.loads((model / "summary.json").read_text())
    assert sorted(summary["badImages"]) == sorted(map(str, corrupt))


def test_past_the_threshold_training_stops_naming_the_files(tmp_path: Path, small: tuple[Path, Path]) -> None:
    train, val = small
    corrupt = _corrupt(train, val)
    config = write_config(
        tmp_path / "job.yaml", train, tmp_path, training={"batchSize": 67}, data={"valPath": str(val)}
    )
    finished = run_trainer(config, "data.maxBadImageFraction=0")
    assert finished.returncode == DatasetError.exit_code, describe(finished)
    assert "unreadable images, more than data.maxBadImageFraction=0.0" in finished.stderr
    assert str(corrupt[0]) in finished.stderr
    assert not stored_models(tmp_path / "store")


def test_an_empty_class_folder_stops_training_naming_it(tmp_path: Path, small: tuple[Path, Path]) -> None:
    train, _ = small
    (train / "minus").mkdir()
    finished = run_trainer(write_config(tmp_path / "job.yaml", train, tmp_path))
    assert finished.returncode == DatasetError.exit_code, describe(finished)
    assert f"class folder(s) without images in {train}: minus" in finished.stderr


def test_a_wrong_class_count_stops_training_with_both_numbers(tmp_path: Path, small: tuple[Path, Path]) -> None:
    train, _ = small
    finished = run_trainer(write_config(tmp_path / "job.yaml", train, tmp_path), "model.numClasses=5")
    assert finished.returncode == DatasetError.exit_code, describe(finished)
    assert f"{train} has 10 class folders (0, 1, 2, 3, 4, 5, 6, 7, 8, 9) but model.numClasses is 5" in finished.stderr


def test_a_bad_override_is_a_config_error(tmp_path: Path, small: tuple[Path, Path]) -> None:
    train, _ = small
    finished = run_trainer(write_config(tmp_path / "job.yaml", train, tmp_path), "training.epochs=-1")
    assert finished.returncode == ConfigError.exit_code, describe(finished)
    assert "training.epochs: Input should be greater than or equal to 1" in finished.stderr


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path: Path, small: tuple[Path, Path]) -> None:
    train, _ = small
    config = write_config(
        tmp_path / "job.yaml", train, tmp_path, training={"optimizer": "sgd", "learningRate": 0.01, "batchSize": 16}
    )
    good = run_trainer(config)
    assert good.returncode == 0, describe(good)
    checkpoints = tmp_path / "ckpt" / "digits"
    kept = checkpoints / "checkpoint-epoch-0001.pt"
    digest = hashlib.sha256(kept.read_bytes()).hexdigest()

    # The pod restarted with an absurd learning rate: SGD at 10 without clipping blows the weights up in a few steps.
    diverged = run_trainer(config, "training.epochs=2", "training.learningRate=10", "training.gradientClipNorm=null")
    assert diverged.returncode == DivergedError.exit_code, describe(diverged)
    assert "the training loss became NaN or infinite (epoch 2" in diverged.stderr
    assert "the last good checkpoint is kept" in diverged.stderr
    assert diverged.of("resumed")[0]["epoch"] == 1
    assert [epoch for epoch, _ in list_checkpoints(checkpoints)] == [1]
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == digest
    assert len(stored_models(tmp_path / "store")) == 1  # only the good run's model
