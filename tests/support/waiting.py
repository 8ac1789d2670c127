"""Waiting in tests: poll until the cluster (or a process) shows what the test expects."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import kubernetes


def eventually(check: Callable[[], Any], what: str = "", timeout: float = 30) -> Any:
    """Poll `check` until it returns something truthy and return that; a 404 counts as not yet. Fails the test
    with the last answer when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")
