"""nvImageCodec's hardware decoder into one (B, 3, H, W) batch through a single stack of its HWC outputs, against
torchvision's decode_jpeg and the same stack, per 256 photo-like 320 px JPEGs; and each one's pixels against PIL's
(the cpu pipeline's and the service's decoder), over the first 16 images.

    python3 bench/results/2026-12-05-h100/decode_to_batch.py
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from decode_costs import device, jpeg_batches, per_batch, stream  # beside this file
from nvidia import nvimgcodec  # type: ignore[import-not-found]
from PIL import Image

from modelyard.training import gpu_pipeline

os.environ.pop("MODELYARD_JPEG_DECODER", None)  # decode_jpegs must be torchvision's here (read at each call)


def timed(name: str, decode: Callable[[list[torch.Tensor]], torch.Tensor], batches: list[list[torch.Tensor]],
          pil: torch.Tensor) -> None:  # fmt: skip
    figures, _ = per_batch(decode, batches)
    with torch.cuda.stream(stream):
        first = decode(batches[0])[: len(pil)].cpu()
    diff = (first.float() - pil.float()).abs()
    print(f"{name:48s} {figures}  vs PIL: mean|Δ| {diff.mean():.3f} max|Δ| {int(diff.max())}", flush=True)


def main() -> None:
    raw, batches = jpeg_batches(2560)
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
