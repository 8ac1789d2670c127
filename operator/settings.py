"""The operator's settings, from `MODELYARD_*` environment variables (the chart sets them) or CLI options.

One object, read once at start and passed to the pure builders: the same TrainingJob and the same Settings always
give the same children.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modelyard import __version__

DEFAULT_TRAINER_IMAGE = f"modelyard/trainer:{__version__}"
DEFAULT_SERVING_IMAGE = f"modelyard/serving:{__version__}"


class Settings(BaseSettings):
    """How the operator runs and what it puts into the objects it creates."""

    model_config = SettingsConfigDict(env_prefix="MODELYARD_", extra="ignore", frozen=True)

    # --- scope and high availability
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces watched (comma-separated in the environment); empty watches the whole cluster.",
    )
    peering_name: str = Field(
        default="modelyard",
        description="kopf peering object (ClusterKopfPeering cluster-wide, KopfPeering per namespace otherwise).",
    )
    standalone: bool = Field(
        default=False, description="Run without peering (one replica only: development and tests)."
    )
    priority: int | None = Field(
        default=None,
        ge=0,
        description="Peering priority. Unset: a random one, so that of two replicas exactly one acts; kopf lets "
        "replicas of equal priority all act.",
    )

    # --- endpoints
    metrics_port: int = Field(default=8080, ge=0, le=65_535, description="Prometheus endpoint port; 0 disables it.")
    health_port: int = Field(default=8081, ge=0, le=65_535, description="Liveness endpoint port (/healthz); 0 off.")
    bind_address: str = Field(default="0.0.0.0", description="Address the metrics and health endpoints listen on.")

    # --- training pods
    trainer_image: str = Field(default=DEFAULT_TRAINER_IMAGE, description="Image of training pods.")
    serving_image: str = Field(default=DEFAULT_SERVING_IMAGE, description="Image of Bento service pods.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Pull policy of the pods the operator creates."
    )
    trainer_service_account: str = Field(
        default="modelyard-trainer", description="ServiceAccount of training pods whose spec names none."
    )
    manage_trainer_rbac: bool = Field(
        default=True,
        description="Create the trainer's ServiceAccount, Role and RoleBinding in each namespace that runs a "
        "TrainingJob. Off: the chart or an administrator provides them.",
    )
    trainer_metrics_port: int = Field(
        default=9400, ge=0, le=65_535, description="Port of the trainer's Prometheus endpoint; 0 disables it."
    )
    trainer_run_as_user: int = Field(default=1000, ge=1, description="UID of training pods (never root).")
    serving_run_as_user: int = Field(default=1000, ge=1, description="UID of Bento service pods (never root).")
    serving_poll_seconds: float = Field(
        default=5.0, gt=0, le=300, description="How often a ModelDeployment whose rollout is under way is looked at."
    )
    serving_resync_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="How often a settled ModelDeployment is looked at (besides events)."
    )
    trainer_termination_grace_seconds: int = Field(
        default=60, ge=0, le=3600, description="Time a training pod has to checkpoint when stopped or suspended."
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces
