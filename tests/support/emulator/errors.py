"""API errors as the real server words them: a Status body with the reason, the code and the causes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import attrs
import kmock

from tests.support.emulator.resources import ResourceType


@attrs.frozen
class ApiError(kmock.KubernetesError):
    """Rendered by kmock as a `Status`; the fields follow the API server's wording."""

    def status_body(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details or {},
            "code": self.status,
        }


@dataclass(frozen=True)
class FieldError:
    """One cause of a 422: `spec.training.epochs: Invalid value: -1: ...`."""

    path: str
    kind: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, FieldValueTypeInvalid, ...
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}" if self.path else self.detail


def _details(rtype: ResourceType | None, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if rtype is not None:
        details["group"] = rtype.group
        details["kind"] = rtype.plural
    return details


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rtype.group_resource} "{name}" not found', _details(rtype, name))


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})


def no_such_resource(path: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        "the server could not find the requested resource",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": f"404 page not found: {path}"}]},
    )


def already_exists(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rtype.group_resource} "{name}" already exists', _details(rtype, name))


def conflict(rtype: ResourceType, name: str, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {rtype.group_resource} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(rtype, name))


def stale(rtype: ResourceType, name: str) -> ApiError:
    return conflict(
        rtype, name, "the object has been modified; please apply your changes to the latest version and try again"
    )


def invalid(rtype: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
    summary = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(error) for error in errors) + "]"
    details = _details(rtype, name)
    details["kind"] = rtype.kind
    details["causes"] = [{"reason": error.kind, "message": error.detail, "field": error.path} for error in errors]
    return ApiError(422, "Invalid", f'{rtype.group_kind} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message, {})


def unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", message, {})


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    message = (
        f"the body of the request was in an unknown format ({content_type or 'none'}) "
        f"- accepted media types include: {', '.join(accepted)}"
    )
    return ApiError(415, "UnsupportedMediaType", message, {})


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", f"the server does not allow this method on the requested resource: {method}", {}
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message, {})
