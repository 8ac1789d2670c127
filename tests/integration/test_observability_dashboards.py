"""Every panel query of every dashboard, evaluated by a real Prometheus over figures from the real parts.

Prometheus (Debian's package) on 127.0.0.1 scrapes, all at once: a real trainer (`modelyard train` on a slice of the
bundled digits) while it trains; the real operator while it reconciles a TrainingJob and a ModelDeployment against
the API emulator, the ModelDeployment rolled out and then rolled back; and the real Bento service under a bounded load
of real and broken digit images. The service serves the same recipe's untrained model, saved by the trainer's own
export before the run: serving the trained one would wait for training and double the test's time. Each target is
labelled as the chart's monitors label it in a cluster. The dashboard variables are resolved the way Grafana does
(label_values over the series), then every panel target is run as a range query over the test's span: an error or an
empty answer fails the test.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import math
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from modelyard.api import TrainingJobSpec
from modelyard.bento.process import ServiceProcess, free_port
from modelyard.training.datasets import WrittenDataset
from modelyard.training.export import save_to_store
from modelyard.training.model import build_model
from tests.conftest import KubernetesApi, RunOperator
from tests.integration.modeldeployment_support import NAME, NAMESPACE, Harness, stable_on
from tests.integration.train_support import digits, parse_events, subset, train_command, trainer_env, write_config
from tests.support.clients import CustomObjects
from tests.support.observability import BOARDS, expressions, histogram_base, metric_names, panels
from tests.support.prometheus import PrometheusApi, ScrapeJob, running_prometheus
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # Importing bentoml here (to save the model) reaches pathspec's deprecated pattern class; not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*"),
]

TRAININGJOB = "digits"
# What Grafana substitutes for $__rate_interval on a dashboard a few minutes wide with 1 s scrapes, with room to spare
# for scrapes a busy machine delays.
RATE_INTERVAL = "15s"
STEP_SECONDS = 2
GOOD_REQUESTS = 48
BROKEN_REQUESTS = 4
# Requests sent (and scraped) before the load, so that every serving series exists before it moves: a series first
# scraped only after the load has one sample in the span, and rate() over one sample is empty.
PRIMING_GOOD, PRIMING_BROKEN = 2, 1


def trainingjob_for_the_operator() -> dict[str, Any]:
    """The TrainingJob the operator reconciles in the emulator (the trainer itself runs here, on local paths)."""
    return {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": TRAININGJOB},
        "spec": {
            "model": {"backbone": "resnet18", "pretrained": False, "numClasses": 10},
            "data": {"pvc": {"claimName": "datasets"}, "path": "/data/digits"},
            "output": {"modelName": "digits", "pvc": {"claimName": "model-store"}},
            "resources": {"gpusPerNode": 0, "cpu": "2", "memory": "4Gi"},
        },
    }


def saved_model(config: Path, dataset: WrittenDataset, home: Path) -> str:
    """The recipe's model, untrained, saved into the BentoML home `home` by the trainer's export; its tag."""
    spec = TrainingJobSpec.model_validate(yaml.safe_load(config.read_text())["spec"])
    return save_to_store(
        build_model(spec.model, load_pretrained=False),
        spec=spec,
        class_names=dataset.class_names,
        metrics={"valAccuracy": 0.1},
        dataset_digest="sha256:untrained",
        training_job=f"{NAMESPACE}/{TRAININGJOB}",
        store=home,
    )


def play_the_operators_part(harness: Harness, api: KubernetesApi) -> None:
    """A TrainingJob that runs, and a ModelDeployment that becomes stable, then rolls back a stuck revision."""
    CustomObjects(api.client, "trainingjobs").create(NAMESPACE, trainingjob_for_the_operator())
    batch = kubernetes.client.BatchV1Api(api.client)
    eventually(lambda: batch.read_namespaced_job(TRAININGJOB, NAMESPACE), what="the training Job")
    harness.cluster.job_running(NAMESPACE, TRAININGJOB)
    with stable_on(harness):
        harness.patch_spec({"model": {"name": "flowers", "tag": "v2"}})
        eventually(lambda: harness.served_tag() == "flowers:v2", what="revision 2 applied")
        harness.cluster.deployment_stuck(NAMESPACE, NAME, ready=0)
        harness.wait_status(lambda s: s.get("phase") == "RolledBack", "rolled back")
        harness.cluster.deployment_available(NAMESPACE, NAME)


def send_load(url: str, images: list[Path], good_requests: int, broken_requests: int) -> Counter[int]:
    """A bounded load: `good_requests` real digits over three clients, then `broken_requests` that are no image."""

    def call(payload: bytes) -> int:
        request = urllib.request.Request(
            f"{url}/predict_base64", data=payload, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    good = [
        json.dumps({"images": [base64.b64encode(images[i % len(images)].read_bytes()).decode()]}).encode()
        for i in range(good_requests)
    ]
    broken = [json.dumps({"images": [base64.b64encode(b"not an image").decode()]}).encode()] * broken_requests
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        codes = Counter(pool.map(call, good))
    codes.update(call(payload) for payload in broken)
    return codes


def resolve_variables(board: dict[str, Any], api: PrometheusApi, start: float, end: float) -> dict[str, str]:
    """Each query variable's first value, as Grafana would list it: label_values(<selector>, <label>) over the span,
    earlier variables substituted into later ones. A variable with no value fails the test."""
    chosen: dict[str, str] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = substitute(variable["query"]["query"], chosen, "1m", start, end)
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, query
        series = api.get("/api/v1/series", **{"match[]": match[1], "start": start, "end": end})
        values = sorted({s[match[2]] for s in series if match[2] in s})
        assert values, f"{board['title']}: variable {variable['name']} has no value ({query})"
        chosen[variable["name"]] = values[0]
    return chosen


def substitute(expr: str, variables: dict[str, str], rate_interval: str, start: float, end: float) -> str:
    builtins = {"__rate_interval": rate_interval, "__range": f"{int(end - start)}s"}
    names = sorted({**variables, **builtins}.items(), key=lambda item: -len(item[0]))
    for name, value in names:
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return expr


def test_every_panel_query_of_every_dashboard_returns_data(
    k8s_api: KubernetesApi, run_operator: RunOperator, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dataset = digits(tmp_path_factory.getbasetemp())
    # A slice of the digits and a few steps: enough for every training figure to move, quick on two cores.
    train_dir = subset(dataset.train, tmp_path / "train", per_class=12)
    config = write_config(
        tmp_path / "trainingjob.yaml",
        train_dir,
        tmp_path / "work",
        training={"epochs": 2, "maxStepsPerEpoch": 2, "batchSize": 16, "logEverySteps": 1},
    )
    tag = saved_model(config, dataset, tmp_path / "serving-store")
    harness = Harness(k8s_api, run_operator)
    trainer_port = free_port()
    service = ServiceProcess(
        {"BENTOML_HOME": str(tmp_path / "serving-store"), "MODELYARD_MODEL_TAG": tag, "MODELYARD_DEVICE": "cpu"},
        log=tmp_path / "bento.log",
    )
    jobs = [
        ScrapeJob("modelyard-operator", f"127.0.0.1:{harness.metrics_port}", {}, honor_labels=True),
        ScrapeJob("modelyard-trainer", f"127.0.0.1:{trainer_port}", {}, honor_labels=True),
        # What the chart's serving PodMonitor (podTargetLabels) gives a Bento pod of revision 1 of NAME.
        ScrapeJob(
            "modelyard-serving",
            f"{service.host}:{service.port}",
            {"namespace": NAMESPACE, "modelyard_dev_model_deployment": NAME, "modelyard_dev_revision": "1"},
        ),
    ]
    env = trainer_env(
        MODELYARD_METRICS_PORT=str(trainer_port),
        MODELYARD_TRAININGJOB_NAME=TRAININGJOB,
        MODELYARD_TRAININGJOB_NAMESPACE=NAMESPACE,
    )
    trainer_log = tmp_path / "trainer.log"
    # The slow starters (service, trainer) go first; the operator starts while they load their models.
    with (
        running_prometheus(tmp_path / "prometheus", jobs) as prometheus,
        service,
        trainer_log.open("w") as trainer_errors,
    ):
        start = time.time()
        trainer = subprocess.Popen(
            train_command(config), env=env, stdout=subprocess.PIPE, stderr=trainer_errors, text=True
        )
        try:
            with harness.operator():
                play_the_operators_part(harness, k8s_api)
                service.wait_ready(240)
                held_out = sorted(dataset.held_out.glob("*/*.png"))[:: max(1, dataset.held_out_images // 24)]
                codes = send_load(service.url, held_out, PRIMING_GOOD, PRIMING_BROKEN)
                prometheus.wait_scraped({"modelyard-serving"})
                codes += send_load(service.url, held_out, GOOD_REQUESTS, BROKEN_REQUESTS)
                output, _ = trainer.communicate(timeout=300)
                # The last requests and the operator's last figures are counted once each is scraped again; twice in
                # a row, so that a series first seen late (scrapes timed out or stalled during the load) still has
                # the two samples rate() needs.
                prometheus.wait_scraped({"modelyard-operator", "modelyard-serving"}, scrapes=2)
                end = time.time()
        finally:
            if trainer.poll() is None:
                trainer.kill()
                trainer.wait()
        assert trainer.returncode == 0, trainer_log.read_text()[-3000:]
        assert [event["event"] for event in parse_events(output)][-1] == "model_saved", output[-3000:]
        assert codes == {200: PRIMING_GOOD + GOOD_REQUESTS, 400: PRIMING_BROKEN + BROKEN_REQUESTS}

        # Whole steps back from `end`, so that the last evaluation falls on `end`, after those last scrapes.
        start = end - STEP_SECONDS * math.ceil((end - start) / STEP_SECONDS)
        empty: list[str] = []
        chosen: dict[str, dict[str, str]] = {}
        for name, board in BOARDS.items():
            variables = chosen[name] = resolve_variables(board, prometheus, start, end)
            for panel in panels(board):
                for target in panel["targets"]:
                    expr = substitute(target["expr"], variables, RATE_INTERVAL, start, end)
                    result = prometheus.query_range(expr, start, end, STEP_SECONDS)  # an error raises here
                    if not result:
                        empty.append(f"{board['title']} / {panel['title']}: {expr}")
        health = prometheus.scrape_health(start, end)
        assert empty == [], "panels without data:\n" + "\n".join(empty) + f"\nscrapes succeeded/attempted: {health}"

        # Every metric the dashboards read was exposed by a real part (metadata comes from what was scraped; counters
        # are listed under their family name, without _total).
        exposed = {name for family in prometheus.get("/api/v1/metadata") for name in (family, f"{family}_total")}
        used = {
            histogram_base(m) for board in BOARDS.values() for expr in expressions(board) for m in metric_names(expr)
        }
        assert used - exposed == set()
        # The variables found the parts this test ran, not leftovers.
        assert chosen["serving.json"] == {"namespace": NAMESPACE, "modeldeployment": NAME, "model_tag": tag}
        assert chosen["training.json"] == {"namespace": NAMESPACE, "trainingjob": TRAININGJOB}
