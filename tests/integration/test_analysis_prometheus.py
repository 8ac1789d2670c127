"""Rollout analysis on real figures: a real Prometheus (Debian's package) scrapes two real Bento services.

Both serve the same stored model. Revision 1's service runs the default batching deadline and answers every request;
revision 2's runs `batching.maxLatencyMs: 10`, so BentoML's adaptive batcher sheds most of a concurrent load with 503
— the misconfigured rollout a ModelDeployment edit can really make. Prometheus labels each target as its pods would
be labelled in a cluster (namespace, modelyard.dev/model-deployment, modelyard.dev/revision). The real operator
analyses each revision after the cluster helper makes it available: revision 1 is kept, revision 2 is rolled back on
its error rate.
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from PIL import Image

from modelyard.api.common import utcnow
from modelyard.api.model_deployment import AnalysisSpec
from modelyard.api.training_job import TrainingJobSpec
from modelyard.bento.process import ServiceProcess, free_port
from modelyard.operator import analysis
from modelyard.operator.rollout import Verdict
from modelyard.training.export import save_to_store
from modelyard.training.model import build_model
from tests.conftest import KubernetesApi, RunOperator
from tests.integration.modeldeployment_support import NAME, NAMESPACE, SPEC, Harness, revisions
from tests.support.prometheus import PrometheusApi, ScrapeJob, running_prometheus
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # Importing bentoml here (to save the model) reaches pathspec's deprecated pattern class; not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*"),
]

SHEDDING_LATENCY_MS = 10
WINDOW_SECONDS = 10
REVISION_JOBS = ("revision-1", "revision-2")


def stored_model(home: Path) -> str:
    """A small, untrained classifier saved by the trainer's own export into a BentoML home; its tag."""
    spec = TrainingJobSpec.model_validate(
        {
            "model": {
                "backbone": "resnet18",
                "pretrained": False,
                "numClasses": 2,
                "hiddenDim": 16,
                "attentionHeads": 2,
            },
            "data": {"path": "/data/none", "imageSize": 32},
            "output": {"modelName": "flowers"},
        }
    )
    torch.manual_seed(0)
    module = build_model(spec.model, load_pretrained=False)
    return save_to_store(
        module,
        spec=spec,
        class_names=["daisy", "tulip"],
        metrics={"valAccuracy": 0.5},
        dataset_digest="sha256:test",
        training_job="default/train-1",
        store=home,
    )


@dataclass(frozen=True)
class Figures:
    prometheus_url: str
    healthy_url: str  # revision 1
    shedding_url: str  # revision 2


@pytest.fixture(scope="module")
def figures(module_workdir: Callable[[str], Path]) -> Iterator[Figures]:
    work = module_workdir("analysis")
    store = work / "store"
    tag = stored_model(store)
    # As in a pod: each service has a BentoML home of its own (BentoML keeps its multiprocess metrics there, and two
    # services sharing one would report each other's answers) with the one model store's models/ in it.
    homes = {name: work / name for name in ("healthy", "shedding")}
    for home in homes.values():
        home.mkdir()
        (home / "models").symlink_to(store / "models", target_is_directory=True)
    base = {"MODELYARD_MODEL_TAG": tag, "MODELYARD_DEVICE": "cpu"}
    healthy = ServiceProcess({**base, "BENTOML_HOME": str(homes["healthy"])}, log=work / "healthy.log")
    shedding = ServiceProcess(
        {**base, "BENTOML_HOME": str(homes["shedding"]), "MODELYARD_MAX_LATENCY_MS": str(SHEDDING_LATENCY_MS)},
        log=work / "shedding.log",
    )
    # What a PodMonitor's podTargetLabels give each revision's pods (see the chart's podmonitors.yaml).
    jobs = [
        ScrapeJob(job, f"{service.host}:{service.port}", _pod_labels(revision))
        for job, revision, service in zip(REVISION_JOBS, (1, 2), (healthy, shedding), strict=True)
    ]
    with healthy, shedding, running_prometheus(work / "prometheus", jobs) as prometheus:
        healthy.wait_ready(180)
        shedding.wait_ready(180)
        yield Figures(prometheus.url, healthy.url, shedding.url)


def _pod_labels(revision: int) -> dict[str, str]:
    return {
        "namespace": NAMESPACE,
        "modelyard_dev_model_deployment": NAME,
        "modelyard_dev_revision": str(revision),
    }


def _png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), (180, 40, 90)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class Traffic:
    """Clients calling POST /predict_base64 of one service at a time, as fast as it answers; codes are counted."""

    def __init__(self) -> None:
        self.payload = json.dumps({"images": [_png()]}).encode()
        self.codes: Counter[tuple[str, int]] = Counter()
        self._target: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(16)
        self._lock = threading.Lock()
        self._futures = [self._pool.submit(self._client, index) for index in range(16)]

    def send_to(self, url: str | None, clients: int = 0) -> None:
        """`clients` of the 16 threads call `url` from now on (0 or None: silence)."""
        with self._lock:
            self._target = (url, clients) if url else None

    def _client(self, index: int) -> None:
        while not self._stop.is_set():
            with self._lock:
                target = self._target
            if target is None or index >= target[1]:
                time.sleep(0.05)
                continue
            request = urllib.request.Request(
                f"{target[0]}/predict_base64", data=self.payload, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    code = response.status
            except urllib.error.HTTPError as error:
                code = error.code
            with self._lock:
                self.codes[(target[0], code)] += 1
            time.sleep(0.05)

    def answered(self, url: str) -> int:
        with self._lock:
            return sum(count for (target, _), count in self.codes.items() if target == url)

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)
        for future in self._futures:
            future.result()


