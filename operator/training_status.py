"""A TrainingJob's status from its Job, as pure functions: the Job (or its absence) and the current status in, the
status patch and the Events of the transitions out.

The operator owns phase, conditions, startTime, completionTime, restarts, jobName, message and observedGeneration;
the trainer owns progress, metrics, lastCheckpoint and model, which nothing here ever writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelyard.api.common import ConditionStatus, utcnow
from modelyard.api.conditions import get_condition
from modelyard.api.training_job import TrainingJobConditionType as Cond
from modelyard.api.training_job import TrainingJobPhase as Phase
from modelyard.operator.status import ConditionUpdate, EventSpec, EventType, StatusChange, update_conditions

# Not a lifecycle condition: False while a change of the spec is refused (see review_spec_change).
SPEC_ACCEPTED = Cond.SPEC_ACCEPTED.value
REASON_INVALID_SPEC = "InvalidSpec"
REASON_IMMUTABLE_FIELD = "ImmutableFieldChanged"
TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})
# The lifecycle condition that is True in each phase (Pending has none: Created tells it).
PHASE_CONDITION: dict[Phase, Cond] = {
    Phase.RUNNING: Cond.RUNNING,
    Phase.RESTARTING: Cond.RESTARTING,
    Phase.SUSPENDED: Cond.SUSPENDED,
    Phase.SUCCEEDED: Cond.SUCCEEDED,
    Phase.FAILED: Cond.FAILED,
}
# Fields of a spec that may change at any time: they are carried to the Job (suspend, runPolicy) or read when the
# job succeeds (promotion). Every other field is fixed once the Job exists.
MUTABLE_SPEC_FIELDS = frozenset({"suspend", "runPolicy", "promotion"})


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class JobState:
    """What the Job says about its pods."""

    nodes: int
    suspended: bool
    active: int
    ready: int
    failed: int
    succeeded: int
    complete: bool
    failed_for_good: bool
    reason: str
    message: str
    finished_at: str | None


def observe_job(job: Mapping[str, Any]) -> JobState:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    complete = get_condition(conditions, "Complete")
    failed = get_condition(conditions, "Failed")
    is_complete = bool(complete and complete.get("status") == "True")
    is_failed = bool(failed and failed.get("status") == "True")
    ending = complete if is_complete else failed if is_failed else None
    active = int(status.get("active") or 0)
    return JobState(
        nodes=int(spec.get("completions") or spec.get("parallelism") or 1),
        suspended=bool(spec.get("suspend")),
        active=active,
        # Before Kubernetes 1.24 (or before the first pod starts) `ready` is absent: active pods count as ready.
        ready=int(status["ready"]) if status.get("ready") is not None else active,
        failed=int(status.get("failed") or 0),
        succeeded=int(status.get("succeeded") or 0),
        complete=is_complete,
        failed_for_good=is_failed,
        reason=str((ending or {}).get("reason") or ""),
        message=str((ending or {}).get("message") or ""),
        finished_at=status.get("completionTime") or (ending or {}).get("lastTransitionTime"),
    )


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: str
    message: str


def judge(job: JobState | None, backoff_limit: int) -> Verdict:
    """The phase the Job's state means."""
    if job is None:
        return Verdict(Phase.PENDING, "JobPending", "the Job is being created")
    if job.complete:
        return Verdict(Phase.SUCCEEDED, "JobComplete", f"training finished: {job.succeeded}/{job.nodes} pods succeeded")
    if job.failed_for_good:
        reason = job.reason or "JobFailed"
        return Verdict(Phase.FAILED, reason, job.message or f"the Job failed after {job.failed} pod failures")
    if job.suspended:
        detail = f", {job.active} pods stopping" if job.active else ""
        return Verdict(
            Phase.SUSPENDED,
            "Suspended",
            f"suspended: the pods are removed{detail}; resuming continues from the last checkpoint",
        )
    if job.active >= job.nodes and job.ready >= job.nodes:
        return Verdict(Phase.RUNNING, "PodsRunning", f"{job.ready}/{job.nodes} pods running")
    if job.failed:
        return Verdict(
            Phase.RESTARTING,
            "PodFailed",
            f"a training pod failed and is retried ({job.failed} of {backoff_limit} retries used)",
        )
    return Verdict(Phase.PENDING, "PodsPending", f"{job.ready}/{job.nodes} pods running")


def lifecycle_change(
    status: Mapping[str, Any],
    job: Mapping[str, Any] | None,
    *,
    job_name: str,
    backoff_limit: int,
    generation: int | None,
    now: datetime | None = None,
) -> StatusChange:
    """The status patch (operator fields only) and Events that bring `status` in line with `job`."""
    now = now or utcnow()
    state = observe_job(job) if job is not None else None
    verdict = judge(state, backoff_limit)
    previous = status.get("phase")
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    updates: list[ConditionUpdate] = []
    if job is not None:
        updates.append(ConditionUpdate(Cond.CREATED, True, "JobCreated", f"Job {job_name} created"))
    for phase, cond in PHASE_CONDITION.items():
        if phase is verdict.phase:
            updates.append(ConditionUpdate(cond, True, verdict.reason, verdict.message))
        elif get_condition(conditions, cond) is not None:
            # Present conditions follow the phase; absent ones are only added once they become True.
            updates.append(ConditionUpdate(cond, False, verdict.phase.value, verdict.message))
    new_conditions, _ = update_conditions(conditions, updates, generation=generation, now=now)
    patch: dict[str, Any] = {}
    if new_conditions != conditions:
        patch["conditions"] = new_conditions
    restarts = _restarts(state) if state is not None else 0
    fields: dict[str, Any] = {
        "phase": verdict.phase.value,
        "message": verdict.message,
        "restarts": max(restarts, int(status.get("restarts") or 0)),
    }
    if job is not None:
        fields["jobName"] = job_name
    if verdict.phase is Phase.RUNNING and not status.get("startTime"):
        fields["startTime"] = _stamp(now)
    if verdict.phase in TERMINAL_PHASES and not status.get("completionTime"):
        fields["completionTime"] = (state.finished_at if state else None) or _stamp(now)
    patch.update({k: v for k, v in fields.items() if status.get(k) != v})
    return StatusChange(patch=patch, events=_events(previous, verdict, status, fields["restarts"]))


