"""Judge a revision on its Prometheus figures: BentoML's own request counter and latency histogram.

BentoML (1.4, `_bentoml_impl` services) counts every HTTP answer in `bentoml_service_request_total` and times it in
`bentoml_service_request_duration_seconds`, labelled `endpoint`, `service_name`, `service_version`,
`http_response_code` and `runner_name`; probes are counted too, so they are left out. A revision's series are told
apart by the pod labels the scrape configuration copies onto them (Prometheus' `labelmap` of
`__meta_kubernetes_pod_label_*`, or a PodMonitor's podTargetLabels): `modelyard_dev_model_deployment` and
`modelyard_dev_revision`, with `namespace`.

The window starts when the revision became available. Before it has passed, only a failure can be decided (enough
requests and already over a threshold); a pass needs the whole window and at least minRequests requests.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelyard.api.model_deployment import AnalysisSpec
from modelyard.operator.rollout import AnalysisResult, Verdict

REQUEST_TOTAL = "bentoml_service_request_total"
REQUEST_DURATION_BUCKET = "bentoml_service_request_duration_seconds_bucket"
# Probe and scrape paths say nothing about the model; /readyz answers 503 during warm-up by design.
NOT_TRAFFIC = "/(livez|readyz|healthz|metrics)"
QUERY_TIMEOUT_SECONDS = 5.0

# (PromQL, evaluation time) → the scalar result, or None for an empty vector or NaN.
Fetch = Callable[[str, datetime], float | None]


def prometheus_label(kubernetes_label: str) -> str:
    """The name Prometheus gives a copied Kubernetes label (every character outside [a-zA-Z0-9_] becomes _)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", kubernetes_label)


def selector(labels: Mapping[str, str]) -> str:
    """A PromQL label matcher for these exact label values, plus the rule that leaves probes out."""
    escaped = (f'{name}="{_escape(value)}"' for name, value in sorted(labels.items()))
    return ",".join([*escaped, f'endpoint!~"{NOT_TRAFFIC}"'])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class Queries:
    requests: str
    errors: str
    p95_seconds: str


def queries(matcher: str, range_seconds: int) -> Queries:
    """Requests, 5xx answers and p95 latency over the last `range_seconds`."""
    window = f"[{range_seconds}s]"
    return Queries(
        requests=f"sum(increase({REQUEST_TOTAL}{{{matcher}}}{window}))",
        errors=f'sum(increase({REQUEST_TOTAL}{{{matcher},http_response_code=~"5.."}}{window}))',
        p95_seconds=f"histogram_quantile(0.95, sum by (le) (rate({REQUEST_DURATION_BUCKET}{{{matcher}}}{window})))",
    )


@dataclass(frozen=True)
class Figures:
    requests: float
    errors: float
    p95_seconds: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0

    def describe(self) -> str:
        latency = f", p95 {self.p95_seconds * 1000:.0f} ms" if self.p95_seconds is not None else ""
        return f"error rate {self.error_rate:.1%} ({self.errors:.0f} of {self.requests:.0f} requests){latency}"


def judge(spec: AnalysisSpec, figures: Figures, window_complete: bool) -> AnalysisResult:
    """The verdict on these figures; a pass only once the whole window is in."""
    if figures.requests < max(spec.min_requests, 1):
        return AnalysisResult(
            Verdict.PENDING,
            "AwaitingTraffic",
            f"{figures.requests:.0f} requests so far, {spec.min_requests} needed for a verdict",
        )
    if figures.error_rate > spec.max_error_rate:
        return AnalysisResult(
            Verdict.FAILED, "AnalysisFailed", f"{figures.describe()} > max error rate {spec.max_error_rate:.1%}"
        )
    limit = spec.max_p95_latency_ms
    if limit is not None and figures.p95_seconds is not None and figures.p95_seconds * 1000 > limit:
        return AnalysisResult(
            Verdict.FAILED, "AnalysisFailed", f"{figures.describe()}: p95 latency over {limit:.0f} ms"
        )
    if not window_complete:
        return AnalysisResult(Verdict.PENDING, "AnalysisRunning", f"so far {figures.describe()}")
    return AnalysisResult(Verdict.PASSED, "AnalysisPassed", figures.describe())


def analyse(
    spec: AnalysisSpec, matcher: str, since: datetime, now: datetime, fetch: Fetch | None = None
) -> AnalysisResult:
    """Query Prometheus for the figures since `since` (at most one window back) and judge them."""
    elapsed = int((now - since).total_seconds())
    if elapsed < 1:
        return AnalysisResult(Verdict.PENDING, "AnalysisRunning", "the revision has just become available")
    planned = queries(matcher, min(elapsed, spec.window_seconds))
    try:
        fetch = fetch or PrometheusClient(spec.prometheus_url).scalar
        requests = fetch(planned.requests, now) or 0.0
        errors = fetch(planned.errors, now) or 0.0
        p95 = fetch(planned.p95_seconds, now) if spec.max_p95_latency_ms is not None else None
    except PrometheusError as error:
        # Monitoring being down proves nothing about the model: wait, neither pass nor fail.
        return AnalysisResult(Verdict.PENDING, "PrometheusUnavailable", str(error))
    return judge(spec, Figures(requests, errors, p95), window_complete=elapsed >= spec.window_seconds)


class PrometheusError(Exception):
    """Prometheus could not answer a query."""


class PrometheusClient:
    """The instant-query endpoint of one Prometheus server (stdlib HTTP: the operator image stays small)."""

    def __init__(self, base_url: str, timeout: float = QUERY_TIMEOUT_SECONDS) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise PrometheusError(f"rollout.analysis.prometheusURL: {base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def scalar(self, query: str, at: datetime) -> float | None:
        """The single value of an aggregated query at time `at`: None for no series or NaN."""
        params = urllib.parse.urlencode({"query": query, "time": f"{at.timestamp():.3f}"})
        url = f"{self.base_url}/api/v1/query?{params}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:  # noqa: S310 (scheme checked above)
                body = json.load(response)
        except urllib.error.HTTPError as error:
            # A refused query (400, 422) comes with Prometheus' own explanation in the body.
            body = _error_body(error)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as error:
            raise PrometheusError(f"Prometheus at {self.base_url} did not answer: {error}") from error
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused {query!r}: {body.get('error', body)}")
        result = body["data"]["result"]
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{query!r} returned {len(result)} series, expected one")
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value


def _error_body(error: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict) or "error" not in body:
        return {"status": "error", "error": f"HTTP {error.code} {error.reason}"}
    return body
