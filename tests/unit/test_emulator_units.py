"""The emulator's pure parts: URL parsing, schema admission, patches, selectors, printing, protobuf decoding."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.emulator import errors, patching, protobuf, tables, validation
from tests.support.emulator.resources import BUILTINS, NAMESPACE_TYPE, version_priority
from tests.support.emulator.selectors import field_selector, label_selector
from tests.support.emulator.server import Target, parse_path

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/api/v1/namespaces", Target("", "v1", "namespaces", None, None, None)),
        ("/api/v1/namespaces/team", Target("", "v1", "namespaces", None, "team", None)),
        ("/api/v1/namespaces/team/status", Target("", "v1", "namespaces", None, "team", "status")),
        ("/api/v1/namespaces/team/pods", Target("", "v1", "pods", "team", None, None)),
        ("/api/v1/namespaces/team/pods/p/status", Target("", "v1", "pods", "team", "p", "status")),
        ("/apis/apps/v1/deployments", Target("apps", "v1", "deployments", None, None, None)),
        ("/apis/modelyard.dev/v1alpha1", Target("modelyard.dev", "v1alpha1", None, None, None, None)),
    ],
)
def test_parse_path_reads_namespaces_right(path: str, target: Target) -> None:
    assert parse_path(path) == target


def test_parse_path_ignores_non_api_paths() -> None:
    assert parse_path("/v1/configmaps") is None
    assert parse_path("/openapi/v2") is None


def test_versions_order_like_kubernetes() -> None:
    assert sorted(["v1beta1", "v1", "v2", "v1alpha1", "v2beta2"], key=version_priority) == [
        "v2", "v1", "v2beta2", "v1beta1", "v1alpha1",
    ]  # fmt: skip


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "default": {},
            "properties": {
                "inner": {"type": "object", "default": {}, "properties": {"size": {"type": "integer", "default": 3}}},
                "surge": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "ratio": {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": True},
                "when": {"type": "string", "format": "date-time"},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "optional": {"type": "string", "nullable": True},
                "conditions": {
                    "type": "array",
                    "maxItems": 2,
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {"type": {"type": "string"}}},
                },
            },
        }
    },
}


def _admitted(spec: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    obj: dict[str, Any] = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "x", "bogus": 1}, "spec": spec}
    dropped = validation.prune(obj, SCHEMA)
    validation.apply_defaults(obj, SCHEMA)
    return obj, dropped, [str(error) for error in validation.validate(obj, SCHEMA)]


def test_defaults_are_nested_and_null_is_defaulted() -> None:
    obj, _, problems = _admitted({"inner": None})
    assert obj["spec"]["inner"] == {"size": 3}
    assert problems == []


def test_pruning_keeps_preserved_and_additional_properties() -> None:
    obj, dropped, _ = _admitted({"typo": 1, "free": {"anything": {"goes": 1}}, "labels": {"a": "b"}})
    assert dropped == ["metadata.bogus", "spec.typo"]
    assert obj["spec"]["free"] == {"anything": {"goes": 1}}
    assert obj["spec"]["labels"] == {"a": "b"}


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"surge": 1.5}, "spec.surge: Invalid value: 1.5: spec.surge in body must be of type integer,string: 1.5"),
        ({"ratio": 1}, "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"),
        ({"when": "yesterday"}, 'spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time'),
        ({"labels": {"a": "long"}}, "spec.labels.a: Too long: may not be more than 3 bytes"),
        ({"conditions": [{"type": "A"}, {"type": "A"}]}, 'spec.conditions[1]: Duplicate value: {"type": "A"}'),
        (
            {"conditions": [{"type": str(i)} for i in range(3)]},
            "spec.conditions: Too many: 3: must have at most 2 items",
        ),
        (
            {"inner": {"size": "3"}},
            'spec.inner.size: Invalid value: "string": spec.inner.size in body must be of type integer',
        ),
    ],
)
def test_schema_violations_are_worded_like_the_server(spec: dict[str, Any], problem: str) -> None:
    _, _, problems = _admitted(spec)
    assert any(found.startswith(problem) for found in problems), problems


def test_accepted_values() -> None:
    _, _, problems = _admitted({"surge": "25%", "ratio": 0.5, "when": "2026-01-01T00:00:00Z", "optional": None})
    assert problems == []


def test_cel_rules_are_evaluated_on_their_node() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.min <= self.max", "message": "min > max", "fieldPath": ".min"}
                ],
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
            }
        },
    }
    assert validation.validate({"spec": {"min": 1, "max": 2}}, schema) == []
    assert [str(e) for e in validation.validate({"spec": {"min": 3, "max": 2}}, schema)] == [
        'spec.min: Invalid value: "object": min > max'
    ]
    missing = [str(e) for e in validation.validate({"spec": {"max": 2}}, schema)]
    assert missing[0].startswith("spec.min: Invalid value:")
    assert "evaluating rule: self.min <= self.max" in missing[0]


def test_merge_patch() -> None:
    assert patching.merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == {
        "a": {"c": 2, "d": 3},
        "l": [2],
    }


def test_strategic_merge_patch_merges_lists_by_key() -> None:
    current = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}, "finalizers": ["x"]}
    patch = {
        "spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "$patch": "delete"}, {"name": "c"}]},
        "finalizers": ["y"],
        "$setElementOrder/finalizers": ["x", "y"],
    }
    assert patching.strategic_merge_patch(current, patch) == {
        "spec": {"containers": [{"name": "b", "image": "2"}, {"name": "c"}]},
        "finalizers": ["x", "y"],
    }


def test_json_patch_failures_are_client_errors() -> None:
    with pytest.raises(errors.ApiError) as failed:
        patching.json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    assert failed.value.status == 422
    with pytest.raises(errors.ApiError) as missing:
        patching.json_patch({"a": 1}, [{"op": "remove", "path": "/nope"}])
    assert missing.value.status == 422
    with pytest.raises(errors.ApiError) as malformed:
        patching.json_patch({"a": 1}, {"op": "add"})
    assert malformed.value.status == 400


def test_apply_merges_named_lists() -> None:
    live = {"spec": {"env": [{"name": "A", "value": "1"}], "args": ["x"]}}
    applied = {"spec": {"env": [{"name": "B", "value": "2"}], "args": ["y"]}}
    assert patching.apply_merge(live, applied) == {
        "spec": {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "args": ["y"]}
    }


def test_selectors() -> None:
    obj = {"metadata": {"name": "n", "namespace": "ns", "labels": {"app": "a", "tier": "web"}}}
    assert label_selector("app=a,tier in (web, db),!missing")(obj)
    assert not label_selector("app notin (a)")(obj)
    assert field_selector("metadata.name=n,metadata.namespace!=other", "ConfigMap")(obj)
    with pytest.raises(errors.ApiError):
        label_selector("app=(")
    with pytest.raises(errors.ApiError):
        field_selector("spec.nodeName=x", "ConfigMap")


def test_json_path_and_human_duration() -> None:
    obj = {"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}}
    assert tables.json_path(obj, '.status.conditions[?(@.type=="Ready")].status') == "True"
    assert tables.json_path(obj, ".status.conditions[0].type") == "A"
    assert tables.json_path(obj, ".status.missing.deeper") is None
    assert [tables.human_duration(s) for s in (5, 119, 150, 600, 3 * 3600 + 60, 3 * 86400)] == [
        "5s", "119s", "2m30s", "10m", "3h1m", "3d",
    ]  # fmt: skip


def _field(number: int, payload: bytes) -> bytes:
    return bytes([(number << 3) | 2, len(payload)]) + payload


def test_protobuf_namespace_as_kubectl_sends_it() -> None:
    labels = _field(11, _field(1, b"team") + _field(2, b"a"))
    namespace = _field(1, _field(1, b"team-a") + labels) + _field(2, b"") + _field(3, b"")
    body = protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"Namespace")) + _field(2, namespace)
    assert protobuf.decode(body, NAMESPACE_TYPE) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"team": "a"}},
        "spec": {"finalizers": []},
    }


def test_protobuf_of_other_kinds_is_415() -> None:
    pods = next(rtype for rtype in BUILTINS if rtype.plural == "pods")
    body = protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"Pod")) + _field(2, b"")
    with pytest.raises(errors.ApiError) as refused:
        protobuf.decode(body, pods)
    assert refused.value.status == 415
