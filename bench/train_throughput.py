"""Training throughput of the proposal's full model (ResNet-50 + attention, 224x224 by default).

Measures images/s, the share of step time spent waiting for data, and peak memory, for
- the baseline: the proposal's recipe (fp16 autocast + GradScaler, NCHW, eager, batch 32), and
- Modelyard's recipe: bf16 where the GPU supports it (fp32 on a CPU), channels_last, optionally torch.compile,
each on synthetic tensors (the model's speed alone) and through the real input pipelines on a JPEG class folder this
script writes: `pipeline` (data.pipeline cpu: PIL decode and albumentations in DataLoader workers) and `gpu-pipeline`
(data.pipeline gpu: workers read bytes, nvJPEG decode and augmentation on the device), all in the same run, printed
as ratios to the baseline. It prepares the model with the trainer's own `prepare_trainee` (channels_last, cuDNN
autotuning, DDP, compile) and drives its `train_epoch`, so it measures exactly the code that trains.

    python bench/train_throughput.py                       # CUDA if present, else CPU with tiny step counts
    python bench/train_throughput.py --steps 50 --batch-size 128 --compile --json results.json
    python bench/train_throughput.py --data all --recipes modelyard   # synthetic vs cpu pipeline vs gpu pipeline
    python bench/train_throughput.py --data gpu --profile-steps 5     # and where each run's device time went
    torchrun --nproc_per_node=2 bench/train_throughput.py --recipes modelyard ...   # DDP, one process per GPU

Under torchrun every rank trains its own shard through DistributedDataParallel exactly as the trainer does; the
figures are for all ranks together (bench/ddp_scaling.py runs it on 1..N GPUs and computes scaling efficiency).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.profiler import ProfilerActivity

from modelyard.api.training_job import DataSpec, InputPipeline, ModelSpec, Precision, ResourcesSpec, TrainingSpec
from modelyard.training import distributed
from modelyard.training.data import BadImageTracker, Batch, EpochSampler, load_split
from modelyard.training.distributed import Distributed
from modelyard.training.loop import EpochResult, prepare_trainee, train_epoch
from modelyard.training.model import build_model
from modelyard.training.trainer import make_batches


@dataclass(frozen=True)
class Recipe:
    name: str
    precision: Precision
    channels_last: bool
    compile: bool
    batch_size: int
    freeze_batch_norm: bool = False
    cuda_graphs: bool = False


@dataclass
class Measurement:
    recipe: str
    data: str
    batch_size: int
    precision: str
    images_per_second: float
    data_wait_fraction: float
    peak_memory_bytes: int
    steps: int
    world_size: int = 1
    ratio_to_baseline: float | None = None
    share_of_synthetic: float | None = None  # a pipeline's images/s over the same recipe's on synthetic data
    host_decode_share: float | None = None  # gpu pipeline: data.hostDecodeShare
    profile: str | None = None  # --profile-steps: where the time of the steps went, a table


class SyntheticBatches:
    """The same random batch over and over, already on the device in the recipe's memory format: the model's speed
    without any input pipeline (issue 9's definition). The step's own copy then costs nothing; a batch kept on the
    host took 2.8 ms of each 41 ms step on the H200 copying 154 MB of fp32."""

    def __init__(
        self, batch_size: int, image_size: int, classes: int, steps: int, device: torch.device, channels_last: bool
    ) -> None:
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        images = torch.randn(batch_size, 3, image_size, image_size, device=device)
        labels = torch.randint(0, classes, (batch_size,), device=device)
        self.batch = Batch(images.contiguous(memory_format=memory_format), labels, [])
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Batch]:
        for _ in range(self.steps):
            yield self.batch


def write_jpeg_folder(root: Path, images: int, classes: int, size: int, seed: int = 0) -> Path:
    """`images` JPEGs of `size` px in `classes` folders: smooth colour fields with noise, so they decode like photos
    (a few tens of kB each), not like flat colour. Written by all CPUs (one took over two minutes for 14,336)."""
    for index in range(classes):
        (root / f"class-{index:02d}").mkdir(parents=True, exist_ok=True)
    chunks = [(root, start, min(start + 512, images), classes, size, seed) for start in range(0, images, 512)]
    with concurrent.futures.ProcessPoolExecutor(min(os.cpu_count() or 1, 16)) as pool:
        list(pool.map(_write_jpegs, *zip(*chunks, strict=True)))
    return root


def _write_jpegs(root: Path, start: int, end: int, classes: int, size: int, seed: int) -> None:
    rng = np.random.default_rng([seed, start])
    gradient = np.linspace(0, 1, size, dtype=np.float32)
    for index in range(start, end):
        colours = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
        field = gradient[:, None, None] * colours[0] + gradient[None, :, None] * (255 - colours[1])
        pixels = np.clip(field / 2 + rng.normal(0, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"class-{index % classes:02d}" / f"{index:06d}.jpg", quality=90)


def write_backbone_weights(path: Path, backbone: str, image_size: int, device: torch.device) -> Path:
    """Random backbone weights whose BatchNorm statistics are those of random images, as a stand-in for ImageNet's
    (nothing is downloaded): frozen BatchNorm then normalises as it would after pretraining, and the step's numbers
    stay in range. The file goes through the trainer's own `model.weights` loading."""
    resnet = torchvision.models.get_model(backbone, weights=None).to(device)
    for module in resnet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average over the calibration batches
    with torch.no_grad():
        for _ in range(2):
            resnet(torch.randn(8, 3, image_size, image_size, device=device))
    torch.save({key: value.cpu() for key, value in resnet.state_dict().items()}, path)
    return path


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # The process's peak resident set (KiB on Linux): on a CPU every recipe runs in this one process.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def measure(
    recipe: Recipe,
    data: str,
    args: argparse.Namespace,
    context: Distributed,
    dataset_root: Path | None,
    weights: Path | None = None,
    host_decode_share: float = 0.0,
) -> Measurement:
    device = context.device
    torch.manual_seed(0)
    if recipe.freeze_batch_norm:
        assert weights is not None
        spec = ModelSpec(backbone=args.backbone, weights=str(weights), num_classes=args.classes, freeze_batch_norm=True)
    else:
        spec = ModelSpec(backbone=args.backbone, pretrained=False, num_classes=args.classes)
    # Frozen norms on random weights do not normalise the layers as training moves them: at the default rate the
    # loss overflowed by step 15 on the H200. A small rate keeps it finite and costs the same time per step.
    learning_rate = 1e-5 if recipe.freeze_batch_norm else TrainingSpec().learning_rate
    training = TrainingSpec(
        batch_size=recipe.batch_size, learning_rate=learning_rate, warmup_epochs=0, log_every_steps=10**6,
        precision=recipe.precision, channels_last=recipe.channels_last, compile=recipe.compile,
        cuda_graphs=recipe.cuda_graphs,
    )  # fmt: skip
    # The trainer's own preparation: device, memory format, optimizer, cuDNN autotuning, DDP wrap, compile.
    trainee, precision = prepare_trainee(build_model(spec), training, context, args.steps + args.warmup)
    if data == "synthetic":
        loaders: list[Any] = [
            SyntheticBatches(recipe.batch_size, args.image_size, args.classes, steps, device, recipe.channels_last)
            for steps in (args.warmup, args.steps, args.profile_steps)
        ]
    else:
        assert dataset_root is not None
        pipeline = InputPipeline.GPU if data == "gpu-pipeline" else InputPipeline.CPU
        data_spec = DataSpec(
            path=str(dataset_root), image_size=args.image_size, num_workers=args.workers, pipeline=pipeline,
            host_decode_share=host_decode_share,
        )  # fmt: skip
        split = load_split(data_spec, args.classes, seed=0)
        samples = split.train + split.val
        sampler = EpochSampler(len(samples), seed=0, rank=context.rank, world_size=context.world_size)
        loader = make_batches(data_spec, samples, sampler, recipe.batch_size, device, train=True)
        loaders = [loader, loader, loader]
    tracker = BadImageTracker(10**9, 1.0, lambda path, error: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def run(phase: int, steps: int) -> tuple[EpochResult, float]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        result = train_epoch(
            trainee, loaders[phase], epoch=phase, first_step=0, training=training, max_steps=steps, context=context,
            bad_images=tracker, on_step=lambda report: None,
        )  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return result, time.perf_counter() - started

    if args.warmup:
        run(0, args.warmup)
    timed, seconds = run(1, args.steps)
    profile = None
    if args.profile_steps:
        # After the timed steps, so that the profiler's own cost stays out of the figures.
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch.profiler.profile(activities=activities) as profiler:
            _, profiled_seconds = run(2, args.profile_steps)
        profile = profile_table(profiler, device, args.profile_steps, args.profile_rows, profiled_seconds)
    # All ranks together: images add up, the slowest rank's time and the worst data wait and memory count.
    totals = torch.tensor([timed.images, seconds, timed.data_wait_seconds / seconds, peak_memory(device)],
                          dtype=torch.float64, device=device)  # fmt: skip
    images = distributed.all_reduce_sum(totals[:1].clone(), context)
    worst = distributed.all_reduce_max(totals[1:].clone(), context)
    return Measurement(
        recipe=recipe.name,
        data=data,
        batch_size=recipe.batch_size,
        precision=precision.value,
        images_per_second=float(images[0]) / float(worst[0]),
        data_wait_fraction=float(worst[1]),
        peak_memory_bytes=int(worst[2]),
        steps=timed.steps,
        world_size=context.world_size,
        host_decode_share=host_decode_share if data == "gpu-pipeline" else None,
        profile=profile,
    )


def profile_table(profiler: torch.profiler.profile, device: torch.device, steps: int, rows: int, seconds: float) -> str:
    """The operations that took the most device time (on a CPU: CPU time) over the profiled steps, per step, and the
    wall time per step (profiled, so slower than the timed steps). On CUDA the profiler sees every thread's kernels
    and copies, those of the helper thread that prepares batches among them; streams that overlap both count."""
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = profiler.key_averages()
    total = sum(getattr(event, key) for event in events)
    lines = [f"{'operation':60s} {'ms/step':>9s} {'share':>6s} {'calls/step':>10s}"]
    for event in sorted(events, key=lambda event: getattr(event, key), reverse=True)[:rows]:
        spent = getattr(event, key)
        lines.append(
            f"{event.key[:60]:60s} {spent / 1e3 / steps:9.3f} {spent / max(total, 1):6.1%} {event.count / steps:10.1f}"
        )
    lines.append(f"{'all':60s} {total / 1e3 / steps:9.3f}  (wall {seconds * 1e3 / steps:.3f} ms/step)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--backbone", default="resnet50", choices=["resnet18", "resnet34", "resnet50", "resnet101"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32, help="Batch of Modelyard's recipe (baseline: 32).")
    parser.add_argument("--steps", type=int, default=None, help="Timed steps (default: 30 on CUDA, 1 on a CPU).")
    parser.add_argument("--warmup", type=int, default=None, help="Untimed steps first (default: 10 on CUDA, 1).")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: CPUs, at most 8).")
    parser.add_argument("--images", type=int, default=None, help="JPEGs written for the real pipeline.")
    parser.add_argument("--jpeg-size", type=int, default=320, help="Side of the written JPEGs.")
    parser.add_argument("--compile", action="store_true", help="torch.compile Modelyard's recipe too.")
    parser.add_argument(
        "--data",
        choices=["synthetic", "pipeline", "gpu-pipeline", "both", "gpu", "all"],
        default="both",
        help="pipeline: data.pipeline cpu; gpu-pipeline: data.pipeline gpu; both: synthetic, pipeline; gpu: "
        "synthetic, gpu-pipeline; all: all three.",
    )
    parser.add_argument(
        "--frozen-batch-norm",
        action="store_true",
        help="Also measure Modelyard's recipe with model.freezeBatchNorm (on calibrated random backbone weights).",
    )
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="Also measure Modelyard's compiled recipe with training.cudaGraphs (needs --compile).",
    )
    parser.add_argument(
        "--host-decode-shares",
        type=lambda text: [float(share) for share in text.split(",")],
        default=[0.0],
        help="gpu-pipeline: measure at each of these data.hostDecodeShare values, comma-separated (default 0).",
    )
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=0,
        help="After each timed run, profile this many more steps and print where the device's time went.",
    )
    parser.add_argument("--profile-rows", type=int, default=25, help="Operations listed in each profile.")
    parser.add_argument("--json", type=Path, help="Also write the measurements here.")
    parser.add_argument(
        "--recipes", choices=["both", "baseline", "modelyard"], default="both", help="Which recipes to measure."
    )
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    context = distributed.setup(ResourcesSpec(gpus_per_node=1 if cuda else 0))
    device = context.device
    args.steps = args.steps if args.steps is not None else (30 if cuda else 1)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    args.workers = args.workers if args.workers is not None else min(os.cpu_count() or 1, 8)
    largest_batch = max(args.batch_size, 32)
    args.images = args.images or largest_batch * (args.steps + args.warmup + 1)
    recipes = [
        Recipe("baseline (fp16+scaler, NCHW, eager, batch 32)", Precision.FP16, False, False, 32),
        Recipe(
            f"modelyard ({'auto precision'}, channels_last, {'compiled' if args.compile else 'eager'}, "
            f"batch {args.batch_size})",
            Precision.AUTO, True, args.compile, args.batch_size,
        ),
    ]  # fmt: skip
    if args.frozen_batch_norm:
        modelyard = recipes[1]
        recipes.append(Recipe(**{**asdict(modelyard), "name": modelyard.name[:-1] + ", frozen BatchNorm)",
                                 "freeze_batch_norm": True}))  # fmt: skip
    if args.cuda_graphs:
        if not args.compile:
            parser.error("--cuda-graphs needs --compile: the graphs are torch.compile's")
        modelyard = recipes[1]
        recipes.append(Recipe(**{**asdict(modelyard), "name": modelyard.name[:-1] + ", CUDA graphs)",
                                 "cuda_graphs": True}))  # fmt: skip
    recipes = {"both": recipes, "baseline": recipes[:1], "modelyard": recipes[1:]}[args.recipes]
    say = print if context.is_main else (lambda *_, **__: None)
    say(
        f"device {device}{' ' + torch.cuda.get_device_name(device) if cuda else ''}, torch {torch.__version__}, "
        f"{args.backbone} {args.image_size}x{args.image_size}, {args.steps} timed steps after {args.warmup}, "
        f"{args.workers} workers, {context.world_size} process(es)",
        flush=True,
    )
    modes = {
        "both": ["synthetic", "pipeline"],
        "gpu": ["synthetic", "gpu-pipeline"],
        "all": ["synthetic", "pipeline", "gpu-pipeline"],
    }.get(args.data, [args.data])
    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as scratch:
        root = None
        if set(modes) & {"pipeline", "gpu-pipeline"}:
            started = time.perf_counter()
            # Every rank writes the same files into its own scratch folder: no shared file system is assumed.
            root = write_jpeg_folder(Path(scratch) / "jpegs", args.images, args.classes, args.jpeg_size)
            say(f"wrote {args.images} JPEGs of {args.jpeg_size}px in {time.perf_counter() - started:.1f}s", flush=True)
        weights = None
        if args.frozen_batch_norm:
            weights = write_backbone_weights(Path(scratch) / "backbone.pth", args.backbone, args.image_size, device)
        synthetic: dict[str, float] = {}
        runs = [
            (data, share) for data in modes for share in (args.host_decode_shares if data == "gpu-pipeline" else [0.0])
        ]
        for data, host_share in runs:
            baseline = None
            for recipe in recipes:
                result = measure(recipe, data, args, context, root, weights, host_share)
                if baseline is None:
                    baseline = result.images_per_second
                result.ratio_to_baseline = result.images_per_second / baseline
                if data == "synthetic":
                    synthetic[recipe.name] = result.images_per_second
                elif recipe.name in synthetic:  # issue 9 target 2: a pipeline at >= 90% of synthetic
                    result.share_of_synthetic = result.images_per_second / synthetic[recipe.name]
                measurements.append(result)
                share = f"  {result.share_of_synthetic:6.1%} of synthetic" if result.share_of_synthetic else ""
                label = f"{data} host {host:.0%}" if (host := result.host_decode_share) else data
                say(
                    f"{label:21s}  {recipe.name:76s}  {result.images_per_second:9.1f} img/s  "
                    f"data-wait {result.data_wait_fraction:5.1%}  peak {result.peak_memory_bytes / 2**30:6.2f} GiB  "
                    f"x{result.ratio_to_baseline:.2f}{share}",
                    flush=True,
                )
                if result.profile:
                    say(f"profile of {args.profile_steps} more steps, {label}, {recipe.name}:\n{result.profile}")
    distributed.teardown(context)
    if args.json and context.is_main:
        args.json.write_text(json.dumps([asdict(m) for m in measurements], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
