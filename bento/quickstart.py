"""`modelyard quickstart`: the whole path on one machine, with real parts only.

bundled dataset → `modelyard train` on the CPU → the BentoML model store in OUT/bentoml → `bentoml serve` on
127.0.0.1 → held-out images over HTTP → accuracy and latency → the service stopped. Every step is the same command a
user or a pod would run; any failure stops the run with a non-zero exit code and says which step failed.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from modelyard.api.training_job import TrainingJobSpec
from modelyard.bento.process import ServiceProcess

MODEL_NAME = "quickstart-digits"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class QuickstartError(RuntimeError):
    """A step failed; the message says which and why."""


@dataclass(frozen=True)
class Evaluation:
    images: int
    correct: int
    latencies: list[float]
    wall_seconds: float
    model_tag: str

    @property
    def accuracy(self) -> float:
        return self.correct / self.images if self.images else 0.0


def training_spec(out: Path, *, dataset_root: Path, epochs: int, image_size: int) -> TrainingJobSpec:
    """A small CPU recipe: a ResNet-18 from scratch with a narrow attention head, sized for 2 cores."""
    return TrainingJobSpec.model_validate(
        {
            "model": {"backbone": "resnet18", "pretrained": False, "hiddenDim": 64, "attentionHeads": 4},
            "training": {
                "epochs": epochs,
                "batchSize": 64,
                "learningRate": 3e-3,
                "warmupEpochs": 0.5,
                "precision": "fp32",
                "channelsLast": False,
                "logEverySteps": 5,
            },
            "data": {
                "path": str(dataset_root / "train"),
                "imageSize": image_size,
                "validationSplit": 0.15,
                "numWorkers": 0,
                # Digits are not symmetric: flips and rotations would teach the model wrong labels.
                "augmentation": {"horizontalFlip": 0.0, "randomRotate90": 0.0},
            },
            "resources": {"gpusPerNode": 0},
            "output": {
                "modelName": MODEL_NAME,
                "storePath": str(out / "bentoml"),
                "checkpointPath": str(out / "checkpoints"),
            },
        }
    )


def held_out_images(root: Path) -> list[tuple[Path, str]]:
    """(image, class) for every image under root/<class>/, in a stable order."""
    pairs = [
        (path, folder.name)
        for folder in sorted(root.iterdir())
        if folder.is_dir()
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not pairs:
        raise QuickstartError(f"no held-out images under {root}")
    return pairs


def evaluate(url: str, images: list[tuple[Path, str]], *, timeout: float = 60.0) -> Evaluation:
    """Send each image in its own request, as a client would, and score the top class."""
    latencies: list[float] = []
    correct = 0
    tags: set[str] = set()
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=timeout) as client:
        for path, expected in images:
            begin = time.perf_counter()
            response = client.post("/predict", files={"images": (path.name, path.read_bytes(), "image/png")})
            latencies.append(time.perf_counter() - begin)
            if response.status_code != 200:
                raise QuickstartError(f"POST /predict {path} answered {response.status_code}: {response.text}")
            [answer] = response.json()
            tags.add(answer["model_tag"])
            correct += answer["top"][0]["class_name"] == expected
    return Evaluation(len(images), correct, latencies, time.perf_counter() - started, ",".join(sorted(tags)))


def _run(step: str, command: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, env={**os.environ, **(env or {})}, check=False)
    if result.returncode != 0:
        raise QuickstartError(f"{step} failed (exit code {result.returncode}): {' '.join(command)}")


def run_quickstart(
    out: Path,
    *,
    dataset: str = "digits",
    epochs: int = 3,
    image_size: int = 32,
    min_accuracy: float = 0.8,
    echo: Callable[[str], None] = print,
) -> Evaluation:
    """Run every step; returns the evaluation, raises QuickstartError naming the step that failed."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "modelyard.cli"]
    dataset_root = out / "data"

    echo(f"[1/5] writing the bundled {dataset} dataset to {dataset_root}")
    _run("writing the dataset", [*cli, "data", dataset, str(dataset_root)])

    echo(f"[2/5] training a small model on the CPU for {epochs} epochs (progress below)")
    # A fresh run each time: the trainer would otherwise resume, or reuse, a previous quickstart's checkpoints.
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    spec = training_spec(out, dataset_root=dataset_root, epochs=epochs, image_size=image_size)
    spec_path = out / "trainingjob.yaml"
    spec_path.write_text(yaml.safe_dump(spec.to_wire(), sort_keys=False))
    store = out / "bentoml"
    trainer_env = {"BENTOML_HOME": str(store), "MODELYARD_METRICS_PORT": "0", "MODELYARD_STATUS_REPORTING": "off"}
    started = time.perf_counter()
    _run("training", [*cli, "train", "--config", str(spec_path)], trainer_env)
    echo(f"      trained in {time.perf_counter() - started:.0f}s; the model is in the BentoML store {store}")

    echo("[3/5] starting the Bento service on 127.0.0.1")
    service = ServiceProcess(
        {"BENTOML_HOME": str(store), "MODELYARD_MODEL_TAG": f"{MODEL_NAME}:latest", "MODELYARD_DEVICE": "cpu"},
        log=out / "service.log",
    )
    with service:
        try:
            ready = service.wait_ready(timeout=300)
        except (TimeoutError, RuntimeError) as error:
            raise QuickstartError(f"starting the service failed: {error}") from error
        echo(f"      {service.url} is ready: {ready.get('reason')}")
        images = held_out_images(dataset_root / "held-out")
        echo(f"[4/5] sending {len(images)} held-out images to {service.url}/predict, one per request")
        evaluation = evaluate(service.url, images)
        echo("[5/5] stopping the service")
    if service.running():
        raise QuickstartError(f"the service (pid {service.pid}) is still running after stop")

    latencies_ms = sorted(1000 * seconds for seconds in evaluation.latencies)
    p95 = latencies_ms[min(len(latencies_ms) - 1, int(0.95 * len(latencies_ms)))]
    echo(
        f"model {evaluation.model_tag}: accuracy {evaluation.accuracy:.1%} "
        f"({evaluation.correct}/{evaluation.images} held-out images); latency p50 "
        f"{statistics.median(latencies_ms):.1f} ms, p95 {p95:.1f} ms; "
        f"{evaluation.images / evaluation.wall_seconds:.1f} requests/s"
    )
    if evaluation.accuracy < min_accuracy:
        raise QuickstartError(f"accuracy {evaluation.accuracy:.1%} is below the expected {min_accuracy:.0%}")
    return evaluation
