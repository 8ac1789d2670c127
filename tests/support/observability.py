"""What the dashboard and alert tests share: the dashboards as shipped, and the metric names they may read (the
contracts' and BentoML's own), with a way to find the metric names in a PromQL expression."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dashboards.__main__ import OUTPUT_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
_CONTRACTS = (REPO_ROOT / "docs" / "contracts.md").read_text()
_SECTION = _CONTRACTS.split("## Prometheus metrics", 1)[1].split("\n## ", 1)[0]
CONTRACT_METRICS = set(re.findall(r"`(modelyard_[a-z0-9_]+)", _SECTION))
HISTOGRAMS = {
    "modelyard_batch_size",
    "modelyard_operator_reconcile_duration_seconds",
    "bentoml_service_request_duration_seconds",
}
# BentoML's own (checked against its source: bentoml/_internal/server/http/instruments.py).
BENTOML_METRICS = {"bentoml_service_request_total", "bentoml_service_request_duration_seconds"}
KNOWN_METRICS = (
    CONTRACT_METRICS
    | BENTOML_METRICS
    | {f"{name}_{suffix}" for name in HISTOGRAMS for suffix in ("bucket", "sum", "count")}
)
BOARD_FILES = ("training.json", "serving.json", "operator.json")
BOARDS: dict[str, dict[str, Any]] = {name: json.loads((OUTPUT_DIR / name).read_text()) for name in BOARD_FILES}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (ours, BentoML's, `up`); labels named modelyard_dev_* are not."""
    names = set(re.findall(r"\b((?:modelyard|bentoml)_(?!dev_)[a-z0-9_]+)", expr))
    return names | ({"up"} if re.search(r"\bup\{", expr) else set())


def histogram_base(metric: str) -> str:
    """A histogram's name for its _bucket/_sum/_count series; any other name unchanged."""
    base = re.sub(r"_(bucket|sum|count)$", "", metric)
    return base if base in HISTOGRAMS else metric


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that query (rows excluded)."""
    return [p for p in board["panels"] if p["type"] != "row"]


def expressions(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p["targets"]]
