"""Shared by the ModelDeployment integration tests: the operator under test, its objects, and polling helpers."""

from __future__ import annotations

import copy
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import kubernetes
from prometheus_client.parser import text_string_to_metric_families

from modelyard.bento.process import free_port
from modelyard.operator.settings import Settings
from tests.conftest import KubernetesApi, RunOperator
from tests.support.clients import CustomObjects
from tests.support.cluster import Cluster
from tests.support.kube_tools import tool
from tests.support.operator_process import OperatorProcess
from tests.support.waiting import eventually

NAMESPACE = "default"
NAME = "flowers"
IMAGE = "registry.example/modelyard/serving:test"
SPEC: dict[str, Any] = {
    "model": {"name": "flowers", "tag": "v1"},
    "store": {"claimName": "model-store"},
    "replicas": {"min": 2, "max": 6},
    "autoscaling": {"targetCPUUtilizationPercentage": 65, "targetRequestsPerSecond": 40},
    "rollout": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": 60},
}


class Harness:
    """The operator under test and the objects it manages."""

    def __init__(self, api: KubernetesApi, start: RunOperator) -> None:
        self.api = api
        self._start = start
        self.metrics_port = free_port()
        self.mds = CustomObjects(api.client, "modeldeployments")
        self.apps = kubernetes.client.AppsV1Api(api.client)
        self.core = kubernetes.client.CoreV1Api(api.client)
        self.autoscaling = kubernetes.client.AutoscalingV2Api(api.client)
        self.policy = kubernetes.client.PolicyV1Api(api.client)
        self.cluster = Cluster(api.client)
        self.settings = Settings(serving_image=IMAGE)

    def operator(self) -> AbstractContextManager[OperatorProcess]:
        env = {
            "MODELYARD_SERVING_IMAGE": IMAGE,
            "MODELYARD_SERVING_POLL_SECONDS": "0.5",
            "MODELYARD_SERVING_RESYNC_SECONDS": "2",
            "MODELYARD_METRICS_PORT": str(self.metrics_port),
            "MODELYARD_BIND_ADDRESS": "127.0.0.1",
            "MODELYARD_HEALTH_PORT": "0",
        }
        command = ["kopf", "run", "--standalone", "--namespace", NAMESPACE, "-m", "modelyard.operator.main"]
        return self._start(command, env=env, watching=["modeldeployments", "deployments"])

    def create(self, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"apiVersion": "modelyard.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": NAME}}
        return self.mds.create(NAMESPACE, {**body, "spec": copy.deepcopy(spec or SPEC)})

    def md(self) -> dict[str, Any]:
        return self.mds.get(NAMESPACE, NAME)

    def status(self) -> dict[str, Any]:
        return dict(self.md().get("status") or {})

    def patch_spec(self, spec: dict[str, Any]) -> None:
        self.mds.patch(NAMESPACE, NAME, {"spec": spec})

    def deployment(self) -> dict[str, Any]:
        return self.api.client.sanitize_for_serialization(self.apps.read_namespaced_deployment(NAME, NAMESPACE))  # type: ignore[no-any-return]

    def served_env(self, variable: str) -> str | None:
        """An environment variable of the Deployment's container, as the operator applied it."""
        env = self.deployment()["spec"]["template"]["spec"]["containers"][0]["env"]
        return next((str(e["value"]) for e in env if e["name"] == variable), None)

    def served_tag(self) -> str | None:
        return self.served_env("MODELYARD_MODEL_TAG")

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
    ) -> dict[str, Any]:
        return dict(eventually(lambda: (s := self.status()) and predicate(s) and s, what, timeout))

    def rollbacks_counted(self) -> dict[str, float]:
        """modelyard_rollbacks_total by reason, read from the operator's own metrics endpoint."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        counted: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "modelyard_rollbacks_total" and sample.labels.get("modeldeployment") == NAME:
                    counted[sample.labels["reason"]] = sample.value
        return counted

    def kubectl_get(self) -> list[str]:
        """`kubectl get md <name> -o wide`: the printer columns (header, then the row) as kubectl shows them."""
        env = {"KUBECONFIG": str(self.api.kubeconfig), "HOME": str(self.api.kubeconfig.parent), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [tool("kubectl"), "get", "md", NAME, "-n", NAMESPACE, "-o", "wide"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def events(self, reason: str) -> list[Any]:
        listed = self.core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={NAME}")
        return [e for e in listed.items if e.reason == reason and e.involved_object.kind == "ModelDeployment"]


@contextmanager
def stable_on(harness: Harness, tag: str = "v1") -> Iterator[None]:
    """Create the ModelDeployment and play its first rollout to completion."""
    harness.create({**SPEC, "model": {"name": "flowers", "tag": tag}})
    eventually(harness.deployment, what="the Deployment")
    harness.cluster.deployment_available(NAMESPACE, NAME)
    harness.wait_status(lambda s: s.get("stableRevision") == 1, "revision 1 stable")
    yield


def revisions(status: dict[str, Any]) -> dict[int, tuple[str, str]]:
    return {r["revision"]: (r["modelTag"], r["outcome"]) for r in status.get("revisions", [])}
