"""ModelDeployment: serve a model from the BentoML store, autoscaled, with revisions and automatic rollback."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from modelyard.api.common import (
    API_VERSION,
    MODEL_TAG_VERSION_PATTERN,
    ApiModel,
    Condition,
    DnsLabel,
    ModelName,
    ObjectMeta,
    PersistentVolumeClaimRef,
    Quantity,
)

# maxSurge / maxUnavailable: an absolute number or a percentage, as in apps/v1.
IntOrPercent = int | str
PERCENT_PATTERN = r"^[0-9]+%$"


class ModelRef(ApiModel):
    """Which model is served: a tag from the model store, or the model a TrainingJob produced."""

    name: ModelName = Field(description="Model name in the BentoML model store.")
    tag: str | None = Field(
        default=None,
        max_length=128,
        pattern=MODEL_TAG_VERSION_PATTERN,
        description="Model version in the store (the part after ':'). Unset: fromTrainingJob's model.",
    )
    from_training_job: DnsLabel | None = Field(
        default=None, description="TrainingJob (same namespace) whose produced model is served once it succeeds."
    )

    @model_validator(mode="after")
    def _tag_or_training_job(self) -> Self:
        if self.tag is None and self.from_training_job is None:
            raise ValueError("model: set tag or fromTrainingJob")
        return self

    @property
    def full_tag(self) -> str | None:
        return f"{self.name}:{self.tag}" if self.tag else None


class ReplicasSpec(ApiModel):
    min: int = Field(default=1, ge=0, le=1000, description="Fewest replicas (the HPA's minReplicas).")
    max: int = Field(default=4, ge=1, le=1000, description="Most replicas (the HPA's maxReplicas).")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) must not exceed replicas.max ({self.max})")
        return self


class ScalingBehavior(ApiModel):
    stabilization_window_seconds: int = Field(
        default=0, ge=0, le=3600, description="How long recommendations are smoothed before acting."
    )
    max_percent_per_minute: int = Field(
        default=100, ge=1, le=1000, description="Largest change, as a percentage of current replicas, per minute."
    )
    max_pods_per_minute: int = Field(default=4, ge=1, le=1000, description="Largest change, in pods, per minute.")


def _scale_down_default() -> ScalingBehavior:
    return ScalingBehavior(stabilization_window_seconds=300, max_percent_per_minute=50, max_pods_per_minute=2)


class AutoscalingSpec(ApiModel):
    """A HorizontalPodAutoscaler (autoscaling/v2) between replicas.min and replicas.max."""

    enabled: bool = Field(default=True, description="Create the HPA; off keeps replicas.min replicas.")
    target_cpu_utilization_percentage: int = Field(
        default=70,
        alias="targetCPUUtilizationPercentage",
        ge=1,
        le=100,
        description="Average CPU utilisation, in percent of requests, to aim for.",
    )
    target_requests_per_second: float | None = Field(
        default=None,
        gt=0.0,
        description="Average requests/s per pod to aim for (a Pods metric; needs a metrics adapter).",
    )
    scale_up: ScalingBehavior = Field(default_factory=ScalingBehavior, description="Scale-up behaviour.")
    scale_down: ScalingBehavior = Field(default_factory=_scale_down_default, description="Scale-down behaviour.")


class ServingResources(ApiModel):
    cpu: Quantity = Field(
        default="1",
        description="CPU request (and limit) of each replica. With a GPU the service runs one worker per CPU less one "
        "(at most 16, and one per 2Gi of memory): the workers' HTTP, decoding and JSON, not the GPU, set its pace, so "
        "a GPU replica wants about 16 CPUs and 32Gi.",
    )
    memory: Quantity = Field(default="2Gi", description="Memory request and limit of each replica.")
    gpu: int = Field(default=0, ge=0, le=16, description="nvidia.com/gpu limit of each replica.")


class BatchingSpec(ApiModel):
    """BentoML adaptive batching."""

    max_batch_size: int = Field(default=32, ge=1, le=4096, description="Most images in one model call.")
    max_latency_ms: int = Field(
        default=10_000,
        ge=10,
        le=600_000,
        description="Deadline of a batched request; generous so that load spikes queue rather than answer 503.",
    )


class AnalysisSpec(ApiModel):
    """Judge a new revision on its Prometheus figures after it becomes available."""

    prometheus_url: str = Field(
        alias="prometheusURL", max_length=2048, description="Prometheus base URL, e.g. http://prometheus:9090."
    )
    window_seconds: int = Field(default=120, ge=10, le=86_400, description="Time window the figures cover.")
    max_error_rate: float = Field(default=0.05, ge=0.0, le=1.0, description="Largest tolerated share of 5xx answers.")
    max_p95_latency_ms: float | None = Field(default=None, gt=0.0, description="Largest tolerated p95 latency.")
    min_requests: int = Field(
        default=20, ge=0, description="Requests needed in the window before a verdict; fewer keeps waiting."
    )


class RolloutSpec(ApiModel):
    max_surge: IntOrPercent = Field(default="25%", description="Extra pods during a rollout (number or percent).")
    max_unavailable: IntOrPercent = Field(default=0, description="Pods that may be down during a rollout.")
    progress_deadline_seconds: int = Field(
        default=600, ge=10, le=86_400, description="A rollout not progressing for this long has failed."
    )
    analysis: AnalysisSpec | None = Field(default=None, description="Optional metric analysis after the rollout.")

    @model_validator(mode="after")
    def _percent_strings(self) -> Self:
        for field, value in (("maxSurge", self.max_surge), ("maxUnavailable", self.max_unavailable)):
            if isinstance(value, str) and not value.rstrip("%").isdigit():
                raise ValueError(f"rollout.{field}: {value!r} is neither a number nor a percentage")
            if isinstance(value, int) and value < 0:
                raise ValueError(f"rollout.{field} must not be negative")
        return self


class RollbackSpec(ApiModel):
    automatic: bool = Field(default=True, description="Restore the stable revision when a rollout fails.")
    revision_history_limit: int = Field(default=10, ge=1, le=100, description="Revisions kept in status.")


class ServiceType(enum.StrEnum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


class ServiceSpec(ApiModel):
    type: ServiceType = Field(default=ServiceType.CLUSTER_IP, description="Kubernetes Service type.")
    port: int = Field(default=80, ge=1, le=65_535, description="Port the Service exposes.")


class ModelDeploymentSpec(ApiModel):
    """Desired state of a ModelDeployment."""

    model: ModelRef = Field(description="The model served.")
    image: str | None = Field(
        default=None, max_length=1024, description="Bento service image; unset uses the operator's default."
    )
    store: PersistentVolumeClaimRef | None = Field(
        default=None, description="Volume holding the BentoML model store, mounted read-only in the pods."
    )
    replicas: ReplicasSpec = Field(default_factory=ReplicasSpec, description="Replica bounds.")
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec, description="Autoscaling.")
    resources: ServingResources = Field(default_factory=ServingResources, description="Per-replica resources.")
    batching: BatchingSpec = Field(default_factory=BatchingSpec, description="Adaptive batching.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="How new revisions roll out.")
    rollback: RollbackSpec = Field(default_factory=RollbackSpec, description="Automatic rollback and history.")
    rollback_to: int | None = Field(
        default=None, ge=1, description="Roll back to this revision number (handled once per value)."
    )
    service: ServiceSpec = Field(default_factory=ServiceSpec, description="The Service in front of the replicas.")
    access_log: bool = Field(
        default=False,
        description="Log one line per request (BentoML's access log). Off by default: the service's metrics count "
        "every request with its status and latency, and the line cost 6-10% of the service's CPU per multi-image "
        "request in a benchmark.",
    )


class ModelDeploymentPhase(enum.StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class ModelDeploymentConditionType(enum.StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"


class RevisionOutcome(enum.StrEnum):
    PROGRESSING = "Progressing"
    STABLE = "Stable"
    FAILED = "Failed"
    SUPERSEDED = "Superseded"


class RevisionTemplate(ApiModel):
    """What else a revision's pods were built from, besides model and image: a rollback restores exactly this."""

    resources: ServingResources = Field(description="Per-replica resources of the revision.")
    batching: BatchingSpec = Field(description="Adaptive batching of the revision.")
    store: PersistentVolumeClaimRef | None = Field(default=None, description="Model store volume of the revision.")


