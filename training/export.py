"""The trained model in the BentoML model store: what serving needs and what an auditor asks.

`save_to_store` creates `<output.modelName>:<version>` holding `model.pt` (the state dict), `modelyard.json`
(model spec, class names, image size, normalisation, metrics, dataset digest, TrainingJob, config) and
`summary.json` (the run's figures). `load_from_store` gives the module back in eval mode with that information; the
Bento service uses it with `modelyard.training.transforms.eval_transform`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from modelyard.api.training_job import ModelSpec, Normalization, TrainingJobSpec
from modelyard.training.model import AttentionClassifier, build_model

if TYPE_CHECKING:
    from bentoml._internal.models import ModelStore

MODEL_FILE = "model.pt"
INFO_FILE = "modelyard.json"
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
) -> str:
    """Save `module` as `<spec.output.model_name>:<new version>` and return the full tag.

    `training_job` is "namespace/name" of the TrainingJob that produced it (None for a run outside a cluster);
    `store` is a BentoML home, None meaning BentoML's default (BENTOML_HOME).
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
