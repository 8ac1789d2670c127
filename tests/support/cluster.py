"""Plays the cluster's controllers for tests: nothing runs Jobs or Deployments in the emulator, so a test says
explicitly what the cluster did — a Job ran, a pod failed and was retried, a Deployment became available or got
stuck. Everything goes through the API (status subresource included), so an operator sees real watch events."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any, cast

import kubernetes

Json = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: str, reason: str, message: str = "", stamped: str = "lastProbeTime") -> Json:
    """A condition as the controllers write it: Jobs and pods stamp lastProbeTime, Deployments lastUpdateTime."""
    stamp = _now()
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        stamped: stamp,
        "lastTransitionTime": stamp,
    }


def _with_conditions(current: list[Json] | None, *updates: Json) -> list[Json]:
    """Set conditions by type, keeping the others (and the transition time of an unchanged status)."""
    merged = [copy.deepcopy(condition) for condition in current or []]
    for update in updates:
        old = next((condition for condition in merged if condition["type"] == update["type"]), None)
        if old is None:
            merged.append(update)
        elif old["status"] == update["status"]:
            old.update({key: value for key, value in update.items() if key != "lastTransitionTime"})
        else:
            old.update(update)
    return merged


def _owner(obj: Json) -> Json:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class Cluster:
    """What the Job and Deployment controllers and the kubelet would have done, written through the API."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._client = api_client
        self.core = kubernetes.client.CoreV1Api(api_client)

    # ---- plumbing ------------------------------------------------------------------------------------------------

    def _get(self, path: str) -> Json:
        return cast(Json, self._call("GET", path))

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """Raw API calls return plain dicts, so the helper stays independent of the client's model classes."""
        response = self._client.call_api(
            *self._client.param_serialize(
                method=method,
                resource_path=path,
                body=body,
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
        )
        data: bytes = response.read()  # type: ignore[no-untyped-call]
        if response.status >= 400:
            raise kubernetes.client.ApiException(status=response.status, reason=data.decode())
        return json.loads(data) if data else None

    def _patch_status(self, path: str, status: Json) -> Json:
        return cast(Json, self._call("PATCH", f"{path}/status", {"status": status}, "application/merge-patch+json"))

    @staticmethod
    def _job_path(namespace: str, name: str) -> str:
        return f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"

    @staticmethod
    def _deployment_path(namespace: str, name: str) -> str:
        return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"

    def _pods_of(self, owner: Json) -> list[Json]:
        namespace = owner["metadata"]["namespace"]
        listed = self._get(f"/api/v1/namespaces/{namespace}/pods")
        uid = owner["metadata"]["uid"]
        return [
            pod
            for pod in listed["items"]
            if any(reference.get("uid") == uid for reference in pod["metadata"].get("ownerReferences") or [])
        ]

    def _start_pod(self, owner: Json, template: Json, labels: Json | None = None) -> Json:
        namespace, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
        template_meta = template.get("metadata") or {}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{name}-",
                "labels": {**(template_meta.get("labels") or {}), **(labels or {})},
                "annotations": template_meta.get("annotations") or {},
                "ownerReferences": [_owner(owner)],
            },
            "spec": copy.deepcopy(template.get("spec") or {"containers": []}),
        }
        created = cast(Json, self._call("POST", f"/api/v1/namespaces/{namespace}/pods", pod))
        return self._set_pod_phase(created, "Running")

    def _set_pod_phase(self, pod: Json, phase: str, exit_code: int = 0) -> Json:
        running = phase == "Running"
        if running:
            state: Json = {"running": {"startedAt": _now()}}
        else:
            reason = "Completed" if exit_code == 0 else "Error"
            state = {"terminated": {"exitCode": exit_code, "reason": reason, "finishedAt": _now()}}
        statuses = [
            {
                "name": container.get("name", "main"),
                "image": container.get("image", ""),
                "imageID": "",
                "ready": running,
                "started": running,
                "restartCount": 0,
                "state": state,
            }
            for container in (pod.get("spec") or {}).get("containers") or []
        ]
        status = {
            "phase": phase,
            "podIP": "10.244.0.10",
            "startTime": (pod.get("status") or {}).get("startTime") or _now(),
            "conditions": [_condition("Ready", "True" if running else "False", "" if running else "PodCompleted")],
            "containerStatuses": statuses,
        }
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        return self._patch_status(f"/api/v1/namespaces/{namespace}/pods/{name}", status)

    # ---- Jobs ----------------------------------------------------------------------------------------------------

    def job_running(self, namespace: str, name: str, active: int = 1) -> list[str]:
        """The Job's pods started and run; returns their names."""
        job = self._get(self._job_path(namespace, name))
        pods = [pod for pod in self._pods_of(job) if (pod.get("status") or {}).get("phase") == "Running"]
        while len(pods) < active:
            pods.append(self._start_pod(job, job["spec"]["template"]))
        status = job.get("status") or {}
        self._patch_status(
            self._job_path(namespace, name),
            {"active": len(pods), "ready": len(pods), "startTime": status.get("startTime") or _now()},
        )
        return [pod["metadata"]["name"] for pod in pods]

    def job_pod_failed_and_retried(self, namespace: str, name: str) -> str:
        """One running pod failed (exit code 1) and the controller started a replacement: `failed` grows by one.
        Returns the replacement pod's name."""
        job = self._get(self._job_path(namespace, name))
        running = [pod for pod in self._pods_of(job) if (pod.get("status") or {}).get("phase") == "Running"]
        if running:
            self._set_pod_phase(running[0], "Failed", exit_code=1)
        replacement = self._start_pod(job, job["spec"]["template"])
        status = job.get("status") or {}
        self._patch_status(
            self._job_path(namespace, name),
            {
                "failed": int(status.get("failed") or 0) + 1,
                "active": max(len(running), 1),
                "ready": max(len(running), 1),
                "startTime": status.get("startTime") or _now(),
            },
        )
        return str(replacement["metadata"]["name"])

    def job_succeeded(self, namespace: str, name: str) -> None:
        job = self._get(self._job_path(namespace, name))
        for pod in self._pods_of(job):
            if (pod.get("status") or {}).get("phase") == "Running":
                self._set_pod_phase(pod, "Succeeded")
        status = job.get("status") or {}
        conditions = _with_conditions(
            status.get("conditions"),
            _condition("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
            _condition("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
        )
        self._patch_status(
            self._job_path(namespace, name),
            {
                "active": 0,
                "ready": 0,
                "succeeded": int(job["spec"].get("completions") or 1),
                "conditions": conditions,
                "startTime": status.get("startTime") or _now(),
                "completionTime": _now(),
            },
        )

    def job_failed(self, namespace: str, name: str, reason: str = "BackoffLimitExceeded") -> None:
        """The Job failed for good: `BackoffLimitExceeded` (pods kept failing) or `DeadlineExceeded`."""
        job = self._get(self._job_path(namespace, name))
        for pod in self._pods_of(job):
            if (pod.get("status") or {}).get("phase") == "Running":
                self._set_pod_phase(pod, "Failed", exit_code=1)
        status = job.get("status") or {}
        message = {
            "BackoffLimitExceeded": "Job has reached the specified backoff limit",
            "DeadlineExceeded": "Job was active longer than specified deadline",
        }.get(reason, reason)
        conditions = _with_conditions(
            status.get("conditions"),
            _condition("FailureTarget", "True", reason, message),
            _condition("Failed", "True", reason, message),
        )
        failed = int(status.get("failed") or 0)
        if reason == "BackoffLimitExceeded":
            failed = max(failed, int(job["spec"].get("backoffLimit", 6)) + 1)
        self._patch_status(
            self._job_path(namespace, name),
            {
                "active": 0,
                "ready": 0,
                "failed": failed,
                "conditions": conditions,
                "startTime": status.get("startTime") or _now(),
            },
        )

    def job_suspended(self, namespace: str, name: str) -> None:
        """The controller saw `spec.suspend: true`: pods deleted, condition Suspended."""
        job = self._get(self._job_path(namespace, name))
        for pod in self._pods_of(job):
            self._call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}")
        status = job.get("status") or {}
        conditions = _with_conditions(
            status.get("conditions"), _condition("Suspended", "True", "JobSuspended", "Job suspended")
        )
        self._patch_status(self._job_path(namespace, name), {"active": 0, "ready": 0, "conditions": conditions})

    # ---- Deployments ---------------------------------------------------------------------------------------------

    def _replica_set(self, deployment: Json) -> Json:
        """The Deployment's current ReplicaSet (by pod-template hash), created if missing."""
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        template_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        rs_name = f"{name}-{template_hash}"
        path = f"/apis/apps/v1/namespaces/{namespace}/replicasets"
        try:
            return self._get(f"{path}/{rs_name}")
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
        labels = {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": template_hash}
        replica_set = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "labels": labels, "ownerReferences": [_owner(deployment)]},
            "spec": {
                "replicas": deployment["spec"].get("replicas", 1),
                "selector": {"matchLabels": labels},
                "template": {
                    **copy.deepcopy(template),
                    "metadata": {**(template.get("metadata") or {}), "labels": labels},
                },
            },
        }
        return cast(Json, self._call("POST", path, replica_set))

    def _deployment_status(self, namespace: str, name: str, ready: int | None, *conditions: Json) -> Json:
        deployment = self._get(self._deployment_path(namespace, name))
        replicas = int(deployment["spec"].get("replicas", 1))
        ready = replicas if ready is None else min(ready, replicas)
        replica_set = self._replica_set(deployment)
        pods = [pod for pod in self._pods_of(replica_set) if (pod.get("status") or {}).get("phase") == "Running"]
        while len(pods) < ready:
            pods.append(self._start_pod(replica_set, replica_set["spec"]["template"]))
        for extra in pods[ready:]:
            self._call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{extra['metadata']['name']}")
        status = deployment.get("status") or {}
        return self._patch_status(
            self._deployment_path(namespace, name),
            {
                "observedGeneration": deployment["metadata"].get("generation", 1),
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": replicas - ready,
                "conditions": _with_conditions(status.get("conditions"), *conditions),
            },
        )

    def deployment_progressing(self, namespace: str, name: str, ready: int = 0) -> Json:
        """The rollout is under way: `ready` of the desired pods are up."""
        message = f'ReplicaSet "{name}" is progressing.'
        progressing = _condition("Progressing", "True", "ReplicaSetUpdated", message, "lastUpdateTime")
        return self._deployment_status(namespace, name, ready, _unavailable(), progressing)

    def deployment_available(self, namespace: str, name: str) -> Json:
        """The rollout finished: every replica is ready and available."""
        message = f'ReplicaSet "{name}" has successfully progressed.'
        progressing = _condition("Progressing", "True", "NewReplicaSetAvailable", message, "lastUpdateTime")
        available = _condition(
            "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", "lastUpdateTime"
        )
        return self._deployment_status(namespace, name, None, available, progressing)

    def deployment_stuck(self, namespace: str, name: str, ready: int = 0) -> Json:
        """The rollout passed its progressDeadlineSeconds: Progressing=False, reason ProgressDeadlineExceeded."""
        message = f'ReplicaSet "{name}" has timed out progressing.'
        progressing = _condition("Progressing", "False", "ProgressDeadlineExceeded", message, "lastUpdateTime")
        return self._deployment_status(namespace, name, ready, _unavailable(), progressing)


def _unavailable() -> Json:
    return _condition(
        "Available",
        "False",
        "MinimumReplicasUnavailable",
        "Deployment does not have minimum availability.",
        "lastUpdateTime",
    )
