"""Helpers of the trainer's integration tests: the bundled digits written once per session, small configs, and
`modelyard train` run as a real process with its JSON log parsed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelyard.training.config import RunContext
from modelyard.training.datasets import WrittenDataset, write_dataset

IMAGE_SIZE = 32


def digits(base: Path) -> WrittenDataset:
    """The digits dataset at 32 px under `base` (pytest's session temp root): written by the first test that
    asks, found again by the others (write_dataset leaves a folder that holds the same dataset alone)."""
    return write_dataset("digits", base / f"digits-{IMAGE_SIZE}", size=IMAGE_SIZE)


def subset(source: Path, target: Path, per_class: int) -> Path:
    """The first `per_class` images of each class folder of `source`, copied under `target`."""
    for class_dir in sorted(path for path in source.iterdir() if path.is_dir()):
        (target / class_dir.name).mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[:per_class]:
            shutil.copy(image, target / class_dir.name / image.name)
    return target


def merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = merge(merged[key], value) if isinstance(value, Mapping) and key in merged else value
    return merged


def write_config(path: Path, data_path: Path, work: Path, **sections: Any) -> Path:
    """A small CPU recipe (resnet18 from scratch at 32 px, no flips or rotations: they change what a digit is),
    as a whole TrainingJob; `sections` override parts of its spec."""
    spec = {
        "model": {"backbone": "resnet18", "pretrained": False, "numClasses": 10, "hiddenDim": 64, "attentionHeads": 4},
        "training": {"epochs": 1, "batchSize": 64, "learningRate": 0.002, "warmupEpochs": 0.5, "logEverySteps": 5},
        "data": {
            "path": str(data_path),
            "imageSize": IMAGE_SIZE,
            "numWorkers": 0,
            "augmentation": {"horizontalFlip": 0, "randomRotate90": 0},
        },
        "resources": {"gpusPerNode": 0},
        "output": {"modelName": "digits", "storePath": str(work / "store"), "checkpointPath": str(work / "ckpt")},
    }
    document = {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "digits", "namespace": "ml"},
        "spec": merge(spec, sections),
    }
    path.write_text(yaml.safe_dump(document))
    return path


def in_process_run(work: Path, job_name: str) -> RunContext:
    """The RunContext of a training run in this process: checkpoints and store under `work`, no metrics server, no
    status reporting."""
    return RunContext(
        job_name=job_name,
        job_namespace="ml",
        checkpoint_dir=work / "ckpt",
        store_dir=work / "store",
        metrics_port=0,
        status_reporting=False,
    )


def trainer_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that would make the trainer report to a real cluster."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KUBERNETES_", "MODELYARD_"))}
    env.update(
        BENTOML_DO_NOT_TRACK="true",
        NO_ALBUMENTATIONS_UPDATE="1",
        MODELYARD_METRICS_PORT="0",
        MODELYARD_STATUS_REPORTING="off",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def train_command(config: Path, *assignments: str) -> list[str]:
    command = [sys.executable, "-m", "modelyard.cli", "train", "--config", str(config)]
    for assignment in assignments:
        command += ["--set", assignment]
    return command


def parse_events(output: str) -> list[dict[str, Any]]:
    """The JSON log lines of a trainer's output (anything else is ignored)."""
    events = []
    for line in output.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


@dataclass
class Finished:
    returncode: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str

    def of(self, name: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == name]


def run_trainer(
    config: Path, *assignments: str, env: Mapping[str, str] | None = None, timeout: float = 600
) -> Finished:
    completed = subprocess.run(
        train_command(config, *assignments),
        env=dict(env) if env is not None else trainer_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Finished(completed.returncode, parse_events(completed.stdout), completed.stdout, completed.stderr)


def describe(finished: Finished, tail: int = 3000) -> str:
    """For assertion messages: what the process said."""
    return f"exit {finished.returncode}\nstdout:\n{finished.stdout[-tail:]}\nstderr:\n{finished.stderr[-tail:]}"


def stored_models(store: Path, name: str = "digits") -> Sequence[Path]:
    folder = store / "models" / name
    return sorted(path for path in folder.iterdir() if path.is_dir()) if folder.is_dir() else []
