"""The TrainingJob builders: golden files pin the whole objects; the checks below say what matters in them.

Regenerate the golden files after an intended change with MODELYARD_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.api import TrainingJob, TrainingJobSpec
from modelyard.operator import naming
from modelyard.operator.builders.training import build_trainer_children, cluster_problems, spec_yaml
from modelyard.operator.settings import Settings

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden" / "training"
SETTINGS = Settings(trainer_image="registry.example/modelyard/trainer:test", standalone=True)


def trainingjob(name: str = "flowers", **spec: Any) -> TrainingJob:
    base: dict[str, Any] = {
        "data": {"pvc": {"claimName": "datasets", "subPath": "flowers"}, "path": "/data/flowers"},
        "output": {"modelName": "flowers", "pvc": {"claimName": "models"}},
    }
    return TrainingJob.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": "ml",
                "uid": "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9",
                "generation": 1,
            },
            "spec": {**base, **spec},
        }
    )


CASES: dict[str, TrainingJob] = {
    "single-node": trainingjob(
        resources={
            "gpusPerNode": 1,
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "training",
        },
        runPolicy={"backoffLimit": 2, "activeDeadlineSeconds": 86400, "ttlSecondsAfterFinished": 3600},
    ),
    "multi-node": trainingjob(
        "imagenet", resources={"numNodes": 4, "gpusPerNode": 8, "cpu": "64", "memory": "512Gi", "shmSize": "64Gi"}
    ),
    "cpu-no-volumes": TrainingJob.model_validate(
        {
            "metadata": {"name": "digits", "namespace": "default", "uid": "11111111-2222-3333-4444-555555555555"},
            "spec": {
                "data": {"path": "/opt/datasets/digits"},
                "output": {"modelName": "digits"},
                "resources": {"gpusPerNode": 0, "cpu": "2", "memory": "4Gi", "image": "trainer:dev"},
                "suspend": True,
            },
        }
    ),
}


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (the ConfigMap's spec.yaml) as literal blocks, so the golden files read as YAML."""


_ReadableDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None),
)


