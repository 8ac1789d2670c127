"""The operator's Prometheus metrics (names from docs/contracts.md) on their own registry, and their HTTP endpoint."""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.process_collector import ProcessCollector

RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Outcome:
    SUCCESS = "success"
    RETRY = "retry"  # kopf.TemporaryError: waiting for the cluster
    INVALID = "invalid"  # kopf.PermanentError: a spec that cannot work
    ERROR = "error"  # anything else: a bug or an API refusal; kopf retries with backoff


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        ProcessCollector(registry=r)
        self.reconciliations = Counter(
            "modelyard_operator_reconciliations",
            "Reconciliations by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "modelyard_operator_reconcile_duration_seconds",
            "Time one reconciliation took.",
            ["kind"],
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.trainingjobs = Gauge(
            "modelyard_trainingjobs", "TrainingJobs by phase.", ["namespace", "phase"], registry=r
        )
        self.promotions = Counter(
            "modelyard_promotions", "Promotions of trained models by outcome.", ["namespace", "outcome"], registry=r
        )
        self.rollbacks = Counter(
            "modelyard_rollbacks",
            "Automatic and manual rollbacks.",
            ["namespace", "modeldeployment", "reason"],
            registry=r,
        )
        self.api_errors = Counter(
            "modelyard_operator_api_errors", "Kubernetes API calls that failed.", ["verb", "kind"], registry=r
        )
        md_labels = ["namespace", "modeldeployment"]
        self.md_replicas = Gauge("modelyard_modeldeployment_replicas", "Pods.", md_labels, registry=r)
        self.md_ready_replicas = Gauge("modelyard_modeldeployment_ready_replicas", "Ready pods.", md_labels, registry=r)
        self.md_min_replicas = Gauge("modelyard_modeldeployment_min_replicas", "replicas.min.", md_labels, registry=r)
        self.md_max_replicas = Gauge("modelyard_modeldeployment_max_replicas", "replicas.max.", md_labels, registry=r)
        self._phases: dict[tuple[str, str], str] = {}
        self._phase_counts: Tally[tuple[str, str]] = Tally()  # (namespace, phase) -> TrainingJobs
        self._phases_lock = threading.Lock()

    @contextmanager
    def reconciling(self, kind: str) -> Iterator[None]:
        """Count and time one reconciliation; the outcome follows the exception it ends with, if any."""
        started = time.perf_counter()
        outcome = Outcome.SUCCESS
        try:
            yield
        except kopf.TemporaryError:
            outcome = Outcome.RETRY
            raise
        except kopf.PermanentError:
            outcome = Outcome.INVALID
            raise
        except Exception:
            outcome = Outcome.ERROR
            raise
        finally:
            self.reconciliations.labels(kind=kind, outcome=outcome).inc()
            self.reconcile_duration.labels(kind=kind).observe(time.perf_counter() - started)

    def set_trainingjob_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Record a TrainingJob's phase (None: it is gone) and update the counts of its old and new phase (kept
        incrementally: a status sync happens several times per TrainingJob, and a namespace may hold thousands)."""
        with self._phases_lock:
            key = (namespace, name)
            previous = self._phases.pop(key, None) if phase is None else self._phases.get(key)
            if previous == phase:
                return
            if phase is not None:
                self._phases[key] = phase
            for each, change in ((previous, -1), (phase, 1)):
                if each is not None:
                    self._phase_counts[(namespace, each)] += change
                    self.trainingjobs.labels(namespace=namespace, phase=each).set(self._phase_counts[(namespace, each)])


METRICS = OperatorMetrics()


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Expose METRICS on http://address:port/metrics (a daemon thread)."""
    if port:
        start_http_server(port, addr=address, registry=METRICS.registry)
