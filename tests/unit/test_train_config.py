"""The trainer's config: a TrainingJob or its spec from YAML, --set overrides, and the run context from the
operator's environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelyard.api.training_job import Backbone, Precision
from modelyard.training.config import RunContext, load_config, local_path, parse_config
from modelyard.training.errors import ConfigError

pytestmark = pytest.mark.unit

SPEC = {"data": {"path": "/data/flowers"}, "output": {"modelName": "flowers"}}
JOB = {"apiVersion": "modelyard.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "f1", "namespace": "ml"}}


def test_reads_a_whole_trainingjob_and_remembers_whose_it_is(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**JOB, "spec": SPEC, "status": {"phase": "Running"}}))
    loaded = load_config(path)
    assert (loaded.job_name, loaded.job_namespace) == ("f1", "ml")
    assert loaded.spec.data.path == "/data/flowers"
    assert loaded.spec.model.backbone is Backbone.RESNET50  # the proposal's default


def test_reads_just_a_spec(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    loaded = load_config(path)
    assert loaded.job_name is None
    assert loaded.spec.output.model_name == "flowers"


def test_overrides_take_camel_or_snake_case_and_yaml_typed_values() -> None:
    loaded = parse_config(
        SPEC,
        [
            "training.epochs=3",
            "training.learning_rate=5e-4",
            "training.gradientClipNorm=null",
            "training.precision=bf16",
            "model.backbone=resnet18",
            "data.normalization.std=[0.5, 0.5, 0.5]",
            "training.earlyStopping.enabled=true",
        ],
    )
    spec = loaded.spec
    assert spec.training.epochs == 3
    assert spec.training.learning_rate == pytest.approx(5e-4)
    assert spec.training.gradient_clip_norm is None
    assert spec.training.precision is Precision.BF16
    assert spec.model.backbone is Backbone.RESNET18
    assert spec.data.normalization.std == (0.5, 0.5, 0.5)
    assert spec.training.early_stopping.enabled is True


def test_overrides_leave_the_parsed_document_untouched() -> None:
    document = {"data": {"path": "/a"}, "output": {"modelName": "m"}}
    parse_config(document, ["data.path=/b"])
    assert document["data"]["path"] == "/a"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("training.epochs", "expected key.path=value"),
        ("=3", "expected key.path=value"),
        ("data.path.deeper=1", "data.path is not an object"),
        ("training.epochs=0", "training.epochs: Input should be greater than or equal to 1"),
        ("training.epochz=3", "training.epochz: Extra inputs are not permitted"),
        ("model.hiddenDim=100", "must be a multiple of model.attentionHeads"),
        ("training.epochs=[1", "not valid YAML"),
    ],
)
def test_bad_overrides_are_refused_naming_the_field(assignment: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse_config(SPEC, [assignment])


def test_a_typo_in_the_file_is_an_error_not_a_default(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "trainng": {"epochs": 3}}))
    with pytest.raises(ConfigError, match=r"config .*spec.yaml is not a valid TrainingJob spec:\n  trainng: Extra"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "expected a TrainingJob or its spec"),
        ("data: [", "is not valid YAML"),
        (yaml.safe_dump({**JOB, "kind": "ModelDeployment", "spec": SPEC}), "kind is 'ModelDeployment'"),
    ],
)
def test_files_that_are_not_a_spec_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*absent.yaml"):
        load_config(tmp_path / "absent.yaml")


def test_the_operator_environment_decides_where_the_run_writes_and_reports() -> None:
    loaded = parse_config({**JOB, "spec": SPEC})
    context = RunContext.from_env(
        loaded,
        {
            "MODELYARD_TRAININGJOB_NAME": "f2",
            "MODELYARD_TRAININGJOB_NAMESPACE": "team",
            "MODELYARD_CHECKPOINT_DIR": "/store/checkpoints/f2-uid",
            "BENTOML_HOME": "/store/bento",
            "MODELYARD_METRICS_PORT": "9500",
            "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        },
    )
    assert context.training_job == "team/f2"
    assert context.checkpoint_dir == Path("/store/checkpoints/f2-uid")
    assert context.store_dir == Path("/store/bento")
    assert context.metrics_port == 9500
    assert context.status_reporting is True  # default inside a cluster


def test_without_the_environment_the_spec_decides_and_nothing_is_reported() -> None:
    context = RunContext.from_env(parse_config(SPEC), {})
    assert context.training_job is None
    assert context.checkpoint_dir == Path("/store/checkpoints/flowers")  # one subfolder per job (here: model)
    assert context.store_dir == Path("/store/bentoml")
    assert context.metrics_port == 9400
    assert context.status_reporting is False


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MODELYARD_METRICS_PORT": "http"}, "must be a port number"),
        ({"MODELYARD_METRICS_PORT": "70000"}, "must be 0..65535"),
        ({"MODELYARD_STATUS_REPORTING": "loud"}, "kubernetes or off"),
        ({"MODELYARD_STATUS_REPORTING": "kubernetes"}, "needs MODELYARD_TRAININGJOB_NAME"),
    ],
)
def test_a_bad_environment_is_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunContext.from_env(parse_config(SPEC), environ)


def test_file_uris_are_local_paths_and_other_schemes_are_refused() -> None:
    assert local_path("file:///data/my%20set") == Path("/data/my set")
    assert local_path("/data/x") == Path("/data/x")
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        local_path("s3://bucket/data")
