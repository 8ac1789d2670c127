"""Serving benchmark: the real Bento service on 127.0.0.1 against the same model called directly, in one run.

A model is saved with the trainer's own export (untrained weights: speed does not depend on them), then
- direct: the stored model loaded in this process with the trainer's eval transform, one image per call and then a
  batch the size of the client count: the floor any service can reach;
- sequential: one client, one image per request, over HTTP (multipart), through decoding, batching and JSON;
- concurrent: N clients at once (8 by default), each sending its share of the requests;
each a bounded loop (a fixed number of requests and a deadline), reporting p50/p99 latency and throughput. Overhead
is service latency / direct latency (sequential) and direct batch throughput / service throughput (concurrent).

    python bench/serving.py                                  # CPU here: resnet18 at 224 px, 120 requests
    python bench/serving.py --device cuda --backbone resnet50 --requests 2000 --clients 32
    python bench/serving.py --json results.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from modelyard.api.training_job import TrainingJobSpec
from modelyard.bento.inputs import InputLimits, decode_image
from modelyard.bento.process import ServiceProcess
from modelyard.training.export import load_from_store, save_to_store
from modelyard.training.model import build_model
from modelyard.training.transforms import eval_transform


@dataclass
class Figures:
    name: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def summarise(name: str, latencies: list[float], seconds: float, errors: int = 0) -> Figures:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return Figures(name, len(ordered), errors, seconds, 1000 * statistics.median(ordered), 1000 * p99)


def sample_images(count: int, side: int) -> list[bytes]:
    """Deterministic photo-sized PNGs (smooth colour fields with noise), a little larger than the network input."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        y, x = np.mgrid[0:side, 0:side] / side
        base = np.stack([x, y, (x + y) / 2], axis=2) * rng.uniform(100, 255, 3)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def save_model(home: Path, backbone: str, image_size: int) -> str:
    spec = TrainingJobSpec.model_validate(
        {
            "model": {"backbone": backbone, "pretrained": False},
            "data": {"path": "/unused", "imageSize": image_size},
            "output": {"modelName": "bench"},
        }
    )
    class_names = [f"class-{index}" for index in range(spec.model.num_classes)]
    module = build_model(spec.model, load_pretrained=False)
    return save_to_store(
        module, spec=spec, class_names=class_names, metrics={}, dataset_digest="sha256:bench", training_job=None,
        store=home,
    )  # fmt: skip


def direct(home: Path, tag: str, images: list[bytes], requests: int, batch: int, device: str) -> list[Figures]:
    """The stored model in this process: the service's decoder, the eval transform and a forward pass."""
    loaded = load_from_store(tag, device, store=home)
    transform = eval_transform(loaded.info.image_size, loaded.info.normalization)
    limits = InputLimits()

    def run(group: list[bytes]) -> None:
        pixels = [decode_image(data, limits).pixels for data in group]
        with torch.inference_mode():
            logits = loaded.module(torch.stack([transform(p) for p in pixels]).to(device))
        torch.softmax(logits.float(), dim=1).cpu()

    for _ in range(3):
        run(images[:1])
        run(images[:batch])
    results = []
    for size, name in ((1, "direct, 1 image per call"), (batch, f"direct, {batch} images per call")):
        latencies: list[float] = []
        started = time.perf_counter()
        calls = max(1, requests // size)
        for index in range(calls):
            group = [images[(index * size + offset) % len(images)] for offset in range(size)]
            begin = time.perf_counter()
            run(group)
            latencies.append(time.perf_counter() - begin)
        figures = summarise(name, latencies, time.perf_counter() - started)
        figures.requests = calls * size  # images, so that throughput compares with the service's
        results.append(figures)
    return results


def over_http(url: str, images: list[bytes], requests: int, clients: int, deadline: float) -> Figures:
    """`requests` single-image requests from `clients` concurrent clients; stops at `deadline` seconds."""
    stop_at = time.perf_counter() + deadline

    def client(index: int) -> tuple[list[float], int]:
        latencies, errors = [], 0
        with httpx.Client(base_url=url, timeout=120) as session:
            for number in range(index, requests, clients):
                if time.perf_counter() > stop_at:
                    break
                data = images[number % len(images)]
                begin = time.perf_counter()
                response = session.post("/predict", files={"images": ("image.png", data, "image/png")})
                latencies.append(time.perf_counter() - begin)
                errors += response.status_code != 200
        return latencies, errors

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        outcomes = list(pool.map(client, range(clients)))
    seconds = time.perf_counter() - started
    latencies = [value for found, _ in outcomes for value in found]
    name = "service, 1 client" if clients == 1 else f"service, {clients} concurrent clients"
    return summarise(name, latencies, seconds, sum(errors for _, errors in outcomes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--requests", type=int, default=120, help="requests per phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=300, help="seconds a phase may take at most")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as scratch:
        home = Path(scratch) / "bentoml"
        tag = save_model(home, args.backbone, args.image_size)
        images = sample_images(16, args.image_size + 32)
        results = direct(home, tag, images, args.requests, args.clients, args.device)
        env = {"BENTOML_HOME": str(home), "MODELYARD_MODEL_TAG": tag, "MODELYARD_DEVICE": args.device}
        with ServiceProcess(env, log=Path(scratch) / "service.log") as service:
            service.wait_ready(600)
            over_http(service.url, images, 2 * args.clients, 1, args.deadline)  # warm the batching dispatcher up
            for clients in (1, args.clients):
                results.append(over_http(service.url, images, args.requests, clients, args.deadline))

    single, batched, sequential, concurrent = results
    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"
        + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""),
        "model": f"{args.backbone} + attention, {args.image_size}x{args.image_size}, {args.device}",
        "torch": torch.__version__,
    }
    print(" | ".join(f"{key}: {value}" for key, value in info.items()))
    print(f"{'phase':34} {'images':>7} {'errors':>6} {'p50 ms':>9} {'p99 ms':>9} {'images/s':>9}")
    for figures in results:
        print(
            f"{figures.name:34} {figures.requests:7d} {figures.errors:6d} {figures.p50_ms:9.1f} "
            f"{figures.p99_ms:9.1f} {figures.per_second:9.1f}"
        )
    ratios = {
        "sequential_latency_overhead": sequential.p50_ms / single.p50_ms,
        "concurrent_throughput_vs_direct_batch": concurrent.per_second / batched.per_second,
        "concurrent_throughput_vs_direct_single": concurrent.per_second / single.per_second,
    }
    print(
        f"overhead: sequential p50 is {ratios['sequential_latency_overhead']:.2f}x the direct call's; "
        f"{args.clients} clients reach {ratios['concurrent_throughput_vs_direct_batch']:.2f}x the throughput of "
        f"direct batches of {args.clients} ({ratios['concurrent_throughput_vs_direct_single']:.2f}x direct single)"
    )
    if args.json:
        args.json.write_text(json.dumps({**info, "phases": [asdict(f) for f in results], "ratios": ratios}, indent=2))
    return 1 if sequential.errors or concurrent.errors else 0


if __name__ == "__main__":
    sys.exit(main())
