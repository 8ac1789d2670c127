"""Helpers of the Bento service's integration tests: one small model trained by the real trainer per session, a
BentoML home per service process, the in-process reference model, /metrics as numbers, the worker's pid."""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import psutil
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from modelyard.bento.process import ServiceProcess
from modelyard.training.export import load_from_store
from modelyard.training.transforms import eval_transform
from tests.integration.train_support import describe, digits, run_trainer, stored_models, trainer_env, write_config

MODEL_NAME = "digits"


@dataclass(frozen=True)
class TrainedModel:
    store: Path  # a BentoML home whose models/ holds the model
    tag: str
    held_out: Path  # held-out images, one folder per class

    @property
    def folder(self) -> Path:
        name, version = self.tag.split(":")
        return self.store / "models" / name / version


def trained_model(base: Path) -> TrainedModel:
    """A small model trained by `modelyard train` on the real digits; trained by the first test module that asks and
    found again (under pytest's session temp root) by the others."""
    work = base / "bento-model"
    dataset = digits(base)
    if not (work / "tag.txt").is_file():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        # Twelve steps: enough to be right on most digits, which the tests need no more than a fixed model.
        config = write_config(work / "job.yaml", dataset.train, work, training={"epochs": 1, "maxStepsPerEpoch": 12})
        finished = run_trainer(config, env=trainer_env(BENTOML_HOME=str(work / "store")))
        assert finished.returncode == 0, describe(finished)
        [folder] = stored_models(work / "store", MODEL_NAME)
        # The tests serve the stored model only; its checkpoints would hold disk for the whole session.
        shutil.rmtree(work / "ckpt")
        (work / "tag.txt").write_text(f"{MODEL_NAME}:{folder.name}")
    return TrainedModel(work / "store", (work / "tag.txt").read_text(), dataset.held_out)


def service_home(root: Path, model: TrainedModel | None) -> Path:
    """A BentoML home of its own for one service process (BentoML keeps its multiprocess metrics in it); its
    models/ is the trained model's store, or empty when `model` is None."""
    root.mkdir(parents=True)
    if model is None:
        (root / "models").mkdir()
    else:
        (root / "models").symlink_to(model.store / "models", target_is_directory=True)
    return root


def add_to_store(model: TrainedModel, home: Path) -> None:
    """Copy the model into a home's store, as a volume filled after the pod started would show it."""
    name, version = model.tag.split(":")
    shutil.copytree(model.folder, home / "models" / name / version)
    (home / "models" / name / "latest").write_text(version)


def labelled_images(held_out: Path, per_class: int) -> list[tuple[Path, str]]:
    return [
        (path, folder.name)
        for folder in sorted(held_out.iterdir())
        if folder.is_dir()
        for path in sorted(folder.glob("*.png"))[:per_class]
    ]


def rgb(data: bytes) -> npt.NDArray[np.uint8]:
    """Pillow's own RGB conversion: the reference, independent of the service's decoder."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


class Reference:
    """The stored model called in this process, with the trainer's evaluation transform."""

    def __init__(self, model: TrainedModel) -> None:
        loaded = load_from_store(model.tag, "cpu", store=model.store)
        self.module = loaded.module
        self.class_names = loaded.info.class_names
        self.transform = eval_transform(loaded.info.image_size, loaded.info.normalization)

    def probabilities(self, images: list[npt.NDArray[np.uint8]]) -> torch.Tensor:
        with torch.inference_mode():
            logits = self.module(torch.stack([self.transform(image) for image in images]))
        return torch.softmax(logits, dim=1)

    def top(self, image: npt.NDArray[np.uint8], k: int) -> list[tuple[str, float]]:
        values, indices = self.probabilities([image])[0].topk(k)
        return [(self.class_names[i], v) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]


def answers(response: httpx.Response) -> list[list[tuple[str, float]]]:
    """A prediction response as (class, probability) lists, one per image."""
    assert response.status_code == 200, response.text
    return [[(entry["class_name"], entry["probability"]) for entry in image["top"]] for image in response.json()]


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample on /metrics, keyed by (sample name, labels)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, found), value in samples.items() if sample == name and wanted <= found)


def worker_pids(service: ServiceProcess) -> set[int]:
    """The pids of the arbiter's worker processes: a worker that died and was restarted has a new one."""
    assert service.pid is not None
    return {child.pid for child in psutil.Process(service.pid).children(recursive=True)}
