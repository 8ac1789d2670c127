"""Where the gpu pipeline's helper thread spends each batch: the loader alone, beside the compiled step, beside the
graphed step (training.cudaGraphs). Wall and thread CPU time of torchvision's nvJPEG call, the augmentation, the
DataLoader's next() and the whole helper thread, per batch.

Run on 2026-12-05 on an H100 as `PYTHONPATH=$PWD python3 bench/results/2026-12-05-h100-b/helper_probe.py` (from a
scratch copy; ruff's formatting applied afterwards, the logic unchanged); its output is helper-probe.log. Ignore the
log's "prepare" figures: the wrapper below is applied again to an already wrapped `prepare` at every epoch, so they
count the same time several times over. The others are counted once.
"""

import collections
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, "bench")
from train_throughput import write_jpeg_folder

from modelyard.api.training_job import DataSpec, InputPipeline, ModelSpec, TrainingSpec
from modelyard.training import gpu_pipeline as gp
from modelyard.training.data import BadImageTracker, EpochSampler, load_split
from modelyard.training.distributed import Distributed
from modelyard.training.loop import prepare_trainee, train_epoch
from modelyard.training.model import build_model
from modelyard.training.trainer import make_batches

stats = collections.defaultdict(float)


def timed(name, fn):
    def wrapper(*a, **k):
        w, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            stats[name + " wall"] += time.perf_counter() - w
            stats[name + " cpu"] += time.thread_time() - c

    return wrapper


gp.decode_jpegs = timed("nvjpeg", gp.decode_jpegs)
gp.GpuAugment.__call__ = timed("augment", gp.GpuAugment.__call__)
orig_produce = gp.DeviceLoader._produce


def produce(self, ready, stop):
    inner = self.loader

    class Timed:
        def __len__(self) -> int:
            return len(inner)

        def __iter__(self):  # type: ignore[no-untyped-def]
            it = iter(inner)
            while True:
                w, c = time.perf_counter(), time.thread_time()
                try:
                    item = next(it)
                except StopIteration:
                    return
                stats["next(DataLoader) wall"] += time.perf_counter() - w
                stats["next(DataLoader) cpu"] += time.thread_time() - c
                stats["batches"] += 1
                yield item

    self.loader = Timed()
    self.prepare = timed("prepare", self.prepare)
    w, c = time.perf_counter(), time.thread_time()
    try:
        orig_produce(self, ready, stop)
    finally:
        self.loader, self.prepare = (
            inner,
            self.prepare.__wrapped__ if hasattr(self.prepare, "__wrapped__") else self.prepare,
        )
        stats["helper wall"] += time.perf_counter() - w
        stats["helper cpu"] += time.thread_time() - c


gp.DeviceLoader._produce = produce


def report(name, images_per_second):
    n = stats["batches"] or 1
    keys = [k for k in stats if k != "batches"]
    print(
        f"{name}: {images_per_second:.1f} img/s; per batch (ms, over {int(n)} incl. warm-up): "
        + ", ".join(f"{k} {stats[k] * 1000 / n:.1f}" for k in sorted(keys)),
        flush=True,
    )
    stats.clear()


device = torch.device("cuda", 0)
context = Distributed(0, 1, 0, device)
WARM, STEPS, BATCH = 15, 40, 256
with tempfile.TemporaryDirectory() as scratch:
    root = write_jpeg_folder(Path(scratch) / "jpegs", 14336, 10, 320)
    data = DataSpec(path=str(root), image_size=224, num_workers=14, pipeline=InputPipeline.GPU)
    split = load_split(data, 10, seed=0)
    samples = split.train + split.val

    def loader():
        return make_batches(
            data, samples, EpochSampler(len(samples), seed=0, rank=0, world_size=1), BATCH, device, train=True
        )

    # A: the loader alone
    source = loader()
    it = iter(source)
    for _ in range(WARM):
        next(it)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(STEPS):
        b = next(it)
    torch.cuda.synchronize()
    ips = STEPS * BATCH / (time.perf_counter() - t)
    del it
    report("A loader alone", ips)
    for name, graphs in (("B compiled step", False), ("C graphed step", True)):
        torch._dynamo.reset()
        torch.manual_seed(0)
        training = TrainingSpec(
            batch_size=BATCH, warmup_epochs=0, log_every_steps=10**6, compile=True, cuda_graphs=graphs
        )
        trainee, _ = prepare_trainee(build_model(ModelSpec(pretrained=False)), training, context, WARM + STEPS)
        source = loader()
        tracker = BadImageTracker(10**9, 1.0, lambda p, e: None)
        train_epoch(
            trainee,
            source,
            epoch=0,
            first_step=0,
            training=training,
            max_steps=WARM,
            context=context,
            bad_images=tracker,
            on_step=lambda r: None,
        )
        stats.clear()
        torch.cuda.synchronize()
        t = time.perf_counter()
        r = train_epoch(
            trainee,
            source,
            epoch=1,
            first_step=0,
            training=training,
            max_steps=STEPS,
            context=context,
            bad_images=tracker,
            on_step=lambda r: None,
        )
        torch.cuda.synchronize()
        ips = r.images / (time.perf_counter() - t)
        report(f"{name} (data-wait {r.data_wait_seconds / r.seconds:.1%})", ips)
