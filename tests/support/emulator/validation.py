"""A custom resource meets its CRD's structural schema the way the API server makes it: prune, default, validate.

The order is the server's: unknown fields are pruned, `default:` values are filled in (nested ones too), then the
OpenAPI v3 constraints and the `x-kubernetes-validations` CEL rules are checked. Messages copy the server's wording,
e.g. `spec.training.epochs: Invalid value: -1: spec.training.epochs in body should be greater than or equal to 1`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import celpy
from celpy.adapter import json_to_cel

from tests.support.emulator.errors import FieldError

Schema = Mapping[str, Any]

# What the server keeps of a custom resource's metadata (ObjectMeta); the rest is pruned like any unknown field.
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers",
    "managedFields",
})  # fmt: skip


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _render(value: Any) -> str:
    """A value in a message, as Go's %v / %q would print it."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if value is None:
        return '"null"'
    return repr(value)


def prune(obj: dict[str, Any], schema: Schema) -> list[str]:
    """Drop the fields the schema does not know, in place; return their paths (for `fieldValidation`)."""
    dropped: list[str] = []
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        for key in sorted(set(metadata) - OBJECT_META_FIELDS):
            del metadata[key]
            dropped.append(f"metadata.{key}")
    for key, value in list(obj.items()):
        if key in ("apiVersion", "kind", "metadata"):
            continue
        child = schema.get("properties", {}).get(key)
        if child is None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            del obj[key]
            dropped.append(key)
        elif child is not None:
            dropped += _prune_value(value, child, key)
    return dropped


def _prune_value(value: Any, schema: Schema, path: str) -> list[str]:
    dropped: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        if properties is not None or isinstance(additional, Mapping):
            for key in list(value):
                child = (properties or {}).get(key)
                if child is None and isinstance(additional, Mapping):
                    child = additional
                if child is None:
                    if not schema.get("x-kubernetes-preserve-unknown-fields"):
                        del value[key]
                        dropped.append(_join(path, key))
                else:
                    dropped += _prune_value(value[key], child, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            dropped += _prune_value(item, schema["items"], f"{path}[{index}]")
    return dropped


def apply_defaults(value: Any, schema: Schema) -> None:
    """Fill `default:` values in place, recursively (a defaulted `{}` gets its own fields' defaults too).

    A `null` where the schema does not allow one is dropped first and then defaulted, as the server does.
    """
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key in value and value[key] is None and not child.get("nullable"):
                del value[key]
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                apply_defaults(value[key], child)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for key in list(value):
                if key not in schema.get("properties", {}):
                    apply_defaults(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            apply_defaults(item, schema["items"])


def validate(obj: Mapping[str, Any], schema: Schema) -> list[FieldError]:
    """Every violation of the schema and of its CEL rules, with the server's paths and wording."""
    errors: list[FieldError] = []
    body = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind", "metadata")}
    root = dict(schema)
    root["properties"] = {k: v for k, v in schema.get("properties", {}).items() if k not in ("metadata",)}
    _validate(body, root, "", errors)
    return errors


def _type_ok(value: Any, expected: str) -> bool:
    match expected:
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
    return True


def _validate(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    if value is None:
        if not schema.get("nullable"):
            errors.append(
                FieldError(
                    path,
                    "FieldValueTypeInvalid",
                    f'Invalid value: "null": {path} in body must be of type {schema.get("type", "object")}: "null"',
                )
            )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            errors.append(
                FieldError(
                    path,
                    "FieldValueTypeInvalid",
                    f"Invalid value: {_render(value)}: {path} in body must be of type integer,string: {_render(value)}",
                )
            )
            return
    elif "type" in schema and not _type_ok(value, schema["type"]):
        shown = {
            "dict": "object",
            "list": "array",
            "str": "string",
            "int": "integer",
            "float": "number",
            "bool": "boolean",
        }
        actual = shown.get(type(value).__name__, type(value).__name__)
        errors.append(
            FieldError(
                path,
                "FieldValueTypeInvalid",
                f'Invalid value: "{actual}": {path} in body must be of type {schema["type"]}: "{actual}"',
            )
        )
        return
    before = len(errors)
    _check_scalar(value, schema, path, errors)
    if isinstance(value, dict):
        _check_object(value, schema, path, errors)
    elif isinstance(value, list):
        _check_array(value, schema, path, errors)
    # The server runs a node's CEL rules only on a value that met its own schema.
    if len(errors) == before:
        _check_rules(value, schema, path, errors)


def _check_scalar(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    shown = _render(value)
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_render(option) for option in schema["enum"])
        errors.append(
            FieldError(path, "FieldValueNotSupported", f"Unsupported value: {shown}: supported values: {supported}")
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            bound = schema["minimum"]
            if schema.get("exclusiveMinimum") is True and value <= bound:
                errors.append(
                    FieldError(
                        path,
                        "FieldValueInvalid",
                        f"Invalid value: {shown}: {path} in body should be greater than {bound}",
                    )
                )
            elif value < bound:
                errors.append(
                    FieldError(
                        path,
                        "FieldValueInvalid",
                        f"Invalid value: {shown}: {path} in body should be greater than or equal to {bound}",
                    )
                )
        if "maximum" in schema:
            bound = schema["maximum"]
            if schema.get("exclusiveMaximum") is True and value >= bound:
                errors.append(
                    FieldError(
                        path, "FieldValueInvalid", f"Invalid value: {shown}: {path} in body should be less than {bound}"
                    )
                )
            elif value > bound:
                errors.append(
                    FieldError(
                        path,
                        "FieldValueInvalid",
                        f"Invalid value: {shown}: {path} in body should be less than or equal to {bound}",
                    )
                )
        if "multipleOf" in schema and value % schema["multipleOf"] != 0:
            errors.append(
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {shown}: {path} in body should be a multiple of {schema['multipleOf']}",
                )
            )
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(
                FieldError(path, "FieldValueTooLong", f"Too long: may not be more than {schema['maxLength']} bytes")
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {shown}: {path} in body should be at least {schema['minLength']} chars long",
                )
            )
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {shown}: {path} in body should match '{schema['pattern']}'",
                )
            )
        if schema.get("format") == "date-time" and not _is_date_time(value):
            errors.append(
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {shown}: {path} in body must be of type date-time: {shown}",
                )
            )


