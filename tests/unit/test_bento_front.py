"""The service's settings, metrics and request guard, without a server: a real Starlette app behind the guard."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelyard.api.training_job import Precision
from modelyard.bento.inputs import InputLimits, RejectReason
from modelyard.bento.metrics import ServiceMetrics, batch_size_buckets
from modelyard.bento.middleware import RequestGuard
from modelyard.bento.runtime import Readiness
from modelyard.bento.settings import (
    Batching,
    Device,
    ServiceSettings,
    access_log_from_env,
    cpu_budget,
    default_workers,
    limits_from_env,
    memory_budget,
    prediction_tracing,
)

pytestmark = pytest.mark.unit


def test_settings_come_from_the_pods_environment() -> None:
    settings = ServiceSettings.from_env(
        {
            "MODELYARD_MODEL_TAG": "digits:v1",
            "MODELYARD_DEVICE": "CUDA",
            "MODELYARD_MAX_BATCH_SIZE": "8",
            "MODELYARD_MAX_LATENCY_MS": "2500",
            "MODELYARD_TOP_K": "3",
            "MODELYARD_MAX_IMAGE_PIXELS": "1000",
            "MODELYARD_PRECISION": "BF16",
            "MODELYARD_WORKERS": "4",
            "MODELYARD_CUDA_GRAPHS": "Off",
        }
    )
    assert settings.model_tag == "digits:v1"
    assert settings.device is Device.CUDA
    assert settings.precision is Precision.BF16
    assert settings.workers == 4
    assert settings.cuda_graphs is False
    assert settings.batching == Batching(max_batch_size=8, max_latency_ms=2500)
    assert settings.top_k == 3
    assert settings.limits.max_image_pixels == 1000
    assert settings.limits.max_image_bytes == InputLimits().max_image_bytes


def test_defaults_are_the_model_deployments() -> None:
    settings = ServiceSettings.from_env({"MODELYARD_MODEL_TAG": "digits:v1", "MODELYARD_DEVICE": "cpu"})
    # The ModelDeployment's BatchingSpec defaults: a deadline generous enough not to shed load on a small CPU.
    assert settings.batching == Batching(max_batch_size=32, max_latency_ms=10_000)
    assert settings.precision is Precision.AUTO  # bf16 on a GPU that has it, fp32 on a CPU
    assert settings.workers == 1  # auto, on a CPU
    assert settings.cuda_graphs is True  # used only on a GPU


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MODELYARD_MODEL_TAG is not set"),
        ({"MODELYARD_MODEL_TAG": "m:v", "MODELYARD_DEVICE": "tpu"}, "MODELYARD_DEVICE='tpu' must be one of auto, cpu"),
        ({"MODELYARD_MODEL_TAG": "m:v", "MODELYARD_MAX_BATCH_SIZE": "1"}, "must be between 2 and 4096"),
        ({"MODELYARD_MODEL_TAG": "m:v", "MODELYARD_MAX_LATENCY_MS": "soon"}, "'soon' is not an integer"),
        ({"MODELYARD_MODEL_TAG": "m:v", "MODELYARD_TOP_K": "0"}, "MODELYARD_TOP_K='0' must be at least 1"),
        ({"MODELYARD_MODEL_TAG": "m:v", "MODELYARD_MAX_REQUEST_BYTES": "-5"}, "must be at least 1"),
        ({"MODELYARD_MODEL_TAG": "m:v", "MODELYARD_PRECISION": "int8"}, "MODELYARD_PRECISION='int8' must be one of"),
        ({"MODELYARD_MODEL_TAG": "m:v", "MODELYARD_WORKERS": "0"}, "MODELYARD_WORKERS='0' must be between 1 and 64"),
        ({"MODELYARD_MODEL_TAG": "m:v", "MODELYARD_CUDA_GRAPHS": "maybe"}, "MODELYARD_CUDA_GRAPHS='maybe' must be on"),
    ],
)
def test_a_wrong_setting_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceSettings.from_env(env)


GIB = 1 << 30


@pytest.mark.parametrize(
    ("device", "cpus", "gpu_memory", "expected"),
    [
        (Device.CPU, 16, 141 * GIB, 1),  # a CPU model uses every core in one worker
        (Device.AUTO, 16, None, 1),  # no GPU found
        (Device.CUDA, 16, 141 * GIB, 15),  # the H200 machine of bench/RESULTS.md: one core left
        (Device.CUDA, 64, 141 * GIB, 16),  # at most 16
        (Device.AUTO, 4, 24 * GIB, 3),  # one per CPU less one
        (Device.CUDA, 32, 8 * GIB, 2),  # one per 3 GiB of GPU memory
        (Device.CUDA, 1, 80 * GIB, 1),  # never none
    ],
)
def test_auto_workers_follow_the_cpus_and_the_gpu(
    device: Device, cpus: int, gpu_memory: int | None, expected: int
) -> None:
    assert default_workers(device, cpus, gpu_memory) == expected


def test_auto_workers_fit_the_pods_memory_limit() -> None:
    assert default_workers(Device.CUDA, 16, 141 * GIB, 2 * GIB) == 1  # the ModelDeployment's default 2Gi
    assert default_workers(Device.CUDA, 16, 141 * GIB, 7 * GIB) == 3
    assert default_workers(Device.CUDA, 16, 141 * GIB, 64 * GIB) == 15


def test_predictions_leave_tracing_only_when_no_exporter_would_receive_the_spans() -> None:
    routes = ["/predict", "/predict_base64"]
    assert prediction_tracing(None, routes) == {"excluded_urls": routes}
    assert prediction_tracing("otlp", routes) == {}  # the user's tracing config stays as it is


@pytest.mark.parametrize(
    ("env", "expected"), [({}, False), ({"MODELYARD_ACCESS_LOG": "On"}, True), ({"MODELYARD_ACCESS_LOG": "0"}, False)]
)
def test_the_access_log_is_off_unless_asked_for(env: dict[str, str], expected: bool) -> None:
    assert access_log_from_env(env) is expected


def test_a_wrong_access_log_switch_names_the_variable() -> None:
    with pytest.raises(ValueError, match="MODELYARD_ACCESS_LOG='sometimes' must be on or off"):
        access_log_from_env({"MODELYARD_ACCESS_LOG": "sometimes"})


@pytest.mark.parametrize(("content", "expected"), [("max\n", None), ("2147483648\n", 2 * GIB), (None, None)])
def test_the_memory_budget_is_the_cgroups_limit(tmp_path: Path, content: str | None, expected: int | None) -> None:
    path = tmp_path / "memory.max"
    if content is not None:
        path.write_text(content)
    assert memory_budget(path) == expected


def test_an_explicit_worker_count_wins_over_auto() -> None:
    env = {"MODELYARD_MODEL_TAG": "m:v", "MODELYARD_DEVICE": "cuda"}
    assert ServiceSettings.from_env({**env, "MODELYARD_WORKERS": "3"}).workers == 3
    assert ServiceSettings.from_env({**env, "MODELYARD_DEVICE": "cpu", "MODELYARD_WORKERS": "AUTO"}).workers == 1


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1), ("garbage", None), (None, None)],
)
def test_the_cpu_budget_follows_the_pods_cpu_limit(tmp_path: Path, cpu_max: str | None, expected: int | None) -> None:
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    cpus = len(os.sched_getaffinity(0))
    assert cpu_budget(path) == (cpus if expected is None else min(cpus, expected))


def test_limits_from_env_keep_unset_defaults() -> None:
    limits = limits_from_env({"MODELYARD_MAX_IMAGES_PER_REQUEST": " 3 "})
    assert limits == InputLimits(max_images_per_request=3)


def test_metrics_have_the_contract_names_and_start_at_zero() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(max_batch_size=32, registry=registry)
    assert registry.get_sample_value("modelyard_ready") == 0
    assert registry.get_sample_value("modelyard_rejected_inputs_total", {"reason": "corrupt_image"}) == 0
    metrics.reject(RejectReason.CORRUPT)
    metrics.reject(RejectReason.NOT_READY)  # the service's state, not the input's fault: not counted
    metrics.serving("digits:v1")
    metrics.predicted("digits:v1", ["3", "3", "7"], batch_size=3)
    assert registry.get_sample_value("modelyard_rejected_inputs_total", {"reason": "corrupt_image"}) == 1
    assert registry.get_sample_value("modelyard_rejected_inputs_total", {"reason": "not_ready"}) is None
    assert registry.get_sample_value("modelyard_ready") == 1
    assert registry.get_sample_value("modelyard_model_info", {"model_tag": "digits:v1", "model_name": "digits"}) == 1
    assert registry.get_sample_value("modelyard_predictions_total", {"model_tag": "digits:v1", "class_name": "3"}) == 2
    assert registry.get_sample_value("modelyard_batch_size_bucket", {"le": "2.0"}) == 0
    assert registry.get_sample_value("modelyard_batch_size_bucket", {"le": "4.0"}) == 1
    assert batch_size_buckets(32) == [1, 2, 4, 8, 16, 32]
    assert batch_size_buckets(48) == [1, 2, 4, 8, 16, 32, 48]


async def _downstream(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"received": len(body), "type": request.headers.get("content-type", "")})


class Front:
    """The guard in front of a Starlette app that reports what reached it."""

    def __init__(self, limits: InputLimits, ready: bool = True) -> None:
        self.readiness = Readiness()
        self.readiness.set(ready, "serving m:v" if ready else "model m:v is not in the model store yet")
        self.rejected: list[RejectReason] = []
        app = Starlette(routes=[Route(path, _downstream, methods=["POST"]) for path in ("/predict", "/b64", "/x")])
        self.app = RequestGuard(
            app,
            routes={"/predict": "multipart/form-data", "/b64": "application/json"},
            file_field="images",
            limits=limits,
            readiness=self.readiness,
            count_rejection=self.rejected.append,
        )

    def call(self, method: str, path: str, **request: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                return await client.request(method, path, **request)

        return asyncio.run(send())


def test_readyz_says_why_it_is_not_ready() -> None:
    front = Front(InputLimits(), ready=False)
    answer = front.call("GET", "/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"ready": False, "reason": "model m:v is not in the model store yet"}
    refused = front.call("POST", "/predict", files={"images": ("a.png", b"png")})
    assert refused.status_code == 503
    assert refused.json()["detail"][0] == {
        "type": "not_ready",
        "loc": [],
        "msg": "the model is not ready: model m:v is not in the model store yet",
    }
    front.readiness.set(True, "serving m:v")
    assert front.call("GET", "/readyz").json() == {"ready": True, "reason": "serving m:v"}
    assert front.rejected == []


def test_accepted_requests_reach_the_app_with_their_whole_body() -> None:
    front = Front(InputLimits())
    answer = front.call("POST", "/predict", files=[("images", ("a.png", b"x" * 70_000)), ("images", ("b.png", b"y"))])
    assert answer.status_code == 200
    assert answer.json()["received"] > 70_000
    assert answer.json()["type"].startswith("multipart/form-data; boundary=")
    assert front.call("POST", "/b64", json={"images": ["eA=="]}).json()["received"] == len(b'{"images":["eA=="]}')
    # Routes it does not guard pass untouched, whatever they are sent.
    assert front.call("POST", "/x", content=b"anything").json() == {"received": 8, "type": ""}


@pytest.mark.parametrize(
    ("path", "request_", "status", "reason", "message"),
    [
        ("/predict", {"json": {"images": []}}, 415, "unsupported_media_type", "not application/json"),
        ("/b64", {"files": {"images": ("a", b"1")}}, 415, "unsupported_media_type", "send application/json"),
        (
            "/b64",
            {"content": b"x" * 2000, "headers": {"content-type": "application/json"}},
            413,
            "request_too_large",
            "exceeds the limit of 1000 bytes",
        ),
        (
            "/predict",
            {"data": {"images": "http://192.0.2.1/a.png"}, "files": {"images": ("a", b"1")}},
            400,
            "not_a_file",
            "must be a file upload (with a filename), not text",
        ),
        (
            "/predict",
            {"files": [("images", ("a", b"1")), ("caption", ("b", b"2"))]},
            400,
            "malformed_request",
            "unexpected form field 'caption'",
        ),
    ],
    ids=["json-to-multipart", "multipart-to-json", "too-large", "text-part", "other-field"],
)
def test_requests_the_guard_refuses(
    path: str, request_: dict[str, Any], status: int, reason: str, message: str
) -> None:
    front = Front(InputLimits(max_request_bytes=1000))
    answer = front.call("POST", path, **request_)
    assert answer.status_code == status
    detail = answer.json()["detail"][0]
    assert detail["type"] == reason
    assert message in detail["msg"]
    assert answer.json()["error"] == detail["msg"]
    assert front.rejected == [RejectReason(detail["type"])]


def test_a_streamed_body_is_cut_off_at_the_limit() -> None:
    front = Front(InputLimits(max_request_bytes=1000))

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 300

    answer = front.call("POST", "/b64", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["error"] == "the request body exceeds the limit of 1000 bytes"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 32),  # graphs up to the largest batch
        ({"MODELYARD_MAX_BATCH_SIZE": "1024"}, 256),  # larger ones run in chunks of 256
        ({"MODELYARD_CUDA_GRAPHS": "off"}, None),
    ],
)
def test_graphs_cover_the_largest_batch_up_to_a_limit(env: dict[str, str], expected: int | None) -> None:
    assert ServiceSettings.from_env({"MODELYARD_MODEL_TAG": "m:v", **env}).graph_batches == expected
