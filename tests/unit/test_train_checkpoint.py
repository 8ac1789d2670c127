"""Checkpoints: atomic writes, the newest few kept, the latest found, every generator continued exactly."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from modelyard.training.checkpoint import (
    CONFIG_FILE,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
    save_torch,
)

pytestmark = pytest.mark.unit


def test_keeps_the_newest_two_and_finds_the_latest(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "none") is None
    for epoch in (1, 2, 3, 10):
        save_checkpoint(tmp_path, epoch, {"weights": torch.full((2,), float(epoch))}, {"training": {"epochs": 10}})
    assert [epoch for epoch, _ in list_checkpoints(tmp_path)] == [3, 10]  # 10 sorts after 3: numbers, not text
    latest = latest_checkpoint(tmp_path)
    assert latest is not None
    assert latest.name == "checkpoint-epoch-0010.pt"
    payload = load_checkpoint(latest)
    assert payload["epoch"] == 10
    assert torch.equal(payload["weights"], torch.full((2,), 10.0))
    assert payload["config"] == {"training": {"epochs": 10}}
    assert yaml.safe_load((tmp_path / CONFIG_FILE).read_text()) == {"training": {"epochs": 10}}
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary files left


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_torch(path, {"value": 1})

    class Unpicklable:
        def __reduce__(self) -> tuple[object, ...]:
            raise RuntimeError("cannot be saved")

    with pytest.raises(RuntimeError, match="cannot be saved"):
        save_torch(path, {"value": 2, "bad": Unpicklable()})
    assert torch.load(path, weights_only=True) == {"value": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_restored_generators_continue_where_they_were_saved(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_torch(tmp_path / "rng.pt", rng_state())
    expected = (random.random(), np.random.random(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt"))  # loaded with weights_only: plain data
    again = (random.random(), np.random.random(), torch.rand(3))
    assert again[:2] == expected[:2]
    assert torch.equal(again[2], expected[2])
