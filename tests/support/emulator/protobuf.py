"""Just enough of Kubernetes' protobuf encoding for what kubectl sends that way (`kubectl create namespace`)."""

from __future__ import annotations

from typing import Any

from tests.support.emulator import errors
from tests.support.emulator.resources import ResourceType

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


def decode(body: bytes, rtype: ResourceType) -> dict[str, Any]:
    raise errors.unsupported_media_type(MEDIA_TYPE, ["application/json"])
