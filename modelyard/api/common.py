"""Pieces shared by both kinds: the camelCase base model, conditions, Kubernetes value types."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "modelyard.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes quantities ("500m", "2", "16Gi"): the API server's own grammar, simplified to what people write.
QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=32)]

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63)]

# A BentoML model name: what `bentoml.models.create` accepts and a Kubernetes label can hold.
MODEL_NAME_PATTERN = r"^[a-z0-9]([-_.a-z0-9]*[a-z0-9])?$"
ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN, min_length=1, max_length=63)]
MODEL_TAG_VERSION_PATTERN = r"^[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$"


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, snake_case in Python, unknown fields refused.

    Refusing unknown fields matters for the trainer's config file: a typo must not silently fall back to a default.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        use_enum_values=False,
        frozen=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-compatible form as the API server stores it (camelCase, no unset optional fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A standard Kubernetes condition (the shape of metav1.Condition)."""

    type: str = Field(description="Condition type, CamelCase (for example Ready).", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="One CamelCase word saying why the condition is in this state.",
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field(default="", description="Human-readable details.", max_length=32768)
    last_transition_time: datetime = Field(description="When the status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation that the condition was set from."
    )


class Toleration(ApiModel):
    """A pod toleration, as in core/v1."""

    key: str | None = Field(default=None, description="Taint key the toleration applies to.")
    operator: str | None = Field(default=None, description="Exists or Equal.", pattern=r"^(Exists|Equal)$")
    value: str | None = Field(default=None, description="Taint value to match.")
    effect: str | None = Field(
        default=None,
        description="NoSchedule, PreferNoSchedule or NoExecute; empty matches all.",
        pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$",
    )
    toleration_seconds: int | None = Field(default=None, description="How long a NoExecute taint is tolerated.")


class ObjectMeta(ApiModel):
    """The metadata fields the operator reads; the rest is kept but not interpreted."""

    model_config = ApiModel.model_config | {"extra": "allow"}
    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PersistentVolumeClaimRef(ApiModel):
    """A PersistentVolumeClaim in the resource's namespace."""

    claim_name: DnsLabel = Field(description="Name of the PersistentVolumeClaim.")
    sub_path: str = Field(default="", description="Folder inside the volume to mount instead of its root.")


def utcnow() -> datetime:
    """Now, in UTC, to the second (Kubernetes timestamps carry no fractions)."""
    return datetime.now(UTC).replace(microsecond=0)
