"""The trainer's configuration: a TrainingJob (or just its spec) from YAML, --set overrides, and the run's context.

The spec is `modelyard.api.TrainingJobSpec`, the model the CRD is generated from, so the pod needs nothing else and a
typo fails loudly (unknown fields are refused) instead of falling back to a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from modelyard.api.training_job import TrainingJobSpec
from modelyard.training.errors import ConfigError

DEFAULT_METRICS_PORT = 9400


@dataclass(frozen=True)
class LoadedConfig:
    spec: TrainingJobSpec
    job_name: str | None = None
    job_namespace: str | None = None


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def apply_override(document: dict[str, Any], assignment: str) -> None:
    """Set `key.path=value` in a spec's wire dict. Keys may be camelCase or snake_case; the value is YAML, so
    `3`, `true`, `null` and `[0.5, 0.5, 0.5]` keep their types."""
    key_path, separator, raw_value = assignment.partition("=")
    if not separator or not key_path.strip():
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    keys = [to_camel(key) for key in key_path.strip().split(".")]
    try:
        value = yaml.safe_load(raw_value)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {assignment!r}: the value is not valid YAML: {error}") from error
    target = document
    for depth, key in enumerate(keys[:-1]):
        child = target.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {assignment!r}: {'.'.join(keys[: depth + 1])} is not an object")
        target = child
    target[keys[-1]] = value


def parse_config(document: Any, overrides: Sequence[str] = (), *, source: str = "config") -> LoadedConfig:
    """A whole TrainingJob or just its spec (a parsed YAML document), with overrides applied, validated."""
    if not isinstance(document, Mapping):
        raise ConfigError(f"{source}: expected a TrainingJob or its spec as a YAML mapping")
    job_name = job_namespace = None
    if "spec" in document and ("kind" in document or "apiVersion" in document):
        if document.get("kind", "TrainingJob") != "TrainingJob":
            raise ConfigError(f"{source}: kind is {document.get('kind')!r}, expected TrainingJob")
        metadata = document.get("metadata") or {}
        job_name, job_namespace = metadata.get("name"), metadata.get("namespace")
        spec_document = document["spec"]
        if not isinstance(spec_document, Mapping):
            raise ConfigError(f"{source}: spec must be a mapping")
    else:
        spec_document = document
    spec_dict = _deep_copy(spec_document)
    for assignment in overrides:
        apply_override(spec_dict, assignment)
    try:
        spec = TrainingJobSpec.model_validate(spec_dict)
    except ValidationError as error:
        raise ConfigError(f"{source} is not a valid TrainingJob spec:\n{_format_validation_error(error)}") from error
    return LoadedConfig(spec, job_name, job_namespace)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


def load_config(path: Path, overrides: Sequence[str] = ()) -> LoadedConfig:
    """Read `path` (YAML) into a validated spec; every problem is a ConfigError naming the file and field."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from error
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {error}") from error
    return parse_config(document, overrides, source=f"config {path}")


def local_path(location: str) -> Path:
    """A path or file:// URI as a local path."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ConfigError(f"{location}: only local paths and file:// URIs are read (nothing is downloaded)")
    return Path(location)


@dataclass(frozen=True)
class RunContext:
    """Where this run writes and whom it reports to: the operator's environment variables, else the spec."""

    job_name: str | None
    job_namespace: str | None
    checkpoint_dir: Path
    store_dir: Path
    metrics_port: int
    status_reporting: bool
    # Where the metrics endpoint listens: every interface in a pod (Prometheus scrapes the pod IP); tests and
    # laptops may narrow it with MODELYARD_METRICS_ADDRESS.
    metrics_address: str = "0.0.0.0"

    @property
    def training_job(self) -> str | None:
        """ "namespace/name" of the TrainingJob, None outside a cluster."""
        return f"{self.job_namespace}/{self.job_name}" if self.job_name and self.job_namespace else None

    @classmethod
    def from_env(cls, config: LoadedConfig, environ: Mapping[str, str] | None = None) -> RunContext:
        env = os.environ if environ is None else environ
        spec = config.spec
        job_name = env.get("MODELYARD_TRAININGJOB_NAME") or config.job_name
        job_namespace = env.get("MODELYARD_TRAININGJOB_NAMESPACE") or config.job_namespace
        if job_name and not job_namespace:
            job_namespace = "default"
        checkpoint_dir = env.get("MODELYARD_CHECKPOINT_DIR") or str(
            local_path(spec.output.checkpoint_path) / (job_name or spec.output.model_name)
        )
        store_dir = env.get("BENTOML_HOME") or spec.output.store_path
        raw_port = env.get("MODELYARD_METRICS_PORT", str(DEFAULT_METRICS_PORT))
        try:
            metrics_port = int(raw_port)
        except ValueError as error:
            raise ConfigError(f"MODELYARD_METRICS_PORT must be a port number, got {raw_port!r}") from error
        if not 0 <= metrics_port <= 65535:
            raise ConfigError(f"MODELYARD_METRICS_PORT must be 0..65535, got {metrics_port}")
        in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST"))
        reporting = env.get("MODELYARD_STATUS_REPORTING") or ("kubernetes" if in_cluster else "off")
        if reporting not in ("kubernetes", "off"):
            raise ConfigError(f"MODELYARD_STATUS_REPORTING must be kubernetes or off, got {reporting!r}")
        if reporting == "kubernetes" and not job_name:
            raise ConfigError("MODELYARD_STATUS_REPORTING=kubernetes needs MODELYARD_TRAININGJOB_NAME")
        return cls(
            job_name=job_name,
            job_namespace=job_namespace,
            checkpoint_dir=local_path(checkpoint_dir),
            store_dir=local_path(store_dir),
            metrics_port=metrics_port,
            status_reporting=reporting == "kubernetes",
            metrics_address=env.get("MODELYARD_METRICS_ADDRESS") or "0.0.0.0",
        )


def changed_fields(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ between two wire-form specs."""
    if isinstance(before, dict) and isinstance(after, dict):
        paths: list[str] = []
        for key in sorted(set(before) | set(after)):
            paths += changed_fields(before.get(key), after.get(key), f"{prefix}{key}.")
        return paths
    return [] if before == after else [prefix.rstrip(".")]
