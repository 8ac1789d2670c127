"""DDP scaling of the trainer: bench/train_throughput.py under torchrun on 1, 2, 4, 8 GPUs (as many as there are),
synthetic data and the real input pipeline, with scaling efficiency against 1 GPU measured in the same run.

    python bench/ddp_scaling.py --gpus 1 2 -- --batch-size 256 --compile --steps 40
    python bench/ddp_scaling.py --device cpu --gpus 1 2 -- --backbone resnet18 --image-size 64   # gloo smoke run

Everything after `--` goes to train_throughput.py. NVLink multicast stays off in every child (the trainer's own
child_environment), as it must on shared hosts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from modelyard.training.distributed import child_environment

HERE = Path(__file__).resolve().parent


def run(processes: int, device: str, passthrough: list[str], scratch: Path) -> list[dict[str, Any]]:
    output = scratch / f"ddp-{processes}.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        str(HERE / "train_throughput.py"), "--device", device, "--recipes", "modelyard", "--json", str(output),
        *passthrough,
    ]  # fmt: skip
    subprocess.run(command, env=child_environment(), check=True)
    result: list[dict[str, Any]] = json.loads(output.read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, passthrough = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8], help="Process counts to measure.")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--json", type=Path, help="Also write the table here.")
    args = parser.parse_args(own)
    counts = sorted(set(args.gpus))
    if args.device == "cuda":
        import torch

        available = torch.cuda.device_count()
        skipped = [n for n in counts if n > available]
        counts = [n for n in counts if n <= available]
        if skipped:
            print(f"only {available} GPU(s) here: not measured for {skipped}", flush=True)
    if 1 not in counts:
        counts = [1, *counts]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="modelyard-ddp-") as scratch:
        by_count = {n: run(n, args.device, passthrough, Path(scratch)) for n in counts}
    for data in sorted({m["data"] for m in by_count[1]}):
        single = next(m for m in by_count[1] if m["data"] == data)
        for n in counts:
            measured = next(m for m in by_count[n] if m["data"] == data)
            efficiency = measured["images_per_second"] / (n * single["images_per_second"])
            rows.append({**measured, "processes": n, "scaling_efficiency": efficiency})
    print(f"\n{'data':10s} {'procs':>5s} {'images/s':>10s} {'efficiency':>10s} {'data-wait':>9s} {'peak GiB':>8s}")
    for row in rows:
        print(
            f"{row['data']:10s} {row['processes']:5d} {row['images_per_second']:10.1f} "
            f"{row['scaling_efficiency']:10.1%} {row['data_wait_fraction']:9.1%} "
            f"{row['peak_memory_bytes'] / 2**30:8.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
