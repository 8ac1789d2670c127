"""JPEG decoders for the gpu pipeline, one batch of 256 at a time, on the GPU machine: torchvision's decode_jpeg
(nvJPEG's CUDA decoder, Huffman on the calling thread) against nvImageCodec with the GPU's hardware JPEG engines
only, its CUDA decoder only, and its default order (hardware, then CUDA, then hybrid).

For each: wall time and the whole process's CPU time per batch (nvImageCodec's own threads included), and how far
its pixels are from torchvision's and from PIL's (the cpu pipeline's decoder).

    git apply bench/results/2026-12-05-h200/nvimgcodec-decoder.patch   # the decoder switch it calls
    python3 bench/results/2026-12-05-h200/decode_probe.py [--images 4096] [--size 320]

nvImageCodec is not on the GPU machine: carry nvidia-nvimgcodec-cu13 (0.9.0.20) and nvidia-nvjpeg (13.x) as wheels
(bench/gpu_wheels.sh prepare WHEEL...).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import train_throughput

from modelyard.training import gpu_pipeline

BATCH = 256


def nvimgcodec_decoder(kinds: list[str]) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    from nvidia import nvimgcodec

    backends = [nvimgcodec.Backend(getattr(nvimgcodec.BackendKind, kind)) for kind in kinds]
    codec = gpu_pipeline._NvImageCodec(
        nvimgcodec.Decoder(device_id=0, backends=backends),
        nvimgcodec.DecodeParams(color_spec=nvimgcodec.ColorSpec.SRGB, apply_exif_orientation=False),
        nvimgcodec.CodeStream,
    )
    device = torch.device("cuda", 0)
    return lambda batch: gpu_pipeline._decode_nvimgcodec(codec, batch, device)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--size", type=int, default=320)
    args = parser.parse_args()
    device = torch.device("cuda", 0)
    with tempfile.TemporaryDirectory() as scratch:
        root = train_throughput.write_jpeg_folder(Path(scratch), args.images, 10, args.size)
        files = sorted(root.rglob("*.jpg"))
        raw = [path.read_bytes() for path in files]
    print(f"{len(raw)} JPEGs of {args.size}px, mean {np.mean([len(r) for r in raw]) / 1024:.1f} KiB", flush=True)
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8).pin_memory() for data in raw]
    batches = [encoded[start : start + BATCH] for start in range(0, len(encoded) - BATCH + 1, BATCH)]
    reference_pil = [
        torch.from_numpy(np.asarray(Image.open(io.BytesIO(raw[index])).convert("RGB")).transpose(2, 0, 1).copy())
        for index in range(8)
    ]
    decoders: dict[str, Callable[[list[torch.Tensor]], list[torch.Tensor]]] = {
        "torchvision (nvJPEG CUDA)": lambda batch: gpu_pipeline.decode_jpegs(batch, device),
    }
    for name, kinds in [
        ("nvimgcodec hardware only", ["HW_GPU_ONLY"]),
        ("nvimgcodec CUDA only", ["GPU_ONLY"]),
        ("nvimgcodec hardware, CUDA, hybrid", ["HW_GPU_ONLY", "GPU_ONLY", "HYBRID_CPU_GPU"]),
    ]:
        try:
            decoders[name] = nvimgcodec_decoder(kinds)
        except Exception as error:  # a probe: report and go on
            print(f"{name}: unavailable: {type(error).__name__}: {error}", flush=True)
    first: list[torch.Tensor] | None = None
    for name, decode in decoders.items():
        try:
            for batch in batches[:2]:
                decode(batch)
            torch.cuda.synchronize()
            wall, cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                out = decode(batch)
            torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            sample = [image.cpu() for image in decode(batches[0])[:8]]
        except Exception as error:
            print(f"{name}: failed: {type(error).__name__}: {error}", flush=True)
            continue
        first = first or sample
        versus_tv = max(int((a.int() - b.int()).abs().max()) for a, b in zip(sample, first, strict=True))
        pairs = zip(sample, reference_pil, strict=True)
        versus_pil = np.mean([float((a.float() - b.float()).abs().mean()) for a, b in pairs])
        images = len(batches) * BATCH
        print(
            f"{name:38s} {images / wall:9.0f} img/s  wall {wall / len(batches) * 1e3:6.2f} ms/batch  "
            f"cpu {cpu / len(batches) * 1e3:6.2f} ms/batch  shape {tuple(out[0].shape)}  "
            f"max|Δ| vs torchvision {versus_tv}  mean|Δ| vs PIL {versus_pil:.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
