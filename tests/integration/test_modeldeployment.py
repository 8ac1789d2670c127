"""ModelDeployment reconciliation by the real operator process against the API emulator.

The cluster's controllers are played by tests/support/cluster.py through the API; everything else is real: kopf, the
kubernetes client, the operator's watches, its status writes, Events and metrics endpoint.
"""

from __future__ import annotations

import time
from typing import Any

import kubernetes
import pytest

from modelyard.api.model_deployment import ModelDeployment
from modelyard.operator.builders.serving import ServedRevision, build_hpa, build_pdb, build_service, pod_template
from tests.conftest import KubernetesApi, RunOperator
from tests.integration.modeldeployment_support import (
    IMAGE,
    NAME,
    NAMESPACE,
    SPEC,
    Harness,
    revisions,
    stable_on,
)
from tests.support.clients import CustomObjects
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def harness(k8s_api: KubernetesApi, run_operator: RunOperator) -> Harness:
    return Harness(k8s_api, run_operator)


def test_create_makes_exactly_the_children_the_spec_implies_and_becomes_ready(harness: Harness) -> None:
    with harness.operator():
        created = harness.create()
        deployment = eventually(harness.deployment, what="the Deployment")
        md = ModelDeployment.model_validate(created)
        expected_template = pod_template(md, ServedRevision(1, "flowers:v1", IMAGE), harness.settings)
        assert deployment["spec"]["template"]["metadata"]["labels"] == expected_template["metadata"]["labels"]
        assert (
            deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            == (expected_template["spec"]["containers"][0]["env"])
        )
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        assert deployment["spec"]["progressDeadlineSeconds"] == 60
        owner = deployment["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("ModelDeployment", NAME, created["metadata"]["uid"])

        hpa = eventually(lambda: harness.autoscaling.read_namespaced_horizontal_pod_autoscaler(NAME, NAMESPACE))
        wanted_hpa = build_hpa(md)
        assert wanted_hpa is not None
        assert harness.api.client.sanitize_for_serialization(hpa.spec) == wanted_hpa["spec"]
        service = eventually(lambda: harness.core.read_namespaced_service(NAME, NAMESPACE))
        assert service.spec.selector == build_service(md)["spec"]["selector"]
        assert [(p.port, p.target_port) for p in service.spec.ports] == [(80, "http")]
        pdb = eventually(lambda: harness.policy.read_namespaced_pod_disruption_budget(NAME, NAMESPACE))
        assert pdb.spec.max_unavailable == build_pdb(md)["spec"]["maxUnavailable"]

        status = harness.wait_status(lambda s: s.get("phase") == "Progressing", "Progressing")
        assert revisions(status) == {1: ("flowers:v1", "Progressing")}
        harness.cluster.deployment_available(NAMESPACE, NAME)
        status = harness.wait_status(lambda s: s.get("phase") == "Ready", "Ready")
        assert revisions(status) == {1: ("flowers:v1", "Stable")}
        assert (status["currentRevision"], status["stableRevision"]) == (1, 1)
        assert status["url"] == "http://flowers.default.svc"
        assert status["readyReplicas"] == status["replicas"] >= 1
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions == {"Ready": "True", "Progressing": "False", "Degraded": "False", "RolledBack": "False"}
        assert harness.events("RevisionStable")


def test_new_model_tag_makes_a_revision_that_becomes_stable(harness: Harness) -> None:
    with harness.operator(), stable_on(harness):
        harness.patch_spec({"model": {"name": "flowers", "tag": "v2"}})
        eventually(lambda: harness.served_tag() == "flowers:v2", what="the Deployment to run v2")
        status = harness.wait_status(lambda s: s.get("currentRevision") == 2, "revision 2 current")
        assert revisions(status) == {1: ("flowers:v1", "Stable"), 2: ("flowers:v2", "Progressing")}
        assert status["modelTag"] == "flowers:v2"
        assert harness.deployment()["spec"]["template"]["metadata"]["labels"]["modelyard.dev/revision"] == "2"
        harness.cluster.deployment_progressing(NAMESPACE, NAME, ready=1)
        harness.cluster.deployment_available(NAMESPACE, NAME)
        status = harness.wait_status(lambda s: s.get("stableRevision") == 2, "revision 2 stable")
        assert revisions(status) == {1: ("flowers:v1", "Superseded"), 2: ("flowers:v2", "Stable")}
        assert status["phase"] == "Ready"


def test_progress_deadline_restores_the_stable_model_once_and_never_rolls_forward(harness: Harness) -> None:
    with harness.operator(), stable_on(harness):
        harness.patch_spec({"model": {"name": "flowers", "tag": "v2"}})
        eventually(lambda: harness.served_tag() == "flowers:v2", what="the Deployment to run v2")
        harness.cluster.deployment_stuck(NAMESPACE, NAME, ready=0)

        status = harness.wait_status(lambda s: s.get("phase") == "RolledBack", "RolledBack")
        eventually(lambda: harness.served_tag() == "flowers:v1", what="v1 restored in the Deployment")
        assert revisions(status) == {1: ("flowers:v1", "Stable"), 2: ("flowers:v2", "Failed")}
        assert status["currentRevision"] == 1
        rollback = status["lastRollback"]
        assert (rollback["fromRevision"], rollback["toRevision"]) == (2, 1)
        assert rollback["reason"] == "ProgressDeadlineExceeded"
        assert "timed out progressing" in rollback["message"]
        rolled_back = next(c for c in status["conditions"] if c["type"] == "RolledBack")
        assert (rolled_back["status"], rolled_back["reason"]) == ("True", "ProgressDeadlineExceeded")
        assert eventually(harness.rollbacks_counted) == {"ProgressDeadlineExceeded": 1.0}

        # The restored revision rolls out and becomes available; several resyncs later v2 has not come back.
        harness.cluster.deployment_available(NAMESPACE, NAME)
        harness.wait_status(lambda s: s.get("readyReplicas") == 1, "the restored revision ready")
        time.sleep(3)
        assert harness.served_tag() == "flowers:v1"
        status = harness.status()
        assert status["phase"] == "RolledBack"
        assert len(status["revisions"]) == 2
        header, row = harness.kubectl_get()
        assert header.split()[:7] == ["NAME", "PHASE", "READY", "REPLICAS", "MODEL", "REVISION", "STABLE"]
        assert row.split()[:7] == [NAME, "RolledBack", "1", "1", "flowers:v1", "1", "1"]
        assert "http://flowers.default.svc" in row
        assert harness.rollbacks_counted() == {"ProgressDeadlineExceeded": 1.0}
        assert len(harness.events("RolledBack")) == 1

        # A new spec is rolled out again.
        harness.patch_spec({"model": {"name": "flowers", "tag": "v3"}})
        eventually(lambda: harness.served_tag() == "flowers:v3", what="the Deployment to run v3")


def test_manual_rollback_to_a_revision_is_handled_once(harness: Harness) -> None:
    with harness.operator(), stable_on(harness):
        harness.patch_spec({"model": {"name": "flowers", "tag": "v2"}})
        eventually(lambda: harness.served_tag() == "flowers:v2", what="v2")
        harness.cluster.deployment_available(NAMESPACE, NAME)
        harness.wait_status(lambda s: s.get("stableRevision") == 2, "revision 2 stable")

        harness.patch_spec({"rollbackTo": 1})
        status = harness.wait_status(lambda s: s.get("handledRollbackTo") == 1, "rollbackTo handled")
        eventually(lambda: harness.served_tag() == "flowers:v1", what="v1 restored")
        assert status["lastRollback"]["reason"] == "Manual"
        assert status["currentRevision"] == 1
        harness.cluster.deployment_available(NAMESPACE, NAME)
        status = harness.wait_status(lambda s: s.get("stableRevision") == 1, "revision 1 stable again")
        assert revisions(status) == {1: ("flowers:v1", "Stable"), 2: ("flowers:v2", "Superseded")}
        assert status["phase"] == "RolledBack"
        time.sleep(2)
        assert eventually(harness.rollbacks_counted) == {"Manual": 1.0}
        assert harness.served_tag() == "flowers:v1"

        harness.patch_spec({"rollbackTo": 9})
        status = harness.wait_status(lambda s: s.get("handledRollbackTo") == 9, "rollbackTo 9 handled")
        rejected = eventually(lambda: harness.events("RollbackRejected"), what="a RollbackRejected Event")
        assert "revision 9 is not in the history" in rejected[0].message
        assert status["currentRevision"] == 1


def test_scaling_settings_reach_the_hpa_and_turning_autoscaling_off_removes_it(harness: Harness) -> None:
    with harness.operator(), stable_on(harness):
        harness.patch_spec(
            {
                "replicas": {"min": 3, "max": 12},
                "autoscaling": {"targetCPUUtilizationPercentage": 50, "scaleUp": {"stabilizationWindowSeconds": 30}},
            }
        )

        def hpa_updated() -> Any:
            hpa = harness.autoscaling.read_namespaced_horizontal_pod_autoscaler(NAME, NAMESPACE)
            return hpa if (hpa.spec.min_replicas, hpa.spec.max_replicas) == (3, 12) else None

        hpa = eventually(hpa_updated, what="the HPA to follow replicas")
        assert hpa.spec.metrics[0].resource.target.average_utilization == 50
        assert hpa.spec.behavior.scale_up.stabilization_window_seconds == 30
        assert harness.status()["currentRevision"] == 1  # scaling is no new revision

        harness.patch_spec({"autoscaling": {"enabled": False}})
        eventually(lambda: harness.deployment()["spec"].get("replicas") == 3, what="fixed replicas")

        def hpa_gone() -> bool:
            try:
                harness.autoscaling.read_namespaced_horizontal_pod_autoscaler(NAME, NAMESPACE)
            except kubernetes.client.ApiException as error:
                return error.status == 404
            return False

        eventually(hpa_gone, what="the HPA to be deleted")


def test_deleting_the_modeldeployment_removes_its_children(harness: Harness) -> None:
    with harness.operator(), stable_on(harness):
        eventually(lambda: harness.policy.read_namespaced_pod_disruption_budget(NAME, NAMESPACE))
        harness.mds.delete(NAMESPACE, NAME)

        def all_gone() -> bool:
            reads = [
                lambda: harness.apps.read_namespaced_deployment(NAME, NAMESPACE),
                lambda: harness.core.read_namespaced_service(NAME, NAMESPACE),
                lambda: harness.autoscaling.read_namespaced_horizontal_pod_autoscaler(NAME, NAMESPACE),
                lambda: harness.policy.read_namespaced_pod_disruption_budget(NAME, NAMESPACE),
                lambda: harness.mds.get(NAMESPACE, NAME),
            ]
            for read in reads:
                try:
                    read()
                except kubernetes.client.ApiException as error:
                    if error.status == 404:
                        continue
                    raise
                return False
            return True

        assert eventually(all_gone, what="the ModelDeployment and its children to be gone") is True


def test_operator_restart_mid_rollout_keeps_history_and_rolls_back_once(harness: Harness) -> None:
    with harness.operator(), stable_on(harness):
        harness.patch_spec({"model": {"name": "flowers", "tag": "v2"}})
        eventually(lambda: harness.served_tag() == "flowers:v2", what="v2 rolling out")
        harness.wait_status(lambda s: s.get("currentRevision") == 2, "revision 2 current")
    # The operator is down while the rollout passes its deadline.
    harness.cluster.deployment_stuck(NAMESPACE, NAME)
    with harness.operator():
        status = harness.wait_status(lambda s: s.get("phase") == "RolledBack", "RolledBack after the restart")
        eventually(lambda: harness.served_tag() == "flowers:v1", what="v1 restored")
        assert revisions(status) == {1: ("flowers:v1", "Stable"), 2: ("flowers:v2", "Failed")}
        first_rollback = status["lastRollback"]
    # Restarted again before the restored template rolled out: the stale stuck condition must not count twice.
    with harness.operator():
        time.sleep(2)
        harness.cluster.deployment_available(NAMESPACE, NAME)
        time.sleep(2)
        status = harness.status()
        assert status["lastRollback"] == first_rollback
        assert revisions(status) == {1: ("flowers:v1", "Stable"), 2: ("flowers:v2", "Failed")}
        assert harness.rollbacks_counted() == {}  # this process rolled nothing back
        assert len(harness.events("RolledBack")) == 1
        assert harness.served_tag() == "flowers:v1"


def test_model_from_a_trainingjob_waits_for_it_then_records_the_lineage(harness: Harness) -> None:
    jobs = CustomObjects(harness.api.client, "trainingjobs")
    for name in ("train-7", "train-8"):
        jobs.create(
            NAMESPACE,
            {
                "apiVersion": "modelyard.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": name},
                "spec": {"data": {"path": "/data/flowers"}, "output": {"modelName": "flowers"}},
            },
        )
    with harness.operator():
        harness.create({**SPEC, "model": {"name": "flowers", "fromTrainingJob": "train-7"}})
        status = harness.wait_status(lambda s: s.get("phase") == "Pending", "Pending while training")
        waiting = next(c for c in status["conditions"] if c["type"] == "Progressing")
        assert waiting["reason"] == "WaitingForModel"
        assert "TrainingJob train-7 has no model yet" in waiting["message"]
        assert status.get("revisions", []) == []
        with pytest.raises(kubernetes.client.ApiException):
            harness.apps.read_namespaced_deployment(NAME, NAMESPACE)

        jobs.patch_status(NAMESPACE, "train-7", {"status": {"model": {"name": "flowers", "tag": "flowers:abc123"}}})
        eventually(lambda: harness.served_tag() == "flowers:abc123", what="the trained model served")
        status = harness.wait_status(lambda s: s.get("revisions"), "a revision")
        assert status["revisions"][0]["trainingJob"] == "train-7"

        # Promotion's patch (tag, fromTrainingJob and the promoted-from annotation) records train-8 as the source.
        jobs.patch_status(NAMESPACE, "train-8", {"status": {"model": {"name": "flowers", "tag": "flowers:def456"}}})
        harness.mds.patch(
            NAMESPACE,
            NAME,
            {
                "metadata": {"annotations": {"modelyard.dev/promoted-from": "train-8"}},
                "spec": {"model": {"name": "flowers", "tag": "def456", "fromTrainingJob": "train-8"}},
            },
        )
        status = harness.wait_status(lambda s: len(s.get("revisions", [])) == 2, "revision 2")
        promoted = status["revisions"][1]
        assert (promoted["modelTag"], promoted["trainingJob"]) == ("flowers:def456", "train-8")
        # A tag set by hand afterwards is not attributed to train-8, whatever the annotation still says.
        harness.patch_spec({"model": {"name": "flowers", "tag": "hand-picked"}})
        status = harness.wait_status(lambda s: len(s.get("revisions", [])) == 3, "revision 3")
        assert status["revisions"][2]["modelTag"] == "flowers:hand-picked"
        assert "trainingJob" not in status["revisions"][2]


