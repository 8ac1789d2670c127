"""kopf peering: the CRDs and the peering object through which replicas of the operator see each other.

Of the replicas sharing one peering object, only the one with the highest priority acts; the others pause until it
is gone (its keep-alive expires). The chart installs the CRDs from `peering_crds()`; the operator creates its peering
object at start if it is missing, because kopf silently runs unpaused when the object does not exist.
"""

from __future__ import annotations

from typing import Any

from modelyard.operator import naming
from modelyard.operator.kube import Kind, register_kind

CLUSTER_PEERING = register_kind(Kind("kopf.dev/v1", "ClusterKopfPeering", "clusterkopfpeerings", namespaced=False))
NAMESPACED_PEERING = register_kind(Kind("kopf.dev/v1", "KopfPeering", "kopfpeerings"))


def _crd(kind: Kind, scope: str, singular: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": scope,
            "names": {"kind": kind.kind, "plural": kind.plural, "singular": singular},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                        }
                    },
                }
            ],
        },
    }


def peering_crds() -> list[dict[str, Any]]:
    """The two CRDs kopf's peering uses (as kopf documents them)."""
    return [
        _crd(CLUSTER_PEERING, "Cluster", "clusterkopfpeering"),
        _crd(NAMESPACED_PEERING, "Namespaced", "kopfpeering"),
    ]


def peering_objects(name: str, namespaces: list[str]) -> list[dict[str, Any]]:
    """The peering object(s) the operator's replicas share: one cluster-wide, or one per watched namespace."""
    labels = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY, naming.LABEL_PART_OF: naming.PART_OF}
    if not namespaces:
        return [
            {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name, "labels": labels}}
        ]
    return [
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
        }
        for ns in namespaces
    ]
