"""The API models: the proposal's defaults, the cross-field rules, and the camelCase wire form."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelyard.api import ModelDeploymentSpec, TrainingJobSpec
from modelyard.api.model_deployment import ModelRef, ReplicasSpec
from modelyard.api.training_job import Backbone, ModelSpec, Optimizer, Scheduler, TrainingSpec

pytestmark = pytest.mark.unit

MINIMAL_TJ = {"data": {"path": "/data/digits"}, "output": {"modelName": "digits"}}


def test_trainingjob_defaults_are_the_proposals_recipe() -> None:
    spec = TrainingJobSpec.model_validate(MINIMAL_TJ)
    assert spec.model.backbone is Backbone.RESNET50
    assert spec.model.pretrained is True
    assert (spec.model.num_classes, spec.model.dropout_rate) == (10, 0.3)
    assert (spec.model.attention_heads, spec.model.hidden_dim) == (8, 512)
    assert (spec.training.learning_rate, spec.training.batch_size) == (1e-3, 32)
    assert spec.training.optimizer is Optimizer.ADAMW
    assert spec.training.scheduler is Scheduler.COSINE
    assert spec.training.weight_decay == 1e-4
    assert spec.data.image_size == 224
    assert spec.data.normalization.mean == (0.485, 0.456, 0.406)


def test_wire_form_is_camel_case_and_round_trips() -> None:
    spec = TrainingJobSpec.model_validate(MINIMAL_TJ)
    wire = spec.to_wire()
    assert wire["training"]["gradientAccumulationSteps"] == 1
    assert wire["model"]["numClasses"] == 10
    assert "num_classes" not in wire["model"]
    assert TrainingJobSpec.model_validate(wire) == spec


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"training": {"epochs": 0}}, "training.epochs"),
        ({"model": {"backbone": "vgg16"}}, "model.backbone"),
        ({"model": {"hiddenDim": 100, "attentionHeads": 8}}, "model"),
        ({"training": {"learningRate": -1}}, "training.learningRate"),
        ({"resources": {"memory": "lots"}}, "resources.memory"),
        ({"training": {"epocs": 3}}, "training.epocs"),
    ],
)
def test_invalid_trainingjob_specs_name_the_field(patch: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingJobSpec.model_validate({**MINIMAL_TJ, **patch})
    locations = [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]
    assert any(loc.startswith(field) for loc in locations), locations


def test_hidden_dim_must_divide_by_heads() -> None:
    with pytest.raises(ValidationError, match=r"multiple of model\.attentionHeads"):
        ModelSpec(hidden_dim=100, attention_heads=8)
    assert ModelSpec(hidden_dim=96, attention_heads=8).hidden_dim == 96


def test_frozen_batch_norm_needs_pretrained_weights() -> None:
    with pytest.raises(ValidationError, match=r"model\.freezeBatchNorm needs model\.pretrained"):
        ModelSpec(freeze_batch_norm=True, pretrained=False)
    assert ModelSpec(freeze_batch_norm=True).freeze_batch_norm


def test_cuda_graphs_need_compile_and_one_micro_batch_per_step() -> None:
    with pytest.raises(ValidationError, match=r"training\.cudaGraphs needs training\.compile"):
        TrainingSpec(cuda_graphs=True)
    with pytest.raises(ValidationError, match=r"training\.cudaGraphs needs training\.gradientAccumulationSteps 1"):
        TrainingSpec(cuda_graphs=True, compile=True, gradient_accumulation_steps=2)
    assert TrainingSpec(cuda_graphs=True, compile=True).cuda_graphs


def test_replicas_min_above_max_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"replicas.min \(5\) must not exceed replicas.max \(2\)"):
        ReplicasSpec(min=5, max=2)


def test_model_ref_needs_a_tag_or_a_training_job() -> None:
    with pytest.raises(ValidationError, match="set tag or fromTrainingJob"):
        ModelRef(name="digits")
    assert ModelRef(name="digits", tag="v1").full_tag == "digits:v1"
    assert ModelRef(name="digits", from_training_job="nightly").full_tag is None


def test_modeldeployment_uses_kubernetes_spelling() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {"model": {"name": "digits", "tag": "v1"}, "autoscaling": {"targetCPUUtilizationPercentage": 55}}
    )
    assert spec.autoscaling.target_cpu_utilization_percentage == 55
    assert spec.to_wire()["autoscaling"]["targetCPUUtilizationPercentage"] == 55
    assert spec.rollout.max_surge == "25%"


@pytest.mark.parametrize("bad", ["25 percent", -1, "%"])
def test_rollout_surge_must_be_a_number_or_percentage(bad: object) -> None:
    with pytest.raises(ValidationError, match=r"rollout\.maxSurge"):
        ModelDeploymentSpec.model_validate({"model": {"name": "d", "tag": "v1"}, "rollout": {"maxSurge": bad}})
