"""One graphed (or compiled) model trained on synthetic batches, then through the gpu pipeline decoding with nvJPEG,
then with PIL decoding in the DataLoader workers (workers-decode.patch: every JPEG goes the way non-JPEGs go).

Run on 2026-12-05 on an H100 as `git apply workers-decode.patch; PYTHONPATH=$PWD python3
bench/results/2026-12-05-h100-b/decode_probe.py graphs` (from a scratch copy; ruff's formatting applied afterwards,
the logic unchanged); its output is decode-probe.log.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, "bench")
from train_throughput import SyntheticBatches, write_jpeg_folder

from modelyard.api.training_job import DataSpec, InputPipeline, ModelSpec, TrainingSpec
from modelyard.training.data import BadImageTracker, EpochSampler, load_split
from modelyard.training.distributed import Distributed
from modelyard.training.loop import prepare_trainee, train_epoch
from modelyard.training.model import build_model
from modelyard.training.trainer import make_batches

device = torch.device("cuda", 0)
context = Distributed(0, 1, 0, device)
WARM, STEPS, BATCH = 15, 40, 256
graphs = sys.argv[1] == "graphs"
torch.manual_seed(0)
training = TrainingSpec(batch_size=BATCH, warmup_epochs=0, log_every_steps=10**6, compile=True, cuda_graphs=graphs)
trainee, _ = prepare_trainee(build_model(ModelSpec(pretrained=False)), training, context, 10**4)
tracker = BadImageTracker(10**9, 1.0, lambda p, e: None)


def measure(name, warm, timed):
    train_epoch(
        trainee,
        warm,
        epoch=0,
        first_step=0,
        training=training,
        max_steps=WARM,
        context=context,
        bad_images=tracker,
        on_step=lambda r: None,
    )
    torch.cuda.synchronize()
    t = time.perf_counter()
    r = train_epoch(
        trainee,
        timed,
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
    wait = r.data_wait_seconds / r.seconds
    print(f"{'graphs' if graphs else 'compiled'}  {name:34s} {ips:8.1f} img/s  data-wait {wait:5.1%}", flush=True)
    return ips


synthetic = measure(
    "synthetic",
    SyntheticBatches(BATCH, 224, 10, WARM, device, True),
    SyntheticBatches(BATCH, 224, 10, STEPS, device, True),
)
with tempfile.TemporaryDirectory() as scratch:
    root = write_jpeg_folder(Path(scratch) / "jpegs", 14336, 10, int(os.environ.get("JPEG_SIZE", "320")))
    data = DataSpec(path=str(root), image_size=224, num_workers=14, pipeline=InputPipeline.GPU)
    split = load_split(data, 10, seed=0)
    samples = split.train + split.val
    for mode in ("0", "1"):
        os.environ["MODELYARD_DECODE_IN_WORKERS"] = mode
        source = make_batches(
            data, samples, EpochSampler(len(samples), seed=0, rank=0, world_size=1), BATCH, device, train=True
        )
        ips = measure("gpu pipeline, " + ("PIL in workers" if mode == "1" else "nvJPEG"), source, source)
        print(f"   share of synthetic {ips / synthetic:.1%}", flush=True)
        del source
