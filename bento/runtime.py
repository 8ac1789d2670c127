"""The model behind the service: loaded from the BentoML store with the trainer's own code, warmed up on a known
input, then asked for top-k classes of decoded images. Readiness is a small state that says why it is not ready.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field

from modelyard.api.training_job import InputPipeline, Precision
from modelyard.bento.graphs import Forward, GraphedForward
from modelyard.bento.inputs import InputLimits, RejectedInputError, RgbImage, decode_image
from modelyard.bento.settings import Device, ServiceSettings, cpu_budget
from modelyard.training.export import INFO_FILE, LoadedModel, load_from_store
from modelyard.training.gpu_augment import to_device
from modelyard.training.gpu_pipeline import eval_pixels, host_images_to_device
from modelyard.training.precision import autocast, autocast_dtype, resolve_precision
from modelyard.training.transforms import eval_transform

logger = logging.getLogger("bentoml.modelyard")  # under "bentoml": BentoML configures only its own loggers

# Key of modelyard.json naming the model's known input: {"file": "<name in the model folder>", "className": "..."}.
WARMUP_KEY = "warmup"
# Waits between attempts to find a model that is not in the store yet (the volume may be filled after the pod starts).
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


class ClassScore(BaseModel):
    class_name: str = Field(description="Name of the class (the dataset's folder name).")
    class_index: int = Field(ge=0, description="Index of the class in the model's output.")
    probability: float = Field(ge=0.0, le=1.0, description="Softmax probability.")


class ImagePrediction(BaseModel):
    """The answer for one image: its most likely classes, most likely first."""

    model_tag: str = Field(description="The BentoML model (name:version) that answered.")
    top: list[ClassScore] = Field(description="The top-k classes, most likely first.")


def host_threads(device: torch.device, workers: int) -> int:
    """torch's CPU threads in one worker. On a CPU the model's share of the budget: the workers divide it. On a GPU
    one: the host only copies images and picks the top-k of a few numbers. With torch's default of one thread per
    core in each worker, 8 workers on 16 cores were 9.5x slower than with this (bench/RESULTS.md, 2026-12-01)."""
    return max(1, cpu_budget() // workers) if device.type == "cpu" else 1


def resolve_device(device: Device) -> torch.device:
    if device is Device.CUDA and not torch.cuda.is_available():
        raise RuntimeError("MODELYARD_DEVICE=cuda but no CUDA device is available")
    if device is Device.CPU or (device is Device.AUTO and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


class Classifier:
    """A stored model with its evaluation transform: RGB images in, top-k classes out.

    On a GPU the model runs as the trainer runs it by default: channels_last, in bf16 where the GPU has it
    (`precision`), which roughly halves the time of a batch; on a CPU in fp32. With `graph_batches` (on a GPU) the
    forward pass is replayed from CUDA graphs for batches of up to that size (bento/graphs.py)."""

    def __init__(
        self,
        loaded: LoadedModel,
        device: torch.device,
        precision: Precision = Precision.AUTO,
        graph_batches: int | None = None,
        workers: int = 1,
    ) -> None:
        torch.set_num_threads(host_threads(device, workers))
        self.module = loaded.module
        self.info = loaded.info
        self.device = device
        self.tag = loaded.info.tag
        self.precision = resolve_precision(precision, device)
        self.dtype = autocast_dtype(self.precision)
        self.memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.module.to(memory_format=self.memory_format)
        self.transform = eval_transform(loaded.info.image_size, loaded.info.normalization)
        self.forward: Forward = self._eager_forward
        if graph_batches and device.type == "cuda":
            shape = (3, loaded.info.image_size, loaded.info.image_size)
            try:
                self.forward = GraphedForward(self._eager_forward, shape, graph_batches, device, self.memory_format)
            except RuntimeError as error:  # out of memory among them; /readyz then says what to switch off
                raise RuntimeError(
                    f"capturing CUDA graphs failed ({error}); MODELYARD_CUDA_GRAPHS=off runs eagerly"
                ) from error

    def _eager_forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(self.device, self.dtype, cache_enabled=False):
            logits: torch.Tensor = self.module(batch)
        return logits

    def inputs(self, images: Sequence[RgbImage]) -> torch.Tensor:
        """The model's input batch on its device, preprocessed as the model was validated: a model trained on the
        gpu pipeline by its own evaluation preprocessing (resize and normalise on the device, which also spares the
        host that work), any other by `eval_transform` on the host."""
        if self.info.pipeline is InputPipeline.GPU:
            pixels = host_images_to_device(images, self.device)
            return eval_pixels(pixels, self.info.image_size, self.info.normalization)
        batch = torch.stack([self.transform(image) for image in images])
        return to_device(batch, self.device).contiguous(memory_format=self.memory_format)

    def probabilities(self, images: Sequence[RgbImage]) -> torch.Tensor:
        """Softmax over classes, one row per image, on the CPU."""
        probabilities = torch.softmax(self.forward(self.inputs(images)).float(), dim=1)
        if self.device.type == "cuda":
            # Wait for the GPU by sleeping, not spinning: .cpu() alone spin-waits a core for the whole batch, and the
            # workers share the cores (one GPU serves up to one worker per core).
            done = torch.cuda.Event(blocking=True)  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            done.record()
            done.synchronize()
        return probabilities.cpu()

    def predict(self, images: Sequence[RgbImage], top_k: int) -> list[ImagePrediction]:
        probabilities = self.probabilities(images)
        values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
        names = self.info.class_names
        return [
            ImagePrediction(
                model_tag=self.tag,
                top=[
                    ClassScore(class_name=names[index], class_index=index, probability=value)
                    for value, index in zip(row_values.tolist(), row_indices.tolist(), strict=True)
                ],
            )
            for row_values, row_indices in zip(values, indices, strict=True)
        ]


@dataclass(frozen=True)
class WarmupSample:
    """An image stored with the model and the class the model must give it."""

    pixels: RgbImage
    class_name: str
    source: str


def read_warmup_sample(folder: Path, limits: InputLimits) -> WarmupSample | None:
    """The known input named in the model's modelyard.json, or None when the model carries none."""
    info = json.loads((folder / INFO_FILE).read_text())
    entry = info.get(WARMUP_KEY)
    if not entry:
        return None
    path = folder / str(entry["file"])
    try:
        decoded = decode_image(path.read_bytes(), limits)
    except (OSError, RejectedInputError) as error:
        raise ValueError(f"the model's warm-up image {path.name} is unusable: {error}") from error
    return WarmupSample(pixels=decoded.pixels, class_name=str(entry["className"]), source=path.name)


