"""ModelDeployment → Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget (pure).

The same ModelDeployment, revision and Settings always give the same objects, so applying them is idempotent and
the golden files in tests/unit/golden/serving pin them down. Owner references are added by the apply layer.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any

from modelyard.api.model_deployment import (
    ModelDeployment,
    ModelDeploymentSpec,
    Revision,
    RevisionTemplate,
    ScalingBehavior,
)
from modelyard.api.training_job import OutputSpec
from modelyard.operator import naming
from modelyard.operator.settings import Settings

CONTAINER = "bento"
HTTP_PORT = 3000
PORT_NAME = "http"
# BentoML writes its own scratch (tmp/, prometheus_multiproc_dir/) under BENTOML_HOME, so the home is an emptyDir and
# only the model store's models/ folder comes from the volume, read-only.
BENTOML_HOME = "/home/bentoml"
TMP_PATH = "/tmp"  # noqa: S108 (an emptyDir: the root filesystem is read-only)
# Where the trainer's BentoML home lies inside its volume: output.storePath's default relative to the /store mount.
STORE_HOME_IN_VOLUME = posixpath.relpath(str(OutputSpec.model_fields["store_path"].default), naming.STORE_MOUNT_PATH)
# The requests/s Pods metric as a Prometheus adapter names the rate of bentoml_service_request_total.
REQUESTS_PER_SECOND_METRIC = "bentoml_service_request_per_second"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class ServedRevision:
    """What one revision's pods run: its number, model tag and image."""

    number: int | None
    model_tag: str
    image: str


def revision_template(spec: ModelDeploymentSpec) -> RevisionTemplate:
    """The parts of `spec` besides model and image that a revision's pods are built from."""
    return RevisionTemplate(resources=spec.resources, batching=spec.batching, store=spec.store)


def as_revision(md: ModelDeployment, revision: Revision) -> tuple[ModelDeployment, ServedRevision]:
    """`md` with the revision's resources, batching and store, and what its pods run: a rollback restores the pods
    exactly as they were, whatever the spec says now. (A revision recorded without a template keeps the spec's.)"""
    served = ServedRevision(revision.revision, revision.model_tag, revision.image)
    if revision.template is None:
        return md, served
    template = revision.template
    spec = md.spec.model_copy(
        update={"resources": template.resources, "batching": template.batching, "store": template.store}
    )
    return md.model_copy(update={"spec": spec}), served


def _model_store_volume(spec: ModelDeploymentSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts: scratch emptyDirs, and the store's models/ folder read-only when a volume is named."""
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "bentoml-home", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": TMP_PATH},
        {"name": "bentoml-home", "mountPath": BENTOML_HOME},
    ]
    if spec.store is not None:
        volumes.append(
            {"name": "model-store", "persistentVolumeClaim": {"claimName": spec.store.claim_name, "readOnly": True}}
        )
        sub_path = posixpath.join(spec.store.sub_path, STORE_HOME_IN_VOLUME, "models")
        mounts.append(
            {"name": "model-store", "mountPath": f"{BENTOML_HOME}/models", "subPath": sub_path, "readOnly": True}
        )
    return volumes, mounts


def _resources(spec: ModelDeploymentSpec) -> dict[str, Any]:
    requests = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    limits: dict[str, Any] = dict(requests)
    if spec.resources.gpu:
        limits[GPU_RESOURCE] = spec.resources.gpu
    return {"requests": requests, "limits": limits}


def _env(spec: ModelDeploymentSpec, model_tag: str) -> list[dict[str, str]]:
    return [
        {"name": "MODELYARD_MODEL_TAG", "value": model_tag},
        {"name": "MODELYARD_MAX_BATCH_SIZE", "value": str(spec.batching.max_batch_size)},
        {"name": "MODELYARD_MAX_LATENCY_MS", "value": str(spec.batching.max_latency_ms)},
        {"name": "MODELYARD_DEVICE", "value": "cuda" if spec.resources.gpu else "cpu"},
        # Only when on (the service's default is off): a pod template unchanged by an upgrade rolls out no revision.
        *([{"name": "MODELYARD_ACCESS_LOG", "value": "on"}] if spec.access_log else []),
        {"name": "BENTOML_HOME", "value": BENTOML_HOME},
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
    ]


