"""The chart's files on their own: values documented and accepted by the schema, the schema strict, helpers named
after the chart, the app version the package's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from modelyard import __version__

pytestmark = pytest.mark.unit

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelyard"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(SCHEMA)


def leaves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of every value in values.yaml that a user sets (empty maps and lists are values too)."""
    if isinstance(node, dict) and node:
        return [leaf for key, child in node.items() for leaf in leaves(child, (*path, key))]
    return [path]


@pytest.mark.parametrize("path", sorted((CHART / "ci").glob("*-values.yaml")), ids=lambda p: p.name)
def test_defaults_and_ci_values_satisfy_the_schema(path: Path) -> None:
    merged = yaml.safe_load(path.read_text()) or {}
    assert [error.message for error in validator().iter_errors(merged)] == []
    assert [error.message for error in validator().iter_errors(VALUES)] == []


def test_every_value_is_documented_right_above_it() -> None:
    lines = VALUES_TEXT.splitlines()
    undocumented = []
    for path in leaves(VALUES):
        # The value's line: its key at the indentation of its depth, after its parent's line.
        start = 0
        for depth, key in enumerate(path):
            pattern = re.compile(rf"^{' ' * 2 * depth}{re.escape(key)}:")
            start = next(i for i in range(start, len(lines)) if pattern.match(lines[i]))
        # Its comment: the block of comment lines right above it, opened by "# --" (helm-docs' convention).
        comment = []
        line = start - 1
        while line >= 0 and lines[line].strip().startswith("#"):
            comment.insert(0, lines[line].strip())
            line -= 1
        if not comment or not comment[0].startswith("# -- ") or len(" ".join(comment)) < 20:
            undocumented.append(".".join(path))
    assert undocumented == []


def schema_paths(schema: dict[str, Any], path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    properties = schema.get("properties")
    if not properties:
        return {path}
    return {leaf for key, child in properties.items() for leaf in schema_paths(child, (*path, key))}


def test_schema_covers_exactly_the_values() -> None:
    assert schema_paths(SCHEMA) == set(leaves(VALUES))


def objects_without_closed_properties(schema: dict[str, Any], path: str = "") -> list[str]:
    found = []
    if schema.get("type") == "object" and "properties" in schema and schema.get("additionalProperties") is not False:
        found.append(path or "/")
    for key, child in schema.get("properties", {}).items():
        found += objects_without_closed_properties(child, f"{path}/{key}")
    return found


def test_schema_refuses_unknown_keys_everywhere() -> None:
    assert objects_without_closed_properties(SCHEMA) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"operator": {"replicas": "2"}},
        {"operator": {"metricsPort": 70000}},
        {"watchNamespaces": "ml"},
        {"images": {"operator": {"repository": "x", "digest": "latest"}}},
        {"metrics": {"serviceMonitor": {"interval": "often"}}},
        {"prometheusRule": {"servingErrorRatio": 1.5}},
        {"dashboards": {"enabled": "yes"}},
        {"trainer": {"rbac": "nobody"}},
    ],
)
def test_schema_refuses_wrong_types_and_ranges(bad: dict[str, Any]) -> None:
    assert list(validator().iter_errors(bad)) != []


def test_helpers_are_prefixed_with_the_chart_name() -> None:
    names = re.findall(r'define "([^"]+)"', (CHART / "templates" / "_helpers.tpl").read_text())
    assert len(names) > 5
    assert [n for n in names if not n.startswith("modelyard.")] == []


def test_app_version_is_the_packages() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    assert chart["name"] == "modelyard"
