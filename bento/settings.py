"""The service's configuration: environment variables set by the ModelDeployment's pods (docs/contracts.md)."""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from modelyard.api.model_deployment import BatchingSpec
from modelyard.api.training_job import Precision
from modelyard.bento.inputs import InputLimits

MODEL_TAG_ENV = "MODELYARD_MODEL_TAG"
DEVICE_ENV = "MODELYARD_DEVICE"
MAX_BATCH_SIZE_ENV = "MODELYARD_MAX_BATCH_SIZE"
MAX_LATENCY_MS_ENV = "MODELYARD_MAX_LATENCY_MS"
TOP_K_ENV = "MODELYARD_TOP_K"
PRECISION_ENV = "MODELYARD_PRECISION"
WORKERS_ENV = "MODELYARD_WORKERS"
CUDA_GRAPHS_ENV = "MODELYARD_CUDA_GRAPHS"
ACCESS_LOG_ENV = "MODELYARD_ACCESS_LOG"
LIMIT_ENVS = {
    "max_image_bytes": "MODELYARD_MAX_IMAGE_BYTES",
    "max_image_pixels": "MODELYARD_MAX_IMAGE_PIXELS",
    "max_images_per_request": "MODELYARD_MAX_IMAGES_PER_REQUEST",
    "max_request_bytes": "MODELYARD_MAX_REQUEST_BYTES",
}

# The ModelDeployment's own defaults, so a pod without the variables batches exactly as an unconfigured resource.
DEFAULT_MAX_BATCH_SIZE: int = BatchingSpec.model_fields["max_batch_size"].default
DEFAULT_MAX_LATENCY_MS: int = BatchingSpec.model_fields["max_latency_ms"].default
DEFAULT_TOP_K = 5
MAX_WORKERS = 64
GPU_WORKERS_MAX = 16
GPU_MEMORY_PER_WORKER = 3 << 30
HOST_MEMORY_PER_GPU_WORKER = 2 << 30
# Larger batches replay the graph of this size in chunks: a graph holds its batch's activations, and at this size the
# GPU, not the launches, sets the pace.
GRAPH_BATCH_LIMIT = 256


class Device(enum.StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValueError(f"{name}={raw!r} must be {bound}")
    return value


@dataclass(frozen=True)
class Batching:
    """Adaptive batching: BentoML needs these when the service class is defined, so they are read on import."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_latency_ms: int = DEFAULT_MAX_LATENCY_MS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Batching:
        source = os.environ if env is None else env
        # BentoML wants a batch of at least 2; the bounds are the ModelDeployment's.
        return cls(
            max_batch_size=_int(source, MAX_BATCH_SIZE_ENV, DEFAULT_MAX_BATCH_SIZE, minimum=2, maximum=4096),
            max_latency_ms=_int(source, MAX_LATENCY_MS_ENV, DEFAULT_MAX_LATENCY_MS, minimum=10, maximum=600_000),
        )


def cpu_budget(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity, capped by the cgroup's CPU quota (a pod's CPU limit). torch would
    otherwise start a thread per core of the node and be throttled by the limit."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, math.ceil(int(quota) / int(period))))


def memory_budget(cgroup_memory_max: Path = Path("/sys/fs/cgroup/memory.max")) -> int | None:
    """Bytes this process's cgroup may use (a pod's memory limit), None when unlimited or unknown."""
    try:
        raw = cgroup_memory_max.read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


def gpu_memory_bytes() -> int | None:
    """Memory of the first visible GPU from NVML (no CUDA context is created), None without a GPU or NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library, no device: all mean "no GPU to size workers for"
        return None


