"""The one helper that sets standard conditions. Pure: it returns the new list and whether anything changed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from modelyard.api.common import ConditionStatus, utcnow


def set_condition(
    conditions: Sequence[dict[str, Any]],
    type_: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None = None,
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Set one condition (wire form) and report whether anything a reader would notice changed.

    lastTransitionTime moves only when `status` flips, as Kubernetes conventions require; a new reason or message
    on the same status is a change but keeps the transition time.
    """
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    stamp = (now or utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")
    result: list[dict[str, Any]] = []
    changed = True
    found = False
    for existing in conditions:
        if existing.get("type") != type_:
            result.append(dict(existing))
            continue
        found = True
        flipped = existing.get("status") != status.value
        updated: dict[str, Any] = {
            "type": type_,
            "status": status.value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": stamp if flipped else existing.get("lastTransitionTime", stamp),
        }
        if observed_generation is not None:
            updated["observedGeneration"] = observed_generation
        changed = updated != existing
        result.append(updated)
    if not found:
        new: dict[str, Any] = {
            "type": type_,
            "status": status.value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": stamp,
        }
        if observed_generation is not None:
            new["observedGeneration"] = observed_generation
        result.append(new)
    return result, changed


def get_condition(conditions: Sequence[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    """The condition of that type, if any."""
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Sequence[dict[str, Any]], type_: str) -> bool:
    """Whether the condition of that type is present and True."""
    found = get_condition(conditions, type_)
    return found is not None and found.get("status") == ConditionStatus.TRUE.value
