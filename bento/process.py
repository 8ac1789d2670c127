"""Run the real service as a child process on 127.0.0.1: what the quickstart, the tests and the benchmark share.

`bentoml serve` runs an arbiter that starts the workers. The arbiter runs in a session of its own, and each worker in
one more (BentoML's process manager calls setsid), so stopping is one SIGTERM to the arbiter (a graceful shutdown)
and, if it hangs, SIGKILL to it and to every process it had started. Nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn, Self

import httpx

SERVICE_TARGET = "modelyard.bento.service:ImageClassifier"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def serve_command(host: str, port: int, target: str = SERVICE_TARGET) -> list[str]:
    """The `bentoml serve` command line of the service (`target`: the service class, or a built Bento's tag)."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]


def exec_service(host: str, port: int, env: Mapping[str, str]) -> NoReturn:
    """Replace this process by `bentoml serve` (a container's entry point: signals reach BentoML directly)."""
    command = serve_command(host, port)
    os.execve(command[0], command, {**os.environ, **env})  # noqa: S606 - a fixed argument list, no shell


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, session, ...); None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def descendants(root: int) -> list[int]:
    """The live processes below `root` (children, their children, ...), from /proc; empty where there is no /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used; 0.0 once it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServiceExitedError(RuntimeError):
    """The service process ended while we waited for it."""


def readiness(url: str, timeout: float = 2.0) -> tuple[int, dict[str, object]]:
    """GET /readyz: its status code and JSON body; (0, {}) when nothing answers."""
    try:
        response = httpx.get(f"{url}/readyz", timeout=timeout)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return 0, {}
    return response.status_code, body if isinstance(body, dict) else {}


class ServiceProcess:
    """The service on 127.0.0.1:`port`, with `env` added to this process's environment; a context manager.
    `target` is the service class, or the tag of a built Bento in BENTOML_HOME."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        log: Path | None = None,
        cwd: Path | None = None,
        target: str = SERVICE_TARGET,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "NO_ALBUMENTATIONS_UPDATE": "1", **env}
        self.log = log
        self.cwd = cwd
        self.target = target
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> Self:
        output: IO[bytes] | int = subprocess.DEVNULL
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = output = self.log.open("ab")
        self._process = subprocess.Popen(
            serve_command(self.host, self.port, self.target),
            env=self.env,
            cwd=self.cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait_listening(self, timeout: float) -> None:
        """Until the HTTP server answers at all (200 or 503 on /readyz)."""
        self.wait_for(lambda status, _: status != 0, timeout, "answer on /readyz")

    def wait_ready(self, timeout: float) -> dict[str, object]:
        """Until /readyz says 200; returns its body. Raises with the last reason on timeout or exit."""
        return self.wait_for(lambda status, _: status == 200, timeout, "be ready")

    def wait_for(
        self, condition: Callable[[int, dict[str, object]], bool], timeout: float, what: str
    ) -> dict[str, object]:
        """Until /readyz's status and body satisfy `condition`; returns the body. Raises ServiceExitedError if the
        process ends, TimeoutError (with the last reason) if `timeout` passes."""
        deadline = time.monotonic() + timeout
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            if not self.running():
                code = self._process.returncode if self._process else None
                message = f"the service exited with code {code} before it would {what}{self._log_hint()}"
                raise ServiceExitedError(message)
            status, body = readiness(self.url)
            if condition(status, body):
                return body
            time.sleep(0.2)
        last = body.get("reason") if body else "no answer"
        raise TimeoutError(f"the service did not {what} within {timeout:.0f}s (last: {last}){self._log_hint()}")

    def _log_hint(self) -> str:
        return f"; see {self.log}" if self.log else ""

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL the whole session if it does not end in time. Returns the exit code."""
        process = self._process
        if process is None:
            return None
        # Read before the arbiter goes: once it has exited, its orphaned workers are no longer below it.
        workers = descendants(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Make sure nothing it started outlives the arbiter: the workers are in sessions of their own, out of reach of
        # a signal to the arbiter's group.
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return process.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
