"""Run the emulator as a real HTTP server on 127.0.0.1: in a background thread (pytest) or as a process (CLI)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kmock
import kubernetes
import yaml

from tests.support.emulator.server import Emulator


def kubeconfig(url: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {"token": "emulator"}}],
        "contexts": [
            {"name": "emulator", "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace}}
        ],
        "current-context": "emulator",
    }


class RunningEmulator:
    """An emulator serving on a port (in another thread), with its URL and kubeconfig file."""

    def __init__(self, emulator: Emulator, url: str, kubeconfig_path: Path) -> None:
        self.emulator = emulator
        self.url = url
        self.kubeconfig = kubeconfig_path


async def _serve(
    kubeconfig_path: Path, port: int, started: concurrent.futures.Future[RunningEmulator], stop: asyncio.Event
) -> None:
    emulator = Emulator()
    async with emulator, kmock.Server(emulator, port=port) as server:
        url = f"http://{server.host}:{server.port}"
        emulator.address = f"{server.host}:{server.port}"
        kubeconfig_path.write_text(yaml.safe_dump(kubeconfig(url)))
        started.set_result(RunningEmulator(emulator, url, kubeconfig_path))
        await stop.wait()
        emulator.stopping = True  # open watches end within their poll interval, so the server closes at once
        for _ in range(40):
            if not any(emulator.open_watches.values()):
                break
            await asyncio.sleep(0.05)


@contextmanager
def serve_in_thread(kubeconfig_path: Path, port: int = 0) -> Iterator[RunningEmulator]:
    """Start an emulator on 127.0.0.1 (a free port unless given) in a daemon thread; stop it on exit."""
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[RunningEmulator] = concurrent.futures.Future()
    stop = asyncio.Event()

    def run() -> None:
        try:
            loop.run_until_complete(_serve(kubeconfig_path, port, started, stop))
        except BaseException as error:  # report start-up failures to the waiting caller instead of losing them
            if not started.done():
                started.set_exception(error)
            raise
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="k8s-emulator", daemon=True)
    thread.start()
    running = started.result(timeout=30)
    try:
        yield running
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)


def api_client(kubeconfig_path: Path) -> kubernetes.client.ApiClient:
    """A kubernetes client configured from a kubeconfig file (the client's own function is untyped)."""
    made: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(str(kubeconfig_path))  # type: ignore[no-untyped-call]
    return made
