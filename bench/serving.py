"""Serving benchmark: the real Bento service on 127.0.0.1 against the same model called directly, in one run.

A model is saved with the trainer's own export (untrained weights: speed does not depend on them), then
- direct: the stored model loaded in this process through the service's own `Classifier` (decoder, eval transform,
  precision and memory format as served), one image per call and then a batch the size of the client count: the
  floor any service can reach;
- sequential: one client, one image per request, over HTTP (multipart), through decoding, batching and JSON;
- concurrent: N clients at once, single-image requests, then requests of several images each (a closed loop: each
  client sends its next request when the last was answered), then optionally more clients (`--more-clients`,
  `--more-multi-clients`);
- open loop (`--rates`): single-image requests sent at a fixed rate whatever the answers, latency counted from when
  each was due: whether the service keeps up with that rate, and at what p99;
each a bounded loop (a fixed number of requests and a deadline), reporting p50/p99 latency, throughput, the CPU the
service and the clients spent per request, the service's mean batch and how busy the GPU was. Overhead is service
latency / direct latency (sequential) and direct batch throughput / service throughput (concurrent). The clients run
in several processes (`--client-processes`), so that the load generator's own GIL is not the limit.

    python bench/serving.py                                  # CPU here: resnet18 at 224 px, 120 requests
    python bench/serving.py --device cuda --backbone resnet50 --requests 30000 --clients 64 --workers auto \
        --client-processes 6 --images-per-request 16 --more-clients 128 --rates 2000 3000
    python bench/serving.py --json results.json
    python bench/serving.py --sample-stacks STACKS && python bench/sampling/shares.py STACKS/*.txt  # a profile
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for bench.*

from bench.worker_connections import ConnectionSpread
from modelyard.api.training_job import InputPipeline, Precision, TrainingJobSpec
from modelyard.bento.inputs import InputLimits, decode_image
from modelyard.bento.process import ServiceProcess, descendants, process_cpu_seconds, readiness
from modelyard.bento.runtime import Classifier
from modelyard.bento.settings import ServiceSettings
from modelyard.training.export import load_from_store, save_to_store
from modelyard.training.model import build_model


@dataclass
class Figures:
    name: str
    requests: int  # images, so that throughput compares across phases
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    calls: int = 0  # HTTP requests (or direct calls)
    # CPU seconds the service's processes (all workers; in a direct phase, this process) and the load generator spent
    # during the phase: what a request costs in cores, which decides how many requests/s the cores can carry at all
    service_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    mean_batch: float = 0.0  # images per model call, from the service's modelyard_batch_size histogram
    gpu_busy_percent: float | None = None  # NVML's share of time a kernel ran, averaged over the phase
    # Keep-alive connections per service worker, sampled during the phase: the busiest worker's count and the mean
    # (bench/worker_connections.py), and how often the clients had to connect again after the service closed one.
    connections_busiest: float | None = None
    connections_mean: float | None = None
    reconnects: int = 0
    # "<status>: <start of the body>" of the failed requests, with their counts: what failed, not only how often
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def service_cpu_ms_per_call(self) -> float:
        return 1000 * self.service_cpu_s / self.calls if self.calls else 0.0

    @property
    def client_cpu_ms_per_call(self) -> float:
        return 1000 * self.client_cpu_s / self.calls if self.calls else 0.0


def summarise(
    name: str, latencies: list[float], seconds: float, errors: Counter[str] | None = None, per_call: int = 1
) -> Figures:
    ordered = sorted(latencies) or [float("nan")]
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    count = len(latencies)
    kinds = dict(errors or {})
    return Figures(
        name, count * per_call, sum(kinds.values()), seconds, 1000 * statistics.median(ordered), 1000 * p99,
        calls=count, error_kinds=kinds,
    )  # fmt: skip


def sample_images(count: int, side: int, image_format: str) -> list[bytes]:
    """Deterministic photo-like images (smooth colour fields with noise), a little larger than the network input."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        y, x = np.mgrid[0:side, 0:side] / side
        base = np.stack([x, y, (x + y) / 2], axis=2) * rng.uniform(100, 255, 3)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(
            buffer, format=image_format.upper(), **({"quality": 90} if image_format == "jpeg" else {})
        )
        images.append(buffer.getvalue())
    return images


