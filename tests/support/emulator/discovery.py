"""Discovery documents (/api, /apis, /api/v1, /apis/<group>/<version>) built from kmock's resource registry."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import kmock

from tests.support.emulator.resources import group_priority, version_priority

KUBERNETES_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "modelyard-emulator",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}
SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"]}


def _group_versions(registry: kmock.ResourcesArray) -> dict[str, list[str]]:
    versions: dict[str, set[str]] = defaultdict(set)
    for resource in iter(registry):
        if resource.group is not None and resource.version is not None:
            versions[resource.group].add(resource.version)
    return {group: sorted(found, key=version_priority) for group, found in versions.items()}


def _api_group(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_versions(address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def api_group_list(registry: kmock.ResourcesArray) -> dict[str, Any]:
    groups = _group_versions(registry)
    groups.pop("", None)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_api_group(group, groups[group]) for group in sorted(groups, key=group_priority)],
    }


def api_group(registry: kmock.ResourcesArray, group: str) -> dict[str, Any] | None:
    versions = _group_versions(registry).get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, versions)}


def api_resource_list(registry: kmock.ResourcesArray, group: str, version: str) -> dict[str, Any] | None:
    resources: list[dict[str, Any]] = []
    for resource in sorted(iter(registry), key=lambda r: r.plural or ""):
        if resource.group != group or resource.version != version:
            continue
        info = registry[resource]
        resources.append(
            {
                "name": resource.plural,
                "singularName": info.singular or "",
                "namespaced": bool(info.namespaced),
                "kind": info.kind,
                "verbs": sorted(info.verbs),
                **({"shortNames": sorted(info.shortnames)} if info.shortnames else {}),
                **({"categories": sorted(info.categories)} if info.categories else {}),
            }
        )
        for subresource in sorted(info.subresources):
            resources.append(
                {
                    "name": f"{resource.plural}/{subresource}",
                    "singularName": "",
                    "namespaced": bool(info.namespaced),
                    "kind": info.kind,
                    "verbs": SUBRESOURCE_VERBS.get(subresource, ["get"]),
                }
            )
    if not resources:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
