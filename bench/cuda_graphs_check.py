"""Is training with CUDA graphs (training.cudaGraphs) the same training as the compiled step without them? (GPU only)

Each case trains the same model from the same seed on the same batches through the trainer's own `prepare_trainee`,
`train_epoch` and `evaluate`, and compares the per-step losses and the final parameters of
- `compiled`, twice: the noise floor (cuDNN's autotuning may pick other kernels in another run), and
- `graphs`: the same recipe with training.cudaGraphs.
Cases: bf16; fp16 with its GradScaler; DDP, as 2 processes sharing one GPU through gloo (NCCL refuses two ranks on
one device; the DDP hooks, buckets and the compiler's per-bucket graph splits are the same); and bf16 with
gradientAccumulationSteps 2, which the spec refuses with cudaGraphs: what would happen if it did not. Halfway each
run evaluates the unwrapped model, as the trainer does between epochs. Also reported: Inductor's count of graphs it
skipped, and each run's time per step. Then `modelyard train` runs a small TrainingJob with cudaGraphs and the gpu
pipeline end to end (2 epochs, evaluation, checkpoint, the BentoML model).

    python bench/cuda_graphs_check.py [--backbone resnet18] [--batch-size 64] [--image-size 96] [--steps 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch._dynamo.utils import counters

from modelyard.api.training_job import ModelSpec, Precision, TrainingSpec
from modelyard.training.data import BadImageTracker, Batch
from modelyard.training.distributed import Distributed
from modelyard.training.loop import evaluate, prepare_trainee, train_epoch
from modelyard.training.model import build_model

CLASSES = 10
VARIANTS = ("compiled", "compiled again", "graphs")


@dataclass(frozen=True)
class Case:
    name: str
    precision: Precision
    processes: int = 1
    accumulation: int = 1


CASES = (
    Case("bf16", Precision.BF16),
    Case("fp16 + GradScaler", Precision.FP16),
    Case("DDP, 2 processes (gloo)", Precision.BF16, processes=2),
    Case("bf16, accumulation 2 (refused by the spec)", Precision.BF16, accumulation=2),
)


@dataclass
class Run:
    variant: str
    losses: list[float]
    eval_loss: float
    step_ms: float
    graph_skips: int
    parameters: list[float] | None = None  # flattened; dropped from the JSON
    error: str | None = None


def random_batches(count: int, size: int, image_size: int, seed: int, device: torch.device) -> list[Batch]:
    """Random images with a class-dependent colour shift, so that the loss falls and trajectories mean something."""
    generator = torch.Generator().manual_seed(seed)
    shifts = torch.randn(CLASSES, 3, 1, 1, generator=torch.Generator().manual_seed(7))
    batches = []
    for _ in range(count):
        labels = torch.randint(0, CLASSES, (size,), generator=generator)
        images = torch.randn(size, 3, image_size, image_size, generator=generator) + shifts[labels]
        batches.append(Batch(images.to(device), labels.to(device), []))
    return batches


def train(case: Case, variant: str, args: argparse.Namespace, context: Distributed) -> Run:
    torch._dynamo.reset()  # a fresh compile (and graph tree) per run, as a new process would have
    skips_before = counters["inductor"]["cudagraph_skips"]
    torch.manual_seed(0)
    model = build_model(
        ModelSpec(backbone=args.backbone, pretrained=False, num_classes=CLASSES, hidden_dim=128, attention_heads=4)
    )
    training = TrainingSpec(
        batch_size=args.batch_size, learning_rate=2e-3, warmup_epochs=0, log_every_steps=1,
        precision=case.precision, compile=True, cuda_graphs=variant == "graphs",
    )  # fmt: skip
    # The spec refuses cudaGraphs with accumulation; model_copy does not validate, which is the point here.
    training = training.model_copy(update={"gradient_accumulation_steps": case.accumulation})
    micro = args.steps * case.accumulation
    trainee, _ = prepare_trainee(model, training, context, args.steps)
    train_batches = random_batches(
        micro, args.batch_size, args.image_size, seed=100 + context.rank, device=context.device
    )
    # The last validation batch is smaller, as an epoch's usually is.
    val_batches = random_batches(3, args.batch_size, args.image_size, seed=200 + context.rank, device=context.device)
    val_batches[-1] = Batch(val_batches[-1].images[:7], val_batches[-1].labels[:7], [])
    tracker = BadImageTracker(10**9, 1.0, lambda path, error: None)
    losses: list[float] = []
    half = micro // 2
    run = Run(variant, losses, float("nan"), float("nan"), 0)
    try:
        for part, batches in enumerate((train_batches[:half], train_batches[half:])):
            torch.cuda.synchronize()
            started = time.perf_counter()
            result = train_epoch(
                trainee, batches, epoch=part, first_step=len(losses), training=training,
                max_steps=10**6, context=context, bad_images=tracker,
                on_step=lambda report: losses.append(report.loss) if report else None,
            )  # fmt: skip
            torch.cuda.synchronize()
            run.step_ms = (time.perf_counter() - started) * 1000 / result.steps
            run.eval_loss = evaluate(model, val_batches, trainee, context=context, bad_images=tracker).loss
    except Exception as error:  # the accumulation case is expected to fail: report how
        run.error = "".join(traceback.format_exception_only(error)).strip().splitlines()[-1][:300]
    run.graph_skips = counters["inductor"]["cudagraph_skips"] - skips_before
    run.parameters = torch.cat([p.detach().float().flatten().cpu() for p in model.parameters()]).tolist()
    return run


def run_case(case: Case, args: argparse.Namespace, context: Distributed) -> list[Run]:
    return [train(case, variant, args, context) for variant in VARIANTS]


def _ddp_worker(rank: int, case: Case, args: argparse.Namespace, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.port))
    dist.init_process_group("gloo", rank=rank, world_size=case.processes)
    context = Distributed(rank, case.processes, 0, torch.device("cuda", 0))
    runs = run_case(case, args, context)
    if rank == 0:
        out.write_text(json.dumps([asdict(run) for run in runs]))
    dist.destroy_process_group()


def compare(case: Case, runs: list[Run]) -> tuple[list[dict[str, object]], bool]:
    reference = torch.tensor(runs[0].parameters or [])
    rows, deviation = [], {}
    for run in runs:
        row: dict[str, object] = {"case": case.name, **{k: v for k, v in asdict(run).items() if k != "parameters"}}
        if run.error is None and runs[0].error is None and run.parameters:
            parameters = torch.tensor(run.parameters)
            row["parameter_rel_diff"] = float((parameters - reference).norm() / reference.norm())
            row["max_loss_diff"] = max(abs(a - b) for a, b in zip(run.losses, runs[0].losses, strict=True))
            deviation[run.variant] = (row["parameter_rel_diff"], row["max_loss_diff"])
        rows.append(row)
    if case.accumulation > 1:
        return rows, True  # refused by the spec; reported, not judged
    floor = deviation.get("compiled again", (0.0, 0.0))
    graphs = deviation.get("graphs")
    same = graphs is not None and all(g <= max(3 * f, 1e-4) for g, f in zip(graphs, floor, strict=True))
    return rows, same and runs[2].graph_skips == 0


def describe(row: dict[str, object]) -> str:
    losses = row["losses"] or [float("nan")]
    assert isinstance(losses, list)
    return (
        f"{row['case']:44s} {row['variant']:15s} loss {losses[0]:.4f} -> {losses[-1]:.4f}  "
        f"eval {row['eval_loss']:.4f}  params Δ {row.get('parameter_rel_diff', float('nan')):.2e}  "
        f"loss Δ {row.get('max_loss_diff', float('nan')):.2e}  {row['step_ms']:7.2f} ms/step  "
        f"skips {row['graph_skips']}  {row['error'] or ''}"
    )


def trainer_end_to_end(work: Path, args: argparse.Namespace) -> dict[str, object]:
    """`modelyard train` with compile, cudaGraphs and the gpu pipeline on written JPEGs: it must finish both epochs,
    evaluate and save the model."""
    sys.path.insert(0, str(Path(__file__).parent))
    from train_throughput import write_jpeg_folder

    data = write_jpeg_folder(work / "jpegs", 1600, CLASSES, 160)
    spec = {
        "model": {"backbone": args.backbone, "pretrained": False, "numClasses": CLASSES, "hiddenDim": 128,
                  "attentionHeads": 4},
        "training": {"epochs": 2, "batchSize": args.batch_size, "compile": True, "cudaGraphs": True,
                     "warmupEpochs": 0.5, "logEverySteps": 5},
        "data": {"path": str(data), "imageSize": args.image_size, "numWorkers": 4, "pipeline": "gpu"},
        "resources": {"gpusPerNode": 1},
        "output": {"modelName": "graphs", "storePath": str(work / "store"), "checkpointPath": str(work / "ckpt")},
    }  # fmt: skip
    document = {"apiVersion": "modelyard.dev/v1alpha1", "kind": "TrainingJob",
                "metadata": {"name": "graphs", "namespace": "ml"}, "spec": spec}  # fmt: skip
    config = work / "job.yaml"
    config.write_text(yaml.safe_dump(document))
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "MODELYARD_METRICS_PORT": "0",
           "MODELYARD_STATUS_REPORTING": "off", "BENTOML_HOME": str(work / "bentoml")}  # fmt: skip
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "train", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    events = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    epochs = [event for event in events if event.get("event") == "epoch"]
    return {
        "returncode": completed.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "epochs": [{k: e.get(k) for k in ("epoch", "trainLoss", "valLoss", "valAccuracy")} for e in epochs],
        "model_saved": [event.get("tag") for event in events if event.get("event") == "model_saved"],
        "stderr_tail": completed.stderr[-1500:] if completed.returncode else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet34", "resnet50", "resnet101"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=16, help="Optimizer steps per run (even).")
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--skip-trainer", action="store_true", help="Only the step comparisons.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("CUDA graphs need a GPU; none is visible", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.backbone} {args.image_size}px, "
          f"batch {args.batch_size}, {args.steps} steps", flush=True)  # fmt: skip
    table, verdicts = [], {}
    with tempfile.TemporaryDirectory(prefix="modelyard-graphs-") as scratch:
        for case in CASES:
            if case.processes > 1:
                out = Path(scratch) / "ddp.json"
                mp.spawn(_ddp_worker, args=(case, args, out), nprocs=case.processes, join=True)
                runs = [Run(**run) for run in json.loads(out.read_text())]
            else:
                runs = run_case(case, args, Distributed(0, 1, 0, torch.device("cuda", 0)))
            rows, verdicts[case.name] = compare(case, runs)
            table += rows
            for row in rows:
                print(describe(row), flush=True)
            print(f"{case.name}: {'same training' if verdicts[case.name] else 'DIFFERENT'}", flush=True)
        trainer = None if args.skip_trainer else trainer_end_to_end(Path(scratch), args)
    if trainer is not None:
        print("modelyard train with cudaGraphs:", json.dumps(trainer, indent=1), flush=True)
        verdicts["modelyard train"] = trainer["returncode"] == 0 and len(trainer["epochs"]) == 2  # type: ignore[arg-type]
    if args.json:
        args.json.write_text(json.dumps({"runs": table, "trainer": trainer, "verdicts": verdicts}, indent=1) + "\n")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
