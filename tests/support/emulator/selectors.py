"""Label and field selectors, with the grammar of `kubectl get -l` / `--field-selector`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.support.emulator import errors

Predicate = Callable[[Mapping[str, Any]], bool]

_SET_EXPRESSION = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQUALITY = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")

# Field selectors the server accepts: metadata.name and metadata.namespace everywhere, plus these per kind.
KIND_FIELDS: dict[str, frozenset[str]] = {
    "Pod": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                      "status.phase", "status.podIP", "status.nominatedNodeName"}),
    "Event": frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                        "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                        "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
                        "regarding.kind", "regarding.name", "regarding.namespace", "regarding.uid"}),
    "Secret": frozenset({"type"}),
    "Namespace": frozenset({"status.phase"}),
    "Job": frozenset({"status.successful"}),
}  # fmt: skip


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside `in (a,b)`."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # =, !=, in, notin, exists, !exists
    values: frozenset[str] = frozenset()

    def holds(self, found: Mapping[str, str]) -> bool:
        value = found.get(self.key)
        match self.operator:
            case "=":
                return value in self.values
            case "!=":
                return value not in self.values
            case "in":
                return value in self.values
            case "notin":
                return value not in self.values
            case "exists":
                return self.key in found
        return self.key not in found


def parse_label_selector(selector: str) -> list[Requirement]:
    requirements = []
    for part in _split(selector):
        if equality := _EQUALITY.match(part):
            key, operator, value = equality.groups()
            requirements.append(Requirement(key, "!=" if operator == "!=" else "=", frozenset({value})))
        elif expression := _SET_EXPRESSION.match(part):
            negated, key, operator, values = expression.groups()
            options = frozenset(value.strip() for value in (values or "").split(",") if value.strip())
            requirements.append(Requirement(key, operator or ("!exists" if negated else "exists"), options))
        else:
            raise errors.bad_request(f"unable to parse requirement: {part!r}")
    return requirements


def label_selector(selector: str | None) -> Predicate:
    requirements = parse_label_selector(selector or "")

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement.holds(labels) for requirement in requirements)

    return matches


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def field_selector(selector: str | None, kind: str) -> Predicate:
    allowed = {"metadata.name", "metadata.namespace"} | KIND_FIELDS.get(kind, frozenset())
    requirements = []
    for part in _split(selector or ""):
        equality = _EQUALITY.match(part)
        if equality is None:
            raise errors.bad_request(f"invalid selector: {part!r}; can't understand {part!r}")
        path, operator, value = equality.groups()
        if path not in allowed:
            raise errors.bad_request(f"field label not supported: {path}")
        requirements.append(Requirement(path, "!=" if operator == "!=" else "=", frozenset({value})))

    def matches(obj: Mapping[str, Any]) -> bool:
        return all(
            requirement.holds({requirement.key: _field_value(obj, requirement.key)}) for requirement in requirements
        )

    return matches
