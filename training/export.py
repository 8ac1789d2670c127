"""The trained model in the BentoML model store: what serving needs and what an auditor asks.

`save_to_store` creates `<output.modelName>:<version>` holding `model.pt` (the state dict), `modelyard.json`
(model spec, class names, image size, normalisation, metrics, dataset digest, TrainingJob, config) and
`summary.json` (the run's figures). `load_from_store` gives the module back in eval mode with that information; the
Bento service uses it with `modelyard.training.transforms.eval_transform`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from modelyard.api.training_job import DataSpec, InputPipeline, ModelSpec, Normalization, TrainingJobSpec
from modelyard.training.model import AttentionClassifier, build_model

if TYPE_CHECKING:
    from bentoml._internal.models import ModelStore

MODEL_FILE = "model.pt"
INFO_FILE = "modelyard.json"
WARMUP_FILE = "warmup.png"
SUMMARY_FILE = "summary.json"
TRAINING_JOB_LABEL = "modelyard.dev/training-job"


@dataclass(frozen=True)
class ModelInfo:
    """What `modelyard.json` says about a stored model."""

    tag: str
    model: ModelSpec
    class_names: list[str]
    image_size: int
    normalization: Normalization
    metrics: dict[str, float]
    dataset_digest: str
    training_job: str | None
    config: dict[str, Any]

    @property
    def pipeline(self) -> InputPipeline:
        """The input pipeline the model was validated with: serving preprocesses as it did (models saved before the
        setting existed trained on the cpu pipeline)."""
        raw = (self.config.get("data") or {}).get("pipeline")
        return InputPipeline(raw) if raw else DataSpec.model_fields["pipeline"].default


class WarmupImage(NamedTuple):
    """A validation image the model classifies confidently, and its class: the service's readiness check."""

    pixels: npt.NDArray[np.uint8]
    class_name: str


@torch.no_grad()
def choose_warmup_image(
    module: torch.nn.Module,
    candidates: Iterable[tuple[npt.NDArray[np.uint8], int]],
    class_names: Sequence[str],
    transform: Callable[[npt.NDArray[np.uint8]], torch.Tensor],
    *,
    min_margin: float = 0.1,
) -> WarmupImage | None:
    """Of the candidates (RGB pixels, label) the model gets right, the one with the widest margin between its top two
    probabilities, so that another device or precision at serving time gives the same answer; None when none of them
    clears `min_margin`."""
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    best: tuple[float, WarmupImage] | None = None
    try:
        for pixels, label in candidates:
            probabilities = torch.softmax(module(transform(pixels).unsqueeze(0).to(device)).float(), dim=1)[0]
            top = torch.topk(probabilities, k=2)
            margin = float(top.values[0] - top.values[1])
            if int(top.indices[0]) == label and margin >= min_margin and (best is None or margin > best[0]):
                best = (margin, WarmupImage(pixels, class_names[label]))
    finally:
        module.train(was_training)
    return None if best is None else best[1]


class LoadedModel(NamedTuple):
    module: AttentionClassifier
    info: ModelInfo


def _model_store(store: Path | None) -> ModelStore | None:
    """A store at `store` (a BentoML home), or None for BentoML's own (BENTOML_HOME, read once per process)."""
    if store is None:
        return None
    from bentoml._internal.models import ModelStore

    models = store / "models"
    models.mkdir(parents=True, exist_ok=True)
    return ModelStore(str(models))


def save_to_store(
    module: torch.nn.Module,
    *,
    spec: TrainingJobSpec,
    class_names: list[str],
    metrics: Mapping[str, float],
    dataset_digest: str,
    training_job: str | None,
    summary: Mapping[str, Any] | None = None,
    store: Path | None = None,
    warmup: WarmupImage | None = None,
) -> str:
    """Save `module` as `<spec.output.model_name>:<new version>` and return the full tag.

    `training_job` is "namespace/name" of the TrainingJob that produced it (None for a run outside a cluster);
    `store` is a BentoML home, None meaning BentoML's default (BENTOML_HOME); `warmup` is a known input the service
    must classify correctly before it reports ready.
    """
    import bentoml

    if len(class_names) != spec.model.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model of {spec.model.num_classes} classes")
    info = {
        "model": spec.model.to_wire(),
        "classNames": list(class_names),
        "imageSize": spec.data.image_size,
        "normalization": spec.data.normalization.to_wire(),
        "metrics": dict(metrics),
        "datasetDigest": dataset_digest,
        "trainingJob": training_job,
        "config": spec.to_wire(),
    }
    if warmup is not None:
        info["warmup"] = {"file": WARMUP_FILE, "className": warmup.class_name}
    # BentoML labels are strings; a Kubernetes-style label value cannot hold "/", so the label carries the name only.
    labels = {TRAINING_JOB_LABEL: training_job.rsplit("/", 1)[-1]} if training_job else {}
    metadata: dict[str, Any] = {**metrics, "datasetDigest": dataset_digest}
    state = {name: tensor.detach().to("cpu") for name, tensor in module.state_dict().items()}
    model_store = _model_store(store)
    options: dict[str, Any] = {"_model_store": model_store} if model_store is not None else {}
    with bentoml.models.create(
        spec.output.model_name, labels=labels, metadata=metadata, module="modelyard.training", **options
    ) as stored:
        folder = Path(stored.path)
        torch.save(state, folder / MODEL_FILE)
        (folder / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if warmup is not None:
            from PIL import Image

            # Lossless, so the service decodes exactly the pixels the trainer checked.
            Image.fromarray(warmup.pixels).save(folder / WARMUP_FILE, format="PNG")
        if summary is not None:
            (folder / SUMMARY_FILE).write_text(json.dumps(dict(summary), indent=2, sort_keys=True) + "\n")
    return str(stored.tag)


def read_info(folder: Path, tag: str) -> ModelInfo:
    """The `modelyard.json` of a stored model's folder."""
    raw = json.loads((folder / INFO_FILE).read_text())
    return ModelInfo(
        tag=tag,
        model=ModelSpec.model_validate(raw["model"]),
        class_names=list(raw["classNames"]),
        image_size=int(raw["imageSize"]),
        normalization=Normalization.model_validate(raw["normalization"]),
        metrics={key: float(value) for key, value in raw["metrics"].items()},
        dataset_digest=str(raw["datasetDigest"]),
        training_job=raw.get("trainingJob"),
        config=dict(raw["config"]),
    )


def load_from_store(tag: str, device: str | torch.device = "cpu", *, store: Path | None = None) -> LoadedModel:
    """The stored model `tag` ("name:version" or "name" for the latest) on `device`, in eval mode, with its info."""
    import bentoml

    model_store = _model_store(store)
    options: dict[str, Any] = {"_model_store": model_store} if model_store is not None else {}
    stored = bentoml.models.get(tag, **options)
    folder = Path(stored.path)
    info = read_info(folder, str(stored.tag))
    module = build_model(info.model, load_pretrained=False)
    state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    module.to(device).eval()
    return LoadedModel(module, info)
