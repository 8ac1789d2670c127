"""How a service's keep-alive connections are spread over its worker processes, read from /proc (Linux).

A keep-alive connection stays with the worker whose accept() took it. `bench/serving.py` samples the spread during
each phase over HTTP: whether a phase that queues does so at a few workers holding more than their share.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Iterable
from pathlib import Path

ESTABLISHED = "01"  # the state column of /proc/net/tcp


def established_inodes(port: int, tables: Iterable[str] = ("/proc/net/tcp", "/proc/net/tcp6")) -> set[str]:
    """Socket inodes of the established TCP connections whose local port is `port`: the server's ends."""
    inodes: set[str] = set()
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:  # no IPv6 on this machine
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == ESTABLISHED:
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets a process holds open (its file descriptors that are `socket:[inode]`)."""
    inodes: set[str] = set()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process ended
        return inodes
    for descriptor in descriptors:
        try:
            target = str(descriptor.readlink())
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def connections_by_pid(pids: Iterable[int], port: int) -> dict[int, int]:
    """Established connections on local port `port` that each process holds."""
    established = established_inodes(port)
    return {pid: len(socket_inodes(pid) & established) for pid in pids}


class ConnectionSpread:
    """Samples `connections_by_pid` every `interval` seconds in a thread while the context is open. `busiest` is
    the mean over the samples of the largest count held by one process, `mean` the mean count per process: with an
    even spread the two are equal."""

    def __init__(self, pids: Iterable[int], port: int, interval: float = 0.2) -> None:
        self.pids, self.port, self.interval = list(pids), port, interval
        self.samples: list[dict[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            counts = connections_by_pid(self.pids, self.port)
            if sum(counts.values()):  # before the clients connect and after they close, there is nothing to see
                self.samples.append(counts)

    @property
    def busiest(self) -> float | None:
        return statistics.fmean(max(sample.values()) for sample in self.samples) if self.samples else None

    @property
    def mean(self) -> float | None:
        return statistics.fmean(statistics.fmean(sample.values()) for sample in self.samples) if self.samples else None

    def __enter__(self) -> ConnectionSpread:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
