"""The Helm chart through the real helm: lint, render, Kubernetes schemas, a security scan, and the operator's own view
of its RBAC rules and settings (operator/rbac.py, operator/settings.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from modelyard.operator import peering, rbac
from modelyard.operator.settings import Settings
from tests.support.kube_tools import CHART, CI_VALUES, NAMESPACE, find, helm_template_args, one, render, run, tool

pytestmark = pytest.mark.integration

# Kinds the Kubernetes schemas do not hold: the Prometheus Operator's. PrometheusRule's content is checked by promtool
# (test_observability_alerts.py); the monitors' selectors are checked below.
PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")


def ids(paths: list[Path]) -> list[str]:
    return [p.name.removesuffix("-values.yaml") for p in paths]


@pytest.mark.parametrize("values", CI_VALUES, ids=ids(CI_VALUES))
def test_helm_lint_is_clean(values: Path) -> None:
    done = run([tool("helm"), "lint", "--strict", str(CHART), "--values", str(values)])
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("values", CI_VALUES, ids=ids(CI_VALUES))
def test_rendered_objects_pass_strict_kubernetes_validation(values: Path, tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(run(helm_template_args([values], extra=["--include-crds"])).stdout)
    for version in KUBERNETES_VERSIONS:
        done = run([tool("kubernetes-validate"), "--strict", "-k", version, str(rendered)], check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "passed for resource deployment/" in done.stdout
        unknown = [line for line in done.stdout.splitlines() if line.startswith("WARN")]
        assert all(any(f"kind {k} " in line for k in PROMETHEUS_OPERATOR_KINDS) for line in unknown), unknown


@pytest.mark.slow
@pytest.mark.parametrize("values", CI_VALUES, ids=ids(CI_VALUES))
def test_security_scan_finds_nothing_and_every_skip_is_justified(values: Path, tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(run(helm_template_args([values], extra=["--include-crds"])).stdout)
    # checkov would otherwise try to download check metadata; there is no network here.
    done = run(
        ["env", "BC_SKIP_MAPPING=TRUE", tool("checkov"), "--framework", "kubernetes", "-o", "json", "-f", str(rendered)]
    )
    report = json.loads(done.stdout)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100, summary
    # Open-source checkov reports no severities, so any failed check counts as above low.
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    for skipped in report["results"]["skipped_checks"]:
        why = skipped.get("check_result", {}).get("suppress_comment", "")
        assert len(why) > 40, f"{skipped['check_id']} on {skipped['resource']} is skipped without a justification"


def test_clusterwide_rules_are_exactly_the_operators() -> None:
    objects = render()
    role = one(objects, "ClusterRole", "-operator")
    assert role["rules"] == rbac.policy_rules(clusterwide=True)
    binding = one(objects, "ClusterRoleBinding", "-operator")
    account = one(objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert find(objects, "Role") == []


def test_namespaced_install_has_no_cluster_rights_and_the_trainers_role() -> None:
    objects = render([CHART / "ci" / "namespaced-values.yaml"])
    watched = ["ml-team-a", "ml-team-b"]
    assert find(objects, "ClusterRole") == []
    assert find(objects, "ClusterRoleBinding") == []
    operator_roles = find(objects, "Role", "-operator")
    assert sorted(r["metadata"]["namespace"] for r in operator_roles) == watched
    for role in operator_roles:
        assert role["rules"] == rbac.policy_rules(clusterwide=False)
    trainer_roles = find(objects, "Role", "-trainer")
    assert sorted(r["metadata"]["namespace"] for r in trainer_roles) == watched
    for role in trainer_roles:
        assert role["rules"] == rbac.trainer_policy_rules()
    accounts = {(a["metadata"]["namespace"], a["metadata"]["name"]) for a in find(objects, "ServiceAccount")}
    assert {(ns, "modelyard-trainer") for ns in watched} <= accounts
    monitors_off = find(objects, "PodMonitor")
    assert monitors_off == []


def operator_environment(objects: list[dict[str, Any]]) -> dict[str, str]:
    container = one(objects, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("MODELYARD_")}


@pytest.mark.parametrize("values", CI_VALUES, ids=ids(CI_VALUES))
def test_operator_environment_is_what_its_settings_read(values: Path) -> None:
    objects = render([values])
    env = operator_environment(objects)
    fields = {f"MODELYARD_{name.upper()}" for name in Settings.model_fields}
    # Priority stays unset unless given: each replica then picks a random one.
    assert set(env) == fields - {"MODELYARD_PRIORITY"}
    with mock.patch.dict(os.environ, env, clear=True):
        settings = Settings()
    given = yaml.safe_load(values.read_text()) or {}
    assert settings.namespaces == given.get("watchNamespaces", [])
    assert settings.manage_trainer_rbac == (given.get("trainer", {}).get("rbac", "operator") == "operator")
    container = one(objects, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": settings.metrics_port, "health": settings.health_port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["command"] == ["modelyard", "operator"]


def test_images_pin_by_digest_and_default_to_the_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    default = Settings.model_validate({})
    env = operator_environment(render())
    assert env["MODELYARD_TRAINER_IMAGE"] == f"modelyard/trainer:{chart['appVersion']}" == default.trainer_image
    assert env["MODELYARD_SERVING_IMAGE"] == default.serving_image
    full = render([CHART / "ci" / "full-values.yaml"])
    operator_image = one(full, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert operator_image.startswith("registry.example.com/modelyard/operator@sha256:")
    assert operator_environment(full)["MODELYARD_TRAINER_IMAGE"] == "registry.example.com/modelyard/trainer:0.1.0"


def test_operator_pod_is_locked_down() -> None:
    pod = one(render(), "Deployment", "-operator")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsUser"] != 0
    assert set(container["resources"]) == {"requests", "limits"}


def test_peering_crds_are_the_operators() -> None:
    rendered = {c["metadata"]["name"]: c for c in find(render(), "CustomResourceDefinition")}
    expected = {c["metadata"]["name"]: c for c in peering.peering_crds()}
    assert set(rendered) == set(expected)
    for name, crd in expected.items():
        assert rendered[name]["spec"] == crd["spec"]
    assert find(render([CHART / "ci" / "namespaced-values.yaml"]), "CustomResourceDefinition") == []


def test_everything_on_renders_monitors_rule_and_dashboards() -> None:
    objects = render([CHART / "ci" / "full-values.yaml"])
    service = one(objects, "Service", "-metrics")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    components = {
        m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for m in find(objects, "PodMonitor")
    }
    assert components == {"trainer", "serving"}
    rule = one(objects, "PrometheusRule")
    alerts = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(alerts) == len(set(alerts)) >= 8
    stalled = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "ModelyardTrainingJobStalled")
    assert "> 1200" in stalled["expr"]  # trainingStalledMinutes: 20 in full-values.yaml
    dashboards = find(objects, "ConfigMap")
    assert len(dashboards) == 3
    for config_map in dashboards:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Modelyard"}
        (text,) = config_map["data"].values()
        assert json.loads(text)["uid"].startswith("modelyard-")


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("operator.replicas=two", "want integer"),
        ("operator.replica=1", "additional properties 'replica' not allowed"),
        ("unknownTopLevel=1", "additional properties 'unknownTopLevel' not allowed"),
        ("trainer.rbac=both", "trainer/rbac"),
        ("images.operator.digest=sha256:short", "images/operator/digest"),
        ("watchNamespaces[0]=Not_A_Namespace", "watchNamespaces/0"),
    ],
)
def test_schema_refuses_wrong_types_and_unknown_keys(setting: str, complaint: str) -> None:
    done = run(helm_template_args(settings=[setting]), check=False)
    assert done.returncode != 0
    assert complaint in done.stderr


def test_chart_managed_trainer_rbac_needs_listed_namespaces() -> None:
    done = run(helm_template_args(settings=["trainer.rbac=chart"]), check=False)
    assert done.returncode != 0
    assert "trainer.rbac=chart needs watchNamespaces" in done.stderr


def test_helm_test_pod_checks_the_metrics_service() -> None:
    objects = render()
    pod = one(objects, "Pod", "-test-metrics")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    service = one(objects, "Service", "-metrics")
    assert f"http://{service['metadata']['name']}.{NAMESPACE}:{service['spec']['ports'][0]['port']}/metrics" in script
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test"


def test_notes_tell_what_to_do_next() -> None:
    done = run([tool("helm"), "install", "--dry-run=client", "modelyard", str(CHART), "--namespace", NAMESPACE])
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "kubectl get tj" in notes
    assert "helm test modelyard" in notes
    assert "Observability is off" in notes
