"""Run 1 (ab.log) at f743a27 as `python3 .exp/ab_pipeline.py`; run 2 (ab-2.log) at a7ef4be as
`python3 bench/results/2026-12-01-h200-b/ab_pipeline.py`. Both commits had make_batches(compile=...), since reverted.

Same-run A/B of the gpu pipeline: augmentation eager vs compiled, prefetch depth 1 vs 2 (model compiled)."""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import train_throughput as tt

from modelyard.api.training_job import Precision, ResourcesSpec
from modelyard.training import distributed, gpu_pipeline

context = distributed.setup(ResourcesSpec(gpus_per_node=1))
original = tt.make_batches
args = argparse.Namespace(backbone="resnet50", classes=10, image_size=224, steps=40, warmup=15, workers=14)
with tempfile.TemporaryDirectory() as scratch:
    root = tt.write_jpeg_folder(Path(scratch) / "j", 256 * 56, 10, 320)
    recipe = tt.Recipe("modelyard", Precision.AUTO, True, True, 256)
    syn = tt.measure(recipe, "synthetic", args, context, None).images_per_second
    print(f"synthetic {syn:.1f}", flush=True)
    for augment_compiled, depth in ((False, 1), (True, 1), (True, 2)):
        tt.make_batches = lambda *a, _c=augment_compiled, **k: original(*a, **{**k, "compile": _c})
        gpu_pipeline.PREFETCH_BATCHES = depth
        t = time.perf_counter()
        r = tt.measure(recipe, "gpu-pipeline", args, context, root)
        print(
            f"augment compiled={augment_compiled} prefetch={depth}: {r.images_per_second:.1f} img/s "
            f"({r.images_per_second / syn:.1%} of synthetic), data-wait {r.data_wait_fraction:.1%}, "
            f"peak {r.peak_memory_bytes / 2**30:.2f} GiB ({time.perf_counter() - t:.0f}s)",
            flush=True,
        )
