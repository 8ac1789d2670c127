"""bench/worker_connections.py: how a server's keep-alive connections are spread over the processes that accepted
them, read from /proc, with real sockets held by real processes sharing one listening socket (as a service's
workers share the arbiter's)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bench.worker_connections import ConnectionSpread, connections_by_pid

pytestmark = pytest.mark.integration


# Accepts `count` connections from the inherited listening socket, says so, then holds them until stdin closes.
ACCEPTOR = """
import socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
held = [listener.accept()[0] for _ in range(int(sys.argv[2]))]
print("accepted", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server
    server.close()


def accept_in_child(listener: socket.socket, count: int, clients: list[socket.socket]) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", ACCEPTOR, str(listener.fileno()), str(count)],
        pass_fds=[listener.fileno()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    clients.extend(socket.create_connection(listener.getsockname()) for _ in range(count))
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "accepted"
    return child


def test_counts_each_process_its_accepted_connections_not_the_clients_ends(listener: socket.socket) -> None:
    clients: list[socket.socket] = []
    one = accept_in_child(listener, 1, clients)
    three = accept_in_child(listener, 3, clients)
    try:
        port = listener.getsockname()[1]
        # This process holds the four clients' ends (local port ephemeral) and the listener: none of them counts.
        assert connections_by_pid([one.pid, three.pid, os.getpid()], port) == {one.pid: 1, three.pid: 3, os.getpid(): 0}
        with ConnectionSpread([one.pid, three.pid], port, interval=0.05) as spread:
            time.sleep(0.3)
        assert spread.samples
        assert spread.busiest == 3
        assert spread.mean == 2
        # Connections their clients closed leave the count while the process still holds its ends (CLOSE_WAIT).
        for client in clients[1:]:
            client.close()
        deadline = time.monotonic() + 10
        while connections_by_pid([one.pid, three.pid], port)[three.pid] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert connections_by_pid([one.pid, three.pid], port) == {one.pid: 1, three.pid: 0}
    finally:
        for client in clients:
            client.close()
        for child in (one, three):
            child.kill()
            child.communicate()  # also closes its pipes