def test_healthy_revision_is_kept_and_shedding_revision_is_rolled_back_on_its_figures(
    figures: Figures, k8s_api: KubernetesApi, run_operator: RunOperator
) -> None:
    harness = Harness(k8s_api, run_operator)
    spec = {
        **SPEC,
        "rollout": {
            **SPEC["rollout"],
            "analysis": {
                "prometheusURL": figures.prometheus_url,
                "windowSeconds": WINDOW_SECONDS,
                "maxErrorRate": 0.05,
                "minRequests": 20,
            },
        },
    }
    traffic = Traffic()
    try:
        with harness.operator():
            traffic.send_to(figures.healthy_url, clients=2)
            harness.create(spec)
            eventually(harness.deployment, what="the Deployment")
            harness.cluster.deployment_available(NAMESPACE, NAME)
            status = harness.wait_status(
                lambda s: s.get("phase") == "Progressing", "analysis of revision 1 under way", timeout=10
            )
            status = harness.wait_status(lambda s: s.get("stableRevision") == 1, "revision 1 passed", timeout=60)
            kept = status["revisions"][0]
            # /readyz answered 503 during warm-up: probes are no traffic, so the error rate is nil.
            assert kept["message"].startswith("error rate 0.0% (0 of "), kept
            assert status["phase"] == "Ready"

            harness.patch_spec({"batching": {"maxLatencyMs": SHEDDING_LATENCY_MS}})
            eventually(lambda: harness.served_env("MODELYARD_MAX_LATENCY_MS") == "10", what="revision 2 applied")
            traffic.send_to(figures.shedding_url, clients=16)
            harness.cluster.deployment_available(NAMESPACE, NAME)

            status = harness.wait_status(lambda s: s.get("phase") == "RolledBack", "rolled back", timeout=60)
            traffic.send_to(figures.healthy_url, clients=2)
            rollback = status["lastRollback"]
            assert rollback["reason"] == "AnalysisFailed"
            assert "> max error rate 5.0%" in rollback["message"]
            assert {number: outcome for number, (_, outcome) in revisions(status).items()} == {1: "Stable", 2: "Failed"}
            eventually(lambda: harness.served_env("MODELYARD_MAX_LATENCY_MS") == "10000", what="revision 1 restored")
            assert eventually(harness.rollbacks_counted) == {"AnalysisFailed": 1.0}
    finally:
        traffic.close()
    # The figures came from real answers: the shedding service did answer 503s, the healthy one never failed.
    assert traffic.codes[(figures.shedding_url, 503)] > 0
    assert not [code for (url, code) in traffic.codes if url == figures.healthy_url and code != 200]


def test_analysis_judges_a_revision_on_its_own_series(figures: Figures) -> None:
    # A window longer than the test: every answer since `started` counts.
    spec = AnalysisSpec.model_validate(
        {"prometheusURL": figures.prometheus_url, "windowSeconds": 120, "minRequests": 10}
    )
    prometheus = PrometheusApi(figures.prometheus_url)
    shedding, healthy = analysis.selector(_pod_labels(2)), analysis.selector(_pod_labels(1))
    started = utcnow()
    # increase() reads only samples inside the window: one scrape of each before the traffic is its baseline.
    prometheus.wait_scraped(REVISION_JOBS)
    traffic = Traffic()
    try:
        # Load until Prometheus holds enough of it for a verdict: on two busy cores a scrape can time out.
        traffic.send_to(figures.shedding_url, clients=16)
        eventually(
            lambda: analysis.analyse(spec, shedding, started, utcnow()).verdict is Verdict.FAILED,
            what="revision 2's 503s in Prometheus",
            timeout=90,
        )
        traffic.send_to(figures.healthy_url, clients=2)
        eventually(
            lambda: analysis.analyse(spec, healthy, started, utcnow()).reason == "AnalysisRunning",
            what="enough of revision 1's answers in Prometheus",
            timeout=90,
        )
    finally:
        traffic.close()
    assert traffic.codes[(figures.shedding_url, 503)] > 0
    # The same Prometheus, the same moment: revision 1's own series hold none of revision 2's 503s.
    now = utcnow()
    shed = analysis.analyse(spec, shedding, started, now)
    assert shed.verdict is Verdict.FAILED, shed
    assert shed.reason == "AnalysisFailed"
    assert "> max error rate" in shed.message, shed
    kept = analysis.analyse(spec, healthy, started, now)
    assert kept.verdict is Verdict.PENDING, kept  # fine so far, but the window is not over yet
    assert kept.message.startswith("so far error rate 0.0%"), kept
    with pytest.raises(analysis.PrometheusError, match=r"refused.*parse error"):
        analysis.PrometheusClient(figures.prometheus_url).scalar("sum(", now)


def test_unreachable_prometheus_neither_passes_nor_fails() -> None:
    spec = AnalysisSpec.model_validate({"prometheusURL": f"http://127.0.0.1:{free_port()}"})
    now = utcnow()
    result = analysis.analyse(spec, 'namespace="ml"', now - timedelta(minutes=5), now)
    assert result.verdict is Verdict.PENDING
    assert result.reason == "PrometheusUnavailable"