def _restarts(job: JobState) -> int:
    """Pod failures that were retried: every failure, except the last one of a job that failed for good."""
    return max(job.failed - 1, 0) if job.failed_for_good else job.failed


def _events(previous: Any, verdict: Verdict, status: Mapping[str, Any], restarts: int) -> list[EventSpec]:
    events: list[EventSpec] = []
    old_restarts = int(status.get("restarts") or 0)
    if restarts > old_restarts and verdict.phase not in (Phase.RESTARTING, Phase.FAILED):
        # A failure and its retry both happened between two looks: say so anyway.
        events.append(EventSpec("Warning", "PodFailed", f"a training pod failed and was retried (restart {restarts})"))
    if previous != verdict.phase.value:
        kind: EventType = "Warning" if verdict.phase in (Phase.FAILED, Phase.RESTARTING) else "Normal"
        reason = "Resumed" if previous == Phase.SUSPENDED.value and verdict.phase is not Phase.SUCCEEDED else ""
        events.append(EventSpec(kind, reason or verdict.reason, verdict.message))
    return events


def invalid_spec_change(
    status: Mapping[str, Any], problems: Sequence[str], *, generation: int | None, now: datetime | None = None
) -> StatusChange:
    """Failed with reason InvalidSpec, naming the fields; no Job is created."""
    message = "invalid spec: " + "; ".join(problems)
    conditions, transitions = update_conditions(
        list(status.get("conditions") or []),
        [ConditionUpdate(Cond.FAILED, True, REASON_INVALID_SPEC, message)],
        generation=generation,
        now=now,
    )
    patch: dict[str, Any] = {"phase": Phase.FAILED.value, "message": message, "conditions": conditions}
    if generation is not None:
        patch["observedGeneration"] = generation
    changed = status.get("message") != message or bool(transitions)
    return StatusChange(patch=patch, events=[EventSpec("Warning", REASON_INVALID_SPEC, message)] if changed else [])


def failed_for_invalid_spec(status: Mapping[str, Any]) -> bool:
    """Whether the job failed only because its spec was invalid (fixing the spec starts it then)."""
    failed = get_condition(list(status.get("conditions") or []), Cond.FAILED)
    return bool(failed and failed.get("status") == "True" and failed.get("reason") == REASON_INVALID_SPEC)


def changed_fields(applied: Any, wanted: Any, prefix: str = "spec") -> list[str]:
    """Dotted paths where two wire-form specs differ (lists compared whole)."""
    if isinstance(applied, Mapping) and isinstance(wanted, Mapping):
        paths: list[str] = []
        for key in sorted(set(applied) | set(wanted)):
            paths += changed_fields(applied.get(key), wanted.get(key), f"{prefix}.{key}")
        return paths
    return [] if applied == wanted else [prefix]


@dataclass(frozen=True)
class SpecReview:
    """The spec to run (the applied one with the new mutable fields) and the refused immutable changes."""

    effective: dict[str, Any]
    refused: list[str]


def review_spec_change(applied: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> SpecReview:
    """Once the Job exists only MUTABLE_SPEC_FIELDS may change; other changes are refused (the job keeps running
    with what it was started with)."""
    if applied is None:
        return SpecReview(dict(wanted), [])
    fixed_applied = {k: v for k, v in applied.items() if k not in MUTABLE_SPEC_FIELDS}
    fixed_wanted = {k: v for k, v in wanted.items() if k not in MUTABLE_SPEC_FIELDS}
    effective = {**fixed_applied, **{k: v for k, v in wanted.items() if k in MUTABLE_SPEC_FIELDS}}
    return SpecReview(effective, changed_fields(fixed_applied, fixed_wanted))


def spec_review_change(
    status: Mapping[str, Any], review: SpecReview, *, generation: int | None, now: datetime | None = None
) -> StatusChange:
    """SpecAccepted False (naming the fields) while a change is refused; True again once the spec is back."""
    conditions = list(status.get("conditions") or [])
    if review.refused:
        fields = ", ".join(review.refused)
        update = ConditionUpdate(
            SPEC_ACCEPTED,
            False,
            REASON_IMMUTABLE_FIELD,
            f"{fields} cannot change once the Job exists; the job goes on with the previous value. "
            "Create a new TrainingJob to train with the new value.",
        )
    elif get_condition(conditions, SPEC_ACCEPTED) is not None:
        update = ConditionUpdate(SPEC_ACCEPTED, True, "SpecApplied", "the spec in force is the one applied")
    else:
        return StatusChange(patch={"observedGeneration": generation} if generation is not None else {})
    new, transitions = update_conditions(conditions, [update], generation=generation, now=now)
    patch: dict[str, Any] = {"conditions": new} if new != conditions else {}
    if generation is not None:
        patch["observedGeneration"] = generation
    events: list[EventSpec] = []
    if transitions or (review.refused and patch.get("conditions")):
        event_type: EventType = "Warning" if review.refused else "Normal"
        events.append(EventSpec(event_type, update.reason, update.message))
    return StatusChange(patch=patch, events=events)


def condition_status(status: Mapping[str, Any], type_: str) -> ConditionStatus | None:
    found = get_condition(list(status.get("conditions") or []), type_)
    return ConditionStatus(found["status"]) if found else None
