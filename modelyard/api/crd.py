"""Generate the CustomResourceDefinitions from the pydantic models: the models are the one source of truth.

pydantic emits JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3.0 schema. The conversion below
inlines references, turns `X | None` into an optional property, tuples into bounded arrays, `int | str` into
`x-kubernetes-int-or-string`, numeric exclusive bounds into the v3.0 boolean form, and gives every object property
whose fields all have defaults `default: {}` so that the API server fills the whole spec in.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from modelyard.api import model_deployment, training_job
from modelyard.api.common import GROUP, VERSION

# CEL rules for what a per-field schema cannot say; they mirror the pydantic validators.
CEL_RULES: dict[str, list[dict[str, str]]] = {
    "ModelSpec": [
        {
            "rule": "self.hiddenDim % self.attentionHeads == 0",
            "message": "hiddenDim must be a multiple of attentionHeads",
            "fieldPath": ".hiddenDim",
        },
        {
            "rule": "!self.freezeBatchNorm || self.pretrained",
            "message": "freezeBatchNorm needs pretrained",
            "fieldPath": ".freezeBatchNorm",
        },
    ],
    "TrainingSpec": [
        {"rule": "!self.cudaGraphs || self.compile", "message": "cudaGraphs needs compile", "fieldPath": ".cudaGraphs"},
        {
            "rule": "!self.cudaGraphs || self.gradientAccumulationSteps == 1",
            "message": "cudaGraphs needs gradientAccumulationSteps 1",
            "fieldPath": ".cudaGraphs",
        },
    ],
    "ReplicasSpec": [{"rule": "self.min <= self.max", "message": "min must not exceed max", "fieldPath": ".min"}],
    "ModelRef": [
        {
            "rule": "has(self.tag) || has(self.fromTrainingJob)",
            "message": "set tag or fromTrainingJob",
            "fieldPath": ".tag",
        }
    ],
}

_DROPPED_KEYS = {"title", "additionalProperties", "$defs"}


@dataclass(frozen=True)
class CrdKind:
    kind: str
    plural: str
    short_name: str
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    printer_columns: list[dict[str, Any]]
    description: str

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


KINDS: tuple[CrdKind, ...] = (
    CrdKind(
        kind="TrainingJob",
        plural="trainingjobs",
        short_name="tj",
        spec_model=training_job.TrainingJobSpec,
        status_model=training_job.TrainingJobStatus,
        printer_columns=training_job.printer_columns(),
        description="Trains an image classifier on GPUs and saves the best model into a BentoML model store.",
    ),
    CrdKind(
        kind="ModelDeployment",
        plural="modeldeployments",
        short_name="md",
        spec_model=model_deployment.ModelDeploymentSpec,
        status_model=model_deployment.ModelDeploymentStatus,
        printer_columns=model_deployment.printer_columns(),
        description="Serves a model with BentoML: autoscaled, health-checked, rolled back automatically.",
    ),
)


class _Converter:
    def __init__(self, defs: dict[str, Any], *, keep_defaults: bool) -> None:
        self._defs = defs
        self._keep_defaults = keep_defaults

    def convert(self, node: dict[str, Any]) -> dict[str, Any]:
        node = copy.deepcopy(node)
        ref_name: str | None = None
        if "$ref" in node:
            ref_name = node.pop("$ref").rsplit("/", 1)[-1]
            node = {**self._defs[ref_name], **node}
        if "allOf" in node and len(node["allOf"]) == 1:
            inner = node.pop("allOf")[0]
            return self.convert({**inner, **node})
        if "anyOf" in node:
            return self._convert_any_of(node)
        if "const" in node:
            node["enum"] = [node.pop("const")]
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED_KEYS:
                continue
            if key == "default" and (not self._keep_defaults or value is None):
                continue
            out[key] = value
        kind = out.get("type")
        if kind == "object":
            self._convert_object(node, out)
        elif kind == "array":
            self._convert_array(node, out)
        elif kind in ("number", "integer"):
            for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
                if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
                    out[plain] = out[bound]
                    out[bound] = True
        elif "format" in out and out["format"] == "date-time":
            out["type"] = "string"
        if ref_name in CEL_RULES:
            out["x-kubernetes-validations"] = CEL_RULES[ref_name]
        return out

    def _convert_any_of(self, node: dict[str, Any]) -> dict[str, Any]:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        siblings = {k: v for k, v in node.items() if k not in _DROPPED_KEYS}
        if len(branches) == 1:
            merged = self.convert(branches[0])
            merged.update(self.convert(siblings) if "type" in siblings else siblings)
            if not self._keep_defaults or merged.get("default", 0) is None:
                merged.pop("default", None)
            return merged
        types = sorted(b.get("type", "") for b in branches)
        if types == ["integer", "string"]:
            out: dict[str, Any] = {"x-kubernetes-int-or-string": True, **siblings}
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            if not self._keep_defaults:
                out.pop("default", None)
            return out
        raise ValueError(f"cannot express anyOf {types} in a structural schema")

    def _convert_object(self, node: dict[str, Any], out: dict[str, Any]) -> None:
        props = node.get("properties")
        if props is None:
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                out["additionalProperties"] = self.convert(extra)
            else:
                out["x-kubernetes-preserve-unknown-fields"] = True
            return
        converted: dict[str, Any] = {}
        for name, prop in props.items():
            optional = any(b.get("type") == "null" for b in prop.get("anyOf", []))
            schema = self.convert(prop)
            # An always-present sub-object whose fields all default: let the API server fill it in.
            if (
                self._keep_defaults
                and not optional
                and schema.get("type") == "object"
                and "properties" in schema
                and not schema.get("required")
                and "default" not in schema
            ):
                schema["default"] = {}
            if name == "conditions" and schema.get("type") == "array":
                schema["x-kubernetes-list-type"] = "map"
                schema["x-kubernetes-list-map-keys"] = ["type"]
            converted[name] = schema
        out["properties"] = converted

    def _convert_array(self, node: dict[str, Any], out: dict[str, Any]) -> None:
        if "prefixItems" in node:
            items = [self.convert(i) for i in node["prefixItems"]]
            out.pop("prefixItems", None)
            out["items"] = items[0]
            out["minItems"] = out["maxItems"] = len(items)
        elif "items" in node:
            out["items"] = self.convert(node["items"])


def openapi_schema(model: type[BaseModel], *, keep_defaults: bool = True) -> dict[str, Any]:
    """The structural OpenAPI v3.0 schema of one pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _Converter(defs, keep_defaults=keep_defaults).convert(raw)


def crd(kind: CrdKind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = openapi_schema(kind.spec_model)
    spec_schema["description"] = (kind.spec_model.__doc__ or "").strip().splitlines()[0]
    if kind.spec_model.__name__ in CEL_RULES:
        spec_schema["x-kubernetes-validations"] = CEL_RULES[kind.spec_model.__name__]
    status_schema = openapi_schema(kind.status_model, keep_defaults=False)
    status_schema["description"] = (kind.status_model.__doc__ or "").strip().splitlines()[0]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.name,
            "labels": {"app.kubernetes.io/name": "modelyard", "app.kubernetes.io/part-of": "modelyard"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": [kind.short_name],
                "categories": ["modelyard"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.printer_columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `modelyard crds` from modelyard/api; do not edit by hand.\n"


def render(kind: CrdKind) -> str:
    """The CRD as the YAML text written to disk."""
    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=120)


def crd_files() -> dict[str, str]:
    """File name → content for every CRD."""
    return {f"{kind.name}.yaml": render(kind) for kind in KINDS}


def write(directories: list[Path]) -> list[Path]:
    """Write every CRD into each directory; returns the files written."""
    written = []
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in crd_files().items():
            path = directory / name
            path.write_text(text)
            written.append(path)
    return written
