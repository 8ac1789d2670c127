"""The ModelDeployment rollout state machine: revisions, stable revision, automatic and manual rollback.

Pure functions of (spec, status, what the cluster shows): no I/O, so every decision is unit-tested and a restarted
operator reaches the same decision from the status it persisted. A reconcile runs in two steps:

1. `plan` (before applying): a new revision when the pod template changed, a manual `rollbackTo` handled once.
   It chooses which revision the Deployment runs (`status.currentRevision`).
2. `settle` (after applying and observing): the outcome of the current revision (stable, failed, still going),
   and an automatic rollback to the stable revision when it failed. The spec's template is not rolled out again
   until the spec changes: a new revision is made only when the desired template differs from the newest one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from modelyard.api.common import Condition
from modelyard.api.conditions import set_condition
from modelyard.api.model_deployment import (
    ModelDeploymentConditionType,
    ModelDeploymentPhase,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Revision,
    RevisionOutcome,
    RevisionTemplate,
    RollbackRecord,
)

MANUAL = "Manual"


@dataclass(frozen=True)
class DesiredRevision:
    """What the spec asks the pods to run now."""

    model_tag: str
    image: str
    template_hash: str
    template: RevisionTemplate
    training_job: str | None = None


class Health(enum.StrEnum):
    """Where the current revision's rollout stands."""

    PROGRESSING = "Progressing"
    COMPLETE = "Complete"
    FAILED = "Failed"


@dataclass(frozen=True)
class Observation:
    """The current revision's Deployment as the cluster reports it (see `modelyard.operator.observe`)."""

    health: Health
    reason: str
    message: str
    replicas: int = 0
    ready_replicas: int = 0
    available_since: datetime | None = None


class Verdict(enum.StrEnum):
    PENDING = "Pending"
    PASSED = "Passed"
    FAILED = "Failed"


@dataclass(frozen=True)
class AnalysisResult:
    """The Prometheus analysis of a revision that became available (see `modelyard.operator.analysis`)."""

    verdict: Verdict
    reason: str
    message: str


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Decision:
    """The new status plus what the handler must do about it."""

    status: ModelDeploymentStatus
    events: list[Event] = field(default_factory=list)
    rollback_reason: str | None = None  # counted in modelyard_rollbacks_total when set
    needs_analysis: bool = False  # settle wants an AnalysisResult for the current revision


def find_revision(status: ModelDeploymentStatus, number: int | None) -> Revision | None:
    """The revision with that number, if the history still holds it."""
    return next((r for r in status.revisions if r.revision == number), None)


def current_revision(status: ModelDeploymentStatus) -> Revision | None:
    """The revision the Deployment runs (or is rolling out)."""
    return find_revision(status, status.current_revision)


def plan(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, desired: DesiredRevision, now: datetime) -> Decision:
    """Step 1: record a new revision when the template changed, then honour a new `rollbackTo`."""
    new = status.model_copy(deep=True)
    decision = Decision(status=new)
    newest = new.revisions[-1] if new.revisions else None
    if newest is None or newest.template_hash != desired.template_hash:
        _start_revision(decision, desired, now)
    if spec.rollback_to is not None and spec.rollback_to != new.handled_rollback_to:
        _manual_rollback(decision, spec.rollback_to, now)
    _prune(new, spec.rollback.revision_history_limit)
    return decision


def _start_revision(decision: Decision, desired: DesiredRevision, now: datetime) -> None:
    status = decision.status
    number = max((r.revision for r in status.revisions), default=0) + 1
    for previous in status.revisions:
        if previous.outcome is RevisionOutcome.PROGRESSING:
            previous.outcome = RevisionOutcome.SUPERSEDED
            previous.message = f"replaced by revision {number} before its rollout finished"
    status.revisions.append(
        Revision(
            revision=number,
            model_tag=desired.model_tag,
            image=desired.image,
            template_hash=desired.template_hash,
            template=desired.template,
            created_at=now,
            outcome=RevisionOutcome.PROGRESSING,
            training_job=desired.training_job,
        )
    )
    status.current_revision = number
    status.model_tag = desired.model_tag
    decision.events.append(Event("Normal", "RevisionCreated", f"revision {number} rolls out {desired.model_tag}"))


