"""The gpu pipeline's training augmentation (`GpuAugment`) on one batch, as the trainer calls it, in whichever
checkout PYTHONPATH names: how many bytes its ATen operations read and write, how many it runs, its CPU time, and
its output (saved, so that two checkouts' outputs can be compared).

    PYTHONPATH=CHECKOUT python augment_ab.py OUT.pt [--batch 64] [--config default|every-step]
    python augment_ab.py --module gpu_augment_before.py --device cuda --batch 256   # the code before, on a GPU
    python augment_ab.py --compare A.pt B.pt

`--module` loads GpuAugment from a file instead (gpu_augment_before.py beside this script is the module as it was
before colour jitter, flips and rotations ran on the images they pick only). On CUDA the time is wall time with the
device synchronised, not CPU time.

Bytes are those of every tensor an operation takes or returns, views left out (they move nothing), and for indexing
the rows it picks or puts, twice (read and written): a count of memory traffic that does not depend on the machine,
for work that is memory-bound on a GPU. `default` is the TrainingJob's
default augmentation; `every-step` switches on every step at probability 1 with all four colour-jitter factors.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from modelyard.api.training_job import Augmentation, ColorJitter, GaussNoise, Normalization
from modelyard.training import gpu_augment
from modelyard.training.gpu_data import AugmentParams, draw_parameters


class Traffic(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.bytes, self.operations = 0, 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            self.bytes += self._moved(func, args, kwargs, out)
            self.operations += 1
        return out

    @staticmethod
    def _moved(func: Any, args: Any, kwargs: Any, out: Any) -> int:
        def size(tensor: torch.Tensor) -> int:
            return tensor.numel() * tensor.element_size()

        # Indexing reads and writes the rows it picks, not the whole tensor it picks them from or into.
        if func.name().startswith("aten::index_select"):
            return 2 * size(out)
        if func.name().startswith("aten::index_copy"):
            return 2 * size(args[3])  # (self, dim, index, source)
        tensors = [item for item in tree_flatten((args, kwargs, out))[0] if isinstance(item, torch.Tensor)]
        return sum(size(tensor) for tensor in tensors)


def photo_like(rng: np.random.Generator, size: int) -> torch.Tensor:
    gradient = np.linspace(0, 255, size, dtype=np.float32)
    field = gradient[:, None, None] * rng.uniform(0, 1, 3) / 2 + gradient[None, :, None] * rng.uniform(0, 1, 3) / 2
    pixels = np.clip(field + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--config", choices=["default", "every-step"], default="default")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compare", type=Path, nargs=2)
    parser.add_argument("--module", type=Path, help="a file to take GpuAugment from")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.compare:
        first, second = (torch.load(path) for path in args.compare)
        print(f"largest difference {float((first - second).abs().max()):.3g}, equal: {torch.equal(first, second)}")
        return
    augmentation = Augmentation()
    if args.config == "every-step":
        jitter = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=1.0)
        augmentation = Augmentation(
            horizontal_flip=1.0, random_rotate90=1.0, color_jitter=jitter, gauss_noise=GaussNoise(p=1.0)
        )
    rng = np.random.default_rng(0)
    module = gpu_augment
    if args.module:
        spec = importlib.util.spec_from_file_location("gpu_augment_under_test", args.module)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    device = torch.device(args.device)
    images = [photo_like(rng, 320).to(device) for _ in range(args.batch)]
    params = AugmentParams.stack(np.stack([draw_parameters(seed, augmentation) for seed in range(args.batch)]))
    augment = module.GpuAugment(224, augmentation, Normalization())
    with Traffic() as traffic:
        output = augment(images, params, noise_seed=1)
    seconds = []
    for _ in range(args.repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        augment(images, params, noise_seed=1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - started)
    figures = {
        "config": args.config,
        "batch": args.batch,
        "gigabytes": traffic.bytes / 1e9,
        "operations": traffic.operations,
        "device": args.device,
        "ms_best": 1000 * min(seconds),
        "ms_median": 1000 * sorted(seconds)[len(seconds) // 2],
    }
    print(json.dumps(figures))
    if args.out:
        torch.save(output.cpu(), args.out)


if __name__ == "__main__":
    main()