def save_model(home: Path, backbone: str, image_size: int, pipeline: InputPipeline) -> str:
    spec = TrainingJobSpec.model_validate(
        {
            "model": {"backbone": backbone, "pretrained": False},
            # The pipeline it was "trained" on decides the service's preprocessing (gpu: resize on the device).
            "data": {"path": "/unused", "imageSize": image_size, "pipeline": pipeline.value},
            "output": {"modelName": "bench"},
        }
    )
    class_names = [f"class-{index}" for index in range(spec.model.num_classes)]
    module = build_model(spec.model, load_pretrained=False)
    return save_to_store(
        module, spec=spec, class_names=class_names, metrics={}, dataset_digest="sha256:bench", training_job=None,
        store=home,
    )  # fmt: skip


def direct(
    home: Path,
    tag: str,
    images: list[bytes],
    requests: int,
    batch: int,
    device: str,
    precision: Precision,
    graph_batches: int | None,
    deadline: float,
) -> list[Figures]:
    """The stored model in this process through the service's own Classifier: decode, transform, forward pass (from
    CUDA graphs when the service uses them)."""
    loaded = load_from_store(tag, device, store=home)
    classifier = Classifier(loaded, torch.device(device), precision, graph_batches)
    limits = InputLimits()

    def run(group: list[bytes]) -> None:
        classifier.probabilities([decode_image(data, limits).pixels for data in group])

    for _ in range(3):
        run(images[:1])
        run(images[:batch])
    results = []
    for size, name in ((1, "direct, 1 image per call"), (batch, f"direct, {batch} images per call")):
        latencies: list[float] = []
        started, cpu_before = time.perf_counter(), time.process_time()
        for index in range(max(1, requests // size)):
            if time.perf_counter() - started > deadline:
                break
            group = [images[(index * size + offset) % len(images)] for offset in range(size)]
            begin = time.perf_counter()
            run(group)
            latencies.append(time.perf_counter() - begin)
        figures = summarise(name, latencies, time.perf_counter() - started, per_call=size)
        figures.service_cpu_s = time.process_time() - cpu_before  # this process is the "service" here
        results.append(figures)
    return results


BOUNDARY = "modelyard-bench-boundary"
# An open loop's connections each carry at most this many requests/s: one every 40 ms, so that at the target's p99 of
# 50 ms a connection is seldom still busy when its next request is due.
OPEN_LOOP_RATE_PER_CONNECTION = 25


def multipart_body(images: list[bytes], media_type: str) -> bytes:
    """A multipart/form-data body with the images as files in the field `images`, as any HTTP client sends it."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="image-{index}"\r\n'
        f"Content-Type: {media_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
        for index, data in enumerate(images)
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


@dataclass(frozen=True)
class Load:
    url: str
    images: list[bytes]
    requests: int  # HTTP requests in all
    clients: int  # concurrent clients in all
    per_request: int  # images per request
    deadline: float  # seconds
    media_type: str
    # Open loop: request n is due at n / rate seconds after the start, whether or not earlier ones were answered, and
    # its latency counts from then (a connection still busy with an earlier one delays it: that wait is the
    # service's too). None: a closed loop, each client sending its next request when the last was answered.
    rate: float | None = None

    def bodies(self) -> list[bytes]:
        """The request bodies, built before the clock starts (request n sends body n % len): the load generator's
        time goes to HTTP, not to encoding forms."""
        count = len(self.images)
        return [
            multipart_body([self.images[(first + k) % count] for k in range(self.per_request)], self.media_type)
            for first in range(count)
        ]


_START: Any = None  # a client process's barrier: every process starts its clients at the same moment


def _set_start_barrier(barrier: Any) -> None:
    global _START  # the one way to hand a ProcessPoolExecutor worker a barrier
    _START = barrier


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of a process and its live descendants (the service's arbiter and its workers), read
    from /proc: what `ps` would sum."""
    return sum(process_cpu_seconds(pid) for pid in [root, *descendants(root)])


@dataclass
class Share:
    """What one client process saw."""

    latencies: list[float]
    errors: Counter[str]
    started: float  # wall clock
    ended: float
    cpu_s: float  # CPU seconds this process spent sending
    reconnects: int  # connections opened again after the service (or an error) closed one


def _clients(load: Load, first: int, step: int, count: int) -> Share:
    """`count` client threads of one process; client i sends requests i, i + clients, ... until the deadline, each
    on its own keep-alive connection (the stdlib's http.client, a thinner layer than httpx, so that the clients take
    less of the cores the service runs on), at once or when due (`load.rate`). An answer with `Connection: close`
    closes the connection, and the next request opens a new one."""
    bodies = load.bodies()
    address = urlsplit(load.url)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    if _START is not None:
        _START.wait()
    started = time.time()
    cpu_before = time.process_time()
    origin = time.perf_counter()
    stop_at = origin + load.deadline

    def client(index: int) -> tuple[list[float], Counter[str], int]:
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        opened = 0
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=120)
        try:
            for number in range(index, load.requests, load.clients):
                due = origin + number / load.rate if load.rate else None
                if due is not None:
                    time.sleep(max(0.0, due - time.perf_counter()))
                if time.perf_counter() > stop_at:
                    break
                begin = time.perf_counter() if due is None else due
                opened += connection.sock is None  # http.client connects again by itself when the last one closed
                try:
                    connection.request("POST", "/predict", body=bodies[number % len(bodies)], headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                except (OSError, http.client.HTTPException) as error:
                    latencies.append(time.perf_counter() - begin)
                    errors[f"connection: {type(error).__name__}"] += 1
                    connection.close()  # the next request reconnects
                    continue
                latencies.append(time.perf_counter() - begin)
                if response.status != 200:
                    errors[f"{response.status}: {answer[:120].decode(errors='replace')}"] += 1
        finally:
            connection.close()
        return latencies, errors, max(0, opened - 1)

    with ThreadPoolExecutor(max_workers=count) as pool:
        outcomes = list(pool.map(client, range(first, load.clients, step)))
    return Share(
        latencies=[value for found, _, _ in outcomes for value in found],
        errors=sum((errors for _, errors, _ in outcomes), Counter()),
        started=started,
        ended=time.time(),
        cpu_s=time.process_time() - cpu_before,
        reconnects=sum(reconnects for _, _, reconnects in outcomes),
    )


def batch_totals(url: str) -> tuple[float, float]:
    """The service's modelyard_batch_size histogram (all workers): sum of images and count of model calls."""
    totals = {"sum": 0.0, "count": 0.0}
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            for kind in totals:
                if line.startswith((f"modelyard_batch_size_{kind} ", f"modelyard_batch_size_{kind}{{")):
                    totals[kind] += float(line.rsplit(" ", 1)[1])
    return totals["sum"], totals["count"]


class GpuSampler:
    """NVML's GPU utilisation (the share of time a kernel was running) sampled every 100 ms in a thread while the
    context is open: whether the GPU or the host limits a phase. Reads nothing where NVML is missing."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            import pynvml  # nvidia-ml-py, in the serving extras

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML, no GPU: nothing to sample
            return
        while not self._stop.wait(0.1):
            self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _send(load: Load, processes: int) -> list[Share]:
    """The load from `processes` client processes at once; each process's share as `_clients` returns it."""
    if processes == 1:
        return [_clients(load, 0, 1, load.clients)]
    context = multiprocessing.get_context("spawn")  # the parent holds a CUDA context: never fork it
    barrier = context.Barrier(processes)
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_set_start_barrier, initargs=(barrier,)
    ) as pool:
        shares = [
            pool.submit(_clients, load, first, processes, len(range(first, load.clients, processes)))
            for first in range(processes)
        ]
        return [share.result() for share in shares]


def over_http(load: Load, processes: int, service_pid: int) -> Figures:
    """The load from `processes` client processes (one when there is a single client); timed from the moment all
    of them start sending (spawning a process and importing its modules is not the service's time)."""
    processes = max(1, min(processes, load.clients))
    service_cpu_before = tree_cpu_seconds(service_pid)
    batched_before = batch_totals(load.url)
    port = urlsplit(load.url).port or 80
    with GpuSampler() as gpu, ConnectionSpread(service_workers(service_pid), port) as spread:
        shares = _send(load, processes)
    batched = [after - before for after, before in zip(batch_totals(load.url), batched_before, strict=True)]
    latencies = [value for share in shares for value in share.latencies]
    errors = sum((share.errors for share in shares), Counter())
    seconds = max(share.ended for share in shares) - min(share.started for share in shares)
    who = "1 client" if load.clients == 1 else f"{load.clients} concurrent clients"
    if load.rate:
        who = f"{load.rate:g} req/s offered over {load.clients} connections"
    name = f"service, {who}" + (f", {load.per_request} images per request" if load.per_request > 1 else "")
    figures = summarise(name, latencies, seconds, errors, per_call=load.per_request)
    # Includes the service's idle ticking while client processes start: a small overcount, never an undercount.
    figures.service_cpu_s = tree_cpu_seconds(service_pid) - service_cpu_before
    figures.client_cpu_s = sum(share.cpu_s for share in shares)
    figures.mean_batch = batched[0] / batched[1] if batched[1] else 0.0
    figures.gpu_busy_percent = gpu.mean
    figures.connections_busiest, figures.connections_mean = spread.busiest, spread.mean
    figures.reconnects = sum(share.reconnects for share in shares)
    return figures


def service_workers(service_pid: int) -> list[int]:
    """The service's worker processes (BentoML's arbiter starts them; each accepts connections and runs a model)."""
    workers = []
    for pid in descendants(service_pid):
        with contextlib.suppress(OSError):  # ended meanwhile
            if b"_bentoml_impl.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
    return workers


def record_py_spy(service_pid: int, output: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling one of the service's workers (collapsed stacks, one line per stack), started now. One worker
    stands for all: they run the same code on the same load. On the H200 machine py-spy recorded 3 samples whether it
    followed all workers from the arbiter (`--subprocesses`) or one, for a reason not found; here it records."""
    worker = min(service_workers(service_pid))
    command = ["py-spy", "record", "--pid", str(worker), "--duration", str(int(seconds)), "--format", "raw"]
    return subprocess.Popen([*command, "--nonblocking", "-o", str(output)])


def wait_all_workers_ready(url: str, workers: int, timeout: float = 600) -> None:
    """/readyz of one worker says nothing of the others: ask until many answers in a row are 200."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 20 * workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every one of {workers} workers became ready within {timeout:.0f}s")
        streak = streak + 1 if readiness(url)[0] == 200 else 0
        if not streak:
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", type=Precision, default=Precision.AUTO, choices=list(Precision))
    parser.add_argument(
        "--pipeline",
        type=InputPipeline,
        default=InputPipeline.CPU,
        choices=list(InputPipeline),
        help="data.pipeline the saved model records; gpu: the service resizes on the device",
    )
    parser.add_argument("--format", dest="image_format", choices=["jpeg", "png"], default="jpeg")
    parser.add_argument(
        "--upload-size",
        type=int,
        default=None,
        help="side of the uploaded images (default: --image-size + 32); a small --image-size with photo-sized "
        "uploads makes a CPU's model cheap and its event loop's decoding weigh as it does beside a GPU",
    )
    parser.add_argument("--requests", type=int, default=120, help="requests per phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--client-processes", type=int, default=1, help="processes the clients are spread over")
    parser.add_argument("--images-per-request", type=int, default=8, help="images per request, multi-image phase")
    parser.add_argument(
        "--more-clients",
        type=int,
        nargs="*",
        default=[],
        help="further single-image phases with these many clients: what the service answers at more concurrency",
    )
    parser.add_argument(
        "--more-multi-clients",
        type=int,
        nargs="*",
        default=[],
        help="further phases of --images-per-request images per request with these many clients",
    )
    parser.add_argument(
        "--rates",
        type=float,
        nargs="*",
        default=[],
        help="further single-image phases as an open loop: requests sent at this rate whatever the answers, "
        f"over enough connections that each carries at most {OPEN_LOOP_RATE_PER_CONNECTION}/s (at least --clients)",
    )
    parser.add_argument(
        "--workers",
        default="1",
        help="service worker processes (MODELYARD_WORKERS): a number, or auto (the default's rule)",
    )
    parser.add_argument("--max-batch-size", type=int, default=None, help="MODELYARD_MAX_BATCH_SIZE of the service")
    parser.add_argument(
        "--cuda-graphs", choices=["on", "off"], default="on", help="MODELYARD_CUDA_GRAPHS of the service (on a GPU)"
    )
    parser.add_argument(
        "--py-spy", type=Path, help="record the service's processes with py-spy during the concurrent phase, to here"
    )
    parser.add_argument(
        "--sample-stacks",
        type=Path,
        help="sample every service process's threads (bench/sampling) during the concurrent single-image phases, "
        "to here: one file of collapsed stacks per process",
    )
    parser.add_argument("--deadline", type=float, default=300, help="seconds a phase may take at most")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.upload_size = args.upload_size or args.image_size + 32

    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as scratch:
        home = Path(scratch) / "bentoml"
        tag = save_model(home, args.backbone, args.image_size, args.pipeline)
        images = sample_images(16, args.upload_size, args.image_format)
        env = {
            "BENTOML_HOME": str(home),
            "MODELYARD_MODEL_TAG": tag,
            "MODELYARD_DEVICE": args.device,
            "MODELYARD_PRECISION": args.precision.value,
            "MODELYARD_WORKERS": args.workers,
            "MODELYARD_CUDA_GRAPHS": args.cuda_graphs,
            **({"MODELYARD_MAX_BATCH_SIZE": str(args.max_batch_size)} if args.max_batch_size else {}),
        }
        if args.sample_stacks:
            args.sample_stacks.mkdir(parents=True, exist_ok=True)
            sampler = Path(__file__).resolve().parent / "sampling"
            path = os.pathsep.join(filter(None, [str(sampler), os.environ.get("PYTHONPATH")]))
            env |= {"PYTHONPATH": path, "MODELYARD_STACK_SAMPLES": str(args.sample_stacks)}
        # As the service reads its environment: the batch sizes it graphs, the workers it starts (auto resolved).
        settings = ServiceSettings.from_env(env)
        batching, workers = settings.batching, settings.workers
        results = direct(
            home, tag, images, args.requests, args.clients, args.device, args.precision, settings.graph_batches,
            args.deadline,
        )  # fmt: skip
        media_type = f"image/{args.image_format}"
        with ServiceProcess(env, log=Path(scratch) / "service.log") as service:
            service.wait_ready(600)
            wait_all_workers_ready(service.url, workers)
            warm = Load(service.url, images, 4 * args.clients, args.clients, 1, args.deadline, media_type)
            over_http(warm, args.client_processes, service.pid or 0)  # every worker's batching dispatcher warmed up
            phases: list[tuple[int, int, int, float | None]] = [
                (1, 1, args.requests, None),
                (args.clients, 1, args.requests, None),
                (
                    args.clients,
                    args.images_per_request,
                    max(args.clients, args.requests // args.images_per_request),
                    None,
                ),
                *((clients, 1, args.requests, None) for clients in args.more_clients),
                *((clients, args.images_per_request, max(clients, args.requests // args.images_per_request), None)
                  for clients in args.more_multi_clients),
                *((max(args.clients, math.ceil(rate / OPEN_LOOP_RATE_PER_CONNECTION)), 1, args.requests, rate)
                  for rate in args.rates),
            ]  # fmt: skip
            for clients, per_request, requests, rate in phases:
                load = Load(service.url, images, requests, clients, per_request, args.deadline, media_type, rate)
                profiling = args.py_spy and clients > 1 and per_request == 1
                recorder = record_py_spy(service.pid or 0, args.py_spy, args.deadline / 2) if profiling else None
                sampling = args.sample_stacks and clients > 1 and per_request == 1 and rate is None
                if sampling:
                    (args.sample_stacks / "on").touch()
                done = over_http(load, args.client_processes, service.pid or 0)
                if sampling:
                    (args.sample_stacks / "on").unlink()
                results.append(done)
                print(f"done: {done.name}: {done.calls_per_second:.1f} req/s, p99 {done.p99_ms:.1f} ms", flush=True)
                if recorder is not None:
                    recorder.wait()

    single, batched, sequential, concurrent, multi = results[:5]
    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"
        + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""),
        "model": f"{args.backbone} + attention, {args.image_size}x{args.image_size}, {args.device}, "
        f"precision {args.precision.value}, {args.pipeline.value} pipeline",
        "service": f"{workers} worker(s) ({args.workers}), max batch {batching.max_batch_size}, "
        f"CUDA graphs {args.cuda_graphs}, {args.upload_size} px {args.image_format} uploads, "
        f"clients in {args.client_processes} process(es)",
        "torch": torch.__version__,
    }
    print(" | ".join(f"{key}: {value}" for key, value in info.items()))
    print(
        f"{'phase':58} {'images':>7} {'errors':>6} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>9} {'images/s':>9} "
        f"{'service CPU ms/req':>18} {'client CPU ms/req':>17} {'batch':>6} {'GPU busy':>8} "
        f"{'conns/worker: busiest, mean':>27} {'reconnects':>10}"
    )
    for figures in results:
        busy = f"{figures.gpu_busy_percent:7.0f}%" if figures.gpu_busy_percent is not None else f"{'-':>8}"
        spread = (
            f"{figures.connections_busiest:.1f}, {figures.connections_mean:.1f}"
            if figures.connections_busiest is not None and figures.connections_mean is not None
            else "-"
        )
        print(
            f"{figures.name:58} {figures.requests:7d} {figures.errors:6d} {figures.p50_ms:9.1f} "
            f"{figures.p99_ms:9.1f} {figures.calls_per_second:9.1f} {figures.per_second:9.1f} "
            f"{figures.service_cpu_ms_per_call:18.2f} {figures.client_cpu_ms_per_call:17.2f} "
            f"{figures.mean_batch:6.1f} {busy} {spread:>27} {figures.reconnects:10d}"
        )
        for kind, count in figures.error_kinds.items():
            print(f"    {count} x {kind}")
    ratios = {
        "sequential_latency_overhead": sequential.p50_ms / single.p50_ms,
        "concurrent_throughput_vs_direct_batch": concurrent.per_second / batched.per_second,
        "concurrent_throughput_vs_direct_single": concurrent.per_second / single.per_second,
        "multi_image_throughput_vs_direct_batch": multi.per_second / batched.per_second,
    }
    print(
        f"overhead: sequential p50 is {ratios['sequential_latency_overhead']:.2f}x the direct call's; "
        f"{args.clients} clients reach {ratios['concurrent_throughput_vs_direct_batch']:.2f}x the throughput of "
        f"direct batches of {args.clients} ({ratios['concurrent_throughput_vs_direct_single']:.2f}x direct single); "
        f"with {args.images_per_request} images per request "
        f"{ratios['multi_image_throughput_vs_direct_batch']:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps({**info, "phases": [asdict(f) for f in results], "ratios": ratios}, indent=2))
    # Any phase's errors fail the run, the further phases' too (the direct phases have none).
    return 1 if any(figures.errors for figures in results) else 0


if __name__ == "__main__":
    sys.exit(main())
