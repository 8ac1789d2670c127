"""A small typed layer over the kubernetes client's ApiClient for the few kinds the operator touches.

Objects stay plain dicts (the wire form the builders produce). Every call is checked against
`modelyard.operator.rbac` first, so that using a verb the chart does not grant fails in tests, not in a cluster.
Errors the cluster may recover from become `kopf.TemporaryError` (kopf retries the handler later).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Final

import kopf
import urllib3
from kubernetes import client, config

from modelyard.api import API_VERSION
from modelyard.operator import rbac
from modelyard.operator.metrics import METRICS

log = logging.getLogger(__name__)

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
REQUEST_TIMEOUT: Final = (5.0, 30.0)
RETRY_DELAY_SECONDS: Final = 10.0
# Statuses worth retrying: conflicts, throttling, server trouble.
RETRIABLE_STATUSES: Final = frozenset({409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Kind:
    """A resource kind and where it lives in the API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: a namespace is needed")
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


JOB = Kind("batch/v1", "Job", "jobs")
CONFIG_MAP = Kind("v1", "ConfigMap", "configmaps")
SERVICE = Kind("v1", "Service", "services")
SERVICE_ACCOUNT = Kind("v1", "ServiceAccount", "serviceaccounts")
EVENT = Kind("v1", "Event", "events")
ROLE = Kind("rbac.authorization.k8s.io/v1", "Role", "roles")
ROLE_BINDING = Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings")
TRAINING_JOB = Kind(API_VERSION, "TrainingJob", "trainingjobs")
MODEL_DEPLOYMENT = Kind(API_VERSION, "ModelDeployment", "modeldeployments")

KINDS: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (JOB, CONFIG_MAP, SERVICE, SERVICE_ACCOUNT, EVENT, ROLE, ROLE_BINDING, TRAINING_JOB, MODEL_DEPLOYMENT)
}


def register_kind(kind: Kind) -> Kind:
    """Make another kind known (for the parts of the operator that create more kinds)."""
    KINDS[(kind.api_version, kind.kind)] = kind
    return kind


def kind_of(obj: dict[str, Any]) -> Kind:
    """The Kind of an object in wire form."""
    try:
        return KINDS[(obj["apiVersion"], obj["kind"])]
    except KeyError:
        raise ValueError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}: add it to kube.KINDS") from None


class ApiError(Exception):
    """The API server refused a call in a way retrying will not fix (400, 403, 404, 422)."""

    def __init__(self, verb: str, kind: Kind, name: str | None, status: int, message: str) -> None:
        self.verb = verb
        self.kind = kind
        self.name = name
        self.status = status
        self.message = message
        super().__init__(f"{verb} {kind.kind} {name or ''}: HTTP {status}: {message}")


class Kube:
    """The operator's API client."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    @classmethod
    def from_environment(cls) -> Kube:
        """In a pod: its ServiceAccount; elsewhere: KUBECONFIG or ~/.kube/config."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(client.ApiClient(configuration))

    # --- verbs

    def get(
        self, kind: Kind, namespace: str | None, name: str, subresource: str | None = None
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        return self._call("get", "GET", kind, kind.path(namespace, name, subresource), name=name, missing_ok=True)

    def list_objects(
        self, kind: Kind, namespace: str | None, label_selector: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", ",".join(f"{k}={v}" for k, v in label_selector.items()))] if label_selector else []
        answer = self._call("list", "GET", kind, kind.path(namespace), query=query)
        return list((answer or {}).get("items", []))

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = kind_of(obj)
        metadata = obj["metadata"]
        answer = self._call(
            "create", "POST", kind, kind.path(metadata.get("namespace")), body=obj, name=metadata.get("name")
        )
        assert answer is not None
        return answer

    def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: dict[str, Any] | list[dict[str, Any]],
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> dict[str, Any]:
        path = kind.path(namespace, name, subresource)
        answer = self._call(
            "patch", "PATCH", kind, path, body=patch, name=name, content_type=content_type, subresource=subresource
        )
        assert answer is not None
        return answer

    def delete(self, kind: Kind, namespace: str | None, name: str) -> bool:
        """Delete the object (its dependents go by the garbage collector); False when it was already gone."""
        answer = self._call("delete", "DELETE", kind, kind.path(namespace, name), name=name, missing_ok=True)
        return answer is not None

    def patch_status(self, kind: Kind, namespace: str | None, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch of the status subresource: keys not in `patch` are left as they are."""
        return self.patch(kind, namespace, name, {"status": patch}, subresource="status")

    # --- plumbing

    def _call(
        self,
        verb: str,
        method: str,
        kind: Kind,
        path: str,
        *,
        name: str | None = None,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        subresource: str | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        resource = f"{kind.plural}/{subresource}" if subresource else kind.plural
        if not rbac.allows(kind.group, resource, verb):
            raise PermissionError(f"{verb} {kind.group or 'core'}/{resource} is not in modelyard.operator.rbac.RULES")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api_client.call_api(*serialized[:5], _request_timeout=REQUEST_TIMEOUT)
            response.read()  # type: ignore[no-untyped-call]
        except (urllib3.exceptions.HTTPError, OSError) as error:
            METRICS.api_errors.labels(verb=verb, kind=kind.kind).inc()
            raise kopf.TemporaryError(f"{verb} {kind.kind} {name or ''}: {error}", delay=RETRY_DELAY_SECONDS) from error
        status = int(response.status)
        if 200 <= status < 300:
            return dict(json.loads(response.data)) if response.data else {}
        if status == 404 and missing_ok:
            return None
        message = _status_message(response.data)
        if not (status == 409 and verb == "create"):
            METRICS.api_errors.labels(verb=verb, kind=kind.kind).inc()
        if status in RETRIABLE_STATUSES and not (status == 409 and verb == "create"):
            raise kopf.TemporaryError(
                f"{verb} {kind.kind} {name or ''}: HTTP {status}: {message}", delay=RETRY_DELAY_SECONDS
            )
        raise ApiError(verb, kind, name, status, message)


def _status_message(data: bytes | None) -> str:
    if not data:
        return ""
    try:
        return str(json.loads(data).get("message", ""))
    except (ValueError, AttributeError):
        return data[:500].decode(errors="replace")
