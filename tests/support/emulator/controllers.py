"""What the cluster's controllers do at once after a write: a CRD becomes served and Established; a deleted
CRD takes its objects, a deleted namespace its content, and a deleted owner its dependents (garbage collection by
ownerReferences: background cascade, `Orphan` unlinks instead)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from tests.support.emulator import errors
from tests.support.emulator.errors import FieldError
from tests.support.emulator.resources import CRD_TYPE, NAMESPACE_TYPE, ResourceType, from_crd
from tests.support.emulator.store import now

if TYPE_CHECKING:
    from tests.support.emulator.api import Api


def check_crd(crd: dict[str, Any]) -> None:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    problems = []
    if not spec.get("group"):
        problems.append(FieldError("spec.group", "FieldValueRequired", "Required value"))
    if not names.get("plural") or not names.get("kind"):
        problems.append(FieldError("spec.names", "FieldValueRequired", "Required value: plural and kind"))
    if not spec.get("versions"):
        problems.append(FieldError("spec.versions", "FieldValueRequired", "Required value"))
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if not problems and crd["metadata"].get("name") != expected:
        problems.append(
            FieldError(
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: {crd["metadata"].get("name")!r}: must be spec.names.plural+"."+spec.group',
            )
        )
    if problems:
        raise errors.invalid(CRD_TYPE, crd["metadata"].get("name", ""), problems)


async def establish(api: Api, crd: dict[str, Any]) -> dict[str, Any]:
    """Serve the CRD's versions and report it Established, as the apiextensions controller does at once."""
    for rtype in [t for t in api.types.values() if t.custom and f"{t.plural}.{t.group}" == crd["metadata"]["name"]]:
        api.unserve(rtype)
    for rtype in from_crd(crd):
        api.serve(rtype)
    established = copy.deepcopy(crd)
    stamp = now()
    established["status"] = {
        "acceptedNames": copy.deepcopy(crd["spec"]["names"]),
        "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": stamp,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": stamp,
            },
        ],
    }
    if established["status"] == crd.get("status"):
        return crd
    return await api.store.save(CRD_TYPE, established, crd)


async def after_removal(api: Api, rtype: ResourceType, removed: dict[str, Any], policy: str) -> None:
    """What controllers do after a deletion: the CRD's objects go, the namespace's content goes, and
    dependents go by their ownerReferences (background cascade; `Orphan` unlinks them instead)."""
    if rtype == CRD_TYPE:
        for served in [t for t in api.types.values() if t.custom and t.group_resource == removed["metadata"]["name"]]:
            for obj in api.store.objects_of(served):
                await api.store.remove(served, obj)
            api.unserve(served)
    if rtype == NAMESPACE_TYPE:
        for served in [t for t in api.types.values() if t.namespaced]:
            for obj in api.store.objects_of(served, removed["metadata"]["name"]):
                await _delete_if_present(api, served, obj, "Background")
    await collect_garbage(api, removed["metadata"]["uid"], policy)


async def collect_garbage(api: Api, owner_uid: str, policy: str) -> None:
    dependents = api.store.dependents(owner_uid)
    live_uids = api.store.live_uids() if dependents else set()
    for resource, obj in dependents:
        references = obj["metadata"]["ownerReferences"]
        dependent_type = api.resolve(resource.group or "", resource.version or "", resource.plural or "")
        if dependent_type is None:
            continue
        remaining = [reference for reference in references if reference.get("uid") != owner_uid]
        if policy == "Orphan" or any(reference.get("uid") in live_uids for reference in remaining):
            unlinked = copy.deepcopy(obj)
            unlinked["metadata"]["ownerReferences"] = remaining
            if not remaining:
                del unlinked["metadata"]["ownerReferences"]
            await api.store.save(dependent_type, unlinked, obj)
        else:
            await _delete_if_present(api, dependent_type, obj, "Background")


async def _delete_if_present(api: Api, rtype: ResourceType, obj: dict[str, Any], policy: str) -> None:
    namespace = obj["metadata"].get("namespace")
    if api.store.get(rtype, namespace, obj["metadata"]["name"]) is not None:
        await api.delete(rtype, namespace, obj["metadata"]["name"], {"propagationPolicy": policy})