def _manual_rollback(decision: Decision, target: int, now: datetime) -> None:
    status = decision.status
    status.handled_rollback_to = target
    wanted = find_revision(status, target)
    if wanted is None:
        kept = ", ".join(str(r.revision) for r in status.revisions) or "none"
        decision.events.append(
            Event("Warning", "RollbackRejected", f"spec.rollbackTo: revision {target} is not in the history ({kept})")
        )
        return
    leaving = status.current_revision
    if leaving == target:
        decision.events.append(Event("Normal", "RollbackIgnored", f"spec.rollbackTo: revision {target} is current"))
        return
    left = find_revision(status, leaving)
    if left is not None and left.outcome is RevisionOutcome.PROGRESSING:
        left.outcome = RevisionOutcome.SUPERSEDED
        left.message = f"left by a manual rollback to revision {target}"
    if wanted.revision != status.stable_revision:
        # The target rolls out again and is judged like any new rollout.
        wanted.outcome = RevisionOutcome.PROGRESSING
        wanted.message = f"restored by a manual rollback from revision {leaving}"
    status.current_revision = target
    status.model_tag = wanted.model_tag
    message = f"rolled back from revision {leaving} to {target} ({wanted.model_tag}) as spec.rollbackTo asked"
    status.last_rollback = RollbackRecord(
        from_revision=leaving or target, to_revision=target, reason=MANUAL, message=message, time=now
    )
    decision.rollback_reason = MANUAL
    decision.events.append(Event("Normal", "RolledBack", message))


def _prune(status: ModelDeploymentStatus, limit: int) -> None:
    """Keep the newest `limit` revisions, and always the current, stable and newest ones (rollback needs them)."""
    if len(status.revisions) <= limit:
        return
    needed = {status.current_revision, status.stable_revision, status.revisions[-1].revision}
    newest_first = sorted(status.revisions, key=lambda r: r.revision, reverse=True)
    keep = {r.revision for r in newest_first if r.revision in needed}
    for revision in newest_first:
        if len(keep) >= limit:
            break
        keep.add(revision.revision)
    status.revisions = [r for r in status.revisions if r.revision in keep]


def settle(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    observation: Observation,
    analysis: AnalysisResult | None,
    generation: int | None,
    now: datetime,
) -> Decision:
    """Step 2: judge the current revision from what the cluster shows; roll back automatically when it failed.

    `analysis` is None until the handler ran it; a Decision with needs_analysis asks for it.
    """
    decision = Decision(status=status.model_copy(deep=True))
    _judge(decision, spec, observation, analysis, generation, now)
    _prune(decision.status, spec.rollback.revision_history_limit)
    return decision


def _judge(
    decision: Decision,
    spec: ModelDeploymentSpec,
    observation: Observation,
    analysis: AnalysisResult | None,
    generation: int | None,
    now: datetime,
) -> None:
    new = decision.status
    new.replicas, new.ready_replicas = observation.replicas, observation.ready_replicas
    new.observed_generation = generation
    current = current_revision(new)
    if current is None:
        set_phase(new, ModelDeploymentPhase.PENDING, generation, now, "NoRevision", "no revision to run yet")
        return
    if current.outcome is not RevisionOutcome.PROGRESSING:
        _steady(new, current, observation, generation, now)
        return
    if observation.health is Health.PROGRESSING:
        set_phase(new, ModelDeploymentPhase.PROGRESSING, generation, now, observation.reason, observation.message)
        return
    if observation.health is Health.COMPLETE and spec.rollout.analysis is not None:
        if analysis is None:
            decision.needs_analysis = True
            set_phase(new, ModelDeploymentPhase.PROGRESSING, generation, now, "AnalysisRunning", "judging figures")
            return
        if analysis.verdict is Verdict.PENDING:
            set_phase(new, ModelDeploymentPhase.PROGRESSING, generation, now, analysis.reason, analysis.message)
            return
        if analysis.verdict is Verdict.FAILED:
            _fail(decision, spec, current, analysis.reason, analysis.message, generation, now)
            return
    if observation.health is Health.FAILED:
        _fail(decision, spec, current, observation.reason, observation.message, generation, now)
        return
    _promote(decision, current, analysis, observation, generation, now)


def _promote(
    decision: Decision,
    current: Revision,
    analysis: AnalysisResult | None,
    observation: Observation,
    generation: int | None,
    now: datetime,
) -> None:
    status = decision.status
    previous = find_revision(status, status.stable_revision)
    if previous is not None and previous.revision != current.revision:
        previous.outcome = RevisionOutcome.SUPERSEDED
        previous.message = f"superseded by revision {current.revision}"
    current.outcome = RevisionOutcome.STABLE
    current.message = analysis.message if analysis is not None else "all replicas available"
    status.stable_revision = current.revision
    decision.events.append(
        Event("Normal", "RevisionStable", f"revision {current.revision} ({current.model_tag}) is stable")
    )
    _steady(status, current, observation, generation, now)


