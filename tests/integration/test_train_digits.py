"""A real training run on the bundled digits (CPU, resnet18 from scratch, 32 px): it learns, it reports progress as
JSON lines and Prometheus metrics while it runs, and it leaves a BentoML model that classifies unseen digits."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from modelyard.api import TrainingJobSpec
from modelyard.bento.process import free_port
from modelyard.training.checkpoint import CONFIG_FILE, list_checkpoints
from modelyard.training.data import read_rgb
from modelyard.training.export import TRAINING_JOB_LABEL, load_from_store
from modelyard.training.metrics import GAUGES
from modelyard.training.transforms import eval_transform
from tests.integration.train_support import (
    Finished,
    describe,
    digits,
    parse_events,
    train_command,
    trainer_env,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EPOCHS = 4
CHANCE = 0.1  # ten balanced classes
# Seen here: 0.97-0.98 after 4 epochs. A pipeline that scrambles labels or images stays near chance (0.1); one that
# learns only a little (wrong normalisation, frozen layers) stays well below 0.85.
MIN_VAL_ACCURACY = 0.85


@dataclass
class DigitsRun:
    finished: Finished
    work: Path
    held_out: Path
    scrape: str  # /metrics as served during the run, after the first epoch


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory, module_workdir: Callable[[str], Path]) -> DigitsRun:
    dataset = digits(tmp_path_factory.getbasetemp())
    work = module_workdir("digits-run")
    config = write_config(
        work / "job.yaml",
        dataset.train,
        work,
        model={"hiddenDim": 128},
        training={"epochs": EPOCHS, "warmupEpochs": 0.5},
    )
    port = free_port()
    env = trainer_env(
        MODELYARD_METRICS_PORT=str(port),
        MODELYARD_METRICS_ADDRESS="127.0.0.1",
        MODELYARD_TRAININGJOB_NAME="digits-acc",
        MODELYARD_TRAININGJOB_NAMESPACE="ml",
    )
    process = subprocess.Popen(
        train_command(config), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    scrape = ""
    deadline = time.monotonic() + 600
    # Scrape while it trains; keep the latest answer given after an epoch ended (the endpoint dies with the run).
    while process.poll() is None and time.monotonic() < deadline:
        text = _scrape(port)
        if text and re.search(r"^modelyard_training_epoch\{[^}]*\} [1-9]", text, re.MULTILINE):
            scrape = text
        time.sleep(0.5)
    stdout, stderr = process.communicate(timeout=60)
    finished = Finished(process.returncode, parse_events(stdout), stdout, stderr)
    assert finished.returncode == 0, describe(finished)
    return DigitsRun(finished, work, dataset.held_out, scrape)


def test_learns_the_digits_far_above_chance(digits_run: DigitsRun) -> None:
    epochs = digits_run.finished.of("epoch")
    assert [event["epoch"] for event in epochs] == list(range(1, EPOCHS + 1))
    final = epochs[-1]
    assert final["valAccuracy"] >= MIN_VAL_ACCURACY, describe(digits_run.finished)
    assert final["valAccuracy"] > 5 * CHANCE
    assert epochs[-1]["trainLoss"] < epochs[0]["trainLoss"]


def test_logs_one_json_line_per_interval_and_per_epoch(digits_run: DigitsRun) -> None:
    start = digits_run.finished.of("start")[0]
    steps = digits_run.finished.of("step")
    per_epoch = start["stepsPerEpoch"]
    # logEverySteps is 5, and the last step of each epoch is logged too.
    assert len(steps) == EPOCHS * -(-per_epoch // 5)
    assert steps[-1]["step"] == EPOCHS * per_epoch
    for step in steps:
        assert step["loss"] > 0
        assert step["imagesPerSecond"] > 0
        assert 0 <= step["dataWaitFraction"] <= 1


def test_serves_the_contract_metrics_while_training(digits_run: DigitsRun) -> None:
    scrape = digits_run.scrape
    assert scrape, "no /metrics answer after an epoch ended"
    values = {}
    for name in GAUGES:
        match = re.search(rf'^{name}\{{namespace="ml",trainingjob="digits-acc"\}} (\S+)$', scrape, re.MULTILINE)
        assert match, f"{name} missing from:\n{scrape}"
        values[name] = float(match.group(1))
    assert values["modelyard_training_total_epochs"] == EPOCHS
    assert 1 <= values["modelyard_training_epoch"] <= EPOCHS
    assert values["modelyard_training_step"] >= 1
    assert 0 < values["modelyard_training_val_accuracy"] <= 1
    assert values["modelyard_training_images_per_second"] > 0
    assert 0 < values["modelyard_training_progress_ratio"] <= 1
    assert values["modelyard_training_gpu_memory_bytes"] == 0  # a CPU run
    assert values["modelyard_training_last_progress_timestamp_seconds"] > time.time() - 3600


def test_saves_the_resolved_config_beside_the_checkpoints(digits_run: DigitsRun) -> None:
    folder = digits_run.work / "ckpt" / "digits-acc"  # checkpointPath / the TrainingJob's name
    assert [epoch for epoch, _ in list_checkpoints(folder)] == [EPOCHS - 1, EPOCHS]  # the newest two are kept
    saved = TrainingJobSpec.model_validate(yaml.safe_load((folder / CONFIG_FILE).read_text()))
    assert saved.training.epochs == EPOCHS
    assert saved.model.hidden_dim == 128
    assert saved.training.batch_size == 64  # a default filled in: the config as resolved


def test_the_stored_model_classifies_unseen_digits(digits_run: DigitsRun) -> None:
    saved = digits_run.finished.of("model_saved")
    assert len(saved) == 1
    loaded = load_from_store(saved[0]["tag"], "cpu", store=digits_run.work / "store")
    info = loaded.info
    assert info.class_names == [str(digit) for digit in range(10)]
    assert info.image_size == 32
    assert info.training_job == "ml/digits-acc"
    assert info.dataset_digest.startswith("sha256:")
    assert len(info.dataset_digest) == len("sha256:") + 64
    assert info.metrics["valAccuracy"] == pytest.approx(digits_run.finished.of("epoch")[-1]["valAccuracy"])
    folder = Path(str(digits_run.work / "store" / "models" / "digits" / saved[0]["tag"].split(":")[1]))
    bento_info = yaml.safe_load((folder / "model.yaml").read_text())
    assert bento_info["labels"] == {TRAINING_JOB_LABEL: "digits-acc"}
    assert bento_info["metadata"]["valAccuracy"] == pytest.approx(info.metrics["valAccuracy"])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["bestEpoch"] == info.metrics["bestEpoch"]
    assert summary["wallTimeSeconds"] > 0

    preprocess = eval_transform(info.image_size, info.normalization)
    paths = sorted(digits_run.held_out.rglob("*.png"))
    batch = torch.stack([preprocess(read_rgb(path)) for path in paths])
    labels = np.array([info.class_names.index(path.parent.name) for path in paths])
    with torch.no_grad():
        predicted = loaded.module(batch).argmax(dim=1).numpy()
    accuracy = float((predicted == labels).mean())
    assert len(paths) == 179
    assert accuracy >= MIN_VAL_ACCURACY, f"held-out accuracy {accuracy:.3f}"
