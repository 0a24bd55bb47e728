"""A real HTTP(S) server playing Hurricane Electric's tunnelbroker, for tests and the lab.

It speaks the update protocol of ../shared/TUNNELBROKER.md: `/nic/update` with Basic auth (or
the legacy `username=`/`password=` query parameters), `hostname=<tunnel id>` and an optional
`myip` (without it, the request's source address), answering `good <ip>` on a change and
`nochg <ip>` otherwise; and `/tunnelInfo.php?tid=` with the tunnel's XML. It can be scripted
to give any answer in the table, to answer slowly or to drop the connection, and it records
every request without the key.

Run as a process for the network lab:
    python -m reconciler.testing.fake_he --listen 203.0.113.1:8080 --tunnel-id 123456 \
        --username lab --key-file key --endpoint 203.0.113.10 \
        --on-update-exec /path/to/move-tunnel {address}
It prints `listening on ADDR:PORT` when ready. A control API on the same server steers it:
    GET|POST /_lab/script?answers=abuse,badauth    queue answers for the next updates
    GET|POST /_lab/reply?status=503&header=Retry-After:120&body=...&apply=1&delay=3
                                                    queue one shaped answer (see `Reply`)
    GET|POST /_lab/delay?seconds=5                  answer every HE request this late
    GET      /_lab/stats                            JSON: counts, endpoint, pending answers
    GET|POST /_lab/credentials?key_file=F           accept the key in F from now on
    GET|POST /_lab/endpoint?address=A               set the endpoint HE has
Beyond HE's table, a scripted `Reply` shapes an answer freely, as the load balancers and
maintenance pages in front of HE do: any status (429, 204, a redirect), headers (Retry-After),
a body template (a byte-order mark, `GOOD` in capitals, the Authorization header echoed), an
answer that goes out only after the client gave up, and headers or a body dripped one byte
at a time.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hmac
import ipaddress
import json
import logging
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from attrs import field, frozen

__all__ = [
    "ANSWERS",
    "FakeTunnelbroker",
    "RecordedRequest",
    "Reply",
    "TestCa",
    "main",
    "make_test_ca",
    "process_argv",
    "running_process",
    "system_ping",
]

log = logging.getLogger(__name__)

UNPINGABLE_LEGACY = (
    "-ERROR: IP is not ICMP pingable. Please make sure ICMP is not blocked. "
    "If you are blocking ICMP, please allow 66.220.2.74 through your firewall."
)
RFC1918_LEGACY = "-ERROR: IP is blocked. (RFC1918 Private Address Space)"

# Scriptable answers: name -> (HTTP status, body). "drop" closes the connection unanswered;
# "normal" behaves like HE; "body:<text>" answers 200 with <text>.
ANSWERS: dict[str, tuple[int, str]] = {
    "badauth": (401, "badauth"),
    "nohost": (200, "nohost"),
    "!yours": (200, "!yours"),
    "notfqdn": (200, "notfqdn"),
    "numhost": (200, "numhost"),
    "abuse": (200, "abuse"),
    "911": (200, "911"),
    "dnserr": (200, "dnserr"),
    "500": (500, "<html><body>Internal Server Error</body></html>"),
    "502": (502, "<html><body>Bad Gateway</body></html>"),
    "503": (503, "<html><body>Service Unavailable</body></html>"),
    "401": (401, "<html><body>Unauthorized</body></html>"),
    "403": (403, "<html><body>Forbidden</body></html>"),
    "unpingable": (200, "good 127.0.0.1"),
    "legacy-unpingable": (200, UNPINGABLE_LEGACY),
    "legacy-rfc1918": (200, RFC1918_LEGACY),
    "unknown": (200, "<html><body>Scheduled maintenance, back soon</body></html>"),
    # What the front of a web service answers when HE's own code does not: all unknown to
    # the protocol, so a client must treat them as passing trouble.
    "maintenance": (200, "<html><body>Scheduled maintenance, back soon</body></html>"),
    "empty": (200, ""),
    "204": (204, ""),
    "429": (429, "<html><body>Too Many Requests</body></html>"),
}
_SPECIAL_ANSWERS = ("normal", "drop")


@frozen
class Reply:
    """One scripted answer shaped freely (queue it with `FakeTunnelbroker.script`).

    `body` is a template: `{answer}` is HE's own answer to the request (HE then acts on it, so
    the endpoint moves), `{address}` the address HE would take (myip, else the source) and
    `{authorization}` the Authorization header as it arrived (a server that echoes the
    credentials). `apply` makes HE act on the request even when the body does not show it.
    `delay` waits after HE acted and before anything goes out (HE took the update, its answer
    comes after the client gave up); `header_drip` / `body_drip` send the status line and
    headers / the body one byte at a time, that many seconds apart.
    """

    status: int = 200
    body: str = "{answer}"
    headers: tuple[tuple[str, str], ...] = ()
    apply: bool = False
    delay: float = 0.0
    header_drip: float = 0.0
    body_drip: float = 0.0

    @property
    def acts(self) -> bool:
        """Whether HE handles the request as usual before this reply goes out."""
        return self.apply or "{answer}" in self.body

    @property
    def name(self) -> str:
        return f"reply:{self.status}"


@frozen
class RecordedRequest:
    """One request as the fake saw it; `params` never holds the password parameter."""

    method: str
    path: str
    params: dict[str, str] = field(hash=False)
    source: str
    auth: str  # "basic", "query" or "none"
    authorized: bool
    status: int  # 0 when the connection was dropped
    body: str
    source_port: int = 0  # tells apart requests that shared a kept-alive connection


@frozen
class TestCa:
    """Files of a throw-away CA and a server certificate it signed (127.0.0.1, localhost)."""

    __test__ = False  # not a pytest test class

    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_test_ca(directory: Path, *, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> TestCa:
    """Create a CA and a server certificate for `hosts` with the openssl command line."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    names = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={names}\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectKeyIdentifier=hash\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_cert, "-days", "2",
        "-subj", "/CN=reconciler test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    _openssl("req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={hosts[0]}")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext,
    )  # fmt: skip
    return TestCa(ca_cert=ca_cert, server_cert=cert, server_key=key)


