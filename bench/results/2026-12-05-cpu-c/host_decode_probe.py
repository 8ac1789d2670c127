"""What data.hostDecodeShare costs the host: (1) decoding one photo-like 320 px JPEG on the host, the old way (PIL,
its array export and a transpose to CHW) against `host_rgb` (libjpeg-turbo through torchvision, HWC), with the
pixels compared; (2) the gpu pipeline's DataLoader alone (device cpu, nothing trains) at several shares, alternated,
as images/s and as a ratio to share 0 measured in the same run.

    PYTHONPATH=. python bench/results/2026-12-05-cpu-c/host_decode_probe.py --workers 2 --images 2048
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/, for write_jpeg_folder
from train_throughput import write_jpeg_folder

from modelyard.api.training_job import DataSpec, InputPipeline
from modelyard.training.data import EpochSampler, load_split, read_rgb
from modelyard.training.gpu_data import host_rgb
from modelyard.training.gpu_pipeline import make_gpu_loader


def pil_chw(data: bytes) -> torch.Tensor:  # the worker's decode before this change
    return torch.from_numpy(np.ascontiguousarray(read_rgb(io.BytesIO(data)).transpose(2, 0, 1)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--shares", default="0,0.25,0.5,1")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    shares = [float(share) for share in args.shares.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        root = write_jpeg_folder(Path(scratch), args.images, 4, 320)
        raws = [path.read_bytes() for path in sorted(root.rglob("*.jpg"))[:512]]
        same = sum(torch.equal(pil_chw(raw).permute(1, 2, 0), host_rgb(raw)) for raw in raws)
        print(
            f"pixels: host_rgb equals PIL's on {same} of {len(raws)} JPEGs "
            f"(mean {np.mean([len(raw) for raw in raws]) / 1024:.1f} KiB)"
        )
        for round_ in range(args.rounds):
            timings = {}
            for name, decode in (("PIL + transpose", pil_chw), ("host_rgb", host_rgb)):
                started = time.perf_counter()
                for raw in raws:
                    decode(raw)
                timings[name] = (time.perf_counter() - started) / len(raws) * 1e3
            print(
                f"round {round_ + 1}: decode per image: "
                + ", ".join(f"{k} {v:.3f} ms" for k, v in timings.items())
                + f"; ratio {timings['PIL + transpose'] / timings['host_rgb']:.2f}x"
            )
        for round_ in range(args.rounds):
            rates = {}
            for share in shares:
                spec = DataSpec(
                    path=str(root), num_workers=args.workers, pipeline=InputPipeline.GPU, host_decode_share=share
                )
                split = load_split(spec, 4, seed=0)
                samples = split.train + split.val
                loader = make_gpu_loader(
                    samples, EpochSampler(len(samples), seed=0), 256, spec, torch.device("cpu"), train=True
                ).loader
                batches = iter(loader)
                next(batches)  # workers started, first batches in flight
                started, images = time.perf_counter(), 0
                for batch in batches:
                    images += len(batch.labels)
                rates[share] = images / (time.perf_counter() - started)
            print(
                f"round {round_ + 1}: loader alone, {args.workers} workers, batch 256: "
                + ", ".join(f"share {s:g} {r:,.0f} images/s ({r / rates[shares[0]]:.2f}x)" for s, r in rates.items())
            )


if __name__ == "__main__":
    main()
