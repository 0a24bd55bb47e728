"""The `/metrics` HTTP endpoint: one thread, a few connections, every one with a deadline.

prometheus_client's own server gives each connection a thread with no idle time-out and no
cap: idle clients could take every file descriptor the daemon has, and the repair path (a
netlink socket, a ping, HE's connection, a restart command's pipes) then fails with EMFILE.
This server keeps what a scraper needs (GET or HEAD, the text exposition from
prometheus_client's generate_latest) and bounds the rest:

- at most MAX_CONNECTIONS open at once; one more is closed as soon as it is accepted;
- each connection has REQUEST_TIMEOUT seconds for all of it (request in, answer out): an
  idle or slow client is closed at its deadline;
- no accepting at all while the process is within FD_RESERVE descriptors of RLIMIT_NOFILE
  (where the count of open descriptors can be read: /proc/self/fd or /dev/fd), so that what
  is left is the repair path's.

One selector loop serves everything on one thread (no thread per connection, no pool), so
the endpoint costs the same whether it is scraped or flooded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable

from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "FD_RESERVE",
    "MAX_CONNECTIONS",
    "REQUEST_TIMEOUT",
    "MetricsServer",
    "open_fds",
]

_log = logging.getLogger(__name__)

MAX_CONNECTIONS = 16  # a scraper or two, and someone with curl
REQUEST_TIMEOUT = 3.0  # seconds for the whole of one request and its answer
FD_RESERVE = 32  # descriptors kept for the repair path: no accepting within this many of the limit
_MAX_REQUEST = 8192  # bytes of request line and headers
_PAUSE = 0.5  # seconds the listener rests when accepting is refused (no busy loop)
_TICK = 0.5  # the loop's longest sleep: deadlines are checked at least this often


def open_fds() -> int | None:
    """How many descriptors this process has open; None where that cannot be read."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(directory)) - 1  # the listing's own descriptor
    return None


def _fds_left() -> int | None:
    used = open_fds()
    if used is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return soft - used


class _Connection:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.request = bytearray()
        self.answer: memoryview | None = None  # set once the request is read


class MetricsServer:
    """Serves `render()` at GET /metrics (and /) on `address`, on a thread of its own.

    OSError from the constructor when the address cannot be bound. `shutdown()` stops the
    thread, `server_close()` closes the listening socket (the names of socketserver's, which
    the daemon calls)."""

    def __init__(
        self,
        address: tuple[str, int],
        render: Callable[[], bytes],
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT,
        fd_reserve: int = FD_RESERVE,
    ) -> None:
        self._render = render
        self._max_connections = max_connections
        self._request_timeout = request_timeout
        self._fd_reserve = fd_reserve
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind((host, port))
            listener.listen(max_connections)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.server_address: tuple[str, int] = listener.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = threading.Event()
        self._connections: dict[int, _Connection] = {}
        self._refused = 0  # connections closed unserved since the last log line
        self._thread = threading.Thread(target=self._serve, name="metrics-http", daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        return len(self._connections)

    def shutdown(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(5.0)

    def server_close(self) -> None:
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the loop ---------------------------------------------------------------------------

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        selector.register(self._listener, selectors.EVENT_READ, "listen")
        resting_until: float | None = None
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if resting_until is not None and now >= resting_until:
                    selector.register(self._listener, selectors.EVENT_READ, "listen")
                    resting_until = None
                soonest = min((c.deadline for c in self._connections.values()), default=now + _TICK)
                wait = max(0.0, min(soonest - now, _TICK))
                for key, events in selector.select(wait):
                    if key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    elif key.data == "listen":
                        if not self._accept(selector):
                            selector.unregister(self._listener)
                            resting_until = time.monotonic() + _PAUSE
                    else:
                        self._step(selector, key.data, events)
                self._expire(selector, time.monotonic())
        except Exception as exc:  # the endpoint may die; the daemon must not
            _log.error("metrics: the /metrics server stopped: %s", exc)
        finally:
            for connection in list(self._connections.values()):
                self._close(selector, connection)
            selector.close()

    def _accept(self, selector: selectors.BaseSelector) -> bool:
        """Take what is waiting; False when accepting must rest (descriptors are short)."""
        while True:
            left = _fds_left()
            if left is not None and left <= self._fd_reserve:
                self._note_refused("descriptors are short")
                return False
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return True
            except OSError:  # EMFILE, ENFILE, ENOBUFS: rest rather than spin
                self._note_refused("cannot accept")
                return False
            if len(self._connections) >= self._max_connections:
                sock.close()
                self._note_refused("too many connections")
                continue
            sock.setblocking(False)
            connection = _Connection(sock, time.monotonic() + self._request_timeout)
            self._connections[sock.fileno()] = connection
            selector.register(sock, selectors.EVENT_READ, connection)

    def _note_refused(self, why: str) -> None:
        if self._refused == 0:
            _log.warning("metrics: refusing /metrics connections: %s", why)
        self._refused += 1

    def _step(self, selector: selectors.BaseSelector, connection: _Connection, events: int) -> None:
        try:
            if connection.answer is None:
                chunk = connection.sock.recv(4096)
                if not chunk:
                    self._close(selector, connection)
                    return
                connection.request += chunk
                if b"\r\n\r\n" in connection.request or b"\n\n" in connection.request:
                    connection.answer = memoryview(self._answer(bytes(connection.request)))
                    selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
                elif len(connection.request) > _MAX_REQUEST:
                    self._close(selector, connection)
                    return
            if connection.answer is not None and events & selectors.EVENT_WRITE:
                sent = connection.sock.send(connection.answer)
                connection.answer = connection.answer[sent:]
                if not connection.answer:
                    self._close(selector, connection)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(selector, connection)

    def _answer(self, request: bytes) -> bytes:
        line = request.split(b"\n", 1)[0].decode("latin-1").split()
        method, target = (line[0], line[1]) if len(line) >= 2 else ("", "")
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return _response(405, "Method Not Allowed", b"only GET and HEAD\n", "text/plain")
        if path not in ("/metrics", "/"):
            return _response(404, "Not Found", b"try /metrics\n", "text/plain")
        try:
            body = self._render()
        except Exception as exc:
            _log.error("metrics: cannot render /metrics: %s", exc)
            return _response(500, "Internal Server Error", b"cannot render\n", "text/plain")
        if self._refused:
            _log.info("metrics: serving /metrics again (%d connection(s) refused)", self._refused)
            self._refused = 0
        return _response(200, "OK", body, CONTENT_TYPE_LATEST, head=method == "HEAD")

    def _expire(self, selector: selectors.BaseSelector, now: float) -> None:
        for connection in [c for c in self._connections.values() if c.deadline <= now]:
            self._close(selector, connection)

    def _close(self, selector: selectors.BaseSelector, connection: _Connection) -> None:
        self._connections.pop(connection.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(connection.sock)
        connection.sock.close()


def _response(
    status: int, reason: str, body: bytes, content_type: str, head: bool = False
) -> bytes:
    header = (
        f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    return header if head else header + body
