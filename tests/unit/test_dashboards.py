"""The Grafana dashboards: current with their code, loadable by Grafana's own models, and reading only metrics the
contracts name (every one of them somewhere), filtered by template variables for namespace and resource name."""

from __future__ import annotations

import re

import pytest
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards.__main__ import OUTPUT_DIR, render, stale_files
from tests.support.observability import (
    BOARDS,
    CONTRACT_METRICS,
    HISTOGRAMS,
    KNOWN_METRICS,
    expressions,
    metric_names,
    panels,
)

pytestmark = pytest.mark.unit

GRAFANA_BUILTINS = {"__rate_interval", "__range", "__interval"}


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


def test_every_contract_metric_is_on_a_dashboard() -> None:
    used = {m for board in BOARDS.values() for expr in expressions(board) for m in metric_names(expr)}
    bases = {
        re.sub(r"_(bucket|sum|count)$", "", m) if re.sub(r"_(bucket|sum|count)$", "", m) in HISTOGRAMS else m
        for m in used
    }
    assert CONTRACT_METRICS - bases == set()
    assert {"bentoml_service_request_total", "bentoml_service_request_duration_seconds"} <= bases
