"""The one conditions helper: transitions, change detection and observedGeneration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelyard.api.common import ConditionStatus
from modelyard.api.conditions import get_condition, is_true, set_condition

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_new_condition_is_added_and_reported_as_a_change() -> None:
    conditions, changed = set_condition([], "Ready", True, "Available", "2/2 ready", observed_generation=3, now=T0)
    assert changed
    assert conditions == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Available",
            "message": "2/2 ready",
            "lastTransitionTime": "2026-11-01T12:00:00Z",
            "observedGeneration": 3,
        }
    ]
    assert is_true(conditions, "Ready")


def test_same_values_are_not_a_change() -> None:
    first, _ = set_condition([], "Ready", True, "Available", "ok", observed_generation=1, now=T0)
    later = T0 + timedelta(days=1)
    again, changed = set_condition(first, "Ready", True, "Available", "ok", observed_generation=1, now=later)
    assert not changed
    assert again == first


def test_transition_time_moves_only_when_status_flips() -> None:
    first, _ = set_condition([], "Ready", True, "Available", now=T0)
    later = T0 + timedelta(minutes=5)
    reworded, changed = set_condition(first, "Ready", True, "Available", "new words", now=later)
    assert changed
    assert get_condition(reworded, "Ready")["lastTransitionTime"] == "2026-11-01T12:00:00Z"  # type: ignore[index]
    flipped, changed = set_condition(reworded, "Ready", ConditionStatus.FALSE, "Unavailable", now=later)
    assert changed
    assert get_condition(flipped, "Ready")["lastTransitionTime"] == "2026-11-01T12:05:00Z"  # type: ignore[index]
    assert not is_true(flipped, "Ready")


def test_other_conditions_are_kept_in_order() -> None:
    conditions, _ = set_condition([], "Created", True, "JobCreated", now=T0)
    conditions, _ = set_condition(conditions, "Running", True, "PodsRunning", now=T0)
    conditions, _ = set_condition(conditions, "Created", True, "JobCreated", "again", now=T0)
    assert [c["type"] for c in conditions] == ["Created", "Running"]
