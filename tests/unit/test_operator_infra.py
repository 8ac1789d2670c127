"""The operator's shared pieces: naming, settings, RBAC list, API client guard, apply diffing, metrics, Events."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import kopf
import pytest
from kubernetes import client

from modelyard.operator import naming, rbac
from modelyard.operator.apply import contains, diff_patch
from modelyard.operator.kube import JOB, MODEL_DEPLOYMENT, SERVICE_ACCOUNT, Kube
from modelyard.operator.metrics import OperatorMetrics
from modelyard.operator.peering import peering_crds, peering_objects
from modelyard.operator.settings import Settings
from modelyard.operator.status import ConditionUpdate, EventSpec, event_object, update_conditions

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}


def test_importing_the_operator_and_its_help_never_import_torch_training_or_bento() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['modelyard', 'operator', '--help']\n"
        "import modelyard.operator.main\n"
        "from modelyard.cli import main\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert done.code == 0, done.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'bentoml', 'torchvision')\n"
        "               or m.startswith(('modelyard.training', 'modelyard.bento')))\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "--all-namespaces" in result.stdout
    assert "HEAVY []" in result.stdout


def test_children_labels_follow_the_contract() -> None:
    assert naming.trainer_labels("flowers") == {
        "app.kubernetes.io/name": "modelyard-trainer",
        "app.kubernetes.io/instance": "flowers",
        "app.kubernetes.io/managed-by": "modelyard",
        "app.kubernetes.io/part-of": "modelyard",
        "app.kubernetes.io/component": "trainer",
        "modelyard.dev/training-job": "flowers",
    }
    assert naming.serving_labels("web", 3)["modelyard.dev/revision"] == "3"
    assert naming.serving_selector("web").items() <= naming.serving_labels("web", 3).items()
    assert naming.is_managed_by_us(naming.trainer_labels("a"), naming.Component.TRAINER, "a")
    assert not naming.is_managed_by_us(naming.trainer_labels("a"), naming.Component.TRAINER, "b")
    owner = {"apiVersion": "modelyard.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "a", "uid": "u-1"}}
    reference = naming.owner_reference(owner)
    assert reference == {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "TrainingJob",
        "name": "a",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().clusterwide
    monkeypatch.setenv("MODELYARD_NAMESPACES", "ml, research ,")
    monkeypatch.setenv("MODELYARD_TRAINER_IMAGE", "registry.example/trainer:1")
    monkeypatch.setenv("MODELYARD_METRICS_PORT", "9000")
    settings = Settings()
    assert settings.namespaces == ["ml", "research"]
    assert not settings.clusterwide
    assert (settings.trainer_image, settings.metrics_port) == ("registry.example/trainer:1", 9000)
    monkeypatch.setenv("MODELYARD_METRICS_PORT", "not-a-port")
    with pytest.raises(ValueError, match="metrics_port"):
        Settings()


def test_rbac_rules_are_policy_rules_with_known_verbs() -> None:
    rules = rbac.policy_rules()
    assert rules
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}
        assert set(rule["verbs"]) <= KUBERNETES_VERBS
    namespaced = rbac.policy_rules(clusterwide=False)
    assert all("customresourcedefinitions" not in r["resources"] for r in namespaced)
    assert len(namespaced) < len(rules)
    assert rbac.allows("batch", "jobs", "create")
    assert not rbac.allows("batch", "jobs", "delete"), "children go with their owner: the operator never deletes"
    assert not rbac.allows("", "secrets", "get")


def test_the_trainer_may_only_report_its_status() -> None:
    assert rbac.trainer_policy_rules() == [
        {"apiGroups": ["modelyard.dev"], "resources": ["trainingjobs/status"], "verbs": ["get", "patch"]}
    ]
    account, role, binding = rbac.trainer_rbac_objects("ml", Settings())
    assert account["metadata"] == {**account["metadata"], "name": "modelyard-trainer", "namespace": "ml"}
    assert role["rules"] == rbac.trainer_policy_rules()
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "modelyard-trainer", "namespace": "ml"}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_the_api_client_refuses_a_call_the_rbac_list_does_not_grant() -> None:
    kube = Kube(client.ApiClient(client.Configuration(host="http://127.0.0.1:9")))
    with pytest.raises(PermissionError, match="delete batch/jobs"):
        kube._call("delete", "DELETE", JOB, JOB.path("ml", "x"))


def test_paths_of_kinds() -> None:
    assert JOB.path("ml", "flowers") == "/apis/batch/v1/namespaces/ml/jobs/flowers"
    assert SERVICE_ACCOUNT.path("ml") == "/api/v1/namespaces/ml/serviceaccounts"
    assert MODEL_DEPLOYMENT.path("ml", "web", "status") == (
        "/apis/modelyard.dev/v1alpha1/namespaces/ml/modeldeployments/web/status"
    )
    with pytest.raises(ValueError, match="namespaced"):
        JOB.path(None, "x")


def test_apply_diffs_only_what_differs_on_mutable_paths() -> None:
    live = {
        "metadata": {"labels": {"a": "1", "added-by-someone": "x"}},
        "spec": {"suspend": False, "backoffLimit": 3, "activeDeadlineSeconds": 60, "template": {"spec": {"x": 1}}},
    }
    wanted = {"metadata": {"labels": {"a": "1"}}, "spec": {"suspend": True, "backoffLimit": 3, "template": {"y": 2}}}
    paths = ["metadata.labels", "spec.suspend", "spec.backoffLimit", "spec.activeDeadlineSeconds"]
    assert diff_patch(live, wanted, paths) == {"spec": {"suspend": True, "activeDeadlineSeconds": None}}
    assert diff_patch(live, live, paths) == {}
    assert contains({"a": [{"x": 1, "default": 2}]}, {"a": [{"x": 1}]})
    assert not contains({"a": [{"x": 1}, {"x": 2}]}, {"a": [{"x": 1}]})


def test_conditions_report_transitions_and_events_name_the_object() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    conditions, transitions = update_conditions(
        [], [ConditionUpdate("Running", True, "PodsRunning")], generation=1, now=now
    )
    assert transitions == ["Running"]
    same, transitions = update_conditions(
        conditions, [ConditionUpdate("Running", True, "PodsRunning", "1/1")], generation=1
    )
    assert transitions == [], "a new message alone is no transition"
    assert same[0]["message"] == "1/1"
    obj = {"apiVersion": "modelyard.dev/v1alpha1", "kind": "TrainingJob",
           "metadata": {"name": "flowers", "namespace": "ml", "uid": "u-1"}}  # fmt: skip
    event = event_object(obj, EventSpec("Warning", "PodFailed", "x" * 5000), now)
    assert event["involvedObject"] == {**obj["metadata"], "apiVersion": obj["apiVersion"], "kind": "TrainingJob"}
    assert (event["type"], event["reason"], len(event["message"])) == ("Warning", "PodFailed", 1024)
    assert event["metadata"] == {"generateName": "flowers.", "namespace": "ml"}


def test_metrics_count_outcomes_and_phases() -> None:
    metrics = OperatorMetrics()
    with metrics.reconciling("TrainingJob"):
        pass
    with pytest.raises(kopf.PermanentError), metrics.reconciling("TrainingJob"):
        raise kopf.PermanentError("bad")
    with pytest.raises(kopf.TemporaryError), metrics.reconciling("TrainingJob"):
        raise kopf.TemporaryError("later")
    sample = metrics.registry.get_sample_value
    for outcome in ("success", "invalid", "retry"):
        assert sample("modelyard_operator_reconciliations_total", {"kind": "TrainingJob", "outcome": outcome}) == 1
    assert sample("modelyard_operator_reconcile_duration_seconds_count", {"kind": "TrainingJob"}) == 3
    metrics.set_trainingjob_phase("ml", "a", "Running")
    metrics.set_trainingjob_phase("ml", "b", "Running")
    metrics.set_trainingjob_phase("ml", "a", "Succeeded")
    assert sample("modelyard_trainingjobs", {"namespace": "ml", "phase": "Running"}) == 1
    assert sample("modelyard_trainingjobs", {"namespace": "ml", "phase": "Succeeded"}) == 1
    metrics.set_trainingjob_phase("ml", "b", None)
    assert sample("modelyard_trainingjobs", {"namespace": "ml", "phase": "Running"}) == 0


def test_peering_objects_match_the_scope() -> None:
    assert [o["kind"] for o in peering_objects("modelyard", [])] == ["ClusterKopfPeering"]
    per_namespace = peering_objects("modelyard", ["a", "b"])
    assert [(o["kind"], o["metadata"]["namespace"]) for o in per_namespace] == [
        ("KopfPeering", "a"),
        ("KopfPeering", "b"),
    ]
    assert {c["metadata"]["name"] for c in peering_crds()} == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
