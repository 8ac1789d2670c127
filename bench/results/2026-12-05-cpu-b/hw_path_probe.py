"""Which of torchvision's two nvJPEG paths the benchmark's JPEGs take on this GPU (bench/RESULTS.md, "2026-12-05,
latest (CPU)").

torchvision's `decode_jpegs_cuda` creates nvJPEG with the hardware backend. It sends every JPEG for which
`nvjpegDecodeBatchedSupported` says 0 to one `nvjpegDecodeBatched` call on the GPU's JPEG engines. Every other JPEG,
and every JPEG when the hardware backend cannot be created, is decoded one by one, with Huffman on the host. The
session of 2026-12-05 (last) read its timings as the second path without checking. This asks nvJPEG, through
torchvision's own copy of the library, about JPEGs written as `bench/train_throughput.py` writes them.

    python3 bench/results/2026-12-05-cpu-b/hw_path_probe.py [COUNT]
"""

from __future__ import annotations

import ctypes
import io
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

BACKEND_HARDWARE = 3  # nvjpegBackend_t
STATUS = {0: "success", 1: "not initialized", 2: "invalid parameter", 3: "bad JPEG", 4: "JPEG not supported",
          5: "allocator failure", 6: "execution failed", 7: "arch mismatch", 8: "internal error",
          9: "implementation not supported", 10: "incomplete bitstream"}  # fmt: skip


def library() -> ctypes.CDLL:
    folder = Path(torchvision.__file__).parent
    candidates = [
        *map(str, folder.parent.glob("torchvision.libs/libnvjpeg*.so*")),  # bundled with the wheel
        *map(str, folder.parent.glob("nvidia/cu*/lib/libnvjpeg.so*")),  # the nvidia-nvjpeg wheel
        "libnvjpeg.so",
    ]
    for candidate in candidates:
        try:
            print("libnvjpeg:", candidate)
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    raise SystemExit("no libnvjpeg found")


def photo_like_jpeg(rng: np.random.Generator, size: int = 320) -> bytes:
    """As bench/train_throughput.py's _write_jpegs makes them."""
    gradient = np.linspace(0, 1, size, dtype=np.float32)
    colours = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    field = gradient[:, None, None] * colours[0] + gradient[None, :, None] * (255 - colours[1])
    pixels = np.clip(field / 2 + rng.normal(0, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main(count: int) -> int:
    nvjpeg = library()
    if torch.cuda.is_available():
        torch.zeros(1, device="cuda")  # a CUDA context first, as torchvision has one when it creates its decoder
    handle = ctypes.c_void_p()
    status = nvjpeg.nvjpegCreateEx(BACKEND_HARDWARE, None, None, 0, ctypes.byref(handle))
    print(f"nvjpegCreateEx(hardware): {STATUS.get(status, status)}")
    if status == 7:
        print("=> torchvision falls back to its default backend: every JPEG one by one, Huffman on the host")
        return 0
    if status != 0:
        print("=> torchvision's own decoder would fail the same way (it only falls back on an arch mismatch)")
        return 1
    stream = ctypes.c_void_p()
    assert nvjpeg.nvjpegJpegStreamCreate(handle, ctypes.byref(stream)) == 0
    rng = np.random.default_rng(0)
    verdicts: dict[str, int] = {}
    for _ in range(count):
        data = photo_like_jpeg(rng)
        status = nvjpeg.nvjpegJpegStreamParseHeader(handle, data, ctypes.c_size_t(len(data)), stream)
        supported = ctypes.c_int(-1)
        if status == 0:
            status = nvjpeg.nvjpegDecodeBatchedSupported(handle, stream, ctypes.byref(supported))
        verdict = f"{STATUS.get(status, status)}, isSupported={supported.value}"
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    for verdict, times in verdicts.items():
        print(f"{times} of {count}: {verdict}")
    print("=> isSupported=0: the batched hardware path; anything else: one by one, Huffman on the host")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 16))