class Revision(ApiModel):
    revision: int = Field(ge=1, description="Revision number, counting up from 1.")
    model_tag: str = Field(description="Full model tag served by this revision.")
    image: str = Field(description="Image of this revision.")
    template_hash: str = Field(description="Hash of the pod template.")
    template: RevisionTemplate | None = Field(
        default=None, description="Resources, batching and store of the revision, restored by a rollback."
    )
    created_at: datetime = Field(description="When this revision was created.")
    outcome: RevisionOutcome = Field(description="What became of it.")
    training_job: str | None = Field(default=None, description="TrainingJob that produced the model (lineage).")
    message: str | None = Field(default=None, description="Why it ended as it did.")


class RollbackRecord(ApiModel):
    from_revision: int = Field(ge=1, description="Revision rolled back from.")
    to_revision: int = Field(ge=1, description="Revision restored.")
    reason: str = Field(description="CamelCase reason (ProgressDeadlineExceeded, AnalysisFailed, Manual, ...).")
    message: str = Field(default="", description="Figures and details.")
    time: datetime = Field(description="When it happened.")


class ModelDeploymentStatus(ApiModel):
    """Observed state of a ModelDeployment."""

    phase: ModelDeploymentPhase | None = Field(default=None, description="Where the deployment is.")
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")
    observed_generation: int | None = Field(default=None, description="The generation last reconciled.")
    model_tag: str | None = Field(default=None, description="Full tag of the model the current revision serves.")
    current_revision: int | None = Field(default=None, description="Revision being rolled out or served.")
    stable_revision: int | None = Field(default=None, description="Last revision that became fully available.")
    revisions: list[Revision] = Field(default_factory=list, description="Revision history, newest last.")
    replicas: int = Field(default=0, ge=0, description="Pods of the Deployment.")
    ready_replicas: int = Field(default=0, ge=0, description="Pods ready to serve.")
    url: str | None = Field(default=None, description="In-cluster URL of the service.")
    last_rollback: RollbackRecord | None = Field(default=None, description="The latest rollback.")
    handled_rollback_to: int | None = Field(default=None, description="The spec.rollbackTo value last acted on.")


class ModelDeployment(ApiModel):
    """A whole ModelDeployment object, parsed once by the operator."""

    model_config = ApiModel.model_config | {"extra": "ignore"}
    api_version: str = API_VERSION
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = Field(default_factory=ModelDeploymentStatus)


def printer_columns() -> list[dict[str, Any]]:
    """`kubectl get md` columns: the state at a glance."""
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "Model", "type": "string", "jsonPath": ".status.modelTag"},
        {"name": "Revision", "type": "integer", "jsonPath": ".status.currentRevision"},
        {"name": "Stable", "type": "integer", "jsonPath": ".status.stableRevision"},
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
