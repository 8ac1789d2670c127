"""The few things the real API server fills in on built-in kinds, which operators read back (a small subset)."""

from __future__ import annotations

import base64
import itertools
from typing import Any

_cluster_ips = itertools.count(10)


def _defaults(target: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        target.setdefault(key, value)


def prepare(plural: str, group: str, obj: dict[str, Any], *, creating: bool) -> None:
    """Defaults and conversions, in place. Status is set only where a controller would set it at once."""
    meta = obj["metadata"]
    spec = obj.setdefault("spec", {}) if plural in {"deployments", "jobs", "services", "namespaces"} else None
    if plural == "secrets":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {}) or {}
        data.update({key: base64.b64encode(str(value).encode()).decode() for key, value in string_data.items()})
        obj["data"] = data
    elif plural == "namespaces" and spec is not None:
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        spec.setdefault("finalizers", ["kubernetes"])
        if creating:
            obj["status"] = {"phase": "Active"}
    elif plural == "pods" and creating:
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif plural == "services" and spec is not None:
        spec.setdefault("type", "ClusterIP")
        if creating and spec.get("clusterIP") != "None" and "clusterIP" not in spec:
            index = next(_cluster_ips)
            spec["clusterIP"] = f"10.96.{index // 250}.{index % 250 + 1}"
        if "clusterIP" in spec:
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
        obj.setdefault("status", {"loadBalancer": {}})
    elif plural == "deployments" and group == "apps" and spec is not None:
        _defaults(spec, {"replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600})
        spec.setdefault(
            "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        )
    elif plural == "jobs" and group == "batch" and spec is not None:
        _defaults(spec, {"backoffLimit": 6, "completionMode": "NonIndexed", "suspend": False, "parallelism": 1})
        if spec.get("completionMode") != "Indexed" or "completions" in spec:
            spec.setdefault("completions", 1)
        if creating:
            # The Job controller's labels: pods and tests find a Job's pods by them.
            uid = meta["uid"]
            labels = {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
            names = {"batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"]}
            spec.setdefault("selector", {"matchLabels": dict(labels)})
            template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
            template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels, **names}
