"""The objects, kept in kmock's versioned `ObjectsArray`, and the change log that watches replay from.

Every write takes the next resourceVersion from one cluster-wide counter (as etcd's revision does), appends the new
state to the object's kmock history, and publishes a watch event on a kmock `Bus`. A bounded log of past events lets a
watch resume from a resourceVersion; older than the log is `410 Gone`, as on the real server.
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kmock
from kmock._internal.aiobus import Bus

from tests.support.emulator.resources import ResourceType


def now() -> str:
    """A timestamp as the API server writes them (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    revision: int
    rtype: ResourceType
    type: str  # ADDED, MODIFIED, DELETED
    object: dict[str, Any]
    previous: dict[str, Any] | None  # the state before, for selector transitions

    @property
    def namespace(self) -> str | None:
        namespace: str | None = self.object.get("metadata", {}).get("namespace")
        return namespace


class Store:
    def __init__(self, history_limit: int = 20_000) -> None:
        self.objects = kmock.ObjectsArray()
        self.revision = 1
        self.log: collections.deque[WatchEvent] = collections.deque(maxlen=history_limit)
        # The revision before the oldest event still in the log: a watch from below it cannot be served.
        self.compacted = 1
        self.bus: Bus[WatchEvent] = Bus()

    @staticmethod
    def _key(rtype: ResourceType, namespace: str | None, name: str) -> tuple[kmock.resource, str | None, str]:
        return (rtype.key, namespace if rtype.namespaced else None, name)

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = self._key(rtype, namespace, name)
        if key not in self.objects:
            return None
        stored = self.objects[key]
        return None if stored.deleted else copy.deepcopy(stored.raw)

    def objects_of(self, rtype: ResourceType, namespace: str | None = None) -> list[dict[str, Any]]:
        """Live objects of a type, in one namespace or all, ordered by namespace and name (as etcd keys are)."""
        found = [
            (ns or "", name, stored)
            for (resource, ns, name), stored in self.objects.items()
            if resource == rtype.key and not stored.deleted and (namespace is None or ns == namespace)
        ]
        return [copy.deepcopy(stored.raw) for _, _, stored in sorted(found, key=lambda item: item[:2])]

    def _live(self) -> Iterator[tuple[kmock.resource, dict[str, Any]]]:
        """Live objects as stored (shallow views: read them, never change them)."""
        for (resource, _, _), stored in self.objects.items():
            if not stored.deleted:
                yield resource, stored.raw

    def live_uids(self) -> set[str]:
        return {str(obj["metadata"]["uid"]) for _, obj in self._live()}

    def dependents(self, owner_uid: str) -> list[tuple[kmock.resource, dict[str, Any]]]:
        """Live objects with an ownerReference to `owner_uid` (copies)."""
        return [
            (resource, copy.deepcopy(obj))
            for resource, obj in self._live()
            if any(reference.get("uid") == owner_uid for reference in obj["metadata"].get("ownerReferences") or [])
        ]

    def next_revision(self) -> str:
        self.revision += 1
        return str(self.revision)

    async def save(self, rtype: ResourceType, obj: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
        """Store a created or changed object under a new resourceVersion and tell the watchers."""
        obj["metadata"]["resourceVersion"] = self.next_revision()
        key = self._key(rtype, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if key in self.objects:
            self.objects[key].history.append(copy.deepcopy(obj))
        else:
            self.objects[key] = copy.deepcopy(obj)
        await self._publish(rtype, "ADDED" if previous is None else "MODIFIED", obj, previous)
        return obj

    async def remove(self, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Delete for good; the DELETED event carries the last state under a new resourceVersion."""
        key = self._key(rtype, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = self.next_revision()
        self.objects[key].delete()
        await self._publish(rtype, "DELETED", final, obj)
        return final

    async def _publish(
        self, rtype: ResourceType, kind: str, obj: dict[str, Any], previous: dict[str, Any] | None
    ) -> None:
        event = WatchEvent(self.revision, rtype, kind, copy.deepcopy(obj), copy.deepcopy(previous))
        if len(self.log) == self.log.maxlen:
            self.compacted = self.log[0].revision
        self.log.append(event)
        await self.bus.put(event)

    def events_since(self, revision: int) -> list[WatchEvent] | None:
        """The logged events after `revision`, or None if some of them were already dropped from the log."""
        if revision < self.compacted:
            return None
        return [event for event in self.log if event.revision > revision]