def _openssl(*args: object) -> None:
    subprocess.run(
        ["openssl", *(str(a) for a in args)], check=True, capture_output=True, timeout=60
    )


def system_ping(address: str, timeout: float = 1.0) -> bool:
    """Whether `address` answers one ICMP echo (the check HE makes from 66.220.2.74)."""
    done = subprocess.run(
        ["ping", "-c", "1", "-W", str(max(1, round(timeout))), address],
        capture_output=True,
        timeout=timeout + 5,
    )
    return done.returncode == 0


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class FakeTunnelbroker:
    """HE's update and tunnelInfo endpoints on a real socket, in a background thread.

    Use as a context manager (or `start()`/`stop()`). `on_update(address)` runs after HE
    takes a new endpoint and before the answer goes out, as the lab's tunnel far end must
    move before the client hears `good`. `ping_check(address) -> bool`, when given, is asked
    before a change is accepted; a False answers `good 127.0.0.1` and keeps the endpoint.
    """

    def __init__(
        self,
        *,
        tunnel_id: str = "123456",
        username: str = "rcuser",
        key: str,
        endpoint: str | None = "198.51.100.2",
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TestCa | None = None,
        on_update: Callable[[str], None] | None = None,
        ping_check: Callable[[str], bool] | None = None,
        server_ipv4: str = "203.0.113.1",
        client_ipv6: str = "2001:db8:1f06:abc::2/64",
        server_ipv6: str = "2001:db8:1f06:abc::1/64",
        routed64: str = "2001:db8:1f07:abc::/64",
        routed48: str | None = None,
    ) -> None:
        self.tunnel_id = tunnel_id
        self.username = username
        self._key = key
        self.host = host
        self.tls = tls
        self.on_update = on_update
        self.ping_check = ping_check
        self.server_ipv4 = server_ipv4
        self.client_ipv6 = client_ipv6
        self.server_ipv6 = server_ipv6
        self.routed64 = routed64
        self.routed48 = routed48
        self.delay = 0.0
        self.requests: list[RecordedRequest] = []
        self.counts: Counter[str] = Counter()
        self.updates_received = 0  # update requests taken in, answered or not (see `delay`)
        self._endpoint = endpoint
        self._script: list[str | Reply] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("_Server", (ThreadingHTTPServer,), {"address_family": family})
        self._server: ThreadingHTTPServer = server_class((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.server_cert, tls.server_key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)

    def __repr__(self) -> str:
        return f"FakeTunnelbroker(url={self.url!r}, tunnel_id={self.tunnel_id!r})"

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> FakeTunnelbroker:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-he", kwargs={"poll_interval": 0.1}
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open keep-alive connections, as a dead server would."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeTunnelbroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where it listens -------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def update_url(self) -> str:
        return f"{self.url}/nic/update"

    @property
    def info_url(self) -> str:
        return f"{self.url}/tunnelInfo.php"

    # -- steering ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str | None:
        with self._lock:
            return self._endpoint

    @endpoint.setter
    def endpoint(self, address: str | None) -> None:
        with self._lock:
            self._endpoint = address

    def script(self, *answers: str | Reply) -> None:
        """Queue answers for the next update requests, one each (see ANSWERS and Reply)."""
        for answer in answers:
            if isinstance(answer, Reply):
                continue
            known = answer in ANSWERS or answer in _SPECIAL_ANSWERS or answer.startswith("body:")
            if not known:
                raise ValueError(f"unknown scripted answer {answer!r}")
        with self._lock:
            self._script.extend(answers)

    def set_key(self, key: str) -> None:
        with self._lock:
            self._key = key

    def stats(self) -> dict[str, Any]:
        """Counts and state, as served by /_lab/stats."""
        with self._lock:
            return {
                "schema": "reconciler.fake-he-stats/1",
                "endpoint": self._endpoint,
                "counts": dict(self.counts),
                "updates_received": self.updates_received,
                "pending": [a.name if isinstance(a, Reply) else a for a in self._script],
                "delay": self.delay,
            }

    # -- the protocol (called from handler threads) -----------------------------------------

    def _next_scripted(self) -> str | Reply | None:
        with self._lock:
            return self._script.pop(0) if self._script else None

    def _check_auth(self, headers: Any, params: dict[str, str]) -> tuple[str, bool]:
        with self._lock:
            key = self._key
        header = headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return "basic", False
            user, _, password = decoded.partition(":")
            return "basic", self._credentials_match(user, password, key)
        if "username" in params or "password" in params:
            ok = self._credentials_match(
                params.get("username", ""), params.get("password", ""), key
            )
            return "query", ok
        return "none", False

    def _credentials_match(self, user: str, password: str, key: str) -> bool:
        user_ok = hmac.compare_digest(user.encode(), self.username.encode())
        key_ok = hmac.compare_digest(password.encode(), key.encode())
        return user_ok and key_ok

    def _update(self, params: dict[str, str], source: str, authorized: bool) -> tuple[int, str]:
        """HE's own behaviour for an authorized or unauthorized update request."""
        if not authorized:
            return 401, "badauth"
        hostname = params.get("hostname", "")
        if "," in hostname:
            return 200, "numhost"
        if not hostname.isdigit():
            return 200, "notfqdn"
        if hostname != self.tunnel_id:
            return 200, "nohost"
        address = params.get("myip") or source
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            return 200, f"-ERROR: Invalid IPv4 address {address[:40]}"
        if ip.is_private and not _is_documentation(ip) and not ip.is_loopback:
            return 200, RFC1918_LEGACY
        with self._lock:
            unchanged = self._endpoint == address
        if unchanged:
            return 200, f"nochg {address}"
        if self.ping_check is not None and not self.ping_check(address):
            return 200, "good 127.0.0.1"
        with self._lock:
            self._endpoint = address
        if self.on_update is not None:
            try:
                self.on_update(address)
            except Exception as exc:  # the lab's hook failing must not kill the server
                log.warning("on_update(%s) failed: %s", address, exc)
        return 200, f"good {address}"

    def _tunnel_info(self, params: dict[str, str], authorized: bool) -> tuple[int, str]:
        if not authorized:
            return 401, "badauth"
        tid = params.get("tid")
        tunnels = ""
        if tid in (None, self.tunnel_id):
            endpoint = self.endpoint or ""
            tunnels = (
                f'  <tunnel id="{escape(self.tunnel_id)}">\n'
                "    <description>reconciler test tunnel</description>\n"
                f"    <serverv4>{escape(self.server_ipv4)}</serverv4>\n"
                f"    <clientv4>{escape(endpoint)}</clientv4>\n"
                f"    <serverv6>{escape(self.server_ipv6)}</serverv6>\n"
                f"    <clientv6>{escape(self.client_ipv6)}</clientv6>\n"
                f"    <routed64>{escape(self.routed64)}</routed64>\n"
                + (f"    <routed48>{escape(self.routed48)}</routed48>\n" if self.routed48 else "")
                + "  </tunnel>\n"
            )
        return 200, f'<?xml version="1.0" encoding="UTF-8"?>\n<tunnels>\n{tunnels}</tunnels>\n'

    def _record(self, request: RecordedRequest, kind: str, answer: str) -> None:
        with self._lock:
            self.requests.append(request)
            self.counts[kind] += 1
            self.counts[f"{kind}:{answer}"] += 1

    def _control(
        self, path: str, params: dict[str, str], headers: Sequence[str] = ()
    ) -> tuple[int, str]:
        """The /_lab/ API: steer the fake from another process."""
        try:
            if path == "/_lab/stats":
                return 200, json.dumps(self.stats())
            if path == "/_lab/script":
                answers = [a for a in params.get("answers", "").split(",") if a]
                self.script(*answers)
            elif path == "/_lab/reply":
                self.script(_reply_from(params, headers))
            elif path == "/_lab/delay":
                self.delay = float(params.get("seconds", "0"))
            elif path == "/_lab/credentials":
                self.set_key(Path(params["key_file"]).read_text(encoding="utf-8").strip())
            elif path == "/_lab/endpoint":
                self.endpoint = params.get("address") or None
            elif path == "/_lab/reset":
                with self._lock:
                    self._script.clear()
                    self.counts.clear()
                    self.requests.clear()
                self.delay = 0.0
            else:
                return 404, json.dumps({"error": f"no control {path}"})
        except (KeyError, ValueError, OSError) as exc:
            return 400, json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        return 200, json.dumps(self.stats())


def _reply_from(params: dict[str, str], headers: Sequence[str]) -> Reply:
    """A Reply from the control API's query (`header=Name:Value` may repeat)."""
    pairs = []
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header wants Name:Value, got {header!r}")
        pairs.append((name.strip(), value.strip()))
    return Reply(
        status=int(params.get("status", "200")),
        body=params.get("body", "{answer}"),
        headers=tuple(pairs),
        apply=params.get("apply", "") in ("1", "true", "yes"),
        delay=float(params.get("delay", "0")),
        header_drip=float(params.get("header_drip", "0")),
        body_drip=float(params.get("body_drip", "0")),
    )


def _is_documentation(ip: ipaddress.IPv4Address) -> bool:
    # The lab uses documentation ranges as if they were public; HE's RFC 1918 check must
    # not refuse them.
    return any(
        ip in ipaddress.IPv4Network(net)
        for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
    )


def _handler_for(fake: FakeTunnelbroker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fake-he/1"
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, a keep-alive client waits
        # for the delayed ACK (~40 ms) on every request.
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake._connections.add(self.connection)

        def finish(self) -> None:
            with fake._lock:
                fake._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._serve("POST")

        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            query = parse_qs(split.query)
            params = {k: v[-1] for k, v in query.items()}
            if split.path.startswith("/_lab/"):
                status, body = fake._control(split.path, params, query.get("header", []))
                self._answer(status, body, "application/json")
                return
            source = str(self.client_address[0])
            if split.path == "/nic/update":
                with fake._lock:
                    fake.updates_received += 1
            auth, authorized = fake._check_auth(self.headers, params)
            shown = {k: v for k, v in params.items() if k != "password"}
            if fake.delay > 0 and fake._stopping.wait(fake.delay):
                return
            kind, answer, status, body, reply = self._respond(
                split.path, params, source, authorized
            )
            fake._record(
                RecordedRequest(
                    method,
                    split.path,
                    shown,
                    source,
                    auth,
                    authorized,
                    status,
                    body,
                    source_port=int(self.client_address[1]),
                ),
                kind,
                answer,
            )
            if answer == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            content_type = "text/xml" if kind == "info" and status == 200 else "text/plain"
            if reply is not None:
                self._shaped(reply, body, content_type)
                return
            self._answer(status, body, content_type)

        def _respond(
            self, path: str, params: dict[str, str], source: str, authorized: bool
        ) -> tuple[str, str, int, str, Reply | None]:
            if path == "/nic/update":
                scripted = fake._next_scripted()
                if isinstance(scripted, Reply):
                    answer = ""
                    if scripted.acts:
                        answer = fake._update(params, source, authorized)[1]
                    body = (
                        scripted.body.replace("{answer}", answer)
                        .replace("{address}", params.get("myip") or source)
                        .replace("{authorization}", self.headers.get("Authorization", ""))
                    )
                    return "update", scripted.name, scripted.status, body, scripted
                if scripted == "drop":
                    return "update", "drop", 0, "", None
                if scripted is not None and scripted.startswith("body:"):
                    return "update", "body", 200, scripted[5:], None
                if scripted is not None and scripted != "normal":
                    status, body = ANSWERS[scripted]
                    return "update", scripted, status, body, None
                status, body = fake._update(params, source, authorized)
                return "update", (body.split() or ["empty"])[0], status, body, None
            if path == "/tunnelInfo.php":
                status, body = fake._tunnel_info(params, authorized)
                return "info", str(status), status, body, None
            return "other", "404", 404, "not found", None

        def _shaped(self, reply: Reply, body: str, content_type: str) -> None:
            """Send a scripted Reply: late, and byte by byte when it says so."""
            if reply.delay > 0 and fake._stopping.wait(reply.delay):
                return
            data = body.encode("utf-8")
            names = {name.lower() for name, _ in reply.headers}
            lines = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}"]
            if "content-type" not in names:
                lines.append(f"Content-Type: {content_type}; charset=utf-8")
            if "content-length" not in names and reply.status != 204 and reply.status >= 200:
                lines.append(f"Content-Length: {len(data)}")
            lines += [f"{name}: {value}" for name, value in reply.headers]
            lines.append("Connection: close")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(head, reply.header_drip)
                if reply.status != 204:
                    self._send(data, reply.body_drip)

        def _send(self, data: bytes, drip: float) -> None:
            if drip <= 0:
                self.wfile.write(data)
                self.wfile.flush()
                return
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                if fake._stopping.wait(drip):
                    return

        def _answer(self, status: int, body: str, content_type: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="tunnelbroker"')
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            # The request line holds the query string, which may carry a legacy password=;
            # log only the method and path.
            log.debug("fake HE: %s %s", self.command, urlsplit(self.path).path)

    return Handler


def _reason(status: int) -> str:
    with contextlib.suppress(ValueError):
        return HTTPStatus(status).phrase
    return "Unknown"


# -- running as a process for the lab ---------------------------------------------------------


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen wants ADDR:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _exec_hook(argv: Sequence[str]) -> Callable[[str], None]:
    def run(address: str) -> None:
        command = [arg.replace("{address}", address) for arg in argv]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            print(
                f"on-update-exec exited {done.returncode}: {done.stderr.strip()[:200]}",
                file=sys.stderr,
                flush=True,
            )

    return run


def process_argv(
    *,
    listen: str,
    tunnel_id: str,
    username: str,
    key_file: Path,
    endpoint: str | None = None,
    extra: Sequence[str] = (),
    netns: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command line that runs the fake as a process (in `netns` when given)."""
    argv = [python, "-m", "reconciler.testing.fake_he", "--listen", listen]
    argv += ["--tunnel-id", tunnel_id, "--username", username, "--key-file", str(key_file)]
    if endpoint is not None:
        argv += ["--endpoint", endpoint]
    argv += list(extra)  # last: --on-update-exec takes the rest of the line
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


@contextlib.contextmanager
def running_process(
    *, ready_timeout: float = 15.0, **argv_options: Any
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The fake as a process (see `process_argv` for the options): yields it with the address
    it listens on once it says so, and terminates it on the way out."""
    process = subprocess.Popen(
        process_argv(**argv_options),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], ready_timeout)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            process.kill()
            _, err = process.communicate()
            raise RuntimeError(f"the fake HE did not start: {line.strip() or err.strip()}")
        yield process, line.strip().removeprefix("listening on ")
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: Iterable[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; print `listening on ADDR:PORT` once ready."""
    parser = argparse.ArgumentParser(prog="python -m reconciler.testing.fake_he")
    parser.add_argument("--listen", type=_parse_listen, required=True, metavar="ADDR:PORT")
    parser.add_argument("--tunnel-id", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--endpoint", default=None)
    parser.add_argument("--server-ipv4", default="203.0.113.1")
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--ping-check", action="store_true")
    parser.add_argument("--on-update-exec", nargs=argparse.REMAINDER, default=None)
    args = parser.parse_args(None if argv is None else list(argv))

    host, port = args.listen
    tls = None
    if args.tls_cert and args.tls_key:
        tls = TestCa(ca_cert=args.tls_cert, server_cert=args.tls_cert, server_key=args.tls_key)
    try:
        key = args.key_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        print(f"cannot read key file {args.key_file}: {exc.strerror}", file=sys.stderr)
        return 1
    fake = FakeTunnelbroker(
        tunnel_id=args.tunnel_id,
        username=args.username,
        key=key,
        endpoint=args.endpoint,
        host=host,
        port=port,
        tls=tls,
        on_update=_exec_hook(args.on_update_exec) if args.on_update_exec else None,
        ping_check=system_ping if args.ping_check else None,
        server_ipv4=args.server_ipv4,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with fake:
        shown = f"[{host}]" if ":" in host else host
        print(f"listening on {shown}:{fake.port}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
