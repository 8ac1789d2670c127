"""The operator burst benchmark (bench/operator_burst.py) on a tiny burst: it runs end to end, and every TrainingJob it
created is reconciled: the API server holds, for each, its Job and a status naming it. No timing is asserted (speed
is the benchmark's business, and its figures mean nothing on a busy CI machine)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import kmock
import kubernetes
import pytest

from bench import operator_burst
from tests.conftest import KubernetesApi
from tests.support.clients import CustomObjects

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = operator_burst.Config(count=6, concurrency=3, steady_count=3, steady_rate=10.0, timeout=120.0)


def test_every_trainingjob_of_the_burst_and_the_steady_creates_is_reconciled(
    k8s_api: KubernetesApi, tmp_path: Path
) -> None:
    figures = operator_burst.measure_operator(k8s_api.running, TINY, tmp_path / "operator.log")

    trainingjobs = CustomObjects(k8s_api.client, "trainingjobs").list(operator_burst.NAMESPACE)
    listed = kubernetes.client.BatchV1Api(k8s_api.client).list_namespaced_job(operator_burst.NAMESPACE)
    jobs = k8s_api.client.sanitize_for_serialization(listed)["items"]  # type: ignore[no-untyped-call]
    owners = {job["metadata"]["name"]: [ref["uid"] for ref in job["metadata"]["ownerReferences"]] for job in jobs}
    expected = [f"tj-burst-{i:05d}" for i in range(TINY.count)] + [f"tj-steady-{i:05d}" for i in range(3)]
    assert sorted(tj["metadata"]["name"] for tj in trainingjobs) == expected
    for tj in trainingjobs:
        name, status = tj["metadata"]["name"], tj.get("status") or {}
        assert (status.get("phase"), status.get("jobName")) == ("Pending", name), name
        assert owners.get(name) == [tj["metadata"]["uid"]], f"{name} has no Job it owns"
    # Once per TrainingJob, however the watch events interleave: the spec ConfigMap read (a second one would be the
    # create handler running again), the Job created and the status written (the echoes of our writes sync nothing).
    once = dict.fromkeys(expected, 1)
    requests = list(k8s_api.emulator)
    spec_reads = [r.url.path.rpartition("/")[2].removesuffix("-spec") for r in requests if _is(r, "GET", "configmaps")]
    job_creates = [r.data["metadata"]["name"] for r in requests if _is(r, "POST", "jobs")]
    status_writes = [r.url.path.split("/")[-2] for r in requests if _is(r, "PATCH", "trainingjobs") and r.subresource]
    assert (Counter(spec_reads), Counter(job_creates), Counter(status_writes)) == (once, once, once)
    assert (figures.phase.burst_arrived, figures.phase.steady_arrived) == (TINY.count, TINY.steady_count)
    assert figures.peak_rss_bytes > 20 * 2**20  # a live Python process with kopf loaded, read from /proc
    assert figures.phase.operator_cpu_seconds > 0


def _is(request: kmock.Request, method: str, plural: str) -> bool:
    return bool(request.method == method and request.resource and request.resource.plural == plural)


def test_the_command_prints_the_table_and_writes_the_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures_path = tmp_path / "figures.json"
    arguments = ["-n", "4", "--concurrency", "2", "--steady-count", "2", "--steady-rate", "10"]
    assert operator_burst.main([*arguments, "--json", str(figures_path)]) == 0

    figures = json.loads(figures_path.read_text())
    for phase in (figures["emulator_alone"], figures["operator"]["phase"]):
        assert (phase["burst_arrived"], phase["steady_arrived"]) == (4, 2)
    table = capsys.readouterr().out
    assert "| burst of 4: all done in" in table
    assert "| arrived / reconciled" in table
    assert "6/6" in table.split("| arrived / reconciled")[1].splitlines()[0]
