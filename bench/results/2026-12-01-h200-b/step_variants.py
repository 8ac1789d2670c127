"""Run on 2026-12-01 as `python3 .exp/step_variants.py default:256 default:384`, then `reduce-overhead:256`.

Target 1 levers on synthetic data: compile mode and batch size, through bench/train_throughput.measure."""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import torch
import train_throughput as tt

from modelyard.api.training_job import Precision, ResourcesSpec
from modelyard.training import distributed

original = torch.compile
context = distributed.setup(ResourcesSpec(gpus_per_node=1))
for variant in sys.argv[1:]:
    mode, batch = variant.split(":")
    if mode.endswith("+cdt"):
        mode = mode[:-4]
        import torch._inductor.config as ic

        ic.coordinate_descent_tuning = True
    torch.compile = lambda m, _mode=mode: original(m, mode=None if _mode == "default" else _mode)
    args = argparse.Namespace(backbone="resnet50", classes=10, image_size=224, steps=40, warmup=15, workers=1)
    recipe = tt.Recipe(variant, Precision.AUTO, True, True, int(batch))
    t = time.perf_counter()
    r = tt.measure(recipe, "synthetic", args, context, None)
    seconds = time.perf_counter() - t
    peak = r.peak_memory_bytes / 2**30
    print(f"{variant:40s} {r.images_per_second:8.1f} img/s  peak {peak:.2f} GiB  ({seconds:.0f}s)", flush=True)
    torch._dynamo.reset()
