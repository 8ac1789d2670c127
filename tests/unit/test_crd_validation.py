"""The generated CRDs: valid for Kubernetes (kubernetes-validate --strict), every example accepted by their schema,
and invalid resources refused with a 422 whose message names the field, as the API server words it. The schema
checks run through the API emulator's own admission (prune, default, validate, CEL), in process."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import kmock
import kubernetes_validate
import pytest
import yaml

from tests.support.emulator import errors
from tests.support.emulator.api import Api
from tests.support.emulator.resources import CRD_TYPE

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = sorted((REPO / "manifests" / "crds").glob("*.yaml"))
EXAMPLE_FILES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))
PLURALS = {"TrainingJob": "trainingjobs", "ModelDeployment": "modeldeployments"}

TRAINING_JOB: dict[str, Any] = {
    "apiVersion": "modelyard.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "tj"},
    "spec": {"data": {"path": "/data/flowers"}, "output": {"modelName": "flowers"}},
}
MODEL_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "modelyard.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "md"},
    "spec": {"model": {"name": "flowers", "tag": "v1"}, "store": {"claimName": "models"}},
}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


async def _api() -> Api:
    api = Api(kmock.ResourcesArray())
    await api.bootstrap()
    for path in CRD_FILES:
        for document in _documents(path):
            await api.create(CRD_TYPE, None, document)
    return api


def admit(document: dict[str, Any]) -> dict[str, Any]:
    """Create the resource in a fresh emulator (no HTTP) and return what the server stored."""

    async def create() -> dict[str, Any]:
        api = await _api()
        rtype = api.resolve("modelyard.dev", "v1alpha1", PLURALS[document["kind"]])
        assert rtype is not None
        stored, _ = await api.create(rtype, "default", document)
        return stored

    return asyncio.run(create())


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_crd_passes_kubernetes_validate_strict(path: Path) -> None:
    documents = _documents(path)
    assert [document["kind"] for document in documents] == ["CustomResourceDefinition"]
    for document in documents:
        # Raises ValidationError naming every violation; the next test shows it does for a broken CRD.
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_validate_strict_catches_a_broken_crd() -> None:
    broken = copy.deepcopy(_documents(CRD_FILES[0])[0])
    broken["spec"]["scopes"] = broken["spec"].pop("scope")  # a typo kubectl would carry to the server
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_there_are_examples_of_both_kinds() -> None:
    kinds = {document["kind"] for path in EXAMPLE_FILES for document in _documents(path)}
    assert kinds == set(PLURALS)


@pytest.mark.parametrize(
    "document",
    [document for path in EXAMPLE_FILES for document in _documents(path)],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_every_example_is_accepted_and_loses_nothing(document: dict[str, Any]) -> None:
    stored = admit(document)

    def contains(stored_part: Any, written: Any, path: str) -> None:
        if isinstance(written, dict):
            for key, value in written.items():
                assert key in stored_part, f"{path}.{key} was pruned: not in the schema"
                contains(stored_part[key], value, f"{path}.{key}")
        else:
            assert stored_part == written, path

    contains(stored["spec"], document["spec"], "spec")


def test_defaults_are_filled_in_as_the_server_would() -> None:
    spec = admit(TRAINING_JOB)["spec"]
    assert spec["model"]["backbone"] == "resnet50"
    assert spec["model"]["numClasses"] == 10
    assert spec["training"]["batchSize"] == 32
    assert spec["training"]["learningRate"] == pytest.approx(1e-3)


def test_cuda_graphs_with_compile_and_no_accumulation_are_admitted() -> None:
    training = admit(_with(TRAINING_JOB, "spec.training", {"cudaGraphs": True, "compile": True}))["spec"]["training"]
    assert (training["cudaGraphs"], training["compile"], training["gradientAccumulationSteps"]) == (True, True, 1)


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = document
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return document


_DELETE = object()

INVALID = [
    (
        _with(TRAINING_JOB, "spec.training.epochs", -1),
        "spec.training.epochs: Invalid value: -1: spec.training.epochs in body should be greater than or equal to 1",
    ),
    (
        _with(TRAINING_JOB, "spec.model.backbone", "resnet7"),
        'spec.model.backbone: Unsupported value: "resnet7": supported values: '
        '"resnet18", "resnet34", "resnet50", "resnet101"',
    ),
    (
        _with(_with(TRAINING_JOB, "spec.model.hiddenDim", 500), "spec.model.attentionHeads", 8),
        'spec.model.hiddenDim: Invalid value: "object": hiddenDim must be a multiple of attentionHeads',
    ),
    (
        _with(_with(TRAINING_JOB, "spec.model.freezeBatchNorm", True), "spec.model.pretrained", False),
        'spec.model.freezeBatchNorm: Invalid value: "object": freezeBatchNorm needs pretrained',
    ),
    (
        _with(TRAINING_JOB, "spec.training.cudaGraphs", True),
        'spec.training.cudaGraphs: Invalid value: "object": cudaGraphs needs compile',
    ),
    (
        _with(
            _with(TRAINING_JOB, "spec.training", {"cudaGraphs": True, "compile": True}),
            "spec.training.gradientAccumulationSteps",
            4,
        ),
        'spec.training.cudaGraphs: Invalid value: "object": cudaGraphs needs gradientAccumulationSteps 1',
    ),
    (_with(TRAINING_JOB, "spec.resources.memory", "lots"), 'spec.resources.memory: Invalid value: "lots"'),
    (_with(TRAINING_JOB, "spec.data.path", _DELETE), "spec.data.path: Required value"),
    (_with(TRAINING_JOB, "spec.output", _DELETE), "spec.output: Required value"),
    (_with(TRAINING_JOB, "spec.training.precision", "fp8"), 'spec.training.precision: Unsupported value: "fp8"'),
    (_with(TRAINING_JOB, "spec.training.batchSize", "32"), 'spec.training.batchSize: Invalid value: "string"'),
    (
        _with(MODEL_DEPLOYMENT, "spec.replicas", {"min": 5, "max": 2}),
        'spec.replicas.min: Invalid value: "object": min must not exceed max',
    ),
    (
        _with(MODEL_DEPLOYMENT, "spec.model", {"name": "flowers"}),
        'spec.model.tag: Invalid value: "object": set tag or fromTrainingJob',
    ),
    (_with(MODEL_DEPLOYMENT, "spec.resources.cpu", "two"), 'spec.resources.cpu: Invalid value: "two"'),
]


@pytest.mark.parametrize(("document", "message"), INVALID, ids=[message.split(":")[0] for _, message in INVALID])
def test_invalid_resources_are_refused_naming_the_field(document: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.ApiError) as refused:
        admit(document)
    assert refused.value.status == 422
    assert refused.value.reason == "Invalid"
    assert message in refused.value.message
    field = message.split(":")[0]
    assert field in [cause["field"] for cause in refused.value.details["causes"]]
