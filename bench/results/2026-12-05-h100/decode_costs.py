"""Where nvImageCodec's CPU time goes, per batch of 256 photo-like 320 px JPEGs, on the GPU machine: decoding alone
into new or reused Images, with 0 or 4 CPU threads, and then getting its HWC output into CHW tensors of torch's
memory per image (DLPack or the CUDA array interface), as nvimgcodec-decoder-v2.patch does.

    patch -p1 < bench/results/2026-12-05-h100/nvimgcodec-decoder-v2.patch
    MODELYARD_JPEG_DECODER=nvimgcodec python3 bench/results/2026-12-05-h100/decode_costs.py

The first line times `gpu_pipeline.decode_jpegs`, which decodes as MODELYARD_JPEG_DECODER says: in the recorded run
(probe2.log) that was nvimgcodec, not torchvision as the line's label then said.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import train_throughput
from nvidia import nvimgcodec  # type: ignore[import-not-found]

from modelyard.training import gpu_pipeline

BATCH = 256
device = torch.device("cuda", 0)
stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]


def per_batch(decode: Callable[[list[torch.Tensor]], Any], batches: list[list[torch.Tensor]]) -> tuple[str, Any]:
    """Two batches to warm up, then all of them timed on `stream`: the figures as one line, and the last output."""
    with torch.cuda.stream(stream):
        for batch in batches[:2]:
            decode(batch)
        torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            out = decode(batch)
        torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per = len(batches)
    figures = (
        f"{per * BATCH / wall:8.0f} img/s  wall {wall / per * 1e3:6.2f} ms  cpu {cpu / per * 1e3:6.2f} ms per batch"
    )
    return figures, out


def timed(name: str, decode: Callable[[list[torch.Tensor]], Any], batches: list[list[torch.Tensor]]) -> Any:
    figures, out = per_batch(decode, batches)
    print(f"{name:55s} {figures}", flush=True)
    return out


def jpeg_batches(images: int) -> tuple[list[bytes], list[list[torch.Tensor]]]:
    """`images` photo-like 320 px JPEGs: their bytes, and whole batches of them as pinned tensors."""
    with tempfile.TemporaryDirectory() as scratch:
        root = train_throughput.write_jpeg_folder(Path(scratch), images, 10, 320)
        raw = [path.read_bytes() for path in sorted(root.rglob("*.jpg"))]
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8).pin_memory() for data in raw]
    return raw, [encoded[start : start + BATCH] for start in range(0, len(encoded) - BATCH + 1, BATCH)]


def chw(image: Any, *, dlpack: bool) -> torch.Tensor:
    hwc = torch.from_dlpack(image) if dlpack else torch.as_tensor(image, device=device)
    return hwc.permute(2, 0, 1).contiguous()


def main() -> None:
    _, batches = jpeg_batches(4096)
    params = nvimgcodec.DecodeParams(color_spec=nvimgcodec.ColorSpec.SRGB, apply_exif_orientation=False)
    hardware = [nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)]

    def sources(batch: list[torch.Tensor]) -> list[Any]:
        return [nvimgcodec.CodeStream(item.numpy()) for item in batch]

    timed("gpu_pipeline.decode_jpegs", lambda batch: gpu_pipeline.decode_jpegs(batch, device), batches)
    timed("CodeStream creation only", sources, batches)
    for threads in (0, 4):
        decoder = nvimgcodec.Decoder(device_id=0, backends=hardware, max_num_cpu_threads=threads)
        kept: list[Any] = []
        pool: dict[str, Any] = {}

        def fresh(batch: list[torch.Tensor], decoder: Any = decoder, kept: list[Any] = kept) -> Any:
            out = decoder.decode(sources(batch), params=params, cuda_stream=stream.cuda_stream)
            kept.append(out)  # freed two batches later, as a training step would free them
            del kept[:-2]
            return out

        def reused(batch: list[torch.Tensor], decoder: Any = decoder, pool: dict[str, Any] = pool) -> Any:
            images = pool.get("images")
            out = decoder.decode(sources(batch), images=images, params=params, cuda_stream=stream.cuda_stream)
            pool.setdefault("images", out)
            return out

        label = f"hw threads={threads}:"
        timed(f"{label} decode, fresh Images (kept 2 batches)", fresh, batches)
        timed(f"{label} decode, reused Images", reused, batches)
        timed(f"{label} reused + from_dlpack copy", lambda b, f=reused: [chw(i, dlpack=True) for i in f(b)], batches)
        timed(f"{label} reused + CAI copy", lambda b, f=reused: [chw(i, dlpack=False) for i in f(b)], batches)
        timed(f"{label} fresh + CAI copy (v1 patch)", lambda b, f=fresh: [chw(i, dlpack=False) for i in f(b)], batches)


if __name__ == "__main__":
    main()
