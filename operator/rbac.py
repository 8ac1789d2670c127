"""Every permission the operator (and the trainer it starts) uses, listed once.

The chart's ClusterRole and the manifests are generated from, or checked against, `policy_rules()`; the operator's own
API client refuses a call that this list does not allow (see `modelyard.operator.kube`), so the list cannot fall
behind the code without a test failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.api import GROUP
from modelyard.operator import naming
from modelyard.operator.settings import Settings


@dataclass(frozen=True)
class Rule:
    """One PolicyRule and why the operator needs it."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    cluster_scoped: bool = False

    def as_policy_rule(self) -> dict[str, Any]:
        return {"apiGroups": [self.api_group], "resources": list(self.resources), "verbs": list(self.verbs)}


RULES: tuple[Rule, ...] = (
    # kopf's own needs.
    Rule("apiextensions.k8s.io", ("customresourcedefinitions",), ("list", "watch"), "kopf discovers the CRDs", True),
    Rule("", ("namespaces",), ("list", "watch"), "kopf follows namespaces when cluster-wide", True),
    Rule("kopf.dev", ("clusterkopfpeerings",), ("get", "list", "watch", "create", "patch"), "peering (cluster)", True),
    Rule("kopf.dev", ("kopfpeerings",), ("get", "list", "watch", "create", "patch"), "peering, per namespace"),
    Rule("", ("events",), ("create",), "an Event for every transition (kopf posts its own too)"),
    # TrainingJob.
    Rule(GROUP, ("trainingjobs",), ("get", "list", "watch", "patch"), "reconcile; kopf keeps progress in annotations"),
    # get: RBAC lets the operator grant the trainer's Role (get, patch) only if it holds those verbs itself.
    Rule(GROUP, ("trainingjobs/status",), ("get", "patch"), "phase, conditions, times, restarts"),
    Rule("batch", ("jobs",), ("get", "list", "watch", "create", "patch"), "the training Job, watched for status"),
    Rule("", ("configmaps",), ("get", "create", "patch"), "the spec the trainer reads"),
    Rule("", ("services",), ("get", "create", "patch"), "headless Service of multi-node jobs"),
    Rule("", ("serviceaccounts",), ("get", "create", "patch"), "the trainer's ServiceAccount (manageTrainerRbac)"),
    Rule("rbac.authorization.k8s.io", ("roles", "rolebindings"), ("get", "create", "patch"), "the trainer's Role"),
    # Promotion changes a ModelDeployment's model.
    Rule(GROUP, ("modeldeployments",), ("get", "list", "watch", "patch"), "promotion; ModelDeployment reconcile"),
    Rule(GROUP, ("modeldeployments/status",), ("get", "patch"), "ModelDeployment status"),
    # ModelDeployment children (the Service rule above covers its Service).
    Rule("apps", ("deployments",), ("get", "list", "watch", "create", "patch"), "Bento service, watched"),
    Rule("autoscaling", ("horizontalpodautoscalers",), ("get", "create", "patch", "delete"), "HPA; gone when off"),
    Rule("policy", ("poddisruptionbudgets",), ("get", "create", "patch"), "the serving PodDisruptionBudget"),
    Rule("", ("pods",), ("list",), "a revision whose pods crash-loop has failed its rollout"),
)

# What the trainer's ServiceAccount may do: report progress into its own namespace's TrainingJobs, nothing else.
TRAINER_RULES: tuple[Rule, ...] = (
    Rule(GROUP, ("trainingjobs/status",), ("get", "patch"), "the trainer reports progress and metrics"),
)


def policy_rules(*, clusterwide: bool = True) -> list[dict[str, Any]]:
    """The operator's permissions as Kubernetes PolicyRule dicts (for a ClusterRole; `clusterwide=False` leaves out
    the cluster-scoped ones, for a namespaced Role)."""
    return [rule.as_policy_rule() for rule in RULES if clusterwide or not rule.cluster_scoped]


def trainer_policy_rules() -> list[dict[str, Any]]:
    """The trainer's permissions as PolicyRule dicts (its Role in each namespace)."""
    return [rule.as_policy_rule() for rule in TRAINER_RULES]


def allows(api_group: str, resource: str, verb: str) -> bool:
    """Whether the operator's rules allow this call."""
    return any(api_group == r.api_group and resource in r.resources and verb in r.verbs for r in RULES)


def trainer_rbac_objects(namespace: str, settings: Settings) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding of the trainer in one namespace (created by the operator when
    `manage_trainer_rbac` is on; shared by that namespace's TrainingJobs, so owned by none of them)."""
    labels = {
        naming.LABEL_NAME: "modelyard-trainer",
        naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
        naming.LABEL_PART_OF: naming.PART_OF,
        naming.LABEL_COMPONENT: naming.Component.TRAINER.value,
    }
    account = settings.trainer_service_account
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": naming.TRAINER_ROLE_NAME, "namespace": namespace, "labels": labels},
            "rules": trainer_policy_rules(),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": naming.TRAINER_ROLE_BINDING_NAME, "namespace": namespace, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": naming.TRAINER_ROLE_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]
