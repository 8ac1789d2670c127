"""The service's own Prometheus metrics (names from docs/contracts.md), next to BentoML's `bentoml_service_*`.

BentoML's workers run prometheus_client in multiprocess mode and serve every worker's samples on /metrics; the
metrics are therefore created in the worker (`service_metrics()`), never when a module is imported, and the gauges
say how to combine workers ("livemax": the largest value among live workers).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from modelyard.bento.inputs import RejectReason

# Reasons a client's input can be refused for; NOT_READY is the service's state, not the input's fault.
INPUT_REASONS = tuple(reason for reason in RejectReason if reason is not RejectReason.NOT_READY)


def batch_size_buckets(max_batch_size: int) -> list[float]:
    """Powers of two up to and including the largest batch the service forms."""
    buckets: list[float] = []
    size = 1
    while size < max_batch_size:
        buckets.append(float(size))
        size *= 2
    buckets.append(float(max_batch_size))
    return buckets


class ServiceMetrics:
    """modelyard_predictions_total, _model_info, _rejected_inputs_total, _batch_size and _ready."""

    def __init__(self, max_batch_size: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.predictions = Counter(
            "modelyard_predictions",
            "Images classified, by the model that answered and its top class.",
            ["model_tag", "class_name"],
            registry=registry,
        )
        self.model_info = Gauge(
            "modelyard_model_info",
            "The model this replica serves (always 1).",
            ["model_tag", "model_name"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.rejected_inputs = Counter(
            "modelyard_rejected_inputs",
            "Requests refused with a 4xx because of their input, by reason.",
            ["reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "modelyard_batch_size",
            "Images per model call formed by adaptive batching.",
            buckets=batch_size_buckets(max_batch_size),
            registry=registry,
        )
        self.ready = Gauge(
            "modelyard_ready",
            "1 once the model is loaded and its warm-up prediction was right, else 0.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        # Every reason exists from the start at 0, so that rate() and alerts see a series before the first rejection.
        for reason in INPUT_REASONS:
            self.rejected_inputs.labels(reason=reason.value)
        self.ready.set(0)

    def reject(self, reason: RejectReason) -> None:
        if reason is not RejectReason.NOT_READY:
            self.rejected_inputs.labels(reason=reason.value).inc()

    def serving(self, model_tag: str) -> None:
        """The model is loaded and warmed up."""
        name = model_tag.split(":", 1)[0]
        self.model_info.labels(model_tag=model_tag, model_name=name).set(1)
        self.ready.set(1)

    def predicted(self, model_tag: str, class_names: Iterable[str], batch_size: int) -> None:
        self.batch_size.observe(batch_size)
        for class_name in class_names:
            self.predictions.labels(model_tag=model_tag, class_name=class_name).inc()


@functools.cache
def service_metrics(max_batch_size: int) -> ServiceMetrics:
    """The process's one set of metrics in the default registry (creating a metric twice there is an error)."""
    return ServiceMetrics(max_batch_size)
