"""The analysis verdict rules and the PromQL they send (the real Prometheus runs in tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelyard.api.model_deployment import AnalysisSpec
from modelyard.operator.analysis import (
    Figures,
    PrometheusClient,
    PrometheusError,
    analyse,
    judge,
    prometheus_label,
    queries,
    selector,
)
from modelyard.operator.rollout import Verdict

pytestmark = pytest.mark.unit

SPEC = AnalysisSpec.model_validate(
    {"prometheusURL": "http://prometheus:9090", "windowSeconds": 60, "maxErrorRate": 0.05, "minRequests": 20}
)
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_kubernetes_labels_become_prometheus_label_names() -> None:
    assert prometheus_label("modelyard.dev/model-deployment") == "modelyard_dev_model_deployment"


def test_selector_escapes_values_and_leaves_probes_out() -> None:
    matcher = selector({"namespace": "ml", "odd": 'a"b\\c'})
    assert matcher == 'namespace="ml",odd="a\\"b\\\\c",endpoint!~"/(livez|readyz|healthz|metrics)"'


def test_queries_use_bentomls_own_metric_names() -> None:
    planned = queries('namespace="ml"', 60)
    assert planned.requests == 'sum(increase(bentoml_service_request_total{namespace="ml"}[60s]))'
    assert planned.errors == (
        'sum(increase(bentoml_service_request_total{namespace="ml",http_response_code=~"5.."}[60s]))'
    )
    assert planned.p95_seconds == (
        "histogram_quantile(0.95, sum by (le) "
        '(rate(bentoml_service_request_duration_seconds_bucket{namespace="ml"}[60s])))'
    )


@pytest.mark.parametrize(
    ("figures", "complete", "verdict", "reason"),
    [
        (Figures(19, 0, 0.01), True, Verdict.PENDING, "AwaitingTraffic"),
        (Figures(40, 2, 0.01), True, Verdict.PASSED, "AnalysisPassed"),
        (Figures(40, 3, 0.01), True, Verdict.FAILED, "AnalysisFailed"),
        (Figures(40, 3, 0.01), False, Verdict.FAILED, "AnalysisFailed"),  # a failure needs no full window
        (Figures(40, 0, 0.01), False, Verdict.PENDING, "AnalysisRunning"),  # a pass does
    ],
)
def test_error_rate_rules(figures: Figures, complete: bool, verdict: Verdict, reason: str) -> None:
    result = judge(SPEC, figures, window_complete=complete)
    assert (result.verdict, result.reason) == (verdict, reason)


def test_failure_message_carries_the_figures() -> None:
    result = judge(SPEC, Figures(40, 10, None), window_complete=True)
    assert result.message == "error rate 25.0% (10 of 40 requests) > max error rate 5.0%"


def test_p95_latency_over_the_limit_fails() -> None:
    spec = SPEC.model_copy(update={"max_p95_latency_ms": 250.0})
    assert judge(spec, Figures(40, 0, 0.2), window_complete=True).verdict is Verdict.PASSED
    slow = judge(spec, Figures(40, 0, 0.3), window_complete=True)
    assert slow.verdict is Verdict.FAILED
    assert slow.message == "error rate 0.0% (0 of 40 requests), p95 300 ms: p95 latency over 250 ms"


def test_analyse_queries_the_elapsed_range_until_the_window_is_full() -> None:
    asked: list[tuple[str, datetime]] = []

    def fetch(query: str, at: datetime) -> float | None:
        asked.append((query, at))
        return 30.0 if "5.." not in query else 0.0

    early = analyse(SPEC, 'namespace="ml"', T0, T0 + timedelta(seconds=25), fetch)
    assert early.verdict is Verdict.PENDING
    assert all("[25s]" in query for query, _ in asked)
    asked.clear()
    late = analyse(SPEC, 'namespace="ml"', T0, T0 + timedelta(seconds=300), fetch)
    assert late.verdict is Verdict.PASSED
    assert all("[60s]" in query and at == T0 + timedelta(seconds=300) for query, at in asked)


def test_client_refuses_urls_that_are_not_http() -> None:
    with pytest.raises(PrometheusError, match="not an http"):
        PrometheusClient("file:///etc/passwd")
