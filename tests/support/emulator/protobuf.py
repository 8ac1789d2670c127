"""Just enough of Kubernetes' protobuf encoding for the objects kubectl's imperative commands send that way
(`kubectl create namespace | configmap | secret generic | serviceaccount`). Answers stay JSON: kubectl accepts it.

The body is `k8s\\0` + a `runtime.Unknown` message (field 1: typeMeta {apiVersion, kind}, 2: raw object bytes);
the object's field numbers come from k8s.io/api's generated.proto.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

from tests.support.emulator import errors
from tests.support.emulator.resources import ResourceType

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

Fields = list[tuple[int, int, Any]]  # (field number, wire type, value: int or bytes)


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise errors.bad_request("truncated protobuf varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, position


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
            yield number, wire, value
        elif wire == 2:
            length, position = _varint(data, position)
            yield number, wire, data[position : position + length]
            position += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, wire, data[position : position + size]
            position += size
        else:
            raise errors.bad_request(f"unsupported protobuf wire type {wire}")


def _text(value: bytes) -> str:
    return value.decode("utf-8")


def _map_entry(value: bytes, decode_value: Callable[[bytes], Any]) -> tuple[str, Any]:
    entry = {number: raw for number, _, raw in _fields(value)}
    return _text(entry.get(1, b"")), decode_value(entry.get(2, b""))


def _metadata(data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    for number, _, value in _fields(data):
        if number in names:
            meta[names[number]] = _text(value)
        elif number in (11, 12):
            key, text = _map_entry(value, _text)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = text
        elif number == 14:
            meta.setdefault("finalizers", []).append(_text(value))
        # creationTimestamp and the like arrive empty from clients and are the server's to set.
    return meta


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _decode_object(kind: str, data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, wire, value in _fields(data):
        if number == 1:
            obj["metadata"] = _metadata(value)
        elif kind == "Namespace" and number == 2:
            obj["spec"] = {"finalizers": [_text(item) for n, _, item in _fields(value) if n == 1]}
        elif kind == "ConfigMap" and number in (2, 3):
            key, item = _map_entry(value, _text if number == 2 else _base64)
            obj.setdefault("data" if number == 2 else "binaryData", {})[key] = item
        elif kind == "Secret" and number in (2, 4):
            key, item = _map_entry(value, _base64 if number == 2 else _text)
            obj.setdefault("data" if number == 2 else "stringData", {})[key] = item
        elif kind == "Secret" and number == 3:
            obj["type"] = _text(value)
        elif kind in ("ConfigMap", "Secret") and number in (4, 5) and wire == 0:
            obj["immutable"] = bool(value)
        elif kind == "Namespace" and number == 3:
            continue  # status: the server's to set
        else:
            raise errors.unsupported_media_type(
                f"{MEDIA_TYPE} ({kind} field {number})", ["application/json", "application/yaml"]
            )
    return obj


def decode(body: bytes, rtype: ResourceType) -> dict[str, Any]:
    """The object as JSON would have carried it; 415 for kinds and fields this decoder does not know."""
    if not body.startswith(MAGIC):
        raise errors.bad_request("protobuf body without the k8s envelope")
    envelope = {number: value for number, _, value in _fields(body[len(MAGIC) :])}
    type_meta = {number: _text(value) for number, _, value in _fields(envelope.get(1, b""))}
    api_version, kind = type_meta.get(1, rtype.api_version), type_meta.get(2, rtype.kind)
    if kind not in ("Namespace", "ConfigMap", "Secret", "ServiceAccount"):
        raise errors.unsupported_media_type(f"{MEDIA_TYPE} ({kind})", ["application/json", "application/yaml"])
    return {"apiVersion": api_version, "kind": kind, **_decode_object(kind, envelope.get(2, b""))}
