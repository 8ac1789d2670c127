"""Checkpoints: written atomically every epoch (write, fsync, rename), the latest resumed on start.

A checkpoint holds the model, optimizer, scheduler and gradient-scaler states, the epoch and step counters, the
early-stopping state, every random generator's state and the resolved config; `config.yaml` beside it holds the
config in readable form. Only the newest few are kept; `best.pt` holds the weights of the best epoch so far.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import yaml

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-epoch-(\d{4,})\.pt$")
BEST_FILE = "best.pt"
CONFIG_FILE = "config.yaml"
KEEP_CHECKPOINTS = 2


def best_file(epoch: int) -> str:
    return f"best-epoch-{epoch:04d}.pt"


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint-epoch-{epoch:04d}.pt"


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: a reader (or a resumed run after a
    kill) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # makes the rename itself durable
    finally:
        os.close(directory)


def save_torch(path: Path, payload: Any) -> None:
    _atomic_write(path, lambda stream: torch.save(payload, stream))


def save_config(directory: Path, wire_spec: dict[str, Any]) -> Path:
    path = directory / CONFIG_FILE
    text = yaml.safe_dump(wire_spec, sort_keys=True).encode()
    _atomic_write(path, lambda stream: stream.write(text))
    return path


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every checkpoint in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory: Path) -> Path | None:
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1][1] if checkpoints else None


def save_checkpoint(directory: Path, epoch: int, state: dict[str, Any], wire_spec: dict[str, Any]) -> Path:
    """Write the checkpoint of `epoch` and the config beside it, then drop all but the newest few."""
    path = directory / checkpoint_name(epoch)
    save_torch(path, {**state, "epoch": epoch, "config": wire_spec})
    save_config(directory, wire_spec)
    for _, old in list_checkpoints(directory)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only: a checkpoint is data, never code (RNG states are stored as tensors and plain types for this).
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return payload


def rng_state() -> dict[str, Any]:
    """Every generator a training step draws from (dropout, Python and numpy users), to continue them exactly."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_plain(state: Any) -> tuple[str, list[int], int, int, float]:
    name, keys, position, has_gauss, cached_gaussian = state
    return str(name), [int(key) for key in keys], int(position), int(has_gauss), float(cached_gaussian)


def save_json(path: Path, document: Any) -> None:
    text = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    _atomic_write(path, lambda stream: stream.write(text))
