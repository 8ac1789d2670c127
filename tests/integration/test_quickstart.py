"""`modelyard quickstart` end to end, as a user runs it: real dataset, real training, real service, real HTTP."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def quickstart(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MODELYARD_", "BENTOML_HOME"))}
    env.update(BENTOML_DO_NOT_TRACK="true", NO_ALBUMENTATIONS_UPDATE="1", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "quickstart", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def test_quickstart_trains_serves_and_classifies_held_out_digits(tmp_path: Path) -> None:
    result = quickstart(cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    for step in range(1, 6):
        assert f"[{step}/5]" in result.stdout
    # The trainer's progress is shown while it trains.
    assert '"event": "epoch"' in result.stdout
    summary = re.search(
        r"model (quickstart-digits:\w+): accuracy ([\d.]+)% \((\d+)/(\d+) held-out images\); "
        r"latency p50 ([\d.]+) ms, p95 ([\d.]+) ms; ([\d.]+) requests/s",
        result.stdout,
    )
    assert summary, result.stdout[-3000:]
    tag, accuracy, correct, images = summary[1], float(summary[2]), int(summary[3]), int(summary[4])
    assert images >= 100
    assert correct / images == pytest.approx(accuracy / 100, abs=1e-3)
    assert accuracy >= 80
    # Everything it made is in ./quickstart-out: the dataset, the model store with the model it served, the logs.
    out = tmp_path / "quickstart-out"
    name, version = tag.split(":")
    assert (out / "bentoml" / "models" / name / version / "model.pt").is_file()
    assert (out / "data" / "held-out").is_dir()
    assert "Starting production HTTP BentoServer" in (out / "service.log").read_text()
    # Nothing is left running: the port is closed and no process serves it.
    port = int(re.search(r"http://127\.0\.0\.1:(\d+) is ready", result.stdout)[1])  # type: ignore[index]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    leftovers = [
        process.pid
        for process in psutil.process_iter(["cmdline"])
        if "modelyard.bento.service:ImageClassifier" in " ".join(process.info["cmdline"] or [])
        and f"--port {port}" in " ".join(process.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_quickstart_exits_non_zero_and_names_the_failed_step(tmp_path: Path) -> None:
    result = quickstart("--dataset", "no-such-dataset", cwd=tmp_path)
    assert result.returncode == 1
    assert "quickstart failed: writing the dataset failed" in result.stderr
    assert "[2/5]" not in result.stdout
