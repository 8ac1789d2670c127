"""nvImageCodec's hardware decoder into one (B, 3, H, W) batch through a single stack of its HWC outputs, against
torchvision's decode_jpeg and the same stack, per 256 photo-like 320 px JPEGs; and each one's pixels against PIL's
(the cpu pipeline's and the service's decoder), over the first 16 images.

    python3 bench/results/2026-12-05-h100/decode_to_batch.py
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
os.environ.pop("MODELYARD_JPEG_DECODER", None)  # decode_jpegs must be torchvision's here
import train_throughput
from nvidia import nvimgcodec  # type: ignore[import-not-found]

from modelyard.training import gpu_pipeline

BATCH = 256
device = torch.device("cuda", 0)
stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]


def timed(name: str, decode: Callable[[list[torch.Tensor]], torch.Tensor], batches: list[list[torch.Tensor]],
          pil: torch.Tensor) -> None:  # fmt: skip
    with torch.cuda.stream(stream):
        for batch in batches[:2]:
            decode(batch)
        torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            decode(batch)
        torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        first = decode(batches[0])[: len(pil)].cpu()
    diff = (first.float() - pil.float()).abs()
    per = len(batches)
    print(
        f"{name:48s} {per * BATCH / wall:8.0f} img/s  wall {wall / per * 1e3:6.2f} ms  cpu {cpu / per * 1e3:6.2f} ms "
        f"per batch  vs PIL: mean|Δ| {diff.mean():.3f} max|Δ| {int(diff.max())}",
        flush=True,
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = train_throughput.write_jpeg_folder(Path(scratch), 2560, 10, 320)
        raw = [path.read_bytes() for path in sorted(root.rglob("*.jpg"))]
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8).pin_memory() for data in raw]
    batches = [encoded[start : start + BATCH] for start in range(0, len(encoded) - BATCH + 1, BATCH)]
    pil = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(io.BytesIO(raw[i])).convert("RGB")).transpose(2, 0, 1).copy())
         for i in range(16)]
    )  # fmt: skip
    params = nvimgcodec.DecodeParams(color_spec=nvimgcodec.ColorSpec.SRGB, apply_exif_orientation=False)
    hardware = [nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)]
    decoder = nvimgcodec.Decoder(device_id=0, backends=hardware, max_num_cpu_threads=4)
    pool: dict[str, Any] = {}

    def engines(batch: list[torch.Tensor]) -> list[Any]:
        sources = [nvimgcodec.CodeStream(item.numpy()) for item in batch]
        out = decoder.decode(sources, images=pool.get("images"), params=params, cuda_stream=stream.cuda_stream)
        pool.setdefault("images", out)  # decoded into again: no allocation per batch
        return out

    def torchvision(batch: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(gpu_pipeline.decode_jpegs(batch, device))

    def engines_dlpack(batch: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([torch.from_dlpack(image) for image in engines(batch)]).permute(0, 3, 1, 2)

    def engines_cai(batch: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([torch.as_tensor(image, device=device) for image in engines(batch)]).permute(0, 3, 1, 2)

    timed("torchvision decode_jpeg + stack", torchvision, batches, pil)
    timed("hw reused + dlpack HWC views + one stack", engines_dlpack, batches, pil)
    timed("hw reused + CAI HWC views + one stack", engines_cai, batches, pil)
    timed("torchvision decode_jpeg + stack (again)", torchvision, batches, pil)


if __name__ == "__main__":
    main()