def warm_up(classifier: Classifier, sample: WarmupSample | None) -> str:
    """Run the whole prediction path once and check the answer; returns what was checked, raises if it was wrong.

    With a known input the model must give its class. A model saved without one is still run twice on a fixed grey
    image: the answers must be finite probabilities and identical (eval mode, no dropout).
    """
    if sample is not None:
        [prediction] = classifier.predict([sample.pixels], top_k=1)
        got = prediction.top[0].class_name
        if got != sample.class_name:
            raise ValueError(
                f"warm-up on {sample.source}: the model answered {got!r}, the expected class is {sample.class_name!r}"
            )
        return f"warm-up on {sample.source} gave the expected class {got!r}"
    grey = np.full((classifier.info.image_size, classifier.info.image_size, 3), 128, dtype=np.uint8)
    first, second = classifier.probabilities([grey]), classifier.probabilities([grey])
    if not torch.isfinite(first).all() or abs(float(first.sum()) - 1.0) > 1e-3:
        raise ValueError(f"warm-up: the model's output is not a probability distribution: {first.tolist()}")
    if not torch.allclose(first, second, atol=1e-5):
        raise ValueError("warm-up: two runs on the same input disagree (is the model in eval mode?)")
    return "warm-up on a fixed grey image gave the same valid answer twice (the model stores no known input)"


class Readiness:
    """Thread-safe: is the service ready, and if not, why not. The loader writes it, probes and requests read it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._reason = "starting"

    def set(self, ready: bool, reason: str) -> None:
        with self._lock:
            self._ready, self._reason = ready, reason

    def get(self) -> tuple[bool, str]:
        with self._lock:
            return self._ready, self._reason


class ModelLoader:
    """Loads the model in a background thread (the HTTP server answers /livez and /readyz meanwhile), waiting for a
    model that is not in the store yet, then warms it up. A model that fails to load or warm up stays not ready, with
    the reason on /readyz: restarting the pod would not change the files."""

    def __init__(self, settings: ServiceSettings, readiness: Readiness, on_ready: Callable[[Classifier], None]) -> None:
        self.settings = settings
        self.tag = settings.model_tag
        self.readiness = readiness
        self.on_ready = on_ready
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelyard-model-loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _load(self) -> tuple[LoadedModel, Path] | None:
        import bentoml
        from bentoml.exceptions import NotFound

        attempt = 0
        while not self._stop.is_set():
            try:
                stored = bentoml.models.get(self.tag)
                return load_from_store(str(stored.tag), resolve_device(self.settings.device)), Path(stored.path)
            except NotFound:
                wait = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                self.readiness.set(False, f"model {self.tag} is not in the model store yet; looking again in {wait}s")
                attempt += 1
                self._stop.wait(wait)
        return None

    def _run(self) -> None:
        self.readiness.set(False, f"loading model {self.tag}")
        try:
            found = self._load()
            if found is None:
                return
            loaded, folder = found
            settings = self.settings
            device = resolve_device(settings.device)
            classifier = Classifier(loaded, device, settings.precision, settings.graph_batches, settings.workers)
            self.readiness.set(False, f"warming up model {classifier.tag}")
            checked = warm_up(classifier, read_warmup_sample(folder, settings.limits))
        except Exception as error:  # whatever went wrong, /readyz must say it rather than the thread dying silently
            logger.exception("model %s cannot serve", self.tag)
            self.readiness.set(False, f"model {self.tag} cannot serve: {error}")
            return
        self.on_ready(classifier)
        graphs = ", CUDA graphs" if isinstance(classifier.forward, GraphedForward) else ""
        where = f"{classifier.device} in {classifier.precision.value}{graphs}"
        self.readiness.set(True, f"serving {classifier.tag} on {where}; {checked}")
        logger.info("ready: serving %s on %s; %s", classifier.tag, where, checked)
