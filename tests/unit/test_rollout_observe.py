"""Reading a Deployment and its pods into a rollout observation (kubectl rollout status rules)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modelyard.operator.observe import observe
from modelyard.operator.rollout import Health

pytestmark = pytest.mark.unit

ANNOTATION = "modelyard.dev/revision"


def deployment(revision: int = 2, generation: int = 4, observed: int = 4, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "flowers", "generation": generation, "annotations": {ANNOTATION: str(revision)}},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": observed, **status},
    }


def progressing(reason: str, message: str = "", updated: str = "2026-11-01T12:03:00Z") -> dict[str, Any]:
    return {
        "type": "Progressing",
        "status": "False" if reason == "ProgressDeadlineExceeded" else "True",
        "reason": reason,
        "message": message,
        "lastUpdateTime": updated,
        "lastTransitionTime": "2026-11-01T12:00:00Z",
    }


def crashing_pod(restarts: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "flowers-abc"},
        "status": {
            "containerStatuses": [
                {
                    "name": "bento",
                    "restartCount": restarts,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                }
            ]
        },
    }


def test_missing_deployment_is_still_progressing() -> None:
    seen = observe(None, [], ANNOTATION, 1)
    assert (seen.health, seen.reason) == (Health.PROGRESSING, "DeploymentMissing")


def test_deployment_of_another_revision_is_still_being_applied() -> None:
    # Even a ProgressDeadlineExceeded on it belongs to the revision it runs, not to the one asked about.
    old = deployment(revision=2, conditions=[progressing("ProgressDeadlineExceeded")])
    seen = observe(old, [], ANNOTATION, 1)
    assert (seen.health, seen.reason) == (Health.PROGRESSING, "Applying")


def test_controller_behind_the_template_is_waited_for() -> None:
    lagging = deployment(generation=5, observed=4, conditions=[progressing("ProgressDeadlineExceeded")])
    assert observe(lagging, [], ANNOTATION, 2).reason == "WaitingForController"


def test_progress_deadline_exceeded_fails_with_the_controllers_message() -> None:
    stuck = deployment(
        replicas=3,
        readyReplicas=2,
        conditions=[progressing("ProgressDeadlineExceeded", 'ReplicaSet "flowers-7d" has timed out progressing.')],
    )
    seen = observe(stuck, [], ANNOTATION, 2)
    assert seen.health is Health.FAILED
    assert seen.reason == "ProgressDeadlineExceeded"
    assert "timed out" in seen.message
    assert (seen.replicas, seen.ready_replicas) == (3, 2)


@pytest.mark.parametrize(("restarts", "health"), [(2, Health.PROGRESSING), (3, Health.FAILED)])
def test_crash_looping_pod_fails_after_a_few_restarts(restarts: int, health: Health) -> None:
    seen = observe(deployment(replicas=3, updatedReplicas=1), [crashing_pod(restarts)], ANNOTATION, 2)
    assert seen.health is health
    if health is Health.FAILED:
        assert seen.message == "pod flowers-abc container bento restarted 3 times; last exit 1 (Error)"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}, "1 of 2 replicas updated"),
        ({"replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}, "1 old replicas pending termination"),
        ({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}, "1 of 2 updated replicas available"),
    ],
)
def test_partial_rollouts_are_progressing(status: dict[str, int], message: str) -> None:
    seen = observe(deployment(**status), [], ANNOTATION, 2)
    assert (seen.health, seen.message) == (Health.PROGRESSING, message)


def test_complete_rollout_reports_when_it_became_available() -> None:
    done = deployment(
        replicas=2,
        readyReplicas=2,
        updatedReplicas=2,
        availableReplicas=2,
        conditions=[progressing("NewReplicaSetAvailable")],
    )
    seen = observe(done, [], ANNOTATION, 2)
    assert seen.health is Health.COMPLETE
    assert seen.message == "2 of 2 replicas available"
    assert seen.available_since == datetime(2026, 11, 1, 12, 3, tzinfo=UTC)


def test_complete_without_the_controllers_condition_has_no_availability_time() -> None:
    done = deployment(replicas=2, updatedReplicas=2, availableReplicas=2)
    seen = observe(done, [], ANNOTATION, 2)
    assert seen.health is Health.COMPLETE
    assert seen.available_since is None
