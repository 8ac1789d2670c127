"""Idempotent apply: make a child look as the builders say, however often and whenever the operator runs.

Create-if-missing, then a JSON merge patch of only the fields that differ among those that may change (a Job's pod
template, for one, cannot). A child that already carries our labels but no controller (orphaned, or created just
before a crash) is adopted; one that belongs to something else is never touched.

A caller that has just read the object (or knows it is new) passes it as `existing`, which saves the read; should it
exist after all, the create's 409 falls back to reading it.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from modelyard.operator import naming
from modelyard.operator.kube import ApiError, Kube, kind_of

WAIT_FOR_GARBAGE_COLLECTION_SECONDS = 5.0


class Unread(enum.Enum):
    """`apply(existing=...)` left out: apply reads the object itself."""

    UNREAD = enum.auto()


UNREAD = Unread.UNREAD


class NameTakenError(Exception):
    """An object of the child's name exists and is not ours: the owner cannot be reconciled until it is gone."""


def contains(actual: Any, desired: Any) -> bool:
    """Whether `actual` already holds everything `desired` says (the API server adds defaults, so a superset
    matches)."""
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(contains(actual.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return bool(actual == desired)


def _at(obj: Mapping[str, Any], path: Sequence[str]) -> tuple[bool, Any]:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _put(patch: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = patch
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def diff_patch(existing: Mapping[str, Any], desired: Mapping[str, Any], mutable_paths: Sequence[str]) -> dict[str, Any]:
    """The merge patch that brings `existing` to `desired` on the given dotted paths (empty: nothing to do).

    A path `desired` leaves out is removed from `existing` (merge-patch null)."""
    patch: dict[str, Any] = {}
    for dotted in mutable_paths:
        path = dotted.split(".")
        wanted_present, wanted = _at(desired, path)
        has, current = _at(existing, path)
        if wanted_present and not contains(current, wanted):
            _put(patch, path, copy.deepcopy(wanted))
        elif not wanted_present and has and current is not None:
            _put(patch, path, None)
    return patch


def _claim(existing: Mapping[str, Any], owner: Mapping[str, Any] | None, component: naming.Component) -> list[Any]:
    """The ownerReferences `existing` should have; raises when it belongs to someone else."""
    metadata = existing.get("metadata", {})
    refs: list[Any] = list(metadata.get("ownerReferences") or [])
    if owner is None:
        return refs
    ours = naming.owner_reference(owner)
    controllers = [r for r in refs if r.get("controller")]
    if any(r.get("uid") == ours["uid"] for r in controllers):
        return refs
    name = f"{existing.get('kind')} {metadata.get('namespace', '')}/{metadata.get('name')}"
    if not naming.is_managed_by_us(metadata.get("labels") or {}, component, owner["metadata"]["name"]):
        raise NameTakenError(f"{name} already exists and is not managed by modelyard for {owner['metadata']['name']}")
    if controllers:
        # Ours, but from a deleted owner of the same name: the garbage collector removes it shortly.
        raise kopf.TemporaryError(
            f"{name} still belongs to a deleted {owner['kind']}; waiting for its removal",
            delay=WAIT_FOR_GARBAGE_COLLECTION_SECONDS,
        )
    return [*refs, ours]


def apply(
    kube: Kube,
    desired: dict[str, Any],
    *,
    owner: Mapping[str, Any] | None,
    component: naming.Component,
    mutable_paths: Sequence[str] = ("metadata.labels", "metadata.annotations", "spec", "data", "rules", "subjects"),
    existing: Mapping[str, Any] | Unread | None = UNREAD,
) -> dict[str, Any]:
    """Make `desired` exist with a controller reference to `owner`; return the object as the server holds it.
    `existing`: the object as the caller has just read it (None: absent); left out, apply reads it."""
    kind = kind_of(desired)
    namespace = desired["metadata"].get("namespace")
    name = desired["metadata"]["name"]
    wanted = copy.deepcopy(desired)
    if owner is not None:
        wanted["metadata"]["ownerReferences"] = [naming.owner_reference(owner)]
    if isinstance(existing, Unread):
        existing = kube.get(kind, namespace, name)
    if existing is None:
        try:
            return kube.create(wanted)
        except ApiError as error:
            if error.status != 409:
                raise
        # Someone (an earlier run of ours, most likely) created it in between, or the caller took it for absent:
        # reconcile that one.
        existing = kube.get(kind, namespace, name)
        if existing is None:
            raise kopf.TemporaryError(f"{kind.kind} {name} was created and deleted meanwhile", delay=1)
    refs = _claim(existing, owner, component)
    patch = diff_patch(existing, wanted, [p for p in mutable_paths if p != "metadata.ownerReferences"])
    if refs != list(existing.get("metadata", {}).get("ownerReferences") or []):
        patch.setdefault("metadata", {})["ownerReferences"] = refs
    if not patch:
        return dict(existing)
    return kube.patch(kind, namespace, name, patch)
