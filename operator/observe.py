"""Read a ModelDeployment's Deployment and pods into a rollout `Observation` (pure).

The rules are `kubectl rollout status`'s: the controller must have seen the newest template, every replica must be
updated and available and no old one left; ProgressDeadlineExceeded, or a pod of the revision crash-looping, fails it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from modelyard.operator.rollout import Health, Observation

# Restarts after which a CrashLoopBackOff counts as a failed rollout rather than a slow start.
CRASH_LOOP_RESTARTS = 3
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
NEW_REPLICA_SET_AVAILABLE = "NewReplicaSetAvailable"


def observe(
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    revision_annotation: str,
    revision: int,
) -> Observation:
    """Where the rollout of `revision` stands, from the Deployment that should run it and that revision's pods."""
    if deployment is None:
        return Observation(Health.PROGRESSING, "DeploymentMissing", "the Deployment does not exist yet")
    status: Mapping[str, Any] = deployment.get("status") or {}
    replicas, ready = int(status.get("replicas", 0)), int(status.get("readyReplicas", 0))

    def going(reason: str, message: str) -> Observation:
        return Observation(Health.PROGRESSING, reason, message, replicas, ready)

    running = (deployment.get("metadata", {}).get("annotations") or {}).get(revision_annotation)
    if running != str(revision):
        return going("Applying", f"the Deployment runs revision {running}, not {revision} yet")
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    if int(status.get("observedGeneration", 0)) < generation:
        return going("WaitingForController", "the Deployment controller has not seen the new template yet")
    progressing = _condition(status, "Progressing")
    if progressing is not None and progressing.get("reason") == PROGRESS_DEADLINE_EXCEEDED:
        message = progressing.get("message") or "the rollout made no progress before its deadline"
        return Observation(Health.FAILED, PROGRESS_DEADLINE_EXCEEDED, message, replicas, ready)
    crash = crash_looping(pods)
    if crash is not None:
        return Observation(Health.FAILED, "CrashLoopBackOff", crash, replicas, ready)
    desired = int((deployment.get("spec") or {}).get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    if updated < desired:
        return going("ReplicaSetUpdated", f"{updated} of {desired} replicas updated")
    if replicas > updated:
        return going("ReplicaSetUpdated", f"{replicas - updated} old replicas pending termination")
    if available < updated:
        return going("ReplicaSetUpdated", f"{available} of {updated} updated replicas available")
    return Observation(
        Health.COMPLETE,
        "RolloutComplete",
        f"{available} of {desired} replicas available",
        replicas,
        ready,
        available_since=_available_since(progressing),
    )


def crash_looping(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """A message naming the first container that keeps crashing, or None."""
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        for container in statuses:
            waiting = (container.get("state") or {}).get("waiting") or {}
            restarts = int(container.get("restartCount", 0))
            if waiting.get("reason") == "CrashLoopBackOff" and restarts >= CRASH_LOOP_RESTARTS:
                last = (container.get("lastState") or {}).get("terminated") or {}
                detail = f"; last exit {last.get('exitCode')} ({last.get('reason', 'unknown')})" if last else ""
                name = pod.get("metadata", {}).get("name")
                return f"pod {name} container {container.get('name')} restarted {restarts} times{detail}"
    return None


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def _available_since(progressing: Mapping[str, Any] | None) -> datetime | None:
    """When the rollout completed: the controller updates Progressing=NewReplicaSetAvailable then and not again.

    Not lastTransitionTime: Progressing stays True from the first rollout on, so that time is long past."""
    if progressing is None or progressing.get("reason") != NEW_REPLICA_SET_AVAILABLE:
        return None
    stamp = progressing.get("lastUpdateTime")
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")) if stamp else None
