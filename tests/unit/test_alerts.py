"""The alert rules' source: the alerts the issue asks for exist, read only contract metrics, carry severity and
text, and each has promtool cases that fire it and that keep it quiet (run by test_observability_alerts.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.observability import KNOWN_METRICS, metric_names

pytestmark = pytest.mark.unit

ALERTS = Path(__file__).resolve().parents[2] / "charts" / "modelyard" / "alerts"
# The rule file is a Helm template, but its templating sits inside YAML strings, so it parses as it is.
RULES = [
    rule
    for group in yaml.safe_load((ALERTS / "modelyard-alerts.yaml").read_text())["groups"]
    for rule in group["rules"]
]
CASES = yaml.safe_load((ALERTS / "modelyard-alerts.test.yaml").read_text())["tests"]


def test_the_issues_alerts_exist() -> None:
    names = {rule["alert"] for rule in RULES}
    assert names == {
        "ModelyardTrainingJobStalled",
        "ModelyardTrainingJobFailed",
        "ModelyardServingHighErrorRate",
        "ModelyardServingHighLatency",
        "ModelyardRollback",
        "ModelyardOperatorDown",
        "ModelyardOperatorReconcileErrors",
        "ModelyardOperatorApiErrors",
    }


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["alert"])
def test_rule_reads_contract_metrics_and_says_what_to_do(rule: dict[str, Any]) -> None:
    expr = re.sub(r"\{\{.*?\}\}", "1", rule["expr"])  # Helm's placeholders stand for numbers and names
    used = metric_names(expr)
    assert used, rule["expr"]
    assert used <= KNOWN_METRICS | {"up"}, used - KNOWN_METRICS
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert len(rule["annotations"]["summary"]) > 10
    assert len(rule["annotations"]["description"]) > 40


def expectations(alert: str) -> list[list[Any]]:
    return [
        check["exp_alerts"]
        for case in CASES
        for check in case.get("alert_rule_test", [])
        if check["alertname"] == alert
    ]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["alert"])
def test_every_alert_has_cases_that_fire_it_and_keep_it_quiet(rule: dict[str, Any]) -> None:
    seen = expectations(rule["alert"])
    assert any(seen), f"no promtool case fires {rule['alert']}"
    assert any(not expected for expected in seen), f"no promtool case keeps {rule['alert']} quiet"