def _is_date_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _check_object(value: dict[str, Any], schema: Schema, path: str, errors: list[FieldError]) -> None:
    for key in schema.get("required", []):
        if key not in value:
            errors.append(FieldError(_join(path, key), "FieldValueRequired", "Required value"))
    properties = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    for key, child_value in value.items():
        child = properties.get(key)
        if child is None and isinstance(additional, Mapping):
            child = additional
        if child is not None:
            _validate(child_value, child, _join(path, key), errors)
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(
            FieldError(
                path, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {schema['maxProperties']} items"
            )
        )


def _check_array(value: list[Any], schema: Schema, path: str, errors: list[FieldError]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(
            FieldError(
                path, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {schema['maxItems']} items"
            )
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(
            FieldError(
                path,
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {path} in body should have at least {schema['minItems']} items",
            )
        )
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            _validate(item, items, f"{path}[{index}]", errors)
    list_type = schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: set[str] = set()
    for index, item in enumerate(value):
        identity = json.dumps(
            [item.get(key) for key in keys] if list_type == "map" and isinstance(item, dict) else item, sort_keys=True
        )
        if list_type in ("set", "map") and identity in seen:
            shown = (
                json.dumps({key: item.get(key) for key in keys})
                if list_type == "map" and isinstance(item, dict)
                else _render(item)
            )
            errors.append(FieldError(f"{path}[{index}]", "FieldValueDuplicate", f"Duplicate value: {shown}"))
        seen.add(identity)


@functools.cache
def _program(rule: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _check_rules(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    for rule in schema.get("x-kubernetes-validations", []):
        expression = rule["rule"]
        if "oldSelf" in expression:
            continue  # transition rules need the stored object; the CRDs here use none (see README)
        field = path + rule["fieldPath"] if rule.get("fieldPath") else path
        try:
            result = _program(expression).evaluate({"self": json_to_cel(value)})
        except Exception as error:  # any evaluation failure is the rule's failure, as on the server
            errors.append(
                FieldError(
                    field,
                    "FieldValueInvalid",
                    f"Invalid value: {_render(value)}: {error} evaluating rule: {expression}",
                )
            )
            continue
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            message = rule.get("message") or f"failed rule: {expression}"
            errors.append(FieldError(field, "FieldValueInvalid", f"Invalid value: {_render(value)}: {message}"))
