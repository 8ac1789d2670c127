"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for, with a CRD's printer columns."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tests.support.emulator.resources import PrinterColumn, ResourceType

TABLE_MEDIA_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"
_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
_AGE = PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp")
_BUILTIN_COLUMNS: dict[str, tuple[PrinterColumn, ...]] = {
    "namespaces": (PrinterColumn(name="Status", type="string", json_path=".status.phase"), _AGE),
    "pods": (PrinterColumn(name="Status", type="string", json_path=".status.phase"), _AGE),
    "deployments": (
        PrinterColumn(name="Ready", type="integer", json_path=".status.readyReplicas"),
        PrinterColumn(name="Replicas", type="integer", json_path=".spec.replicas"),
        _AGE,
    ),
    "jobs": (
        PrinterColumn(name="Active", type="integer", json_path=".status.active"),
        PrinterColumn(name="Succeeded", type="integer", json_path=".status.succeeded"),
        _AGE,
    ),
}
_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]")


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def json_path(obj: Any, path: str) -> Any:
    """The subset of kubectl's JSONPath that printer columns use: `.a.b`, `[0]`, `[?(@.type=="Ready")]`."""
    value = obj
    position = 0
    path = path.strip().removeprefix("{").removesuffix("}")
    while position < len(path) and value is not None:
        match = _SEGMENT.match(path, position)
        if match is None:
            return None
        key, index, filter_key, filter_value = match.groups()
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        elif index is not None:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        else:
            found = [
                item
                for item in value or []
                if isinstance(item, dict) and str(json_path(item, "." + filter_key)) == filter_value
            ]
            value = found[0] if found else None
        position = match.end()
    return value


def human_duration(seconds: int) -> str:
    """The API server's duration.HumanDuration, as kubectl shows ages."""
    if seconds < 0:
        return "0s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m" if seconds % 60 == 0 else f"{minutes}m{seconds % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d" if hours % 24 == 0 else f"{days}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _cell(column: PrinterColumn, obj: dict[str, Any]) -> Any:
    value = json_path(obj, column.json_path)
    if value is None:
        return None
    if column.type == "date":
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return human_duration(int((datetime.now(UTC) - stamp).total_seconds()))
    if column.type == "integer" and isinstance(value, int | float):
        return int(value)
    if column.type == "number" and isinstance(value, int | float):
        return float(value)
    if column.type in ("string", "date") and isinstance(value, dict | list):
        return str(value)
    return value


def columns_of(rtype: ResourceType) -> tuple[PrinterColumn, ...]:
    if rtype.custom:
        return rtype.printer_columns or (_AGE,)
    return _BUILTIN_COLUMNS.get(rtype.plural, (_AGE,))


def table(
    rtype: ResourceType, objects: list[dict[str, Any]], resource_version: str, include_object: str
) -> dict[str, Any]:
    columns = columns_of(rtype)
    definitions = [_NAME_COLUMN] + [
        {
            "name": column.name,
            "type": "string" if column.type == "date" else column.type,
            "format": column.format,
            "description": column.description or column.name,
            "priority": column.priority,
        }
        for column in columns
    ]
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [obj["metadata"]["name"], *(_cell(column, obj) for column in columns)]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
