"""What kinds the emulator serves: the built-in ones an operator touches, and those that CRDs add at run time."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kmock

READ_VERBS = ("get", "list", "watch")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class ResourceType:
    """One served resource (group, version, plural) with what discovery, validation and printing need."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    # The CRD's openAPIV3Schema; None for built-in kinds, which the emulator does not validate.
    schema: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[PrinterColumn, ...] = ()
    # Whether writes keep metadata.generation (bumped when anything but metadata and status changes).
    tracks_generation: bool = False

    @property
    def custom(self) -> bool:
        return self.schema is not None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """The name the API server uses in its messages: `trainingjobs.modelyard.dev`, `pods`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @functools.cached_property
    def key(self) -> kmock.resource:
        # Cached: every store lookup and watch filter asks for it, and kmock parses its arguments on each construction.
        return kmock.resource(self.group, self.version, self.plural)

    def info(self) -> kmock.ResourceInfo:
        """The discovery record in kmock's own registry."""
        return kmock.ResourceInfo(
            namespaced=self.namespaced,
            kind=self.kind,
            singular=self.singular or self.kind.lower(),
            verbs=set(ALL_VERBS),
            shortnames=set(self.short_names),
            categories=set(self.categories),
            subresources=set(self.subresources),
        )


def _builtin(
    api_version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: Iterable[str] = (),
    status: bool = False,
    categories: Iterable[str] = (),
) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        short_names=tuple(short),
        categories=tuple(categories),
        subresources=frozenset({"status"} if status else ()),
        tracks_generation=status,
    )


BUILTINS: tuple[ResourceType, ...] = (
    _builtin("v1", "namespaces", "Namespace", namespaced=False, short=["ns"], status=True),
    _builtin("v1", "configmaps", "ConfigMap", short=["cm"]),
    _builtin("v1", "secrets", "Secret"),
    _builtin("v1", "services", "Service", short=["svc"], status=True, categories=["all"]),
    _builtin("v1", "pods", "Pod", short=["po"], status=True, categories=["all"]),
    _builtin("v1", "events", "Event", short=["ev"]),
    _builtin("v1", "serviceaccounts", "ServiceAccount", short=["sa"]),
    _builtin("v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=["pvc"], status=True),
    _builtin("apps/v1", "deployments", "Deployment", short=["deploy"], status=True, categories=["all"]),
    _builtin("apps/v1", "replicasets", "ReplicaSet", short=["rs"], status=True, categories=["all"]),
    _builtin("batch/v1", "jobs", "Job", status=True, categories=["all"]),
    _builtin("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", short=["hpa"], status=True),
    _builtin("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", short=["pdb"], status=True),
    _builtin("coordination.k8s.io/v1", "leases", "Lease"),
    _builtin("events.k8s.io/v1", "events", "Event", short=["ev"]),
    _builtin("rbac.authorization.k8s.io/v1", "roles", "Role"),
    _builtin("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding"),
    _builtin("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _builtin("scheduling.k8s.io/v1", "priorityclasses", "PriorityClass", namespaced=False, short=["pc"]),
    _builtin(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=["crd", "crds"],
        status=True,
    ),
)

CRD_TYPE = BUILTINS[-1]
NAMESPACE_TYPE = BUILTINS[0]


def from_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
    """Every served version of a CRD, as the API server would serve it once the CRD is established."""
    spec = crd["spec"]
    names = spec["names"]
    types = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        columns = tuple(
            PrinterColumn(
                name=column["name"],
                type=column["type"],
                json_path=column["jsonPath"],
                description=column.get("description", ""),
                priority=int(column.get("priority", 0)),
                format=column.get("format", ""),
            )
            for column in version.get("additionalPrinterColumns", [])
        )
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames", [])),
                categories=tuple(names.get("categories", [])),
                subresources=frozenset(version.get("subresources", {}) or {}),
                schema=(version.get("schema") or {}).get("openAPIV3Schema", {"type": "object"}),
                printer_columns=columns,
                tracks_generation=True,
            )
        )
    return types


def group_priority(group: str) -> tuple[int, str]:
    """Order groups as the API server does in discovery: the core groups first, then the rest by name."""
    return (0 if group.endswith(".k8s.io") or "." not in group else 1, group)


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version order: GA before beta before alpha, higher numbers first (v2 > v1 > v1beta2)."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if match is None:
        return (3, 0, 0)
    major, stage, minor = match.groups()
    stage_rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (stage_rank, -int(major), -int(minor or 0))
