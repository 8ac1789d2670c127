"""A real Prometheus (Debian's package) on 127.0.0.1 for the tests, and the two HTTP API calls they make."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from modelyard.bento.process import free_port


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job of static targets; `honor_labels` keeps the labels the metrics carry themselves (as the chart's
    monitors do for the operator and the trainer)."""

    name: str
    target: str
    labels: Mapping[str, str]
    honor_labels: bool = False


class PrometheusApi:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str | float | Sequence[str]) -> Any:
        """GET an API path; returns `data`, raises AssertionError with Prometheus's error otherwise."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query_range", query=expr, start=start, end=end, step=step)
        result: list[dict[str, Any]] = data["result"]
        return result

    def last_scrapes(self) -> dict[str, tuple[float, bool]]:
        """Each job's last scrape: when it began (epoch seconds) and whether it succeeded."""
        active = self.get("/api/v1/targets")["activeTargets"]
        return {
            t["labels"]["job"]: (datetime.fromisoformat(t["lastScrape"]).timestamp(), t["health"] == "up")
            for t in active
        }

    def wait_scraped(self, jobs: Collection[str], timeout: float = 60, scrapes: int = 1) -> None:
        """Wait until each of `jobs` has answered `scrapes` scrapes in a row since this call. A fixed sleep is not
        enough: on a loaded machine a scrape can time out (the timeout is the 1 s interval), and then what was sent is
        not counted yet. Two in a row give every series two samples a scrape interval apart, which rate() needs."""
        moment = time.time()
        deadline = time.monotonic() + timeout
        seen: dict[str, list[float]] = {job: [] for job in jobs}
        while time.monotonic() < deadline:
            for job, (began, up) in self.last_scrapes().items():
                if job not in seen or began <= moment or began in seen[job]:
                    continue
                seen[job] = [*seen[job], began] if up else []
            if all(len(times) >= scrapes for times in seen.values()):
                return
            time.sleep(0.2)
        short = sorted(job for job, times in seen.items() if len(times) < scrapes)
        raise AssertionError(f"Prometheus scraped no {scrapes} answers in a row from {short} within {timeout}s")

    def scrape_health(self, start: float, end: float) -> dict[str, str]:
        """Each job's successful and attempted scrapes between `start` and `end`, for a failure's message."""
        span = f"{max(1, int(end - start))}s"
        attempted = self.get("/api/v1/query", query=f"count_over_time(up[{span}])", time=end)["result"]
        succeeded = {
            r["metric"]["job"]: r["value"][1]
            for r in self.get("/api/v1/query", query=f"sum_over_time(up[{span}])", time=end)["result"]
        }
        return {r["metric"]["job"]: f"{succeeded.get(r['metric']['job'])}/{r['value'][1]}" for r in attempted}


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"prometheus at {url} was not ready within {timeout}s")


@contextmanager
def running_prometheus(work: Path, jobs: Sequence[ScrapeJob], scrape_seconds: int = 1) -> Iterator[PrometheusApi]:
    """Prometheus scraping `jobs` every `scrape_seconds`, its data and log under `work`; stopped on exit."""
    binary = shutil.which("prometheus")
    assert binary, "Prometheus is needed: apt-get install prometheus (Debian's package, with promtool)"
    interval = f"{scrape_seconds}s"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": job.name,
                "honor_labels": job.honor_labels,
                "static_configs": [{"targets": [job.target], "labels": dict(job.labels)}],
            }
            for job in jobs
        ],
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    command = [
        binary,
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'tsdb'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--log.level=warn",
    ]
    with (work / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(url, process, 30)
            yield PrometheusApi(url)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
