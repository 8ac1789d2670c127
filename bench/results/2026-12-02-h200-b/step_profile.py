"""Issue 9 targets 1 and 2 on one H200: where a training step's GPU time goes, and two levers, each in one process.

    python3 bench/results/2026-12-02-h200-b/step_profile.py synthetic:default synthetic:cdt gpu:default gpu:graphs

A variant is DATA:MODE. DATA: synthetic (one random batch, the model alone) or gpu (the gpu pipeline on 14,336
photo-like 320x320 JPEGs, 14 workers). MODE: default (the trainer's torch.compile), cdt (the same with Inductor's
coordinate-descent tuning of its Triton kernels), graphs (mode="reduce-overhead": CUDA graphs), frozen
(model.freezeBatchNorm on calibrated random weights, added for 2026-12-02-h200-e). Each variant compiles
the proposal's model (bf16, channels_last, batch 256) through the trainer's prepare_trainee, runs 15 warm-up steps,
times 40, then records 5 with torch.profiler and sums the GPU kernel time by kind.
"""

import collections
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import torch
import torch._inductor.config as inductor
import train_throughput as tt
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from modelyard.api.training_job import DataSpec, InputPipeline, ModelSpec, Precision, ResourcesSpec, TrainingSpec
from modelyard.training import distributed
from modelyard.training.data import BadImageTracker, EpochSampler, load_split
from modelyard.training.loop import prepare_trainee, train_epoch
from modelyard.training.model import build_model
from modelyard.training.trainer import make_batches

BATCH, SIZE, CLASSES, WARMUP, STEPS, PROFILED = 256, 224, 10, 15, 40, 5
KINDS = (
    ("optimizer", ("multi_tensor", "fused_adam", "adamw")),
    ("triton (Inductor's fused element-wise and BatchNorm)", ("triton",)),
    ("convolution (cuDNN)", ("conv", "xmma", "cudnn", "implicit", "dgrad", "wgrad", "fprop", "sm90", "sm80")),
    ("matrix multiply", ("gemm", "cutlass", "nvjet", "cublas")),
    ("jpeg decode", ("jpeg", "huffman", "idct", "color")),
    ("copies and fills", ("memcpy", "memset", "copy")),
)


def kind_of(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, keys in KINDS if any(key in lowered for key in keys)), "other (ATen kernels)")


def device_time_us(event: object) -> float:
    return float(getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0))


def run(variant: str, context: distributed.Distributed, jpegs: Path) -> None:
    data, mode = variant.split(":")
    torch._dynamo.reset()
    inductor.coordinate_descent_tuning = mode == "cdt"
    original = torch.compile
    if mode == "graphs":
        torch.compile = lambda model, **_: original(model, mode="reduce-overhead")  # type: ignore[assignment]
    try:
        training = TrainingSpec(batch_size=BATCH, warmup_epochs=0, log_every_steps=10**6, precision=Precision.AUTO,
                                channels_last=True, compile=True,
                                learning_rate=1e-5 if mode == "frozen" else 1e-3)  # fmt: skip
        if mode == "frozen":  # the benchmark's stand-in for pretrained weights, and its rate (see there)
            weights = tt.write_backbone_weights(jpegs.parent / "backbone.pth", "resnet50", SIZE, context.device)
            spec = ModelSpec(backbone="resnet50", weights=str(weights), num_classes=CLASSES, freeze_batch_norm=True)
        else:
            spec = ModelSpec(backbone="resnet50", pretrained=False, num_classes=CLASSES)
        started = time.perf_counter()
        trainee, _ = prepare_trainee(build_model(spec), training, context, 1000)
    finally:
        torch.compile = original

    loader = None
    if data == "gpu":  # one loader for every phase, as bench/train_throughput.py: its workers start once
        spec = DataSpec(path=str(jpegs), image_size=SIZE, num_workers=14, pipeline=InputPipeline.GPU)
        split = load_split(spec, CLASSES, seed=0)
        samples = split.train + split.val
        loader = make_batches(spec, samples, EpochSampler(len(samples), seed=0), BATCH, context.device, train=True)

    def source(steps: int):
        # The figures of 2026-12-02 were measured with the batch on the host (`pin=True` then); SyntheticBatches now
        # keeps it on the device (f76f89c), so a rerun no longer counts the 2.8 ms copy.
        return loader if loader is not None else tt.SyntheticBatches(BATCH, SIZE, CLASSES, steps, context.device, True)

    tracker = BadImageTracker(10**9, 1.0, lambda path, error: None)

    def epoch(steps: int, number: int):
        return train_epoch(trainee, source(steps), epoch=number, first_step=0, training=training, max_steps=steps,
                           context=context, bad_images=tracker, on_step=lambda report: None)  # fmt: skip

    epoch(WARMUP, 0)
    torch.cuda.synchronize()
    compiled = time.perf_counter() - started
    torch.cuda.reset_peak_memory_stats()
    begin = time.perf_counter()
    result = epoch(STEPS, 1)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - begin
    rate = result.images / seconds
    peak = torch.cuda.max_memory_allocated() / 2**30
    with profile(activities=[ProfilerActivity.CUDA]) as recorded:
        begin = time.perf_counter()
        epoch(PROFILED, 2)
        torch.cuda.synchronize()
        profiled_wall = time.perf_counter() - begin
    totals: collections.Counter[str] = collections.Counter()
    kernels: collections.Counter[str] = collections.Counter()
    events = list(recorded.key_averages())
    # Kernels only: an operator's own entry would count its kernels' time a second time.
    kernels_only = [event for event in events if getattr(event, "device_type", None) == DeviceType.CUDA]
    for event in kernels_only or events:
        spent = device_time_us(event)
        if spent:
            totals[kind_of(event.key)] += spent
            kernels[event.key] += spent
    gpu_ms = sum(totals.values()) / 1000 / PROFILED
    print(f"== {variant}: {rate:.1f} img/s, data-wait {result.data_wait_seconds / seconds:.1%}, peak {peak:.2f} GiB, "
          f"{compiled:.0f}s to compile and warm up", flush=True)  # fmt: skip
    print(f"   profiled: {profiled_wall / PROFILED * 1000:.1f} ms wall per step, {gpu_ms:.1f} ms of GPU kernels")
    for kind, spent in totals.most_common():
        print(f"   {kind:55s} {spent / 1000 / PROFILED:7.2f} ms/step  {spent / sum(totals.values()):6.1%}")
    for name, spent in kernels.most_common(12):
        print(f"     {spent / 1000 / PROFILED:6.2f} ms  {name[:110]}")


def main() -> None:
    context = distributed.setup(ResourcesSpec(gpus_per_node=1))
    with tempfile.TemporaryDirectory() as scratch:
        jpegs = Path(scratch) / "jpegs"
        if any(variant.startswith("gpu:") for variant in sys.argv[1:]):
            tt.write_jpeg_folder(jpegs, BATCH * 56, CLASSES, 320)
        for variant in sys.argv[1:]:
            try:
                run(variant, context, jpegs)
            except Exception:  # one failing variant must not cost the others
                traceback.print_exc()


if __name__ == "__main__":
    main()
