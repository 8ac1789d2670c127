"""input-eager.log: `python3 .exp/input_profile.py` on the code of 6e8bbe0; input-compiled.log:
`COMPILE=1 python3 .exp/input_profile.py` at f743a27, which had make_batches(compile=...), since reverted.

Where the gpu pipeline's time goes (issue 9 target 2): GPU kernel time of decode vs augment per batch, the
loader alone, and the training step alone; then the serial-sharing prediction."""

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch
from torch.profiler import ProfilerActivity, profile
from train_throughput import write_jpeg_folder

from modelyard.api.training_job import DataSpec, InputPipeline
from modelyard.training.data import EpochSampler, load_split
from modelyard.training.gpu_pipeline import TrainPreparation, decode_batch
from modelyard.training.trainer import make_batches

BATCH = int(os.environ.get("BATCH", "256"))
WORKERS = int(os.environ.get("WORKERS", "14"))
COMPILE = os.environ.get("COMPILE") == "1"
device = torch.device("cuda", 0)
torch.cuda.set_device(device)


def kernel_table(fn, label, n):
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(n):
            fn(i)
        torch.cuda.synchronize()
    events = prof.key_averages()

    def dev(e):
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)

    total = sum(dev(e) for e in events)
    print(
        f"--- {label}: GPU kernel time {total / 1000 / n:.2f} ms per batch of {BATCH}"
        f" ({BATCH / (total / 1e6 / n):.0f} img/s if alone on the GPU)"
    )
    for e in sorted(events, key=dev, reverse=True)[:12]:
        print(f"    {dev(e) / 1000 / n:8.3f} ms  x{e.count / n:6.1f}  {e.key[:90]}")
    return total / 1e6 / n


with tempfile.TemporaryDirectory() as scratch:
    t = time.perf_counter()
    root = write_jpeg_folder(Path(scratch) / "jpegs", BATCH * 24, 10, 320)
    print(f"wrote {BATCH * 24} JPEGs in {time.perf_counter() - t:.1f}s", flush=True)
    spec = DataSpec(path=str(root), image_size=224, num_workers=WORKERS, pipeline=InputPipeline.GPU)
    split = load_split(spec, 10, seed=0)
    samples = split.train + split.val
    sampler = EpochSampler(len(samples), seed=0, rank=0, world_size=1)
    loader = make_batches(spec, samples, sampler, BATCH, device, train=True, compile=COMPILE)
    raws = []
    for raw in loader.loader:
        raws.append(raw)
        if len(raws) == 12:
            break
    prepare = TrainPreparation(spec, device, compile=COMPILE)
    for raw in raws[:3]:
        prepare(raw)
    torch.cuda.synchronize()
    # Serial wall time per batch, CPU thread time per batch.
    for label, fn in (("decode only", lambda r: decode_batch(r, device)), ("decode+augment", prepare)):
        torch.cuda.synchronize()
        w, c = time.perf_counter(), time.thread_time()
        for raw in raws:
            fn(raw)
        cpu = (time.thread_time() - c) / len(raws)
        torch.cuda.synchronize()
        wall = (time.perf_counter() - w) / len(raws)
        print(
            f"{label}: wall {wall * 1000:.1f} ms/batch ({BATCH / wall:.0f} img/s), host thread CPU {cpu * 1000:.1f} ms"
        )
    g_dec = kernel_table(lambda i: decode_batch(raws[i], device), "decode only", 6)
    g_all = kernel_table(lambda i: prepare(raws[i]), "decode+augment", 6)
    # The DeviceLoader alone (workers + helper thread), as the trainer iterates it.
    n = 0
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i, batch in enumerate(loader):
        if i == 2:
            torch.cuda.synchronize()
            t = time.perf_counter()
            n = 0
        n += batch.images.shape[0]
        if i == 20:
            break
    torch.cuda.synchronize()
    print(f"DeviceLoader alone: {n / (time.perf_counter() - t):.0f} img/s", flush=True)
    s = float(os.environ.get("SYNTHETIC", "6194"))
    print(
        f"prediction if the GPU is shared serially with a {s:.0f} img/s step: "
        f"{1 / (1 / s + g_all / BATCH):.0f} img/s ({1 / (1 / s + g_all / BATCH) / s:.1%} of synthetic)"
    )
