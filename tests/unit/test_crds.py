"""The generated CRDs: no drift from the models, structural, and printer columns that point at real fields."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.api import crd

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_files_on_disk_match_the_models() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "crds", "--check", "--root", str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_drift_is_detected(tmp_path: Path) -> None:
    written = crd.write([tmp_path / "manifests" / "crds", tmp_path / "charts" / "modelyard" / "crds"])
    assert len(written) == 2 * len(crd.KINDS)
    written[0].write_text(written[0].read_text().replace("minimum: 1", "minimum: 0", 1))
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "crds", "--check", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert str(written[0]) in result.stderr


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for name, child in schema.get("properties", {}).items():
        nodes += _walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        nodes += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += _walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes


@pytest.mark.parametrize("kind", crd.KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: crd.CrdKind) -> None:
    schema = crd.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert not {"$ref", "allOf", "title"} & node.keys(), path
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
            continue
        assert "anyOf" not in node, path
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{path}: v3.0 wants a boolean {bound}"


@pytest.mark.parametrize("kind", crd.KINDS, ids=lambda k: k.kind)
def test_printer_columns_point_at_schema_fields(kind: crd.CrdKind) -> None:
    version = crd.crd(kind)["spec"]["versions"][0]
    known = {path for path, _ in _walk(version["schema"]["openAPIV3Schema"])}
    for column in version["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata."):
            continue
        assert column["jsonPath"] in known, column


def test_nested_objects_default_so_the_server_fills_the_spec() -> None:
    text = (REPO / "manifests" / "crds" / "trainingjobs.modelyard.dev.yaml").read_text()
    spec = yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["training"]["default"] == {}
    assert spec["properties"]["training"]["properties"]["batchSize"]["default"] == 32
    assert "default" not in spec["properties"]["promotion"]
    assert sorted(spec["required"]) == ["data", "output"]
