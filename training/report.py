"""Progress into the TrainingJob's status: rank 0 patches the status subresource of its own TrainingJob.

As docs/contracts.md says: a JSON merge patch of `status.progress`, `status.metrics`, `status.lastCheckpoint` and, at
the end, `status.model`, at most every 10 s and at each epoch end; the operator owns every other status field. The
patches are sent from a background thread so a slow API server never stalls a training step, and a failed patch is
logged and dropped: reporting never ends a training run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from modelyard.api.common import GROUP, VERSION
from modelyard.api.crd import KINDS
from modelyard.api.training_job import CheckpointRef, ProducedModel, Progress, TrainingMetrics

PLURAL = next(kind.plural for kind in KINDS if kind.kind == "TrainingJob")
MIN_INTERVAL_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 10.0


def build_status_patch(
    *,
    progress: Progress | None = None,
    metrics: TrainingMetrics | None = None,
    last_checkpoint: CheckpointRef | None = None,
    model: ProducedModel | None = None,
) -> dict[str, Any]:
    """The merge patch of the trainer's four status fields (only those given)."""
    fields = {"progress": progress, "metrics": metrics, "lastCheckpoint": last_checkpoint, "model": model}
    return {"status": {key: value.to_wire() for key, value in fields.items() if value is not None}}


def merge_patches(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """Both patches as one (what applying older then newer would do, for the keys they set)."""
    merged = dict(older)
    for key, value in newer.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patches(merged[key], value)
        else:
            merged[key] = value
    return merged


def kubernetes_api() -> Any:
    """A CustomObjectsApi: the pod's ServiceAccount in a cluster, else the kubeconfig (KUBECONFIG)."""
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.CustomObjectsApi()
    return client.CustomObjectsApi(config.new_client_from_config())  # type: ignore[no-untyped-call]


class StatusReporter:
    """Sends the latest pending patch, coalescing the ones that arrive in between, from a daemon thread."""

    def __init__(
        self,
        name: str,
        namespace: str,
        *,
        api: Any,
        log: Callable[[str], None],
        min_interval: float = MIN_INTERVAL_SECONDS,
    ) -> None:
        self.name, self.namespace = name, namespace
        self._api = api
        self._log = log
        self._min_interval = min_interval
        self._pending: dict[str, Any] | None = None
        self._urgent = False
        self._closing = False
        self._last_sent = 0.0
        self.sent = 0
        self.failed = 0
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="status-reporter", daemon=True)
        self._thread.start()

    def update(self, patch: dict[str, Any], *, urgent: bool = False) -> None:
        """Queue `patch`; `urgent` (an epoch end, the end) sends it without waiting for the interval."""
        with self._condition:
            self._pending = patch if self._pending is None else merge_patches(self._pending, patch)
            self._urgent = self._urgent or urgent
            self._condition.notify()

    def close(self, timeout: float = REQUEST_TIMEOUT_SECONDS + 5) -> None:
        """Send what is pending, then stop."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    wait = self._last_sent + self._min_interval - time.monotonic()
                    ready = self._pending is not None and (self._urgent or self._closing or wait <= 0)
                    if ready or (self._closing and self._pending is None):
                        break
                    self._condition.wait(timeout=wait if self._pending is not None else None)
                patch, self._pending, self._urgent = self._pending, None, False
                closing = self._closing
            if patch is not None:
                self._send(patch)
            if closing and patch is None:
                return

    def _send(self, patch: dict[str, Any]) -> None:
        try:
            self._api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.name, patch, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
            self.sent += 1
        except Exception as error:  # reporting must never end training; the log says what failed
            self.failed += 1
            self._log(f"status patch of trainingjob {self.namespace}/{self.name} failed: {error}")
        self._last_sent = time.monotonic()
