"""Typed shortcuts over the kubernetes client's CustomObjectsApi (which returns `object`) for tests."""

from __future__ import annotations

from typing import Any, cast

import kubernetes

GROUP = "modelyard.dev"
VERSION = "v1alpha1"


class CustomObjects:
    """One plural of custom resources, e.g. `CustomObjects(client, "trainingjobs")`."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, plural: str, group: str = GROUP, version: str = VERSION
    ) -> None:
        self.api = kubernetes.client.CustomObjectsApi(api_client)
        self.group, self.version, self.plural = group, version, plural

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        made = self.api.create_namespaced_custom_object(self.group, self.version, namespace, self.plural, body)
        return cast(dict[str, Any], made)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.api.get_namespaced_custom_object(self.group, self.version, namespace, self.plural, name)
        return cast(dict[str, Any], found)

    def list(self, namespace: str, **params: Any) -> list[dict[str, Any]]:
        listed = self.api.list_namespaced_custom_object(self.group, self.version, namespace, self.plural, **params)
        return cast(list[dict[str, Any]], cast(dict[str, Any], listed)["items"])

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        done = self.api.patch_namespaced_custom_object(self.group, self.version, namespace, self.plural, name, patch)
        return cast(dict[str, Any], done)

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        done = self.api.patch_namespaced_custom_object_status(
            self.group, self.version, namespace, self.plural, name, patch
        )
        return cast(dict[str, Any], done)

    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        done = self.api.replace_namespaced_custom_object(self.group, self.version, namespace, self.plural, name, body)
        return cast(dict[str, Any], done)

    def delete(self, namespace: str, name: str, **params: Any) -> dict[str, Any]:
        done = self.api.delete_namespaced_custom_object(
            self.group, self.version, namespace, self.plural, name, **params
        )
        return cast(dict[str, Any], done)


def minimal_training_job(name: str = "tj", labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The smallest valid TrainingJob (everything else comes from the CRD's defaults)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"data": {"path": "/data/flowers"}, "output": {"modelName": "flowers"}},
    }


def configmap(name: str, labels: dict[str, str] | None = None, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data or {},
    }