def render(tj: TrainingJob) -> str:
    objects = build_trainer_children(tj, SETTINGS).in_creation_order()
    return yaml.dump_all(objects, Dumper=_ReadableDumper, sort_keys=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_children_match_golden_file(case: str) -> None:
    path = GOLDEN / f"{case}.yaml"
    rendered = render(CASES[case])
    if os.environ.get("MODELYARD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert path.is_file(), f"{path} is missing: run with MODELYARD_UPDATE_GOLDEN=1"
    assert rendered == path.read_text(), f"{case} differs from {path}; if intended, regenerate and review the diff"


def test_builders_are_deterministic() -> None:
    assert all(render(tj) == render(tj.model_copy(deep=True)) for tj in CASES.values())


def _container(children: Any) -> dict[str, Any]:
    (container,) = children.job["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_single_node_job_carries_gpus_placement_policy_and_security() -> None:
    children = build_trainer_children(CASES["single-node"], SETTINGS)
    job, pod = children.job, children.job["spec"]["template"]["spec"]
    container = _container(children)
    assert children.service is None
    assert "completionMode" not in job["spec"]
    assert job["spec"]["podFailurePolicy"]["rules"][0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2, 3, 4]},
    }
    assert job["spec"] | {"template": None, "podFailurePolicy": None} == {
        "podFailurePolicy": None,
        "backoffLimit": 2,
        "activeDeadlineSeconds": 86400,
        "ttlSecondsAfterFinished": 3600,
        "suspend": False,
        "completions": 1,
        "parallelism": 1,
        "template": None,
    }
    assert container["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert container["resources"]["requests"] == {"cpu": "8", "memory": "32Gi"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "training"
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == SETTINGS.trainer_service_account
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["command"] == ["modelyard", "train", "--config", "/etc/modelyard/spec.yaml"]
    assert container["image"] == SETTINGS.trainer_image


def test_volumes_data_read_only_store_writable_shm_in_memory() -> None:
    children = build_trainer_children(CASES["single-node"], SETTINGS)
    pod = children.job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in _container(children)["volumeMounts"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "datasets", "readOnly": True}
    assert mounts["data"] == {"name": "data", "mountPath": "/data", "readOnly": True, "subPath": "flowers"}
    assert volumes["store"]["persistentVolumeClaim"] == {"claimName": "models"}
    assert mounts["store"] == {"name": "store", "mountPath": "/store", "readOnly": False}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert mounts["dshm"]["mountPath"] == "/dev/shm"
    assert volumes["spec"]["configMap"]["name"] == "flowers-spec"
    assert mounts["spec"]["readOnly"] is True
    assert mounts["tmp"]["mountPath"] == "/tmp"


def test_environment_follows_the_contract() -> None:
    env = {e["name"]: e for e in _container(build_trainer_children(CASES["single-node"], SETTINGS))["env"]}
    assert env["MODELYARD_TRAININGJOB_NAME"]["value"] == "flowers"
    assert env["MODELYARD_TRAININGJOB_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["MODELYARD_CHECKPOINT_DIR"]["value"] == "/store/checkpoints/flowers-0f1e2d3c"
    assert env["BENTOML_HOME"]["value"] == "/store/bentoml"
    assert env["MODELYARD_METRICS_PORT"]["value"] == "9400"
    assert env["MODELYARD_STATUS_REPORTING"]["value"] == "kubernetes"
    assert "NODE_RANK" not in env
    assert "MASTER_ADDR" not in env


def test_multi_node_is_an_indexed_job_with_a_headless_service_for_rendezvous() -> None:
    children = build_trainer_children(CASES["multi-node"], SETTINGS)
    job, service = children.job, children.service
    assert service is not None
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    assert pod["subdomain"] == service["metadata"]["name"] == "imagenet"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    # The Service selects exactly this job's pods.
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    container = _container(children)
    env = {e["name"]: e for e in container["env"]}
    assert env["MASTER_ADDR"]["value"] == "imagenet-0.imagenet.ml.svc"
    assert env["MASTER_PORT"]["value"] == "29500"
    index = env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"name": "rendezvous", "containerPort": 29500} in container["ports"]
    order = [o["kind"] for o in children.in_creation_order()]
    assert order == ["ConfigMap", "Service", "Job"]


def test_cpu_job_without_volumes_has_no_gpu_and_an_ephemeral_store() -> None:
    children = build_trainer_children(CASES["cpu-no-volumes"], SETTINGS)
    container = _container(children)
    volumes = {v["name"]: v for v in children.job["spec"]["template"]["spec"]["volumes"]}
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "data" not in volumes
    assert volumes["store"] == {"name": "store", "emptyDir": {}}
    assert children.job["spec"]["suspend"] is True
    assert container["image"] == "trainer:dev"


def test_config_map_holds_the_whole_spec_the_trainer_parses_back() -> None:
    tj = CASES["single-node"]
    children = build_trainer_children(tj, SETTINGS)
    text = children.config_map["data"]["spec.yaml"]
    assert text == spec_yaml(tj)
    assert TrainingJobSpec.model_validate(yaml.safe_load(text)) == tj.spec


def test_every_child_carries_the_contract_labels() -> None:
    for obj in build_trainer_children(CASES["multi-node"], SETTINGS).in_creation_order():
        labels = obj["metadata"]["labels"]
        assert labels[naming.LABEL_MANAGED_BY] == "modelyard"
        assert labels[naming.LABEL_PART_OF] == "modelyard"
        assert labels[naming.LABEL_COMPONENT] == "trainer"
        assert labels[naming.LABEL_INSTANCE] == labels[naming.LABEL_TRAINING_JOB] == "imagenet"
        assert obj["metadata"]["namespace"] == "ml"


@pytest.mark.parametrize(
    ("name", "spec", "field"),
    [
        ("x" * 60, {}, "metadata.name"),
        ("1st-run", {}, "metadata.name"),
        (
            "ok",
            {"output": {"modelName": "m", "pvc": {"claimName": "models"}, "storePath": "/home/models"}},
            "spec.output.storePath",
        ),
        ("ok", {"output": {"modelName": "m", "checkpointPath": "/var/ckpt"}}, "spec.output.checkpointPath"),
        ("ok", {"data": {"pvc": {"claimName": "d"}, "path": "/datasets/x"}}, "spec.data.path"),
        (
            "ok",
            {"output": {"modelName": "m"}, "promotion": {"modelDeployment": "web", "threshold": 0.9}},
            "spec.output.pvc",
        ),
    ],
)
def test_cluster_problems_name_the_field(name: str, spec: dict[str, Any], field: str) -> None:
    problems = cluster_problems(trainingjob(name, **spec))
    assert [p.field for p in problems] == [field]
    assert str(problems[0]).startswith(field + ": ")


def test_a_good_spec_has_no_cluster_problems() -> None:
    assert all(cluster_problems(tj) == [] for tj in CASES.values())
    assert cluster_problems(trainingjob("x" * naming.MAX_TRAININGJOB_NAME_LENGTH)) == []


def test_unretryable_exit_codes_are_the_trainers() -> None:
    from modelyard.operator.builders.training import UNRETRYABLE_EXIT_CODES
    from modelyard.training.errors import ConfigError, DatasetError, DivergedError

    assert (ConfigError.exit_code, DatasetError.exit_code, DivergedError.exit_code) == UNRETRYABLE_EXIT_CODES
