"""The Grafana dashboards: current with their code, loadable by Grafana's own models, and reading only metrics the
contracts name (every one of them somewhere), filtered by template variables for namespace and resource name."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards.__main__ import OUTPUT_DIR, render, stale_files

pytestmark = pytest.mark.unit

CONTRACTS = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()
_SECTION = CONTRACTS.split("## Prometheus metrics", 1)[1].split("\n## ", 1)[0]
CONTRACT_METRICS = set(re.findall(r"`(modelyard_[a-z0-9_]+)", _SECTION))
HISTOGRAMS = {
    "modelyard_batch_size",
    "modelyard_operator_reconcile_duration_seconds",
    "bentoml_service_request_duration_seconds",
}
# BentoML's own (checked against its source: bentoml/_internal/server/http/instruments.py).
OTHER_METRICS = {"bentoml_service_request_total", "bentoml_service_request_duration_seconds"}
KNOWN_METRICS = (
    CONTRACT_METRICS
    | OTHER_METRICS
    | {f"{name}_{suffix}" for name in HISTOGRAMS for suffix in ("bucket", "sum", "count")}
)
BOARDS = {
    name: json.loads((OUTPUT_DIR / name).read_text()) for name in ("training.json", "serving.json", "operator.json")
}
GRAFANA_BUILTINS = {"__rate_interval", "__range", "__interval"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (ours, BentoML's, `up`); labels named modelyard_dev_* are not."""
    names = set(re.findall(r"\b((?:modelyard|bentoml)_(?!dev_)[a-z0-9_]+)", expr))
    return names | ({"up"} if re.search(r"\bup\{", expr) else set())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def expressions(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p["targets"]]


def test_contracts_list_the_metrics() -> None:
    assert len(CONTRACT_METRICS) >= 25
    assert "modelyard_training_loss" in CONTRACT_METRICS


def test_json_files_are_current_with_the_code() -> None:
    assert stale_files(OUTPUT_DIR) == []
    assert set(render()) == set(BOARDS)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_grafana_models_load_the_dashboard(name: str) -> None:
    register_default_plugins()
    model = Dashboard.from_json(BOARDS[name])
    assert model.uid == BOARDS[name]["uid"]
    assert len(model.panels or []) == len(BOARDS[name]["panels"])


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_query_known_metrics_through_the_datasource_variable(name: str) -> None:
    board = BOARDS[name]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel.get("description"), panel["title"]
        for target in panel["targets"]:
            used = metric_names(target["expr"])
            assert used, target["expr"]
            assert used <= KNOWN_METRICS, used - KNOWN_METRICS


@pytest.mark.parametrize(
    ("name", "resource"),
    [("training.json", "trainingjob"), ("serving.json", "modeldeployment"), ("operator.json", "modeldeployment")],
)
def test_variables_filter_by_namespace_and_resource_and_all_are_defined(name: str, resource: str) -> None:
    board = BOARDS[name]
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "namespace", resource} <= variables
    referenced = {m for expr in expressions(board) for m in re.findall(r"\$\{?([a-zA-Z_]+)", expr)}
    assert referenced - GRAFANA_BUILTINS <= variables
    assert "namespace" in referenced


def histogram_base(metric: str) -> str:
    """A histogram's name for its _bucket/_sum/_count series; any other name unchanged."""
    base = re.sub(r"_(bucket|sum|count)$", "", metric)
    return base if base in HISTOGRAMS else metric


def test_every_contract_metric_is_on_a_dashboard() -> None:
    used = {m for board in BOARDS.values() for expr in expressions(board) for m in metric_names(expr)}
    bases = {
        re.sub(r"_(bucket|sum|count)$", "", m) if re.sub(r"_(bucket|sum|count)$", "", m) in HISTOGRAMS else m
        for m in used
    }
    assert CONTRACT_METRICS - bases == set()
    assert {"bentoml_service_request_total", "bentoml_service_request_duration_seconds"} <= bases
