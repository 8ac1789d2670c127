"""TrainingJob reconciliation by the real operator process (`modelyard operator`) against the API emulator.

tests/support/cluster.py plays the Job controller through the API; the trainer's progress comes from the trainer's
own reporter (modelyard.training.report). Everything else is real: kopf, the kubernetes client, the operator's watches,
status writes, Events, garbage collection by owner references, and its metrics endpoint.
"""

from __future__ import annotations

import copy
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import kmock
import kubernetes
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from modelyard.api import TrainingJob, TrainingJobSpec
from modelyard.api.training_job import CheckpointRef, ProducedModel, Progress, TrainingMetrics
from modelyard.bento.process import free_port
from modelyard.operator import rbac
from modelyard.operator.apply import contains
from modelyard.operator.builders.training import build_trainer_children
from modelyard.operator.settings import Settings
from modelyard.training.report import StatusReporter, build_status_patch
from tests.conftest import KubernetesApi, RunOperator
from tests.support.clients import CustomObjects
from tests.support.cluster import Cluster
from tests.support.operator_process import OperatorProcess
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMESPACE = "default"
IMAGE = "registry.example/modelyard/trainer:test"
SPEC: dict[str, Any] = {
    "model": {"backbone": "resnet18", "numClasses": 5},
    "training": {"epochs": 10},
    "data": {"pvc": {"claimName": "datasets"}, "path": "/data/flowers"},
    "output": {"modelName": "flowers", "pvc": {"claimName": "model-store"}},
    "resources": {
        "gpusPerNode": 1,
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "training",
    },
    "runPolicy": {"backoffLimit": 2, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 600},
}