def _probe(path: str, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def pod_template(md: ModelDeployment, served: ServedRevision, settings: Settings) -> dict[str, Any]:
    """The pod template of one revision; without a revision number, the form its hash is taken of."""
    spec = md.spec
    volumes, mounts = _model_store_volume(spec)
    container = {
        "name": CONTAINER,
        "image": served.image,
        "imagePullPolicy": settings.image_pull_policy,
        # Explicit, so that any image with the modelyard CLI serves the same way (BentoML's own default host is local).
        "command": ["modelyard", "serve", "--host", "0.0.0.0", "--port", str(HTTP_PORT)],
        "ports": [{"name": PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": _env(spec, served.model_tag),
        "resources": _resources(spec),
        # Loading the model and the warm-up prediction may take minutes; liveness waits for the startup probe.
        "startupProbe": _probe("/livez", period=5, failures=60, timeout=2),
        # /readyz answers 200 only after the warm-up prediction succeeded.
        "readinessProbe": _probe("/readyz", period=5, failures=3, timeout=2),
        "livenessProbe": _probe("/livez", period=10, failures=3, timeout=5),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    return {
        "metadata": {
            "labels": naming.serving_labels(md.metadata.name, served.number),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(HTTP_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            # The Bento service never talks to the API server.
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": settings.serving_run_as_user,
                "runAsGroup": settings.serving_run_as_user,
                "fsGroup": settings.serving_run_as_user,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": volumes,
        },
    }


def template_hash(md: ModelDeployment, served: ServedRevision, settings: Settings) -> str:
    """Ten hex digits identifying what the pods run; the revision number is left out (it is assigned from this)."""
    unnumbered = ServedRevision(None, served.model_tag, served.image)
    canonical = json.dumps(pod_template(md, unnumbered, settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _metadata(md: ModelDeployment, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": md.metadata.namespace, "labels": naming.serving_labels(md.metadata.name)}


def build_deployment(md: ModelDeployment, served: ServedRevision, settings: Settings) -> dict[str, Any]:
    """The apps/v1 Deployment running one revision of the Bento service."""
    if served.number is None:
        raise ValueError("a Deployment runs a numbered revision")
    spec = md.spec
    metadata = _metadata(md, naming.serving_deployment_name(md.metadata.name))
    metadata["annotations"] = {
        naming.LABEL_REVISION: str(served.number),
        naming.ANNOTATION_TEMPLATE_HASH: template_hash(md, served, settings),
    }
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": naming.serving_selector(md.metadata.name)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": spec.rollout.max_surge,
                "maxUnavailable": spec.rollout.max_unavailable,
            },
        },
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "revisionHistoryLimit": spec.rollback.revision_history_limit,
        "template": pod_template(md, served, settings),
    }
    if not spec.autoscaling.enabled:
        # With an HPA the replica count is its to set: applying one here would undo every scaling decision.
        deployment_spec["replicas"] = spec.replicas.min
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": deployment_spec}


def build_service(md: ModelDeployment) -> dict[str, Any]:
    """The Service in front of every ready replica, whatever its revision."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(md, naming.serving_service_name(md.metadata.name)),
        "spec": {
            "type": md.spec.service.type.value,
            "selector": naming.serving_selector(md.metadata.name),
            "ports": [{"name": PORT_NAME, "port": md.spec.service.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def service_url(md: ModelDeployment) -> str:
    """The in-cluster URL of the Service."""
    name = naming.serving_service_name(md.metadata.name)
    port = "" if md.spec.service.port == 80 else f":{md.spec.service.port}"
    return f"http://{name}.{md.metadata.namespace}.svc{port}"


def _behavior(rules: ScalingBehavior) -> dict[str, Any]:
    return {
        "stabilizationWindowSeconds": rules.stabilization_window_seconds,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Percent", "value": rules.max_percent_per_minute, "periodSeconds": 60},
            {"type": "Pods", "value": rules.max_pods_per_minute, "periodSeconds": 60},
        ],
    }


def build_hpa(md: ModelDeployment) -> dict[str, Any] | None:
    """The autoscaling/v2 HorizontalPodAutoscaler, or None when autoscaling is off."""
    spec = md.spec
    if not spec.autoscaling.enabled:
        return None
    metrics: list[dict[str, Any]] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {
                    "type": "Utilization",
                    "averageUtilization": spec.autoscaling.target_cpu_utilization_percentage,
                },
            },
        }
    ]
    if spec.autoscaling.target_requests_per_second is not None:
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": REQUESTS_PER_SECOND_METRIC},
                    "target": {
                        "type": "AverageValue",
                        "averageValue": _quantity(spec.autoscaling.target_requests_per_second),
                    },
                },
            }
        )
    name = md.metadata.name
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(md, naming.serving_hpa_name(name)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": naming.serving_deployment_name(name),
            },
            # The HPA cannot scale to zero (without an alpha feature gate); the handler refuses min 0 with autoscaling.
            "minReplicas": max(spec.replicas.min, 1),
            "maxReplicas": spec.replicas.max,
            "metrics": metrics,
            "behavior": {
                "scaleUp": _behavior(spec.autoscaling.scale_up),
                "scaleDown": _behavior(spec.autoscaling.scale_down),
            },
        },
    }


def _quantity(value: float) -> str:
    """A Kubernetes quantity: whole numbers as they are, fractions in milli-units (50.5 → 50500m)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def build_pdb(md: ModelDeployment) -> dict[str, Any]:
    """A policy/v1 PodDisruptionBudget: voluntary evictions take one replica at a time.

    maxUnavailable (not minAvailable) so that a single replica never blocks a node drain forever.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(md, naming.serving_pdb_name(md.metadata.name)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": naming.serving_selector(md.metadata.name)}},
    }
