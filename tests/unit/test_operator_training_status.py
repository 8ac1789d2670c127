"""A TrainingJob's status from its Job: phases, conditions, restarts, times, Events, refused spec changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modelyard.api import TrainingJobStatus
from modelyard.operator import training_status as ts

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
TRAINER_FIELDS = {"progress", "metrics", "lastCheckpoint", "model"}


def job(*, nodes: int = 1, suspend: bool = False, **status: Any) -> dict[str, Any]:
    return {"spec": {"completions": nodes, "parallelism": nodes, "suspend": suspend}, "status": status}


def cond(kind: str, reason: str, status: str = "True", message: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-03-01T11:00:00Z",
    }


def step(status: dict[str, Any], the_job: dict[str, Any], now: datetime = T0) -> tuple[dict[str, Any], ts.StatusChange]:
    change = ts.lifecycle_change(status, the_job, job_name="flowers", backoff_limit=3, generation=2, now=now)
    assert not TRAINER_FIELDS & change.patch.keys(), "the operator wrote a field the trainer owns"
    merged = {**status, **change.patch}
    TrainingJobStatus.model_validate(merged)  # what it writes is valid against the CRD's model
    return merged, change


@pytest.mark.parametrize(
    ("the_job", "phase", "reason"),
    [
        (job(), "Pending", "PodsPending"),
        (job(active=1, ready=0), "Pending", "PodsPending"),
        (job(active=1, ready=1), "Running", "PodsRunning"),
        (job(active=1), "Running", "PodsRunning"),  # no `ready` field: active pods count
        (job(nodes=4, active=4, ready=3), "Pending", "PodsPending"),
        (job(nodes=4, active=4, ready=4), "Running", "PodsRunning"),
        (job(active=1, ready=0, failed=1), "Restarting", "PodFailed"),
        (job(active=0, failed=2), "Restarting", "PodFailed"),
        (job(suspend=True, active=1), "Suspended", "Suspended"),
        (job(succeeded=1, conditions=[cond("Complete", "CompletionsReached")]), "Succeeded", "JobComplete"),
        (job(failed=4, conditions=[cond("Failed", "BackoffLimitExceeded")]), "Failed", "BackoffLimitExceeded"),
        (job(conditions=[cond("Failed", "DeadlineExceeded")]), "Failed", "DeadlineExceeded"),
    ],
)
def test_phase_follows_the_job(the_job: dict[str, Any], phase: str, reason: str) -> None:
    verdict = ts.judge(ts.observe_job(the_job), backoff_limit=3)
    assert (verdict.phase.value, verdict.reason) == (phase, reason)


def test_a_whole_run_tells_its_story_in_conditions_times_and_events() -> None:
    status: dict[str, Any] = {"progress": {"epoch": 3}, "metrics": {"valAccuracy": 0.5}}
    status, change = step(status, job(active=1, ready=0))
    assert status["phase"] == "Pending"
    assert status["jobName"] == "flowers"
    assert [c["type"] for c in status["conditions"]] == ["Created"]
    assert [(e.type, e.reason) for e in change.events] == [("Normal", "PodsPending")]

    status, change = step(status, job(active=1, ready=1), now=T0)
    assert status["phase"] == "Running"
    assert status["startTime"] == "2026-03-01T12:00:00Z"
    assert [(e.type, e.reason) for e in change.events] == [("Normal", "PodsRunning")]

    status, change = step(status, job(active=1, ready=0, failed=1), now=T1)
    assert (status["phase"], status["restarts"]) == ("Restarting", 1)
    assert [(e.type, e.reason) for e in change.events] == [("Warning", "PodFailed")]
    assert "1 of 3 retries" in change.events[0].message
    running = next(c for c in status["conditions"] if c["type"] == "Running")
    assert (running["status"], running["reason"]) == ("False", "Restarting")

    status, change = step(status, job(active=1, ready=1, failed=1), now=T1)
    assert (status["phase"], status["restarts"]) == ("Running", 1)
    assert status["startTime"] == "2026-03-01T12:00:00Z", "startTime is the first start, not the restart"
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Restarting"]["status"] == "False"
    assert by_type["Running"]["status"] == "True"
    assert by_type["Running"]["lastTransitionTime"] == "2026-03-01T12:05:00Z"
    assert all(c["observedGeneration"] == 2 for c in status["conditions"])

    done = job(succeeded=1, completionTime="2026-03-01T13:00:00Z", conditions=[cond("Complete", "CompletionsReached")])
    status, change = step(status, done, now=T1)
    assert status["phase"] == "Succeeded"
    assert status["completionTime"] == "2026-03-01T13:00:00Z"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "True"
    assert [(e.type, e.reason) for e in change.events] == [("Normal", "JobComplete")]
    assert status["progress"] == {"epoch": 3}, "the trainer's fields are untouched"

    _, change = step(status, done, now=T1)
    assert not change, "a second look at an unchanged Job writes nothing and posts no Event"


def test_a_failure_and_retry_between_two_looks_is_still_counted_and_reported() -> None:
    status, _ = step({}, job(active=1, ready=1))
    status, change = step(status, job(active=1, ready=1, failed=1))
    assert (status["phase"], status["restarts"]) == ("Running", 1)
    assert [(e.type, e.reason) for e in change.events] == [("Warning", "PodFailed")]


def test_failure_carries_the_jobs_reason_and_message() -> None:
    status, _ = step({}, job(active=1, ready=1))
    failed = job(
        failed=4,
        conditions=[cond("Failed", "BackoffLimitExceeded", message="Job has reached the specified backoff limit")],
    )
    status, change = step(status, failed)
    assert (status["phase"], status["restarts"]) == ("Failed", 3)
    assert status["message"] == "Job has reached the specified backoff limit"
    assert status["completionTime"] == "2026-03-01T11:00:00Z"
    assert [(e.type, e.reason) for e in change.events] == [("Warning", "BackoffLimitExceeded")]


def test_suspend_and_resume() -> None:
    status, _ = step({}, job(active=1, ready=1))
    status, change = step(status, job(suspend=True, active=0))
    assert status["phase"] == "Suspended"
    assert [(e.type, e.reason) for e in change.events] == [("Normal", "Suspended")]
    status, change = step(status, job(active=1, ready=1))
    assert status["phase"] == "Running"
    assert [(e.type, e.reason) for e in change.events] == [("Normal", "Resumed")]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Suspended"] == "False"


def test_invalid_spec_fails_naming_the_fields_once() -> None:
    change = ts.invalid_spec_change({}, ["spec.resources.numNodes: must be at least 1"], generation=3, now=T0)
    assert change.patch["phase"] == "Failed"
    assert "spec.resources.numNodes" in change.patch["message"]
    assert change.patch["observedGeneration"] == 3
    failed = change.patch["conditions"][0]
    assert (failed["type"], failed["status"], failed["reason"]) == ("Failed", "True", "InvalidSpec")
    assert [(e.type, e.reason) for e in change.events] == [("Warning", "InvalidSpec")]
    status = {**change.patch}
    assert ts.failed_for_invalid_spec(status)
    repeat = ts.invalid_spec_change(status, ["spec.resources.numNodes: must be at least 1"], generation=3, now=T1)
    assert repeat.events == [], "the same problem again posts no second Event"
    # Once fixed, the Failed condition follows the Job again.
    fixed, _ = step(status, job(active=1, ready=1))
    assert not ts.failed_for_invalid_spec(fixed)
    assert {c["type"]: c["status"] for c in fixed["conditions"]}["Failed"] == "False"


def test_changed_fields_lists_leaf_paths() -> None:
    old = {"model": {"backbone": "resnet50", "numClasses": 10}, "training": {"epochs": 10}}
    new = {"model": {"backbone": "resnet18", "numClasses": 10}, "training": {"epochs": 12}, "extra": 1}
    assert ts.changed_fields(old, new) == ["spec.extra", "spec.model.backbone", "spec.training.epochs"]


def test_only_suspend_run_policy_and_promotion_may_change_once_the_job_exists() -> None:
    applied = {"training": {"epochs": 10}, "suspend": False, "runPolicy": {"backoffLimit": 3}}
    wanted = {"training": {"epochs": 20}, "suspend": True, "runPolicy": {"backoffLimit": 5}, "promotion": {"x": 1}}
    review = ts.review_spec_change(applied, wanted)
    assert review.refused == ["spec.training.epochs"]
    assert review.effective == {
        "training": {"epochs": 10},
        "suspend": True,
        "runPolicy": {"backoffLimit": 5},
        "promotion": {"x": 1},
    }
    assert ts.review_spec_change(None, wanted) == ts.SpecReview(wanted, [])


def test_a_refused_change_is_a_condition_and_a_warning_naming_the_field() -> None:
    review = ts.SpecReview({}, ["spec.resources.numNodes"])
    change = ts.spec_review_change({}, review, generation=4, now=T0)
    (accepted,) = change.patch["conditions"]
    assert (accepted["type"], accepted["status"], accepted["reason"]) == (
        "SpecAccepted",
        "False",
        "ImmutableFieldChanged",
    )
    assert "spec.resources.numNodes" in accepted["message"]
    assert change.patch["observedGeneration"] == 4
    assert [(e.type, e.reason) for e in change.events] == [("Warning", "ImmutableFieldChanged")]
    # Reverting the spec accepts it again.
    back = ts.spec_review_change(change.patch, ts.SpecReview({}, []), generation=5, now=T1)
    assert back.patch["conditions"][0]["status"] == "True"
    assert [(e.type, e.reason) for e in back.events] == [("Normal", "SpecApplied")]
    # Nothing refused, nothing ever refused: only observedGeneration moves.
    assert ts.spec_review_change({}, ts.SpecReview({}, []), generation=6).patch == {"observedGeneration": 6}