class Harness:
    """The operator under test, the objects it manages, and the parts of the cluster the test plays."""

    def __init__(self, api: KubernetesApi, start: RunOperator) -> None:
        self.api = api
        self._start = start
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.tjs = CustomObjects(api.client, "trainingjobs")
        self.mds = CustomObjects(api.client, "modeldeployments")
        self.batch = kubernetes.client.BatchV1Api(api.client)
        self.core = kubernetes.client.CoreV1Api(api.client)
        self.cluster = Cluster(api.client)
        self.settings = Settings(trainer_image=IMAGE)

    def operator(
        self, *, peering: bool = False, clusterwide: bool = False, env: dict[str, str] | None = None
    ) -> AbstractContextManager[OperatorProcess]:
        scope = ["--all-namespaces"] if clusterwide else ["--namespace", NAMESPACE]
        command = [sys.executable, "-m", "modelyard.cli", "operator", *scope]
        command.append("--peering" if peering else "--standalone")
        environment = {
            "MODELYARD_TRAINER_IMAGE": IMAGE,
            "MODELYARD_METRICS_PORT": str(self.metrics_port),
            "MODELYARD_HEALTH_PORT": str(self.health_port),
            "MODELYARD_BIND_ADDRESS": "127.0.0.1",
            **(env or {}),
        }
        watching = () if peering else ("trainingjobs", "jobs")
        return self._start(command, env=environment, watching=watching)

    # --- TrainingJobs

    def create(self, name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"apiVersion": "modelyard.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name}}
        return self.tjs.create(NAMESPACE, {**body, "spec": copy.deepcopy(spec or SPEC)})

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.tjs.get(NAMESPACE, name).get("status") or {})

    def wait_status(self, name: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        return dict(eventually(lambda: (s := self.status(name)) and check(s) and s, what))

    def wait_phase(self, name: str, phase: str) -> dict[str, Any]:
        return self.wait_status(name, lambda s: s.get("phase") == phase, f"{name} {phase}")

    def conditions(self, name: str) -> dict[str, tuple[str, str]]:
        return {c["type"]: (c["status"], c["reason"]) for c in self.status(name).get("conditions", [])}

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.tjs.patch(NAMESPACE, name, {"spec": spec})

    def report(self, name: str, **fields: Any) -> None:
        """What the trainer's rank 0 sends (its own reporter, sending at once)."""
        reporter = StatusReporter(name, NAMESPACE, api=self.tjs.api, log=print, min_interval=0)
        reporter.update(build_status_patch(**fields), urgent=True)
        reporter.close()
        assert (reporter.sent, reporter.failed) == (1, 0)

    # --- children, Events, metrics

    def _plain(self, obj: Any) -> dict[str, Any]:
        return dict(self.api.client.sanitize_for_serialization(obj))

    def job(self, name: str) -> dict[str, Any]:
        return self._plain(self.batch.read_namespaced_job(name, NAMESPACE))

    def wait_job(self, name: str) -> dict[str, Any]:
        return dict(eventually(lambda: self.job(name), f"Job {name}"))

    def config_map(self, name: str) -> dict[str, Any]:
        return self._plain(self.core.read_namespaced_config_map(f"{name}-spec", NAMESPACE))

    def children(self, name: str) -> dict[str, int]:
        """How many Jobs, ConfigMaps and Services carry this TrainingJob's label."""
        selector = f"modelyard.dev/training-job={name}"
        return {
            "jobs": len(self.batch.list_namespaced_job(NAMESPACE, label_selector=selector).items),
            "configmaps": len(self.core.list_namespaced_config_map(NAMESPACE, label_selector=selector).items),
            "services": len(self.core.list_namespaced_service(NAMESPACE, label_selector=selector).items),
        }

    def events(self, name: str, kind: str = "TrainingJob") -> list[tuple[str, str, str]]:
        listed = self.core.list_namespaced_event(NAMESPACE).items
        mine = [e for e in listed if e.involved_object.name == name and e.involved_object.kind == kind]
        return [(e.type, e.reason, e.message) for e in sorted(mine, key=lambda e: e.metadata.resource_version)]

    def event_reasons(self, name: str) -> list[str]:
        return [reason for _, reason, _ in self.events(name)]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@pytest.fixture
def harness(k8s_api: KubernetesApi, run_operator: RunOperator) -> Harness:
    return Harness(k8s_api, run_operator)


def test_single_node_job_follows_the_cluster_from_creation_to_success(harness: Harness) -> None:
    with harness.operator():
        created = harness.create("flowers")
        job = harness.wait_job("flowers")
        expected = build_trainer_children(TrainingJob.model_validate(created), harness.settings)
        assert contains(job, expected.job), "the Job is what the builder says for this TrainingJob"
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
        assert {e["name"]: e.get("value") for e in container["env"]}["MODELYARD_TRAININGJOB_NAME"] == "flowers"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {v["name"]: v for v in pod["volumes"]}["data"]["persistentVolumeClaim"]["readOnly"] is True
        assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (2, 3600)
        (owner,) = job["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("TrainingJob", created["metadata"]["uid"], True)
        spec_file = harness.config_map("flowers")["data"]["spec.yaml"]
        assert TrainingJobSpec.model_validate(yaml.safe_load(spec_file)) == TrainingJobSpec.model_validate(SPEC)
        role = harness.api.client.sanitize_for_serialization(
            kubernetes.client.RbacAuthorizationV1Api(harness.api.client).read_namespaced_role(
                "modelyard-trainer", NAMESPACE
            )
        )
        assert role["rules"] == rbac.trainer_policy_rules()
        assert harness.core.read_namespaced_service_account("modelyard-trainer", NAMESPACE)

        status = harness.wait_phase("flowers", "Pending")
        assert (status["jobName"], status["observedGeneration"]) == ("flowers", 1)
        harness.cluster.job_running(NAMESPACE, "flowers")
        status = harness.wait_phase("flowers", "Running")
        assert status["startTime"]
        assert harness.conditions("flowers")["Running"] == ("True", "PodsRunning")

        now = datetime.now(UTC).replace(microsecond=0)
        harness.report(
            "flowers",
            progress=Progress(epoch=2, total_epochs=10, step=200, percent=20, eta_seconds=800),
            metrics=TrainingMetrics(train_loss=0.9, val_loss=1.1, val_accuracy=0.61, best_val_accuracy=0.61),
            last_checkpoint=CheckpointRef(uri="/store/checkpoints/flowers/epoch-2.pt", epoch=2, time=now),
        )
        harness.cluster.job_pod_failed_and_retried(NAMESPACE, "flowers")
        status = harness.wait_status("flowers", lambda s: s.get("restarts") == 1, "one restart")
        assert status["phase"] == "Running"
        assert status["progress"]["epoch"] == 2, "the operator never overwrites the trainer's progress"
        assert status["lastCheckpoint"]["epoch"] == 2
        eventually(lambda: "PodFailed" in harness.event_reasons("flowers"), "a PodFailed Event")

        harness.report(
            "flowers",
            progress=Progress(epoch=10, total_epochs=10, step=1000, percent=100, eta_seconds=0),
            metrics=TrainingMetrics(val_accuracy=0.9, best_val_accuracy=0.91, best_epoch=9),
            model=ProducedModel(name="flowers", tag="flowers:abc123"),
        )
        harness.cluster.job_succeeded(NAMESPACE, "flowers")
        status = harness.wait_phase("flowers", "Succeeded")
        assert status["completionTime"] >= status["startTime"]
        assert (status["model"]["tag"], status["metrics"]["bestValAccuracy"]) == ("flowers:abc123", 0.91)
        conditions = harness.conditions("flowers")
        assert conditions["Succeeded"] == ("True", "JobComplete")
        assert conditions["Running"][0] == "False"
        assert "Promoted" not in conditions, "no promotion was asked for"
        reasons = eventually(lambda: (r := harness.event_reasons("flowers")) and "JobComplete" in r and r, "Events")
        assert [r for r in reasons if r in ("PodsRunning", "PodFailed", "JobComplete")] == [
            "PodsRunning",
            "PodFailed",
            "JobComplete",
        ]

        samples = eventually(
            lambda: (
                (m := harness.metrics())
                and m.get(("modelyard_trainingjobs", (("namespace", NAMESPACE), ("phase", "Succeeded")))) == 1
                and m
            ),
            "the phase gauge",
        )
        success = ("modelyard_operator_reconciliations_total", (("kind", "TrainingJob"), ("outcome", "success")))
        assert samples[success] >= 1
        with urllib.request.urlopen(f"http://127.0.0.1:{harness.health_port}/healthz", timeout=5) as response:
            assert response.status == 200


def test_a_job_that_fails_for_good_says_why(harness: Harness) -> None:
    with harness.operator(clusterwide=True):
        harness.create("flowers")
        harness.wait_job("flowers")
        harness.cluster.job_running(NAMESPACE, "flowers")
        harness.wait_phase("flowers", "Running")
        harness.cluster.job_failed(NAMESPACE, "flowers", reason="DeadlineExceeded")
        status = harness.wait_phase("flowers", "Failed")
        assert status["message"] == "Job was active longer than specified deadline"
        assert status["completionTime"]
        assert harness.conditions("flowers")["Failed"] == ("True", "DeadlineExceeded")
        eventually(lambda: ("Warning", "DeadlineExceeded") in [e[:2] for e in harness.events("flowers")], "Event")


def test_multi_node_runs_an_indexed_job_behind_a_headless_service_and_deletion_removes_the_children(
    harness: Harness,
) -> None:
    spec = {**SPEC, "resources": {"numNodes": 3, "gpusPerNode": 2}}
    with harness.operator():
        created = harness.create("imagenet", spec)
        job = harness.wait_job("imagenet")
        service = harness._plain(harness.core.read_namespaced_service("imagenet", NAMESPACE))
        assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == (
            "Indexed",
            3,
            3,
        )
        pod = job["spec"]["template"]["spec"]
        assert pod["subdomain"] == "imagenet"
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["MASTER_ADDR"]["value"] == "imagenet-0.imagenet.default.svc"
        assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is True
        assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
        for child in (job, service, harness.config_map("imagenet")):
            assert child["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        harness.cluster.job_running(NAMESPACE, "imagenet", active=3)
        assert harness.wait_phase("imagenet", "Running")["message"] == "3/3 pods running"

        harness.tjs.delete(NAMESPACE, "imagenet")
        eventually(lambda: harness.children("imagenet") == {"jobs": 0, "configmaps": 0, "services": 0}, "GC")


def test_suspend_resume_and_fields_that_cannot_change_while_it_runs(harness: Harness) -> None:
    with harness.operator():
        harness.create("flowers")
        harness.wait_job("flowers")
        harness.cluster.job_running(NAMESPACE, "flowers")
        harness.wait_phase("flowers", "Running")

        harness.patch_spec("flowers", {"suspend": True, "runPolicy": {"activeDeadlineSeconds": 7200}})
        job = eventually(lambda: (j := harness.job("flowers"))["spec"].get("suspend") and j, "the Job suspended")
        assert job["spec"]["activeDeadlineSeconds"] == 7200, "runPolicy changes reach the Job"
        harness.cluster.job_suspended(NAMESPACE, "flowers")
        assert harness.wait_phase("flowers", "Suspended")["conditions"]

        harness.patch_spec("flowers", {"training": {"epochs": 20}, "resources": {"numNodes": 2}})
        refused = harness.wait_status(
            "flowers", lambda s: any(c["type"] == "SpecAccepted" for c in s.get("conditions", [])), "SpecAccepted"
        )
        accepted = next(c for c in refused["conditions"] if c["type"] == "SpecAccepted")
        assert (accepted["status"], accepted["reason"]) == ("False", "ImmutableFieldChanged")
        assert "spec.resources.numNodes" in accepted["message"]
        assert "spec.training.epochs" in accepted["message"]
        assert refused["observedGeneration"] == harness.tjs.get(NAMESPACE, "flowers")["metadata"]["generation"]
        assert ("Warning", "ImmutableFieldChanged") in [e[:2] for e in harness.events("flowers")]
        assert harness.job("flowers")["spec"]["completions"] == 1, "the running Job keeps its shape"
        assert "epochs: 10" in harness.config_map("flowers")["data"]["spec.yaml"]

        harness.patch_spec("flowers", {"suspend": False, "training": {"epochs": 10}, "resources": {"numNodes": 1}})
        eventually(lambda: harness.job("flowers")["spec"]["suspend"] is False, "the Job resumed")
        harness.cluster.job_running(NAMESPACE, "flowers")
        harness.wait_phase("flowers", "Running")
        assert harness.conditions("flowers")["SpecAccepted"] == ("True", "SpecApplied")
        assert harness.conditions("flowers")["Suspended"][0] == "False"
        eventually(lambda: "Resumed" in harness.event_reasons("flowers"), "a Resumed Event")
        assert harness.children("flowers") == {"jobs": 1, "configmaps": 1, "services": 0}


def test_invalid_specs_are_refused_by_the_schema_or_fail_once_naming_the_field(harness: Harness) -> None:
    with pytest.raises(kubernetes.client.ApiException) as refused:
        harness.create("zero-nodes", {**SPEC, "resources": {"numNodes": 0}})
    assert refused.value.status == 422
    assert "numNodes" in str(refused.value.body)

    with harness.operator() as operator:
        harness.create(
            "outside", {**SPEC, "output": {"modelName": "m", "pvc": {"claimName": "s"}, "storePath": "/home/x"}}
        )
        status = harness.wait_phase("outside", "Failed")
        assert "spec.output.storePath" in status["message"]
        assert harness.conditions("outside")["Failed"] == ("True", "InvalidSpec")
        eventually(lambda: "InvalidSpec" in harness.event_reasons("outside"), "an InvalidSpec Event")
        time.sleep(3)  # time for a crash loop to show, if there were one
        assert operator.running
        assert operator.logs.count("Handler 'reconcile_trainingjob' failed permanently") == 1
        assert harness.children("outside")["jobs"] == 0
        assert harness.event_reasons("outside").count("InvalidSpec") == 1

        harness.patch_spec("outside", {"output": {"storePath": "/store/x"}})
        harness.wait_job("outside")
        harness.wait_phase("outside", "Pending")
        assert harness.conditions("outside")["Failed"][0] == "False"


def test_an_operator_killed_mid_reconcile_converges_without_duplicates_after_restart(harness: Harness) -> None:
    # The first Job creation fails: the operator has made the ConfigMap and is waiting to retry when it is killed.
    harness.api.emulator["post", kmock.resource("batch/v1/jobs")][:1] << 500
    with harness.operator() as first:
        harness.create("flowers")
        eventually(lambda: harness.config_map("flowers"), "the ConfigMap")
        eventually(lambda: "HTTP 500" in first.logs, "the failed Job creation")
        first.process.kill()
        first.process.wait()
    assert harness.children("flowers") == {"jobs": 0, "configmaps": 1, "services": 0}

    with harness.operator():
        harness.wait_job("flowers")
        harness.wait_phase("flowers", "Pending")
        before = harness.job("flowers")["metadata"]["resourceVersion"]
    with harness.operator():
        time.sleep(2)  # the restarted operator resumes every TrainingJob: it must change nothing
        assert harness.job("flowers")["metadata"]["resourceVersion"] == before
    assert harness.children("flowers") == {"jobs": 1, "configmaps": 1, "services": 0}
