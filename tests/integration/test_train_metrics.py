"""The trainer's Prometheus endpoint on 127.0.0.1: the contract's names, labelled with the TrainingJob; a port that
is taken costs the endpoint, never the run."""

from __future__ import annotations

import io
import json
import socket
import urllib.request
from pathlib import Path

import pytest
import torch

from modelyard.bento.process import free_port
from modelyard.training.config import RunContext
from modelyard.training.metrics import GAUGES, TrainerMetrics
from modelyard.training.progress import ProgressLog
from modelyard.training.telemetry import Plan, Telemetry

pytestmark = pytest.mark.integration


def test_serves_every_gauge_with_the_jobs_labels() -> None:
    served = TrainerMetrics(namespace="ml", trainingjob="j1", port=free_port(), address="127.0.0.1")
    try:
        served.set(epoch=3, val_accuracy=0.75, images_per_second=None)
        with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        served.close()
    for name in GAUGES:
        assert f'{name}{{namespace="ml",trainingjob="j1"}}' in text
    assert 'modelyard_training_epoch{namespace="ml",trainingjob="j1"} 3.0' in text
    assert 'modelyard_training_val_accuracy{namespace="ml",trainingjob="j1"} 0.75' in text


def test_a_taken_port_is_a_warning_and_training_goes_on(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = RunContext(
            job_name="j1",
            job_namespace="ml",
            checkpoint_dir=tmp_path,
            store_dir=tmp_path,
            metrics_port=port,
            status_reporting=False,
            metrics_address="127.0.0.1",
        )
        stream = io.StringIO()
        log = ProgressLog(stream=stream, tty=False)
        telemetry = Telemetry(log, run, device=torch.device("cpu"), plan=Plan(2, 5, 0))
        telemetry.close()
    [warning] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert warning["event"] == "warning"
    assert f"metrics endpoint off: cannot listen on port {port}" in warning["message"]
