"""The service's preprocessing of decoded uploads for a gpu-pipeline model, before and after `d25c373`, timed alone.

Before: each HWC image transposed on the host, pinned and sent on its own. After: `host_images_to_device`, one
pinned staging buffer and one copy per batch, turned CHW on the device. Both end in `eval_pixels` (resize to 224,
normalise), and both answers are checked equal. Alternated rounds; per-batch median in ms and the ratio.

    PYTHONPATH=. python bench/results/2026-12-06-cpu/upload_transfer_probe.py [--device cuda] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from modelyard.api.training_job import Normalization
from modelyard.training.gpu_augment import to_device
from modelyard.training.gpu_pipeline import eval_pixels, host_images_to_device


def before(images: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    return [to_device(torch.from_numpy(image.transpose(2, 0, 1).copy()), device) for image in images]


def timed(prepare, images, device, normalization, repeat: int) -> tuple[float, torch.Tensor]:
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        batch = eval_pixels(prepare(images, device), 224, normalization)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(1)  # as a service worker on a GPU (bento/runtime.py host_threads)
    rng = np.random.default_rng(0)
    normalization = Normalization()
    print(f"device {device}, torch {torch.__version__}, one host thread, median of {args.repeat} per figure")
    for count in (1, 16, 64, 128):
        images = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(count)]
        for round_ in range(args.rounds):
            old, old_batch = timed(before, images, device, normalization, args.repeat)
            new, new_batch = timed(host_images_to_device, images, device, normalization, args.repeat)
            assert torch.equal(old_batch, new_batch)
            print(f"batch {count:3d} round {round_ + 1}: before {old:7.3f} ms  after {new:7.3f} ms  {old / new:5.2f}x")


if __name__ == "__main__":
    main()