def _fail(
    decision: Decision,
    spec: ModelDeploymentSpec,
    current: Revision,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> None:
    status = decision.status
    current.outcome = RevisionOutcome.FAILED
    current.message = f"{reason}: {message}"
    stable = find_revision(status, status.stable_revision)
    if not spec.rollback.automatic or stable is None or stable.revision == current.revision:
        why = "automatic rollback is off" if not spec.rollback.automatic else "no stable revision to restore"
        decision.events.append(Event("Warning", reason, f"revision {current.revision} failed ({why}): {message}"))
        set_phase(status, ModelDeploymentPhase.FAILED, generation, now, reason, f"{message}; {why}")
        return
    text = f"revision {current.revision} failed ({message}); restored revision {stable.revision} ({stable.model_tag})"
    status.last_rollback = RollbackRecord(
        from_revision=current.revision, to_revision=stable.revision, reason=reason, message=text, time=now
    )
    status.current_revision = stable.revision
    status.model_tag = stable.model_tag
    decision.rollback_reason = reason
    decision.events.append(Event("Warning", "RolledBack", text))
    # The stable template is applied next; until it is available the pods still serve what they can.
    set_phase(status, ModelDeploymentPhase.ROLLED_BACK, generation, now, reason, text)


def _steady(
    status: ModelDeploymentStatus, current: Revision, observation: Observation, generation: int | None, now: datetime
) -> None:
    """A revision that is not rolling out: Ready, RolledBack (serving an older one), Degraded, or Failed."""
    if current.outcome is RevisionOutcome.FAILED:
        reason = (current.message or "RolloutFailed").split(":", 1)[0]
        set_phase(status, ModelDeploymentPhase.FAILED, generation, now, reason, current.message or "")
        return
    rolled_back = serving_rolled_back(status)
    # While a restored revision is still coming up, having no ready replica is the rollback under way.
    unserved = observation.replicas > 0 and observation.ready_replicas == 0
    restoring = rolled_back and observation.health is Health.PROGRESSING
    if observation.health is Health.FAILED or (unserved and not restoring):
        if observation.health is Health.FAILED:
            reason, message = observation.reason, observation.message
        else:
            reason, message = "NoReadyReplicas", f"no replica is ready ({observation.message})"
        set_phase(status, ModelDeploymentPhase.DEGRADED, generation, now, reason, message)
        return
    if rolled_back and status.last_rollback is not None:
        record = status.last_rollback
        set_phase(status, ModelDeploymentPhase.ROLLED_BACK, generation, now, record.reason, record.message)
        return
    set_phase(status, ModelDeploymentPhase.READY, generation, now, observation.reason, observation.message)


def serving_rolled_back(status: ModelDeploymentStatus) -> bool:
    """Whether the Deployment runs an older revision than the newest because of a rollback."""
    newest = status.revisions[-1] if status.revisions else None
    return status.last_rollback is not None and newest is not None and newest.revision != status.current_revision


def set_phase(
    status: ModelDeploymentStatus,
    phase: ModelDeploymentPhase,
    generation: int | None,
    now: datetime,
    reason: str,
    message: str,
) -> None:
    """The phase and the four conditions, always set together so they never contradict each other.

    A condition that is False gives the phase as its reason (Progressing=False because Ready, for instance), except
    Progressing while Pending, which says what the deployment waits for.
    """
    status.phase = phase
    serving = status.ready_replicas > 0 and phase not in (ModelDeploymentPhase.DEGRADED, ModelDeploymentPhase.FAILED)
    replicas = f"{status.ready_replicas} of {status.replicas} replicas ready"
    types = ModelDeploymentConditionType
    # RolledBack says what runs, whatever the phase: a restored revision may also be degraded.
    record = status.last_rollback
    rolled_back = (record.reason, record.message) if record is not None else (reason, message)
    wanted: list[tuple[ModelDeploymentConditionType, bool, str, str]] = [
        (types.READY, serving, phase.value if serving else "NoReadyReplicas", replicas),
        (types.PROGRESSING, phase is ModelDeploymentPhase.PROGRESSING, reason, message),
        (types.DEGRADED, phase in (ModelDeploymentPhase.DEGRADED, ModelDeploymentPhase.FAILED), reason, message),
        (types.ROLLED_BACK, phase is ModelDeploymentPhase.ROLLED_BACK or serving_rolled_back(status), *rolled_back),
    ]
    conditions: list[dict[str, Any]] = [c.to_wire() for c in status.conditions]
    for type_, flag, why, text in wanted:
        # Ready always explains itself; so does Progressing while waiting to start (Pending says what for).
        waiting = type_ is types.PROGRESSING and phase is ModelDeploymentPhase.PENDING
        explained = flag or type_ is types.READY or waiting
        conditions, _ = set_condition(
            conditions,
            type_.value,
            flag,
            why if explained else phase.value,
            text if explained else "",
            observed_generation=generation,
            now=now,
        )
    status.conditions = [Condition.model_validate(c) for c in conditions]
