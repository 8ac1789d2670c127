"""tests/support/cluster.py plays the controllers through the API: each step is visible to a watcher."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from tests.conftest import KubernetesApi
from tests.support.cluster import Cluster

pytestmark = pytest.mark.integration

JOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "train"},
    "spec": {
        "backoffLimit": 2,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "trainer", "image": "trainer:1"}]}},
    },
}
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "serve"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "serve"}},
        "template": {
            "metadata": {"labels": {"app": "serve"}},
            "spec": {"containers": [{"name": "bento", "image": "b:1"}]},
        },
    },
}


def _conditions(status: Any) -> dict[str, tuple[str, str]]:
    return {condition.type: (condition.status, condition.reason) for condition in status.conditions or []}


def test_job_lifecycle_running_retried_succeeded(k8s_api: KubernetesApi) -> None:
    batch = kubernetes.client.BatchV1Api(k8s_api.client)
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    cluster = Cluster(k8s_api.client)
    batch.create_namespaced_job("default", JOB)
    listed = batch.list_namespaced_job("default")

    pods = cluster.job_running("default", "train")
    job = batch.read_namespaced_job_status("train", "default")
    assert (job.status.active, job.status.ready, job.status.failed) == (1, 1, None)
    pod = core.read_namespaced_pod(pods[0], "default")
    assert pod.status.phase == "Running"
    assert pod.metadata.owner_references[0].uid == job.metadata.uid
    assert pod.metadata.labels["batch.kubernetes.io/job-name"] == "train"

    replacement = cluster.job_pod_failed_and_retried("default", "train")
    job = batch.read_namespaced_job_status("train", "default")
    assert (job.status.failed, job.status.active) == (1, 1)
    assert core.read_namespaced_pod(pods[0], "default").status.phase == "Failed"
    assert core.read_namespaced_pod(replacement, "default").status.phase == "Running"

    cluster.job_succeeded("default", "train")
    job = batch.read_namespaced_job_status("train", "default")
    assert _conditions(job.status)["Complete"] == ("True", "CompletionsReached")
    assert (job.status.succeeded, job.status.active, job.status.failed) == (1, 0, 1)
    assert job.status.completion_time is not None
    assert job.metadata.generation == 1, "status writes never bump the generation"

    # A watcher from the list taken after the creation sees each step, and only those, as a MODIFIED event.
    events = kubernetes.watch.Watch().stream(
        batch.list_namespaced_job, "default", resource_version=listed.metadata.resource_version, timeout_seconds=1
    )
    seen = [(event["type"], event["object"].status.active) for event in events]
    assert seen == [("MODIFIED", 1), ("MODIFIED", 1), ("MODIFIED", 0)]


@pytest.mark.parametrize("reason", ["BackoffLimitExceeded", "DeadlineExceeded"])
def test_job_failed(k8s_api: KubernetesApi, reason: str) -> None:
    batch = kubernetes.client.BatchV1Api(k8s_api.client)
    cluster = Cluster(k8s_api.client)
    batch.create_namespaced_job("default", JOB)
    cluster.job_running("default", "train")
    cluster.job_failed("default", "train", reason=reason)
    job = batch.read_namespaced_job_status("train", "default")
    assert _conditions(job.status)["Failed"] == ("True", reason)
    assert job.status.active == 0
    if reason == "BackoffLimitExceeded":
        assert job.status.failed == 3  # backoffLimit 2 + 1


def test_job_suspended_deletes_its_pods(k8s_api: KubernetesApi) -> None:
    batch = kubernetes.client.BatchV1Api(k8s_api.client)
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    cluster = Cluster(k8s_api.client)
    batch.create_namespaced_job("default", JOB)
    cluster.job_running("default", "train")
    cluster.job_suspended("default", "train")
    job = batch.read_namespaced_job_status("train", "default")
    assert _conditions(job.status)["Suspended"] == ("True", "JobSuspended")
    assert core.list_namespaced_pod("default", label_selector="job-name=train").items == []


def test_deployment_progressing_available_stuck(k8s_api: KubernetesApi) -> None:
    apps = kubernetes.client.AppsV1Api(k8s_api.client)
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    cluster = Cluster(k8s_api.client)
    apps.create_namespaced_deployment("default", DEPLOYMENT)

    cluster.deployment_progressing("default", "serve", ready=1)
    status = apps.read_namespaced_deployment_status("serve", "default").status
    assert (status.ready_replicas, status.replicas) == (1, 2)
    assert _conditions(status)["Progressing"] == ("True", "ReplicaSetUpdated")
    assert len(core.list_namespaced_pod("default", label_selector="app=serve").items) == 1

    cluster.deployment_available("default", "serve")
    status = apps.read_namespaced_deployment_status("serve", "default").status
    assert (status.ready_replicas, status.available_replicas, status.observed_generation) == (2, 2, 1)
    assert _conditions(status)["Available"] == ("True", "MinimumReplicasAvailable")
    pods = core.list_namespaced_pod("default", label_selector="app=serve").items
    assert len(pods) == 2
    assert pods[0].metadata.owner_references[0].kind == "ReplicaSet"

    cluster.deployment_stuck("default", "serve", ready=1)
    status = apps.read_namespaced_deployment_status("serve", "default").status
    assert _conditions(status)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert status.ready_replicas == 1
