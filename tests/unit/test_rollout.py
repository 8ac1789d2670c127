"""The rollout state machine: revisions, stable revision, automatic and manual rollback, history limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelyard.api.model_deployment import (
    BatchingSpec,
    ModelDeploymentPhase,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RevisionOutcome,
    RevisionTemplate,
    ServingResources,
)
from modelyard.operator.rollout import (
    AnalysisResult,
    Decision,
    DesiredRevision,
    Health,
    Observation,
    Verdict,
    plan,
    settle,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
COMPLETE = Observation(Health.COMPLETE, "RolloutComplete", "2 of 2 replicas available", 2, 2, T0)
GOING = Observation(Health.PROGRESSING, "ReplicaSetUpdated", "1 of 2 replicas updated", 3, 2)
STUCK = Observation(Health.FAILED, "ProgressDeadlineExceeded", 'ReplicaSet "x" has timed out progressing.', 3, 2)


def spec(**overrides: Any) -> ModelDeploymentSpec:
    wire: dict[str, Any] = {"model": {"name": "flowers", "tag": "v1"}, **overrides}
    return ModelDeploymentSpec.model_validate(wire)


TEMPLATE = RevisionTemplate(resources=ServingResources(), batching=BatchingSpec())


def desired(tag: str, training_job: str | None = None) -> DesiredRevision:
    return DesiredRevision(f"flowers:{tag}", "modelyard/serving:1", f"hash-{tag}", TEMPLATE, training_job)


def outcomes(status: ModelDeploymentStatus) -> dict[int, str]:
    return {r.revision: r.outcome.value for r in status.revisions}


def conditions(status: ModelDeploymentStatus) -> dict[str, str]:
    return {c.type: c.status.value for c in status.conditions}


class Cluster:
    """Drives plan → settle as the handler does, one reconcile per call, keeping the persisted status."""

    def __init__(self, md_spec: ModelDeploymentSpec) -> None:
        self.spec = md_spec
        self.status = ModelDeploymentStatus()
        self.now = T0
        self.rollbacks: list[str] = []

    def reconcile(
        self, want: DesiredRevision, seen: Observation, analysis: AnalysisResult | None = None
    ) -> tuple[Decision, Decision]:
        self.now += timedelta(seconds=10)
        first = plan(self.spec, self.status, want, self.now)
        second = settle(self.spec, first.status, seen, analysis, 1, self.now)
        self.rollbacks += [r for r in (first.rollback_reason, second.rollback_reason) if r]
        self.status = second.status
        return first, second


def test_first_reconcile_records_revision_one_and_completion_makes_it_stable() -> None:
    cluster = Cluster(spec())
    first, _second = cluster.reconcile(desired("v1", "default/train-1"), GOING)
    assert [e.reason for e in first.events] == ["RevisionCreated"]
    assert cluster.status.current_revision == 1
    assert cluster.status.revisions[0].training_job == "default/train-1"
    assert cluster.status.revisions[0].template == TEMPLATE
    assert cluster.status.phase is ModelDeploymentPhase.PROGRESSING
    assert conditions(cluster.status) == {
        "Ready": "True",
        "Progressing": "True",
        "Degraded": "False",
        "RolledBack": "False",
    }

    _, done = cluster.reconcile(desired("v1"), COMPLETE)
    assert outcomes(cluster.status) == {1: "Stable"}
    assert cluster.status.stable_revision == 1
    assert cluster.status.phase is ModelDeploymentPhase.READY
    assert [e.reason for e in done.events] == ["RevisionStable"]
    assert conditions(cluster.status)["Progressing"] == "False"
    assert cluster.status.replicas == 2
    assert cluster.status.ready_replicas == 2


def test_unchanged_template_makes_no_new_revision_and_no_events() -> None:
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    first, second = cluster.reconcile(desired("v1"), COMPLETE)
    assert len(cluster.status.revisions) == 1
    assert first.events == []
    assert second.events == []


def test_new_model_tag_makes_a_revision_that_becomes_stable_and_supersedes_the_old_one() -> None:
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.reconcile(desired("v2"), GOING)
    assert outcomes(cluster.status) == {1: "Stable", 2: "Progressing"}
    assert cluster.status.stable_revision == 1
    assert cluster.status.current_revision == 2
    assert cluster.status.model_tag == "flowers:v2"
    cluster.reconcile(desired("v2"), COMPLETE)
    assert outcomes(cluster.status) == {1: "Superseded", 2: "Stable"}
    assert cluster.status.stable_revision == 2


def test_a_revision_replaced_mid_rollout_is_superseded() -> None:
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.reconcile(desired("v2"), GOING)
    cluster.reconcile(desired("v3"), GOING)
    assert outcomes(cluster.status) == {1: "Stable", 2: "Superseded", 3: "Progressing"}


def test_progress_deadline_rolls_back_to_stable_once_and_never_rolls_forward_by_itself() -> None:
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.reconcile(desired("v2"), GOING)
    _, failed = cluster.reconcile(desired("v2"), STUCK)

    assert failed.rollback_reason == "ProgressDeadlineExceeded"
    assert outcomes(cluster.status) == {1: "Stable", 2: "Failed"}
    assert cluster.status.current_revision == 1
    assert cluster.status.model_tag == "flowers:v1"
    record = cluster.status.last_rollback
    assert record is not None
    assert (record.from_revision, record.to_revision) == (2, 1)
    assert record.reason == "ProgressDeadlineExceeded"
    assert "timed out" in record.message
    assert cluster.status.phase is ModelDeploymentPhase.ROLLED_BACK
    assert [(e.type, e.reason) for e in failed.events] == [("Warning", "RolledBack")]

    # The spec still asks for v2; while it does not change, revision 1 keeps running and nothing is counted again.
    for seen in (GOING, COMPLETE, COMPLETE):
        first, second = cluster.reconcile(desired("v2"), seen)
        assert first.events == []
        assert second.rollback_reason is None
        assert cluster.status.current_revision == 1
    assert cluster.rollbacks == ["ProgressDeadlineExceeded"]
    assert cluster.status.phase is ModelDeploymentPhase.ROLLED_BACK
    assert conditions(cluster.status)["RolledBack"] == "True"
    assert conditions(cluster.status)["Ready"] == "True"

    # A new spec rolls forward again.
    cluster.reconcile(desired("v3"), GOING)
    assert cluster.status.current_revision == 3
    assert conditions(cluster.status)["RolledBack"] == "False"


def test_a_stale_observation_after_rollback_does_not_roll_back_twice() -> None:
    # A restarted operator may see the failed revision's Deployment before the restored template reaches it;
    # observe() reports such a Deployment as still applying, and the stable revision is never judged failed.
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.reconcile(desired("v2"), GOING)
    cluster.reconcile(desired("v2"), STUCK)
    applying = Observation(Health.PROGRESSING, "Applying", "the Deployment runs revision 2, not 1 yet", 3, 2)
    cluster.reconcile(desired("v2"), applying)
    assert cluster.rollbacks == ["ProgressDeadlineExceeded"]
    assert outcomes(cluster.status) == {1: "Stable", 2: "Failed"}


def test_first_revision_failing_has_nothing_to_restore() -> None:
    cluster = Cluster(spec())
    _, failed = cluster.reconcile(desired("v1"), STUCK)
    assert failed.rollback_reason is None
    assert cluster.status.phase is ModelDeploymentPhase.FAILED
    assert outcomes(cluster.status) == {1: "Failed"}
    assert conditions(cluster.status)["Degraded"] == "True"
    assert "no stable revision" in failed.events[0].message
    cluster.reconcile(desired("v1"), STUCK)
    assert cluster.status.phase is ModelDeploymentPhase.FAILED
    assert len(cluster.status.revisions) == 1


def test_automatic_rollback_off_leaves_the_failed_revision_running() -> None:
    cluster = Cluster(spec(rollback={"automatic": False}))
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.reconcile(desired("v2"), STUCK)
    assert cluster.rollbacks == []
    assert cluster.status.current_revision == 2
    assert cluster.status.phase is ModelDeploymentPhase.FAILED


def test_crash_looping_pods_fail_the_rollout() -> None:
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    crash = Observation(Health.FAILED, "CrashLoopBackOff", "pod p container bento restarted 3 times", 3, 2)
    cluster.reconcile(desired("v2"), crash)
    assert cluster.rollbacks == ["CrashLoopBackOff"]


def test_a_stable_revision_that_stops_working_is_degraded_not_rolled_back() -> None:
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.reconcile(desired("v1"), Observation(Health.PROGRESSING, "ReplicaSetUpdated", "0 of 2 available", 2, 0))
    assert cluster.status.phase is ModelDeploymentPhase.DEGRADED
    assert conditions(cluster.status) == {
        "Ready": "False",
        "Progressing": "False",
        "Degraded": "True",
        "RolledBack": "False",
    }
    assert cluster.rollbacks == []


ANALYSED = {"analysis": {"prometheusURL": "http://prometheus:9090", "windowSeconds": 60}}


def test_analysis_is_asked_for_then_pending_keeps_progressing_then_a_pass_makes_it_stable() -> None:
    cluster = Cluster(spec(rollout=ANALYSED))
    _, asked = cluster.reconcile(desired("v1"), COMPLETE)
    assert asked.needs_analysis
    assert cluster.status.phase is ModelDeploymentPhase.PROGRESSING
    waiting = AnalysisResult(Verdict.PENDING, "AwaitingTraffic", "3 requests so far, 20 needed")
    _, pending = cluster.reconcile(desired("v1"), COMPLETE, waiting)
    assert not pending.needs_analysis
    assert cluster.status.stable_revision is None
    assert cluster.status.conditions[1].reason == "AwaitingTraffic"
    passed = AnalysisResult(Verdict.PASSED, "AnalysisPassed", "error rate 0.0% (0 of 40 requests)")
    cluster.reconcile(desired("v1"), COMPLETE, passed)
    assert cluster.status.stable_revision == 1
    assert cluster.status.revisions[0].message == "error rate 0.0% (0 of 40 requests)"


def test_failed_analysis_rolls_back_with_the_figures() -> None:
    cluster = Cluster(spec(rollout=ANALYSED))
    ok = AnalysisResult(Verdict.PASSED, "AnalysisPassed", "fine")
    cluster.reconcile(desired("v1"), COMPLETE, ok)
    bad = AnalysisResult(Verdict.FAILED, "AnalysisFailed", "error rate 50.0% (20 of 40 requests) > max error rate 5.0%")
    cluster.reconcile(desired("v2"), COMPLETE, bad)
    assert cluster.rollbacks == ["AnalysisFailed"]
    assert cluster.status.last_rollback is not None
    assert "50.0%" in cluster.status.last_rollback.message
    # The restored stable revision is not analysed again.
    _, after = cluster.reconcile(desired("v2"), COMPLETE)
    assert not after.needs_analysis


def test_manual_rollback_is_handled_once_and_judged_like_a_rollout() -> None:
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.reconcile(desired("v2"), COMPLETE)
    cluster.spec = spec(rollbackTo=1)
    first, _ = cluster.reconcile(desired("v2"), GOING)
    assert first.rollback_reason == "Manual"
    assert cluster.status.current_revision == 1
    assert cluster.status.handled_rollback_to == 1
    assert outcomes(cluster.status) == {1: "Progressing", 2: "Stable"}
    assert cluster.status.last_rollback is not None
    assert cluster.status.last_rollback.reason == "Manual"
    again, _ = cluster.reconcile(desired("v2"), COMPLETE)
    assert again.rollback_reason is None
    assert again.events == []
    assert outcomes(cluster.status) == {1: "Stable", 2: "Superseded"}
    assert cluster.status.phase is ModelDeploymentPhase.ROLLED_BACK
    assert cluster.rollbacks == ["Manual"]


def test_manual_rollback_to_an_unknown_revision_is_refused_with_a_warning() -> None:
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.spec = spec(rollbackTo=7)
    first, _ = cluster.reconcile(desired("v1"), COMPLETE)
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "RollbackRejected")]
    assert "revision 7 is not in the history (1)" in first.events[0].message
    assert cluster.status.handled_rollback_to == 7
    assert cluster.status.current_revision == 1


def test_manual_rollback_can_retry_a_failed_revision() -> None:
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.reconcile(desired("v2"), STUCK)
    cluster.spec = spec(rollbackTo=2)
    cluster.reconcile(desired("v2"), GOING)
    assert cluster.status.current_revision == 2
    assert outcomes(cluster.status)[2] == "Progressing"
    cluster.reconcile(desired("v2"), COMPLETE)
    assert cluster.status.stable_revision == 2
    assert cluster.status.phase is ModelDeploymentPhase.READY


def test_history_keeps_the_limit_but_never_drops_the_stable_revision() -> None:
    cluster = Cluster(spec(rollback={"revisionHistoryLimit": 3}))
    cluster.reconcile(desired("v1"), COMPLETE)
    for tag in ("v2", "v3", "v4", "v5"):
        cluster.reconcile(desired(tag), STUCK)
    # 1 is stable and current (restored), 5 is the newest (it keeps v5 from being rolled out again), 4 fills up.
    assert [r.revision for r in cluster.status.revisions] == [1, 4, 5]
    assert cluster.status.current_revision == 1
    cluster.reconcile(desired("v6"), COMPLETE)
    assert [r.revision for r in cluster.status.revisions] == [1, 5, 6]
    assert cluster.status.stable_revision == 6


def test_revision_numbers_keep_counting_after_pruning() -> None:
    cluster = Cluster(spec(rollback={"revisionHistoryLimit": 1}))
    for tag in ("v1", "v2", "v3"):
        cluster.reconcile(desired(tag), COMPLETE)
    assert [r.revision for r in cluster.status.revisions] == [3]
    assert cluster.status.stable_revision == 3


def test_status_round_trips_through_the_wire_form() -> None:
    # The handler persists status as JSON and reads it back after a restart: nothing may be lost on the way.
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.reconcile(desired("v2"), STUCK)
    restored = ModelDeploymentStatus.model_validate(cluster.status.to_wire())
    assert restored == cluster.status
    assert restored.revisions[1].outcome is RevisionOutcome.FAILED


def test_a_rollback_still_coming_up_is_rolled_back_not_degraded_and_says_so_in_every_condition() -> None:
    cluster = Cluster(spec())
    cluster.reconcile(desired("v1"), COMPLETE)
    cluster.reconcile(desired("v2"), STUCK)
    restoring = Observation(Health.PROGRESSING, "ReplicaSetUpdated", "0 of 1 updated replicas available", 1, 0)
    cluster.reconcile(desired("v2"), restoring)
    assert cluster.status.phase is ModelDeploymentPhase.ROLLED_BACK
    assert conditions(cluster.status) == {
        "Ready": "False",
        "Progressing": "False",
        "Degraded": "False",
        "RolledBack": "True",
    }
    # The restored revision failing too is degraded, and still rolled back: both conditions hold at once.
    cluster.reconcile(desired("v2"), STUCK)
    assert cluster.status.phase is ModelDeploymentPhase.DEGRADED
    assert conditions(cluster.status)["Degraded"] == "True"
    rolled_back = next(c for c in cluster.status.conditions if c.type == "RolledBack")
    assert (rolled_back.status.value, rolled_back.reason) == ("True", "ProgressDeadlineExceeded")
    assert cluster.rollbacks == ["ProgressDeadlineExceeded"]
