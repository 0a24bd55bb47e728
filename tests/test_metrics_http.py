"""The bounded /metrics server over loopback: a connection cap (one more is closed at once),
a deadline for each request (idle and slow clients are closed), no accepting when the
process is short of descriptors, and scrapes served again once the flood is gone."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from reconciler.metrics import listen
from reconciler.metrics_http import MAX_CONNECTIONS, REQUEST_TIMEOUT, MetricsServer, open_fds
from tests.test_metrics import reading_of, samples, story


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    served = listen(("127.0.0.1", 0), lambda: reading_of(story()))
    try:
        yield served
    finally:
        served.shutdown()
        served.server_close()


def scrape(port: int, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as answer:
        return answer.read().decode()


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (EOF or a reset)."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@contextlib.contextmanager
def idle_clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_connections_past_the_cap_are_closed_at_once(server: MetricsServer) -> None:
    port = server.server_address[1]
    with idle_clients(port, MAX_CONNECTIONS + 20) as socks:
        started = time.monotonic()
        extra = socks[MAX_CONNECTIONS:]
        assert all(closed_by_peer(sock, 2.0) for sock in extra)
        assert time.monotonic() - started < REQUEST_TIMEOUT
        assert server.connections <= MAX_CONNECTIONS


def test_idle_and_slow_clients_are_closed_at_their_deadline_and_scrapes_served_again(
    server: MetricsServer,
) -> None:
    port = server.server_address[1]
    with idle_clients(port, MAX_CONNECTIONS) as socks:
        socks[0].sendall(b"GET /metr")  # a slow client: half a request line, then nothing
        started = time.monotonic()
        assert all(closed_by_peer(sock, REQUEST_TIMEOUT + 2) for sock in socks)
        assert time.monotonic() - started < REQUEST_TIMEOUT + 2
        assert samples(scrape(port))[("reconciler_log_last_seq", ())] == 10


def test_a_scrape_among_idle_clients_is_answered(server: MetricsServer) -> None:
    port = server.server_address[1]
    with idle_clients(port, MAX_CONNECTIONS // 2):
        assert "reconciler_up" in scrape(port)


def test_head_other_paths_and_methods(server: MetricsServer) -> None:
    port = server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.makefile("rb").read()
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/secret", timeout=5)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /metrics HTTP/1.0\r\n\r\n")
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.0 405")


def test_a_process_short_of_descriptors_accepts_nothing() -> None:
    """Within the reserve of RLIMIT_NOFILE (here: a reserve larger than the limit) nothing
    is accepted (the clients wait in the kernel's backlog, holding none of our
    descriptors), and the listener rests instead of spinning on them."""
    assert open_fds() is not None
    server = MetricsServer(("127.0.0.1", 0), lambda: b"x 1\n", fd_reserve=1 << 30)
    try:
        with idle_clients(server.server_address[1], 3) as socks:
            for sock in socks:
                sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            cpu = time.process_time()
            time.sleep(1.0)
            assert server.connections == 0
            assert time.process_time() - cpu < 0.5, "the listener spins"
            socks[0].settimeout(0.5)
            with pytest.raises(TimeoutError):
                socks[0].recv(1)
    finally:
        server.shutdown()
        server.server_close()
