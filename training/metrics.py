"""The trainer's Prometheus endpoint (rank 0), with the metric names of docs/contracts.md.

Every series carries the labels `namespace` and `trainingjob` (empty outside a cluster), so the dashboards can tell
jobs apart.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

GAUGES = {
    "modelyard_training_epoch": "Epochs completed.",
    "modelyard_training_total_epochs": "Epochs planned.",
    "modelyard_training_step": "Optimizer steps completed.",
    "modelyard_training_loss": "Training loss (mean over the last log interval).",
    "modelyard_training_val_loss": "Validation loss of the last epoch.",
    "modelyard_training_val_accuracy": "Validation accuracy of the last epoch.",
    "modelyard_training_images_per_second": "Training throughput over all processes.",
    "modelyard_training_data_wait_fraction": "Share of step time spent waiting for the input pipeline.",
    "modelyard_training_gpu_memory_bytes": "Peak GPU memory allocated by this process (0 on the CPU).",
    "modelyard_training_eta_seconds": "Estimated seconds until training ends.",
    "modelyard_training_progress_ratio": "Share of the planned steps done (0..1).",
    "modelyard_training_last_progress_timestamp_seconds": "Unix time of the last progress update.",
}


class TrainerMetrics:
    """The gauges, served on `port` (0: kept in memory only, nothing listens)."""

    def __init__(self, *, namespace: str | None, trainingjob: str | None, port: int, address: str = "") -> None:
        self.registry = CollectorRegistry()
        labels = {"namespace": namespace or "", "trainingjob": trainingjob or ""}
        self._gauges = {
            name: Gauge(name, help_text, list(labels), registry=self.registry).labels(**labels)
            for name, help_text in GAUGES.items()
        }
        self._server: Any = None
        self.port = 0
        if port:
            self._server, _ = start_http_server(port, addr=address, registry=self.registry)
            self.port = int(self._server.server_port)

    def set(self, **values: float | None) -> None:
        """Set gauges by short name (`epoch=3, val_accuracy=0.9`); None leaves a gauge as it was."""
        for short_name, value in values.items():
            if value is not None:
                self._gauges[f"modelyard_training_{short_name}"].set(value)
        self._gauges["modelyard_training_last_progress_timestamp_seconds"].set(time.time())

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
