"""Writing status: conditions through the API's one helper, a JSON merge patch of the status subresource that
names only the operator's own fields, and a Kubernetes Event for each transition."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from modelyard.api.common import ConditionStatus, utcnow
from modelyard.api.conditions import set_condition
from modelyard.operator.kube import ApiError, Kind, Kube

log = logging.getLogger(__name__)

REPORTING_COMPONENT = "modelyard-operator"
MAX_EVENT_MESSAGE = 1024

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class EventSpec:
    """An Event about the object whose status changes."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: ConditionStatus | bool
    reason: str
    message: str = ""


@dataclass
class StatusChange:
    """What to write: a merge patch of status (operator-owned keys only) and the Events that go with it."""

    patch: dict[str, Any] = field(default_factory=dict)
    events: list[EventSpec] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.patch or self.events)


def update_conditions(
    conditions: Sequence[dict[str, Any]],
    updates: Sequence[ConditionUpdate],
    *,
    generation: int | None,
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Apply `updates`; return the new list and the types whose status or reason changed (the transitions)."""
    result = [dict(c) for c in conditions]
    transitions: list[str] = []
    for update in updates:
        before = next((c for c in result if c.get("type") == update.type), None)
        result, changed = set_condition(
            result,
            update.type,
            update.status,
            update.reason,
            update.message,
            observed_generation=generation,
            now=now,
        )
        after = next(c for c in result if c.get("type") == update.type)
        if changed and (
            before is None or (before.get("status"), before.get("reason")) != (after["status"], after["reason"])
        ):
            transitions.append(update.type)
    return result, transitions


def involved_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj["metadata"]
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": metadata["name"]}
    for key in ("namespace", "uid", "resourceVersion"):
        if metadata.get(key):
            ref[key] = metadata[key]
    return ref


def event_object(obj: Mapping[str, Any], event: EventSpec, now: datetime | None = None) -> dict[str, Any]:
    """A core/v1 Event about `obj`."""
    stamp = (now or utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata = obj["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata.get("namespace") or "default"},
        "involvedObject": involved_object(obj),
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:MAX_EVENT_MESSAGE],
        "source": {"component": REPORTING_COMPONENT},
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": os.environ.get("HOSTNAME") or socket.gethostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def post_event(kube: Kube, obj: Mapping[str, Any], event: EventSpec) -> None:
    """Post an Event. Events are best effort: failing to post one never fails a reconciliation."""
    try:
        kube.create(event_object(obj, event))
    except ApiError as error:
        log.warning("could not post Event %s on %s: %s", event.reason, obj["metadata"]["name"], error)


def write(kube: Kube, kind: Kind, obj: Mapping[str, Any], change: StatusChange) -> dict[str, Any]:
    """Patch the status (merge: fields not named, such as the trainer's, stay) and post the Events.
    Returns the object as the server holds it afterwards."""
    metadata = obj["metadata"]
    result = dict(obj)
    if change.patch:
        result = kube.patch_status(kind, metadata.get("namespace"), metadata["name"], change.patch)
    for event in change.events:
        post_event(kube, result, event)
    return result
