"""The smallest kopf operator that exercises what Modelyard's operator relies on: on a TrainingJob's creation it
creates an owned ConfigMap and patches the TrainingJob's status (through the status subresource)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import kopf
import kubernetes


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = True
    settings.watching.server_timeout = 30


@kopf.on.create("modelyard.dev", "v1alpha1", "trainingjobs")
def create_config(
    *, name: str, namespace: str | None, spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, **_: Any
) -> None:
    config_map: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-spec"},
        "data": {"epochs": str(spec["training"]["epochs"])},
    }
    kopf.adopt(config_map, owner=body)
    kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace or "default", cast(Any, config_map))
    patch.status["phase"] = "Pending"
    patch.status["conditions"] = [
        {
            "type": "Created",
            "status": "True",
            "reason": "ConfigMapCreated",
            "message": f"ConfigMap {name}-spec",
            "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ]
    kopf.info(body, reason="Created", message=f"ConfigMap {name}-spec created")
