"""The serving benchmark (bench/serving.py) end to end on a tiny load against the real service with two workers: every
phase runs and is answered without errors, and the figures it writes hold what the load implies. No timing is asserted
(speed is the benchmark's business, and its figures mean nothing on a busy CI machine). The GPU machine's sessions
depend on this script working the first time: a device call is too scarce to find a broken benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.bench import run_bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_phase_is_answered_and_reports_its_connections(tmp_path: Path) -> None:
    figures_path = tmp_path / "figures.json"
    printed = run_bench(
        "serving.py", "--image-size", "32", "--requests", "24", "--clients", "2", "--images-per-request", "2",
        "--workers", "2", "--more-clients", "4", "--more-multi-clients", "4", "--rates", "12", "--deadline", "30",
        "--json", str(figures_path),
    )  # fmt: skip
    assert "conns/worker: busiest, mean" in printed

    figures = json.loads(figures_path.read_text())
    phases = {phase["name"]: phase for phase in figures["phases"]}
    assert list(phases) == [
        "direct, 1 image per call",
        "direct, 2 images per call",
        "service, 1 client",
        "service, 2 concurrent clients",
        "service, 2 concurrent clients, 2 images per request",
        "service, 4 concurrent clients",
        "service, 4 concurrent clients, 2 images per request",
        "service, 12 req/s offered over 2 connections",
    ]
    for name, phase in phases.items():
        assert phase["errors"] == 0, (name, phase["error_kinds"])
        assert phase["calls"] > 0, name
        assert phase["reconnects"] == 0, name  # the service keeps every keep-alive connection open
    assert phases["service, 4 concurrent clients, 2 images per request"]["requests"] == 2 * 12  # images, 12 requests
    # The open loop paces 24 requests over 2 s on 2 connections, so the sampler sees them, held by the 2 workers.
    open_loop = phases["service, 12 req/s offered over 2 connections"]
    assert 0 < open_loop["connections_mean"] <= open_loop["connections_busiest"] <= 2
    assert open_loop["connections_mean"] <= 1  # 2 connections over 2 workers
