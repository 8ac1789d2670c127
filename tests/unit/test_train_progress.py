"""What a log collector and a person at a terminal see."""

from __future__ import annotations

import io
import json

import pytest

from modelyard.training.progress import ProgressLog

pytestmark = pytest.mark.unit


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_without_a_terminal_every_interval_and_epoch_is_one_json_line() -> None:
    stream = io.StringIO()
    log = ProgressLog(stream=stream, tty=False)
    log.start_epoch(1, 3, steps=4)
    log.step(due=False)
    log.step(due=True, epoch=1, step=2, loss=0.1234567891)
    log.end_epoch(epoch=1, valAccuracy=0.5, valLoss=float("nan"))
    lines = _lines(stream)
    assert [line["event"] for line in lines] == ["step", "epoch"]
    assert lines[0]["loss"] == 0.123457
    assert lines[0]["step"] == 2
    assert lines[1]["valLoss"] is None  # NaN is not JSON
    assert "rank" not in lines[0]
    assert str(lines[0]["time"]).endswith("+00:00")


def test_other_ranks_print_only_what_every_rank_must_say() -> None:
    stream = io.StringIO()
    log = ProgressLog(rank=1, world_size=2, stream=stream, tty=False)
    log.step(due=True, step=1)
    log.end_epoch(epoch=1)
    log.event("checkpoint")
    log.event("bad_image", every_rank=True, path="/d/x.png")
    assert _lines(stream) == [{"time": _lines(stream)[0]["time"], "event": "bad_image", "rank": 1, "path": "/d/x.png"}]


def test_on_a_terminal_a_bar_and_readable_lines() -> None:
    stream = io.StringIO()
    log = ProgressLog(stream=stream, tty=True)
    log.start_epoch(2, 5, steps=3)
    for _ in range(3):
        log.step(due=True, loss=0.5)
    log.end_epoch(epoch=2, valAccuracy=0.75)
    text = stream.getvalue()
    assert "epoch 2/5" in text
    assert "3/3" in text
    assert "epoch: epoch 2, valAccuracy 0.75" in text
    assert "{" not in text