def default_workers(device: Device, cpus: int, gpu_memory: int | None, host_memory: int | None = None) -> int:
    """Worker processes when MODELYARD_WORKERS is unset or auto. On a CPU one: the model already uses every core.
    On a GPU several, each with its own copy of the model and its CUDA graphs: one worker's event loop (HTTP,
    multipart, decoding, JSON) holds its GIL, so a worker uses at most about one core, long before the GPU is busy.
    On one H200 with 16 cores, 8, 12 and 15 workers answered 1,688, 1,886 and 2,138 single-image requests/s, the GPU
    busy at most 41% of the time (bench/RESULTS.md, 2026-12-02). So: one per CPU less one (for the arbiter and the
    CUDA driver's threads), at most 16, at most one per 3 GiB of GPU memory and one per 2 GiB of the pod's memory
    limit (each worker holds torch and the CUDA libraries)."""
    if device is Device.CPU or gpu_memory is None:
        return 1
    limits = [GPU_WORKERS_MAX, cpus - 1, gpu_memory // GPU_MEMORY_PER_WORKER]
    if host_memory is not None:
        limits.append(host_memory // HOST_MEMORY_PER_GPU_WORKER)
    return max(1, min(limits))


def workers_from_env(env: Mapping[str, str] | None = None) -> int:
    """Worker processes of the service (MODELYARD_WORKERS: a number, or auto, the default: `default_workers`);
    read on import, like the batching settings."""
    source = os.environ if env is None else env
    if source.get(WORKERS_ENV, "").strip().lower() in ("", "auto"):
        device = _choice(source, DEVICE_ENV, Device.AUTO)
        gpu_memory = None if device is Device.CPU else gpu_memory_bytes()
        return default_workers(device, cpu_budget(), gpu_memory, memory_budget())
    return _int(source, WORKERS_ENV, 1, minimum=1, maximum=MAX_WORKERS)


def access_log_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Whether BentoML writes its line per request (MODELYARD_ACCESS_LOG, default off); read on import, like the
    workers. Off because the service's own metrics already count every request with its status and latency, and
    the line cost 6-10% of the service's CPU per multi-image request in A/Bs on the development machine
    (bench/RESULTS.md)."""
    return _switch(os.environ if env is None else env, ACCESS_LOG_ENV, False)


def prediction_tracing(exporter_type: str | None, routes: Sequence[str]) -> dict[str, list[str]]:
    """The service's `tracing` config for BentoML. Without a tracing exporter, the prediction routes are left out of
    BentoML's OpenTelemetry middleware: it would build spans that go nowhere, at about a seventh of a worker's
    request path besides the model (a profile in bench/RESULTS.md). With an exporter configured, nothing changes."""
    return {} if exporter_type else {"excluded_urls": list(routes)}


Choice = TypeVar("Choice", bound=enum.StrEnum)


def _choice(env: Mapping[str, str], name: str, default: Choice) -> Choice:
    """The member of `default`'s enum that `name` names (case-insensitive), `default` when unset."""
    kind = type(default)
    raw = env.get(name, "").strip().lower() or default.value
    try:
        return kind(raw)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise ValueError(f"{name}={raw!r} must be one of {choices}") from None


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{name}={raw!r} must be on or off (true/false, 1/0)")


def limits_from_env(env: Mapping[str, str] | None = None) -> InputLimits:
    """Input limits from MODELYARD_MAX_IMAGE_BYTES, _MAX_IMAGE_PIXELS, _MAX_IMAGES_PER_REQUEST, _MAX_REQUEST_BYTES."""
    source = os.environ if env is None else env
    defaults = InputLimits()
    values = {key: _int(source, name, getattr(defaults, key), minimum=1) for key, name in LIMIT_ENVS.items()}
    return InputLimits(**values)


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the service reads from its environment; `from_env` says which variable is wrong, and why."""

    model_tag: str
    device: Device = Device.AUTO
    # auto: bf16 on a GPU that has it (the trainer's own rule), fp32 on a CPU. The warm-up check runs in it too.
    precision: Precision = Precision.AUTO
    top_k: int = DEFAULT_TOP_K
    workers: int = 1
    # On a GPU, replay the forward pass from CUDA graphs (bento/graphs.py); off: eager, as the trainer validated.
    cuda_graphs: bool = True
    batching: Batching = field(default_factory=Batching)
    limits: InputLimits = field(default_factory=InputLimits)

    @property
    def graph_batches(self) -> int | None:
        """The largest batch with a CUDA graph (on a GPU), None when graphs are off."""
        return min(self.batching.max_batch_size, GRAPH_BATCH_LIMIT) if self.cuda_graphs else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        source = os.environ if env is None else env
        tag = source.get(MODEL_TAG_ENV, "").strip()
        if not tag:
            raise ValueError(f"{MODEL_TAG_ENV} is not set: it names the model to serve, as name:version")
        return cls(
            model_tag=tag,
            device=_choice(source, DEVICE_ENV, Device.AUTO),
            precision=_choice(source, PRECISION_ENV, Precision.AUTO),
            top_k=_int(source, TOP_K_ENV, DEFAULT_TOP_K, minimum=1),
            workers=workers_from_env(source),
            cuda_graphs=_switch(source, CUDA_GRAPHS_ENV, True),
            batching=Batching.from_env(source),
            limits=limits_from_env(source),
        )
