"""What a person (or a log collector) sees while training runs.

On a terminal: a tqdm bar per epoch and one readable line per event. Otherwise: one JSON object per line, for every
`training.logEverySteps` steps, every epoch and every notable event (resume, checkpoint, bad image, finish).
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from tqdm import tqdm


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    return value


class ProgressLog:
    """Progress of one process. Non-main ranks of a distributed run print only the events marked for every rank."""

    def __init__(
        self, *, rank: int = 0, world_size: int = 1, stream: TextIO | None = None, tty: bool | None = None
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._bar: tqdm[Any] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def event(self, name: str, *, every_rank: bool = False, **fields: Any) -> None:
        if not (self.is_main or every_rank):
            return
        if self.tty:
            details = ", ".join(f"{key} {_plain(value)}" for key, value in fields.items())
            line = f"[rank {self.rank}] {name}: {details}" if self.world_size > 1 else f"{name}: {details}"
            if self._bar is not None:
                self._bar.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)
            return
        record: dict[str, Any] = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": name}
        if self.world_size > 1:
            record["rank"] = self.rank
        record.update({key: _plain(value) for key, value in fields.items()})
        print(json.dumps(record), file=self.stream, flush=True)

    def start_epoch(self, epoch: int, total_epochs: int, steps: int) -> None:
        if self.tty and self.is_main:
            self._bar = tqdm(total=steps, desc=f"epoch {epoch}/{total_epochs}", unit="step", file=self.stream)

    def step(self, *, due: bool, **fields: Any) -> None:
        """One optimizer step done; `due` says a log interval has passed (only then are values computed)."""
        if not self.is_main:
            return
        if self._bar is not None:
            self._bar.update(1)
            if due:
                self._bar.set_postfix({key: _plain(value) for key, value in fields.items() if key != "step"})
        elif due:
            self.event("step", **fields)

    def end_epoch(self, **fields: Any) -> None:
        self.close_bar()
        self.event("epoch", **fields)

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
