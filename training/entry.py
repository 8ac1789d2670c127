"""The bodies of `modelyard train` and `modelyard data`: errors become a message on stderr and an exit code."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from modelyard.training import distributed
from modelyard.training.config import load_config
from modelyard.training.errors import TrainingError


def train_command(config_path: Path, overrides: Sequence[str]) -> int:
    """Train; a pod with several GPUs (or several pods) first starts one process per GPU through torchrun."""
    try:
        loaded = load_config(config_path, overrides)
        if distributed.needs_launcher(loaded.spec.resources):
            arguments = ["train", "--config", str(config_path)]
            for assignment in overrides:
                arguments += ["--set", assignment]
            command = distributed.torchrun_command(loaded.spec.resources, arguments, distributed.child_environment())
            return subprocess.call(command, env=distributed.child_environment())
        from modelyard.training.trainer import run_training

        run_training(loaded)
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    return 0


def data_command(name: str, out: Path, *, size: int | None, held_out_fraction: float, seed: int) -> int:
    from modelyard.training.datasets import write_dataset

    try:
        written = write_dataset(name, out, size=size, held_out_fraction=held_out_fraction, seed=seed)
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    print(
        f"{name}: {written.train_images} training images in {written.train}, "
        f"{written.held_out_images} held-out images in {written.held_out} ({len(written.class_names)} classes)"
    )
    return 0
