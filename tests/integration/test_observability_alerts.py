"""The alert rules as the chart renders them: `promtool check rules`, then the promtool unit tests that fire and keep
quiet every alert (charts/modelyard/alerts/modelyard-alerts.test.yaml); and a threshold moved by values changes what
fires, so the tests do watch the thresholds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.kube_tools import CHART, one, render, run, tool

pytestmark = pytest.mark.integration

ALERT_TESTS = CHART / "alerts" / "modelyard-alerts.test.yaml"


def write_rules(folder: Path, thresholds: dict[str, float]) -> Path:
    """Render the PrometheusRule and write its spec where the promtool test file expects the rules."""
    values = folder / "values.yaml"
    values.write_text(yaml.safe_dump({"prometheusRule": {"enabled": True, **thresholds}}))
    rule = one(render([values]), "PrometheusRule")
    rules = folder / "rendered-rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    shutil.copy(ALERT_TESTS, folder / ALERT_TESTS.name)
    return rules


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = write_rules(tmp_path, {})
    done = run([tool("promtool"), "check", "rules", str(rules)])
    assert "SUCCESS: 8 rules found" in done.stdout


def test_every_alert_fires_and_stays_quiet_as_the_unit_tests_say(tmp_path: Path) -> None:
    write_rules(tmp_path, {})
    done = run([tool("promtool"), "test", "rules", str(tmp_path / ALERT_TESTS.name)], check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_a_moved_threshold_makes_the_unit_tests_fail(tmp_path: Path) -> None:
    # At a 20% threshold the 9% error rate of the "failing" deployment no longer alerts.
    write_rules(tmp_path, {"servingErrorRatio": 0.2})
    done = run([tool("promtool"), "test", "rules", str(tmp_path / ALERT_TESTS.name)], check=False)
    assert done.returncode != 0
    assert "alertname: ModelyardServingHighErrorRate" in done.stdout + done.stderr
