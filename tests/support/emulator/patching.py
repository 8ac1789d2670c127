"""The four ways to change an object in place: JSON merge patch, strategic merge patch, JSON patch, apply."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

from tests.support.emulator import errors

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

# Lists that the built-in kinds merge by a key under a strategic merge patch (the common ones; the rest replace).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "tolerations": "key",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
# Lists whose items are scalars and merge as sets.
SET_LISTS = frozenset({"finalizers"})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` deletes, anything else (lists included) replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """A best-effort strategic merge for built-in kinds: known lists merge by key, `$patch` directives honoured."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {key: copy.deepcopy(value) for key, value in patch.items() if key != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $retainKeys, $setElementOrder/...: ordering hints the emulator does not need
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_list_by_key(result[key], value, MERGE_KEYS[key])
        elif isinstance(value, list) and key in SET_LISTS and isinstance(result.get(key), list):
            result[key] = result[key] + [item for item in value if item not in result[key]]
        else:
            merged = strategic_merge_patch(result.get(key), value, key)
            if merged is None and isinstance(value, Mapping) and value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _merge_list_by_key(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    merged = [copy.deepcopy(item) for item in current]
    for item in patch:
        if not isinstance(item, Mapping) or key not in item:
            merged.append(copy.deepcopy(item))
            continue
        index = next(
            (i for i, old in enumerate(merged) if isinstance(old, Mapping) and old.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append(strategic_merge_patch({}, item))
        else:
            merged[index] = strategic_merge_patch(merged[index], item)
    return merged


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902. A failed `test` or a missing path is the client's mistake: 422, never a 500."""
    if not isinstance(operations, list):
        raise errors.bad_request("json patch must be a list of operations")
    try:
        result = jsonpatch.JsonPatch(operations).apply(copy.deepcopy(target))
    except jsonpatch.JsonPatchTestFailed as error:
        raise errors.unprocessable(
            f"the server rejected our request due to an error in our request: {error}"
        ) from error
    except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as error:
        raise errors.unprocessable(
            f"the server rejected our request due to an error in our request: {error}"
        ) from error
    except jsonpatch.InvalidJsonPatch as error:
        raise errors.bad_request(f"invalid JSON patch: {error}") from error
    if not isinstance(result, dict):
        raise errors.unprocessable("the patched object is not an object")
    return result


def apply_merge(current: Any, applied: Any) -> Any:
    """Server-side apply without field ownership: the applied configuration merges into the live object.

    Maps merge recursively; lists of objects that carry a `name` (or `type`) merge by it, other lists are replaced.
    Fields the manager applied before and now leaves out are NOT removed (no managedFields; see README).
    """
    if not isinstance(applied, Mapping) or not isinstance(current, Mapping):
        return copy.deepcopy(applied)
    result = dict(current)
    for key, value in applied.items():
        if isinstance(value, list) and isinstance(result.get(key), list):
            list_key = _list_key(value)
            result[key] = _merge_list_by_key(result[key], value, list_key) if list_key else copy.deepcopy(value)
        else:
            result[key] = apply_merge(result.get(key), value)
    return result


def _list_key(items: list[Any]) -> str | None:
    for key in ("name", "type", "uid"):
        if items and all(isinstance(item, Mapping) and key in item for item in items):
            return key
    return None
