"""Run an operator (or any command) as a real process against the emulator: start, wait until up, log, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.emulator import RunningEmulator

REPO = Path(__file__).resolve().parents[2]


class OperatorProcess:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @property
    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def _command(args: Sequence[str]) -> list[str]:
    """`kopf ...` runs the kopf of this interpreter; anything else runs as given."""
    args = list(args)
    if args and args[0] == "kopf":
        return [sys.executable, "-m", "kopf", *args[1:]]
    return args


@contextmanager
def run_operator(
    emulator: RunningEmulator,
    args: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    watching: Sequence[str] = (),
    startup_timeout: float = 60,
    stop_timeout: float = 10,
) -> Iterator[OperatorProcess]:
    """Start `args` with KUBECONFIG pointing at the emulator and wait until it is up: until it has a watch open on
    each plural in `watching` (any watch if empty). On exit: SIGTERM, then SIGKILL after `stop_timeout` seconds."""
    full_env = {
        **os.environ,
        "KUBECONFIG": str(emulator.kubeconfig),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
        **(env or {}),
    }
    watches_before = sum(emulator.emulator.open_watches.values())
    with log_path.open("wb") as log:
        process = subprocess.Popen(_command(args), cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    handle = OperatorProcess(process, log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while not _is_up(emulator, watching, watches_before):
            if not handle.running:
                raise RuntimeError(f"the operator exited with {process.returncode} before it was up:\n{handle.logs}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the operator was not up in {startup_timeout}s:\n{handle.logs}")
            time.sleep(0.05)
        yield handle
    finally:
        if handle.running:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _is_up(emulator: RunningEmulator, watching: Sequence[str], watches_before: int) -> bool:
    open_watches = emulator.emulator.open_watches
    if watching:
        return all(open_watches[plural] > 0 for plural in watching)
    return sum(open_watches.values()) > watches_before
