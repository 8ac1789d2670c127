"""The service as a child process: stopping it leaves nothing running, even when its arbiter hangs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from modelyard.bento.process import ServiceProcess, descendants

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_hung_arbiter_is_killed_with_the_workers_it_started(tmp_path: Path) -> None:
    # No model in the store: the worker starts and waits for one, which is all this test needs.
    env = {"BENTOML_HOME": str(tmp_path / "bentoml"), "MODELYARD_MODEL_TAG": "absent:v1", "MODELYARD_DEVICE": "cpu"}
    service = ServiceProcess(env, log=tmp_path / "service.log").start()
    try:
        service.wait_listening(180)
        arbiter = service.pid
        assert arbiter is not None
        workers = descendants(arbiter)
        assert workers, "the arbiter started no worker"
        # BentoML's process manager puts each worker in a session of its own: killing the arbiter's does not reach it.
        assert all(os.getsid(pid) != os.getsid(arbiter) for pid in workers)
        # A stopped arbiter neither ends on SIGTERM nor passes it on, as one that hangs in its shutdown.
        os.kill(arbiter, signal.SIGSTOP)
        service.stop(grace=1)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in workers if _alive(pid)] == []
        assert not service.running()
    finally:
        service.stop()
