"""ModelDeployment → Deployment, Service, HPA, PDB: golden files, the Kubernetes schema, and the rules behind them.

Regenerate the golden files after an intended change with MODELYARD_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelyard.api.model_deployment import ModelDeployment, Revision, RevisionOutcome
from modelyard.operator import naming
from modelyard.operator.builders.serving import (
    ServedRevision,
    as_revision,
    build_deployment,
    build_hpa,
    build_pdb,
    build_service,
    pod_template,
    revision_template,
    service_url,
    template_hash,
)
from modelyard.operator.settings import Settings

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden" / "serving"
EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
KUBERNETES_VERSION = "1.30"
SETTINGS = Settings(serving_image="registry.example/modelyard/serving:0.1.0", serving_run_as_user=1000)

CASES: dict[str, dict[str, Any]] = {
    "minimal": {"model": {"name": "digits", "tag": "v1"}},
    "autoscaling": yaml.safe_load((EXAMPLES / "modeldeployment-autoscaling.yaml").read_text())["spec"],
    "gpu-fixed": {
        "model": {"name": "flowers", "tag": "v7"},
        "image": "registry.example/custom-serving:2",
        "store": {"claimName": "team-store", "subPath": "team-a"},
        "replicas": {"min": 3, "max": 3},
        "autoscaling": {"enabled": False},
        "resources": {"cpu": "4", "memory": "16Gi", "gpu": 1},
        "rollout": {"maxSurge": "50%", "maxUnavailable": "25%", "progressDeadlineSeconds": 120},
        "rollback": {"revisionHistoryLimit": 3},
        "service": {"type": "NodePort", "port": 8080},
    },
}


def model_deployment(spec: dict[str, Any], name: str = "flowers") -> ModelDeployment:
    return ModelDeployment.model_validate(
        {"metadata": {"name": name, "namespace": "ml", "uid": "0f1e2d3c", "generation": 1}, "spec": spec}
    )


def served(md: ModelDeployment, number: int = 1) -> ServedRevision:
    return ServedRevision(number, md.spec.model.full_tag or "", md.spec.image or SETTINGS.serving_image)


def children(case: str) -> dict[str, dict[str, Any] | None]:
    md = model_deployment(CASES[case])
    return {
        "deployment": build_deployment(md, served(md), SETTINGS),
        "service": build_service(md),
        "hpa": build_hpa(md),
        "pdb": build_pdb(md),
    }


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["deployment", "service", "hpa", "pdb"])
def test_children_match_golden_files(case: str, kind: str) -> None:
    built = children(case)[kind]
    path = GOLDEN / case / f"{kind}.yaml"
    if os.environ.get("MODELYARD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        if built is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(yaml.safe_dump(built, sort_keys=False))
    if built is None:
        assert not path.exists(), f"{path} exists but no {kind} is built for {case}"
        return
    assert built == yaml.safe_load(path.read_text()), f"{kind} of {case} differs from {path}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_children_are_valid_kubernetes_objects(case: str) -> None:
    validated = []
    for built in children(case).values():
        if built is not None:
            # Raises ValidationError on any field the Kubernetes schema does not allow.
            kubernetes_validate.validate(built, KUBERNETES_VERSION, strict=True)
            validated.append(built["kind"])
    assert {"Deployment", "Service", "PodDisruptionBudget"} <= set(validated)


def test_deployment_runs_the_bento_service_as_docs_contracts_say() -> None:
    md = model_deployment(CASES["autoscaling"])
    deployment = build_deployment(md, ServedRevision(4, "flowers:v9", "img:3"), SETTINGS)
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELYARD_MODEL_TAG"] == "flowers:v9"
    assert (env["MODELYARD_MAX_BATCH_SIZE"], env["MODELYARD_MAX_LATENCY_MS"]) == ("64", "5000")
    assert env["MODELYARD_DEVICE"] == "cpu"
    assert container["image"] == "img:3"
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert "startupProbe" in container
    # The model store is mounted read-only where BENTOML_HOME looks for models; the home itself is scratch.
    store = next(m for m in container["volumeMounts"] if m["name"] == "model-store")
    assert store == {
        "name": "model-store",
        "mountPath": f"{env['BENTOML_HOME']}/models",
        "subPath": "bentoml/models",
        "readOnly": True,
    }
    assert pod["metadata"]["labels"][naming.LABEL_REVISION] == "4"
    assert deployment["metadata"]["annotations"][naming.LABEL_REVISION] == "4"


def test_pods_are_locked_down() -> None:
    pod = pod_template(model_deployment(CASES["minimal"]), ServedRevision(1, "digits:v1", "img"), SETTINGS)["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_selector_spans_revisions_so_a_rollout_replaces_pods_in_place() -> None:
    md = model_deployment(CASES["minimal"])
    one = build_deployment(md, ServedRevision(1, "digits:v1", "img"), SETTINGS)
    two = build_deployment(md, ServedRevision(2, "digits:v2", "img"), SETTINGS)
    assert one["spec"]["selector"] == two["spec"]["selector"]
    assert naming.LABEL_REVISION not in one["spec"]["selector"]["matchLabels"]
    assert build_service(md)["spec"]["selector"] == one["spec"]["selector"]["matchLabels"]


def test_template_hash_follows_what_the_pods_run_and_nothing_else() -> None:
    md = model_deployment(CASES["minimal"])
    base = template_hash(md, ServedRevision(1, "digits:v1", "img:1"), SETTINGS)
    assert template_hash(md, ServedRevision(9, "digits:v1", "img:1"), SETTINGS) == base
    assert template_hash(md, ServedRevision(1, "digits:v2", "img:1"), SETTINGS) != base
    assert template_hash(md, ServedRevision(1, "digits:v1", "img:2"), SETTINGS) != base
    more_memory = model_deployment({**CASES["minimal"], "resources": {"memory": "8Gi"}})
    assert template_hash(more_memory, ServedRevision(1, "digits:v1", "img:1"), SETTINGS) != base
    # Scaling and rollout settings are not part of the pods: no new revision for them.
    scaled = model_deployment({**CASES["minimal"], "replicas": {"min": 2, "max": 9}, "rollout": {"maxSurge": 2}})
    assert template_hash(scaled, ServedRevision(1, "digits:v1", "img:1"), SETTINGS) == base


def test_replicas_are_left_to_the_hpa_when_autoscaling() -> None:
    assert "replicas" not in children("minimal")["deployment"]["spec"]  # type: ignore[index]
    assert children("gpu-fixed")["deployment"]["spec"]["replicas"] == 3  # type: ignore[index]


def test_scaling_settings_reach_the_hpa() -> None:
    hpa = children("autoscaling")["hpa"]
    assert hpa is not None
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    assert spec["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    assert spec["metrics"][1]["pods"]["target"] == {"type": "AverageValue", "averageValue": "50"}
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "flowers"}


def test_fractional_request_rate_is_a_milli_quantity() -> None:
    md = model_deployment({**CASES["minimal"], "autoscaling": {"targetRequestsPerSecond": 12.5}})
    hpa = build_hpa(md)
    assert hpa is not None
    assert hpa["spec"]["metrics"][1]["pods"]["target"]["averageValue"] == "12500m"


def test_gpu_replicas_ask_for_the_gpu_and_run_on_cuda() -> None:
    container = children("gpu-fixed")["deployment"]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "MODELYARD_DEVICE", "value": "cuda"} in container["env"]


def test_the_access_log_is_switched_on_only_by_the_spec() -> None:
    def env(body: dict[str, Any]) -> dict[str, str]:
        deployment = build_deployment(model_deployment(body), ServedRevision(1, "flowers:v9", "img:3"), SETTINGS)
        return {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}

    # Off is the service's own default, and no variable: an upgrade leaves existing pod templates (and hashes) alone.
    assert "MODELYARD_ACCESS_LOG" not in env(CASES["minimal"])
    assert env({**CASES["minimal"], "accessLog": True})["MODELYARD_ACCESS_LOG"] == "on"


def test_service_url_names_the_port_only_when_not_80() -> None:
    assert service_url(model_deployment(CASES["minimal"])) == "http://flowers.ml.svc"
    assert service_url(model_deployment(CASES["gpu-fixed"])) == "http://flowers.ml.svc:8080"


def test_a_deployment_needs_a_revision_number() -> None:
    md = model_deployment(CASES["minimal"])
    with pytest.raises(ValueError, match="numbered revision"):
        build_deployment(md, ServedRevision(None, "digits:v1", "img"), SETTINGS)


def test_a_revision_is_rebuilt_exactly_as_it_ran_whatever_the_spec_says_now() -> None:
    then = model_deployment({**CASES["minimal"], "batching": {"maxLatencyMs": 50}, "resources": {"memory": "3Gi"}})
    recorded = Revision(
        revision=1,
        model_tag="digits:v1",
        image="img:1",
        template_hash=template_hash(then, ServedRevision(None, "digits:v1", "img:1"), SETTINGS),
        template=revision_template(then.spec),
        created_at="2026-11-01T12:00:00Z",
        outcome=RevisionOutcome.STABLE,
    )
    now = model_deployment(
        {**CASES["minimal"], "model": {"name": "digits", "tag": "v2"}, "batching": {"maxLatencyMs": 20}}
    )
    as_run, served = as_revision(now, recorded)
    assert (
        template_hash(as_run, ServedRevision(None, served.model_tag, served.image), SETTINGS) == recorded.template_hash
    )
    env = build_deployment(as_run, served, SETTINGS)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MODELYARD_MAX_LATENCY_MS", "value": "50"} in env
    assert {"name": "MODELYARD_MODEL_TAG", "value": "digits:v1"} in env
    # Everything that is not the pods' (scaling, service) still follows the spec.
    assert as_run.spec.replicas == now.spec.replicas