def test_a_spec_that_cannot_work_is_reported_on_the_field(harness: Harness) -> None:
    with harness.operator():
        harness.create({**SPEC, "replicas": {"min": 0, "max": 2}})
        status = harness.wait_status(lambda s: s.get("phase") == "Failed", "Failed")
        degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
        assert degraded["reason"] == "InvalidSpec"
        assert "spec.replicas.min" in degraded["message"]
        assert harness.events("InvalidSpec")
        with pytest.raises(kubernetes.client.ApiException) as missing:
            harness.apps.read_namespaced_deployment(NAME, NAMESPACE)
        assert missing.value.status == 404


def test_a_foreign_object_holding_a_childs_name_is_reported_and_left_alone(harness: Harness) -> None:
    foreign = {"metadata": {"name": NAME, "labels": {"team": "web"}}, "spec": {"ports": [{"port": 8080}]}}
    harness.core.create_namespaced_service(NAMESPACE, foreign)
    with harness.operator():
        harness.create()
        status = harness.wait_status(
            lambda s: any(c["reason"] == "ChildNameTaken" for c in s.get("conditions", [])), "ChildNameTaken"
        )
        degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
        assert "is not managed by modelyard" in degraded["message"]
        assert harness.events("ChildNameTaken")
        service = harness.core.read_namespaced_service(NAME, NAMESPACE)
        assert service.metadata.labels == {"team": "web"}
        assert [p.port for p in service.spec.ports] == [8080]
        assert not service.metadata.owner_references
