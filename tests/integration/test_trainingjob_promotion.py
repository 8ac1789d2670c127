"""Promotion to a ModelDeployment, `kubectl get tj` on the shipped example, and two replicas of which one acts —
all with the real operator process against the API emulator."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from modelyard.api.training_job import ProducedModel, Progress, TrainingMetrics
from modelyard.bento.process import free_port
from modelyard.operator.peering import peering_crds
from tests.conftest import KubernetesApi
from tests.integration.test_trainingjob import NAMESPACE, SPEC, Harness, harness
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

__all__ = ["harness"]  # the fixture, shared with test_trainingjob.py

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "manifests" / "examples"
MODEL_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "modelyard.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "web"},
    "spec": {"model": {"name": "flowers", "tag": "v1"}, "store": {"claimName": "model-store"}},
}


def train(harness: Harness, name: str, accuracy: float, tag: str, promotion: dict[str, Any]) -> dict[str, Any]:
    """A TrainingJob that asks for promotion runs, reports `accuracy` and model `tag`, and succeeds."""
    harness.create(name, {**SPEC, "promotion": promotion})
    harness.wait_job(name)
    harness.cluster.job_running(NAMESPACE, name)
    harness.wait_phase(name, "Running")
    harness.report(
        name,
        progress=Progress(epoch=10, total_epochs=10, step=100, percent=100, eta_seconds=0),
        metrics=TrainingMetrics(val_accuracy=accuracy, best_val_accuracy=accuracy, best_epoch=9),
        model=ProducedModel(name="flowers", tag=tag),
    )
    harness.cluster.job_succeeded(NAMESPACE, name)
    return harness.wait_status(
        name, lambda s: any(c["type"] == "Promoted" for c in s.get("conditions", [])), f"{name} judged for promotion"
    )


def promoted(status: dict[str, Any]) -> dict[str, Any]:
    return dict(next(c for c in status["conditions"] if c["type"] == "Promoted"))


def test_promotion_above_the_threshold_changes_the_model_and_below_it_changes_nothing(harness: Harness) -> None:
    with harness.operator():
        harness.mds.create(NAMESPACE, MODEL_DEPLOYMENT)
        status = train(harness, "good", 0.9, "flowers:v2", {"modelDeployment": "web", "threshold": 0.8})
        condition = promoted(status)
        assert (condition["status"], condition["reason"]) == ("True", "Promoted")
        assert "valAccuracy 0.9000 (threshold 0.8000" in condition["message"]
        md = harness.mds.get(NAMESPACE, "web")
        assert md["spec"]["model"] == {"name": "flowers", "tag": "v2", "fromTrainingJob": "good"}
        assert md["metadata"]["annotations"]["modelyard.dev/promoted-from"] == "good"
        eventually(lambda: ("Normal", "Promoted") in [e[:2] for e in harness.events("good")], "a Promoted Event")

        status = train(harness, "weak", 0.7, "flowers:v3", {"modelDeployment": "web", "threshold": 0.8})
        condition = promoted(status)
        assert (condition["status"], condition["reason"]) == ("False", "PromotionRejected")
        assert condition["message"] == "valAccuracy 0.7000 does not pass the threshold: at least 0.8000"

        # Good enough for the threshold, but not better than what "good" (0.9, found through lineage) serves now.
        rival = {"modelDeployment": "web", "threshold": 0.8, "mustBeatCurrent": True}
        status = train(harness, "rival", 0.85, "flowers:v4", rival)
        condition = promoted(status)
        assert (condition["status"], condition["reason"]) == ("False", "PromotionRejected")
        assert "does not beat the current model flowers:v2: 0.9000" in condition["message"]
        rejected = ("Warning", "PromotionRejected")
        eventually(lambda: rejected in [e[:2] for e in harness.events("rival")], "a PromotionRejected Event")

        md = harness.mds.get(NAMESPACE, "web")
        assert md["spec"]["model"]["tag"] == "v2", "rejected promotions leave the ModelDeployment alone"
        assert md["metadata"]["annotations"]["modelyard.dev/promoted-from"] == "good"
        samples = harness.metrics()
        outcome = "modelyard_promotions_total"
        assert samples[(outcome, (("namespace", NAMESPACE), ("outcome", "promoted")))] == 1
        assert samples[(outcome, (("namespace", NAMESPACE), ("outcome", "rejected")))] == 2


def kubectl(api: KubernetesApi, *args: str) -> str:
    binary = REPO / ".bin" / "kubectl"
    command = [str(binary) if binary.exists() else (shutil.which("kubectl") or "kubectl"), *args]
    done = subprocess.run(
        command, env={"KUBECONFIG": str(api.kubeconfig), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(not (shutil.which("kubectl") or (REPO / ".bin" / "kubectl").exists()), reason="needs kubectl")
def test_kubectl_apply_of_the_example_then_get_tj_tells_the_story(harness: Harness) -> None:
    example = EXAMPLES / "trainingjob-single-gpu.yaml"
    name = yaml.safe_load(example.read_text())["metadata"]["name"]
    with harness.operator():
        kubectl(harness.api, "apply", "--validate=false", "-n", NAMESPACE, "-f", str(example))
        harness.wait_job(name)
        harness.cluster.job_running(NAMESPACE, name)
        harness.wait_phase(name, "Running")
        harness.report(
            name,
            progress=Progress(epoch=3, total_epochs=30, step=300, percent=10, eta_seconds=5400),
            metrics=TrainingMetrics(val_accuracy=0.5, best_val_accuracy=0.5),
        )
        table = kubectl(harness.api, "get", "tj", "-n", NAMESPACE)
    header, row = table.splitlines()
    assert header.split() == ["NAME", "PHASE", "EPOCH", "OF", "PROGRESS", "VAL-ACC", "RESTARTS", "MODEL", "AGE"]
    assert row.split()[:7] == [name, "Running", "3", "30", "10", "0.5", "0"]


def test_of_two_replicas_only_the_one_with_higher_priority_acts_and_the_other_takes_over(harness: Harness) -> None:
    extensions = kubernetes.client.ApiextensionsV1Api(harness.api.client)
    for crd in peering_crds():
        extensions.create_custom_resource_definition(crd)
    eventually(lambda: harness.api.client.call_api("GET", f"{harness.api.url}/apis/kopf.dev/v1").status == 200, "CRD")
    low = harness.operator(peering=True, env={"MODELYARD_PRIORITY": "10"})
    with low as standby:
        eventually(lambda: "Activity 'startup' succeeded" in standby.logs, "the first replica up")
        # Each replica needs endpoints of its own. Fresh ports, not the old ones plus one: Linux gives bind(0) odd
        # ports and outgoing connections even ones, so an odd free port plus one may be a connection's source port.
        harness.metrics_port, harness.health_port = free_port(), free_port()
        with harness.operator(peering=True, env={"MODELYARD_PRIORITY": "20"}) as leader:
            eventually(lambda: "Pausing operations in favour of" in standby.logs, "the standby to pause")
            harness.create("first")
            harness.wait_job("first")
            time.sleep(1)  # a paused replica would have logged by now had it acted
            assert "Handler 'reconcile_trainingjob' succeeded" in leader.logs
            assert "reconcile_trainingjob" not in standby.logs
        # The leader left (SIGTERM takes it out of the peering): the standby resumes and does the work.
        eventually(lambda: "Resuming operations" in standby.logs, "the standby to resume", timeout=60)
        harness.create("second")
        harness.wait_job("second")
        took_over = "[default/second] Handler 'reconcile_trainingjob' succeeded"
        eventually(lambda: took_over in standby.logs, "the standby to reconcile the new TrainingJob")
    assert harness.children("first")["jobs"] == harness.children("second")["jobs"] == 1
