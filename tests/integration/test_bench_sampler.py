"""bench/sampling: the stack sampler that `bench/serving.py --sample-stacks` starts in the service's processes,
run in a real Python process that finds it on its PYTHONPATH, as the service's processes do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SAMPLER = Path(__file__).resolve().parents[2] / "bench" / "sampling"
# The main thread spins, then sleeps while a second thread spins: each function's CPU time is known.
PROGRAM = """
import threading
import time

def spin_here(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass

def spin_there():
    spin_here(0.5)

def rest_here():
    side = threading.Thread(target=spin_there, name="side")
    side.start()
    side.join()
    time.sleep(0.3)

spin_here(1.0)
rest_here()
"""


def run_sampled(folder: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(SAMPLER), "MODELYARD_STACK_SAMPLES": str(folder)}
    subprocess.run([sys.executable, "-c", PROGRAM], env=env, check=True, timeout=60)
    return len(list(folder.glob("*.txt")))


def cpu_seconds(profile: Path) -> dict[tuple[str, str], float]:
    """(thread, innermost function) → seconds."""
    seconds: dict[tuple[str, str], float] = {}
    for line in profile.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        thread, *_, leaf = stack.split(";")
        key = (thread, leaf.split(" (")[0])
        seconds[key] = seconds.get(key, 0.0) + int(count) / 1e6
    return seconds


def test_charges_each_thread_its_own_cpu_time_where_it_spent_it(tmp_path: Path) -> None:
    (tmp_path / "on").touch()
    assert run_sampled(tmp_path) == 1
    (profile,) = tmp_path.glob("*.txt")
    seconds = cpu_seconds(profile)
    # The main thread's second of spinning is charged to it, although it held the GIL throughout: the SIGPROF handler
    # sees it where it runs. The side thread's half second is charged to the side thread, not to the main thread
    # that waited for it; the waiting and the sleep cost no CPU.
    assert 0.8 < seconds[("MainThread", "spin_here")] < 1.2, seconds
    assert 0.35 < seconds[("side", "spin_here")] < 0.65, seconds
    assert sum(value for (thread, leaf), value in seconds.items() if leaf == "rest_here") < 0.05, seconds


def test_records_nothing_while_switched_off(tmp_path: Path) -> None:
    assert run_sampled(tmp_path) == 0
