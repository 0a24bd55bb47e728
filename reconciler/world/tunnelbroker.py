"""The Hurricane Electric tunnelbroker client: endpoint updates and tunnelInfo reads.

Every answer HE can give (see ../shared/TUNNELBROKER.md) becomes an `Outcome`; nothing here
raises into the caller, because executors and observers record what happened as facts.

The update key is read from its file at the moment of each call (and checked: one line of
printable ASCII, see `updatekey`) and travels only in the HTTP Basic `Authorization` header.
It is never stored on the client, never put in a URL, and every message built here is
scrubbed of it (and of each of its encodings) before it leaves, in case a server or an
exception echoes it back.

Only the answers HE's table calls permanent (badauth, nohost, !yours, notfqdn, numhost, the
legacy RFC 1918 refusal) are permanent. Everything else, the unknown included, is temporary:
a 429, a maintenance page, an empty answer or a redirect from whatever stands in front of HE
passes. Such an outcome carries no wait of its own: the planner backs off after trouble at
HE, from seconds and growing with trouble in a row; a Retry-After header (seconds or an
HTTP date) sets the wait instead when longer, within bounds.

Every call ends by a deadline (`connect_timeout + read_timeout`), however slowly the server
drips its answer; an update that went out but got no complete answer is `unconfirmed`.
"""

from __future__ import annotations

import codecs
import contextlib
import email.utils
import ipaddress
import logging
import math
import socket
import threading
import time
import xml.etree.ElementTree as ElementTree
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
from attrs import frozen

from reconciler.model.actions import HE_ABUSE, PRIVATE_ADDRESS_REFUSED, Outcome
from reconciler.model.config import TunnelbrokerConfig
from reconciler.outside_text import clean_line
from reconciler.workers import Workers
from reconciler.world.updatekey import UpdateKeyError, read_update_key, scrub, secret_forms

__all__ = [
    "ABUSE_RETRY_AFTER",
    "HE_PING_SOURCE",
    "RETRY_AFTER_MAX",
    "TunnelInfo",
    "TunnelbrokerClient",
    "UpdateResult",
]

log = logging.getLogger(__name__)

# `abuse` means HE has blocked us for updating too often: wait hours, not minutes.
ABUSE_RETRY_AFTER: Final = 3 * 3600.0
# A server's Retry-After is honoured up to this (a typo in a date must not mean "never").
RETRY_AFTER_MAX: Final = 6 * 3600.0
# HE pings a new endpoint from here before it accepts it.
HE_PING_SOURCE: Final = "66.220.2.74"

# Bodies longer than this are cut in messages; enough for an HTML error page's gist.
_BODY_SHOWN: Final = 200
_BODY_LOGGED: Final = 4000
# tunnelInfo is a few hundred bytes; refuse to read megabytes from a broken server.
_MAX_BODY: Final = 64 * 1024
# After the deadline's watchdog shut the socket, the worker needs only moments to notice.
_WORKER_GRACE: Final = 0.5

_PERMANENT_WORDS: Final = {
    "badauth": "HE rejected the username or update key (badauth); not retrying",
    "nohost": "HE knows no tunnel with this id (nohost)",
    "!yours": "the tunnel id belongs to another account (!yours)",
    "notfqdn": "HE did not accept the tunnel id as a hostname (notfqdn)",
    "numhost": "HE says too many or malformed hostnames were sent (numhost)",
}
_SERVER_TROUBLE_WORDS: Final = {
    "911": "HE reports trouble on its side (911)",
    "dnserr": "HE reports a DNS error on its side (dnserr)",
}


@frozen
class UpdateResult:
    """What an endpoint update came to, and the address HE now has when its answer told us."""

    outcome: Outcome
    endpoint: str | None = None


@frozen
class TunnelInfo:
    """A tunnelInfo.php read: the outcome, and the tunnel as HE describes it when it worked."""

    outcome: Outcome
    client_ipv4: str | None = None
    server_ipv4: str | None = None
    client_ipv6: str | None = None
    server_ipv6: str | None = None
    routed64: str | None = None
    routed48: str | None = None


@frozen
class _Answer:
    """A complete HTTP answer: status, body (a redirect's: where to) and Retry-After."""

    status: int
    body: str
    retry_after: float | None = None


class _DeadlineExceeded(Exception):
    """The call's deadline passed before a complete answer arrived."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g} s")


class _Call:
    """One HTTP call's deadline, enforced on the call's socket by the waiting caller.

    The connection registers its socket here once connected (see `_WatchedHTTPConnection`):
    from then on the request may reach the server (`sent`), and when the deadline passes
    the caller shuts the socket down (`expire`), which ends any blocked read.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self.sent = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._ends_at = math.inf

    def start(self) -> None:
        self._ends_at = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return max(0.0, self._ends_at - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self.sent = True
            self._sockets.append(sock)
            expired = self.expired
        if expired:  # connected after the deadline: nothing goes out
            _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for a TLS socket: the reader blocked in it sees the
    # end of the stream at once; the TLS layer is left alone for that thread to unwind.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# The call the current (worker) thread makes: where a new connection registers its socket.
_current = threading.local()


def _register(sock: Any) -> None:
    call = getattr(_current, "call", None)
    if call is not None and isinstance(sock, socket.socket):
        call.watch(sock)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _register(self.sock)


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _register(self.sock)


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections that hand their socket to the call's watchdog;
    with `device`, every socket is bound to that interface (SO_BINDTODEVICE)."""

    def __init__(self, device: str | None = None) -> None:
        self._device = device  # read by init_poolmanager, which the base __init__ calls
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._device is not None:
            # Several WANs: the update leaves through the active WAN whatever the routing
            # table prefers (a WAN whose upstream broke keeps its routes).
            bind = (socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self._device.encode())
            kwargs["socket_options"] = [
                *urllib3.connection.HTTPConnection.default_socket_options,
                bind,
            ]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


class TunnelbrokerClient:
    """Talks to HE with TLS verified, bounded timeouts and a fresh connection per call."""

    def __init__(
        self,
        config: TunnelbrokerConfig,
        *,
        session: requests.Session | None = None,
        abuse_retry_after: float = ABUSE_RETRY_AFTER,
        device: str | None = None,
    ) -> None:
        """`device`: the interface every call leaves through (several WANs: the active
        one); None: wherever the routing table sends it."""
        self.config = config
        self.abuse_retry_after = abuse_retry_after
        # The whole of one call, connecting, sending and reading every byte of the answer.
        self.deadline = config.connect_timeout + config.read_timeout
        if session is None:
            session = requests.Session()
            # Proxies, a netrc file or REQUESTS_CA_BUNDLE from the environment must not
            # change where the key goes or which CA is trusted: the config decides.
            session.trust_env = False
        adapter = _WatchedAdapter(device)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        # Kept threads for the calls (reconciler.workers); one stuck past its deadline keeps
        # its thread, and the next call gets another.
        self._workers = Workers("tunnelbroker-call")

    def __repr__(self) -> str:
        return f"TunnelbrokerClient(tunnel_id={self.config.tunnel_id!r}, url={self._shown_url()!r})"

    def close(self) -> None:
        """Release the session's pooled connections and the call threads."""
        self._session.close()
        self._workers.close()

    # -- the update -------------------------------------------------------------------------

    def update(self, address: str | None, expected: str | None) -> UpdateResult:
        """Tell HE our endpoint. `address` goes out as `myip`; None lets HE use our source.

        `expected` is the address HE should report back. When no `myip` is sent (behind
        NAT) HE reports our public address, which we cannot know in advance, so any real
        unicast IPv4 address in a `good`/`nochg` answer counts as success then.

        A request that went out without a complete answer (no answer by the deadline, the
        connection cut) is a temporary failure marked `unconfirmed`: HE may have taken it.
        """
        try:
            key = self._read_key()
        except UpdateKeyError as exc:
            return UpdateResult(Outcome.permanent(str(exc)))
        params = {"hostname": self.config.tunnel_id}
        if address is not None:
            params["myip"] = address
        log.debug(
            "tunnelbroker update for tunnel %s: myip=%s",
            self.config.tunnel_id,
            address if address is not None else "(none: HE takes the source address)",
        )
        call = _Call(self.deadline)
        try:
            answer = self._get(self.config.update_url, params, key, call)
        except Exception as exc:  # the caller records outcomes, never crashes
            outcome = self._request_failure("update", exc, key, call)
            if call.sent:
                outcome = Outcome.temporary(
                    f"{outcome.message}; the request went out, so HE may have taken it",
                    outcome.retry_after,
                    unconfirmed=True,
                )
            return UpdateResult(outcome)
        secrets = secret_forms(self.config.username, key)
        result = self._classify_update(answer, address, expected, secrets)
        self._log_outcome("update", result.outcome)
        return result

    def _classify_update(
        self,
        answer: _Answer,
        address: str | None,
        expected: str | None,
        secrets: tuple[str, ...],
    ) -> UpdateResult:
        # Only what HE's table calls permanent is permanent: everything else, the unknown
        # included, is passing trouble (a maintenance page, a proxy's 429) and is retried
        # with backoff. Words are matched without regard to case or a byte-order mark.
        status, body = answer.status, answer.body
        words = body.split()
        first = words[0].lower() if words else ""
        shown = _shown_body(body, secrets)
        if first in _PERMANENT_WORDS and status in (200, 401, 403):
            return UpdateResult(Outcome.permanent(_PERMANENT_WORDS[first]))
        if status == 200 and first in ("good", "nochg"):
            return self._classify_success(first, words[1:2], address, expected, secrets)
        if status == 200 and first in _SERVER_TROUBLE_WORDS:
            return UpdateResult(Outcome.temporary(_SERVER_TROUBLE_WORDS[first], self._wait(answer)))
        if status == 200 and first == "abuse":
            return UpdateResult(
                Outcome.temporary(
                    f"{HE_ABUSE}; waiting hours",
                    max(self.abuse_retry_after, answer.retry_after or 0.0),
                )
            )
        lowered = body.lower()
        if status == 200 and first.startswith("-error") and "pingable" in lowered:
            return UpdateResult(Outcome.temporary(_unpingable(address), self._wait(answer)))
        if (
            status == 200
            and first.startswith("-error")
            and ("rfc1918" in lowered or "private" in lowered)
        ):
            # Permanent for this address only: the planner tells it from badauth & co. by
            # the message's PRIVATE_ADDRESS_REFUSED prefix, and updates another address.
            return UpdateResult(
                Outcome.permanent(
                    f"{PRIVATE_ADDRESS_REFUSED} {address or '(source)'} (RFC 1918); "
                    'behind NAT send no myip (wan.public_address = "tunnelbroker")'
                )
            )
        if 300 <= status <= 399:
            message = f"HE answered HTTP {status}, a redirect (not followed): {shown}"
        elif status in (401, 403):
            message = f"HE refused the request (HTTP {status}) without saying badauth: {shown}"
        elif status != 200:
            message = f"HE answered HTTP {status}: {shown}"
        elif not words:
            message = "HE gave an empty answer"
        else:
            message = f"HE gave an unknown answer: {shown}"
        if status == 200 and words:
            # The outcome carries a cut; the log gets the body whole (up to a sane bound), as
            # pfSense does, so an operator can see what HE really said.
            log.warning(
                "tunnelbroker: unknown answer (HTTP %s, %d chars): %s",
                status,
                len(body),
                _shown_body(body, secrets, limit=_BODY_LOGGED),
            )
        return UpdateResult(Outcome.temporary(message, self._wait(answer)))

    @staticmethod
    def _wait(answer: _Answer) -> float | None:
        """The server's Retry-After after passing trouble (bounded), or None: the planner's
        back-off after trouble at HE decides."""
        return answer.retry_after

    def _classify_success(
        self,
        word: str,
        rest: list[str],
        address: str | None,
        expected: str | None,
        secrets: tuple[str, ...],
    ) -> UpdateResult:
        reported = rest[0] if rest else None
        wanted = address if address is not None else expected
        if reported is None:
            # A bare `good` confirms the request but not the address; only trust it when we
            # told HE the address ourselves.
            if address is not None:
                return UpdateResult(Outcome.ok(f"HE endpoint {word}: {address}"), address)
            return UpdateResult(Outcome.temporary(f"HE answered {word!r} without an address"))
        ip = _parse_ipv4(reported)
        if ip is None:
            return UpdateResult(
                Outcome.temporary(
                    f"HE gave an unknown answer: {_shown_body(f'{word} {reported}', secrets)}"
                )
            )
        if ip.is_loopback or ip.is_unspecified:
            # HE could not ping the new address, so it did not take it.
            return UpdateResult(Outcome.temporary(_unpingable(address)))
        # Without myip, HE reports the public address our request came from (NAT): whatever
        # real address it names is ours.
        if reported == wanted or address is None:
            return UpdateResult(Outcome.ok(f"HE endpoint {word}: {reported}"), reported)
        return UpdateResult(
            Outcome.temporary(f"HE reports endpoint {reported}, not {wanted}"),
            reported,
        )

    # -- tunnelInfo -------------------------------------------------------------------------

    def tunnel_info(self) -> str | None:
        """The client IPv4 endpoint HE has, or None when info_url is unset or the read failed.

        Use `read_tunnel_info()` to tell "HE has none" from "could not ask".
        """
        info = self.read_tunnel_info()
        if info is None or not info.outcome.succeeded:
            return None
        return info.client_ipv4

    def read_tunnel_info(self) -> TunnelInfo | None:
        """Read tunnelInfo.php for our tunnel; None when no info_url is configured."""
        url = self.config.info_url
        if url is None:
            return None
        try:
            key = self._read_key()
        except UpdateKeyError as exc:
            return TunnelInfo(Outcome.permanent(str(exc)))
        params = {} if "tid=" in urlsplit(url).query else {"tid": self.config.tunnel_id}
        call = _Call(self.deadline)
        try:
            answer = self._get(url, params, key, call)
        except Exception as exc:  # the caller records outcomes, never crashes
            return TunnelInfo(self._request_failure("tunnel info", exc, key, call))
        secrets = secret_forms(self.config.username, key)
        info = self._parse_tunnel_info(answer.status, answer.body, secrets)
        self._log_outcome("tunnel info", info.outcome)
        return info

    def _parse_tunnel_info(self, status: int, body: str, secrets: tuple[str, ...]) -> TunnelInfo:
        if 500 <= status <= 599:
            return TunnelInfo(
                Outcome.temporary(
                    f"HE tunnelInfo answered HTTP {status}: {_shown_body(body, secrets)}"
                )
            )
        if body.split()[:1] == ["badauth"]:
            return TunnelInfo(
                Outcome.permanent(
                    f"HE tunnelInfo answered HTTP {status}: badauth (the username or update "
                    "key is wrong)"
                )
            )
        if status != 200:
            return TunnelInfo(
                Outcome.temporary(
                    f"HE tunnelInfo answered HTTP {status}: {_shown_body(body, secrets)}"
                )
            )
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            return TunnelInfo(
                Outcome.temporary(f"HE tunnelInfo is not XML: {_shown_body(body, secrets)}")
            )
        wanted = str(self.config.tunnel_id)
        tunnels = [root] if root.tag == "tunnel" else list(root.iter("tunnel"))
        for tunnel in tunnels:
            if tunnel.get("id", wanted) != wanted:
                continue
            client = _text(tunnel, "clientv4")
            if client is not None and _parse_ipv4(client) is None:
                return TunnelInfo(
                    Outcome.temporary(
                        f"HE tunnelInfo has a malformed clientv4: {_shown_body(client, secrets)}"
                    )
                )
            return TunnelInfo(
                Outcome.ok(f"HE has endpoint {client}"),
                client_ipv4=client,
                server_ipv4=_text(tunnel, "serverv4"),
                client_ipv6=_text(tunnel, "clientv6"),
                server_ipv6=_text(tunnel, "serverv6"),
                routed64=_text(tunnel, "routed64"),
                routed48=_text(tunnel, "routed48"),
            )
        return TunnelInfo(
            Outcome.permanent(f"HE tunnelInfo lists no tunnel {self.config.tunnel_id}")
        )

    # -- the plumbing -----------------------------------------------------------------------

    def _read_key(self) -> str:
        return read_update_key(self.config.update_key_file)

    def _get(self, url: str, params: dict[str, str], key: str, call: _Call) -> _Answer:
        """GET `url` and read the answer, all of it before `call`'s deadline.

        requests' read timeout bounds each wait for a byte, not the answer: a server dripping
        a byte at a time could hold a call for minutes (and a reload or stop behind it). The
        request runs on a worker thread; at the deadline a watchdog shuts the connection's
        socket down, which ends any read at once, and the caller returns without waiting
        further even for what no socket timeout covers (a stuck name lookup).
        """
        result: list[_Answer | BaseException] = []
        done = threading.Event()

        def work() -> None:
            _current.call = call
            try:
                result.append(self._fetch(url, params, key, call))
            except BaseException as exc:  # handed to the caller, which classifies it
                result.append(exc)
            finally:
                _current.call = None
                done.set()

        call.start()
        self._workers.submit(work)
        if not done.wait(call.remaining()):
            call.expire()
            done.wait(_WORKER_GRACE)
        if not result:
            raise _DeadlineExceeded(call.seconds)
        outcome = result[0]
        if isinstance(outcome, BaseException):
            if call.expired:
                raise _DeadlineExceeded(call.seconds) from None
            raise outcome
        return outcome

    def _fetch(self, url: str, params: dict[str, str], key: str, call: _Call) -> _Answer:
        verify: bool | str = str(self.config.ca_file) if self.config.ca_file else True
        session = self._session
        try:
            with session.get(
                url,
                params=params,
                auth=(self.config.username, key),
                timeout=(self.config.connect_timeout, self.config.read_timeout),
                verify=verify,
                # A redirect is never part of HE's protocol; following one could carry the
                # Authorization header somewhere we did not choose.
                allow_redirects=False,
                stream=True,
                # A fresh connection every call: a kept-alive one stays bound to the WAN address
                # it was opened from, and after the ISP changes that address the next update
                # would vanish into a dead socket. Calls are rare; reuse buys nothing.
                headers={"Connection": "close"},
            ) as response:
                raw = b""
                # iter_content (not raw.read) so a drop or stall mid-body surfaces as a
                # requests exception like any other.
                for chunk in response.iter_content(chunk_size=4096):
                    raw += chunk
                    if len(raw) > _MAX_BODY or call.expired:
                        break
                if call.expired:
                    raise _DeadlineExceeded(call.seconds)
                retry_after = _retry_after(response.headers.get("Retry-After"), time.time())
                if 300 <= response.status_code <= 399:
                    target = _scrub_url(response.headers.get("Location", "?"))
                    return _Answer(response.status_code, f"to {target}", retry_after)
                raw = raw[:_MAX_BODY]
                encoding = response.encoding or "utf-8"
                if raw.startswith(codecs.BOM_UTF8):
                    # A byte-order mark says UTF-8, whatever the headers say, and is no
                    # part of the answer.
                    raw, encoding = raw[len(codecs.BOM_UTF8) :], "utf-8"
                try:
                    body = raw.decode(encoding, errors="replace")
                except LookupError:  # a charset no codec knows: read it as UTF-8
                    body = raw.decode("utf-8", errors="replace")
                return _Answer(response.status_code, body, retry_after)
        finally:
            # Drop whatever the pool still holds (a stalled socket after a time-out, say).
            session.close()

    def _request_failure(self, what: str, exc: Exception, key: str, call: _Call) -> Outcome:
        if isinstance(exc, _DeadlineExceeded):
            kind = f"no complete answer within {call.seconds:g} s"
        elif isinstance(exc, UnicodeError):
            kind = "the request could not be encoded"
        elif isinstance(exc, requests.exceptions.SSLError):
            kind = "TLS verification failed"
        elif isinstance(exc, requests.exceptions.ConnectTimeout):
            kind = "connecting timed out"
        elif isinstance(exc, requests.Timeout):
            kind = "no answer in time"
        elif isinstance(exc, requests.ConnectionError):
            kind = "connection failed"
        else:
            kind = type(exc).__name__
        message = f"HE {what} at {self._shown_url()}: {kind}"
        if not isinstance(exc, _DeadlineExceeded | UnicodeError):
            # An encoding error's text quotes the character it choked on (of the key,
            # perhaps): it never goes anywhere. Other reasons are scrubbed of the key.
            detail = _innermost(exc)
            if not _mentions_encoding(exc):
                secrets = secret_forms(self.config.username, key)
                message += f": {scrub(clean_line(detail, 10_000), secrets)}"
        log.warning("%s", message)
        # An untrusted certificate will not fix itself at once, but a middlebox or a clock
        # can; keep retrying (the planner backs off, to minutes) and let the message say why.
        return Outcome.temporary(message)

    def _log_outcome(self, what: str, outcome: Outcome) -> None:
        level = logging.INFO if outcome.succeeded else logging.WARNING
        log.log(level, "tunnelbroker %s: %s: %s", what, outcome.status, outcome.message)

    def _shown_url(self) -> str:
        return _scrub_url(self.config.update_url)


def _parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _unpingable(address: str | None) -> str:
    target = address if address is not None else "our address"
    return (
        f"HE could not ping {target} and kept the old endpoint; "
        f"allow ICMP echo from {HE_PING_SOURCE}"
    )


def _text(element: ElementTree.Element, tag: str) -> str | None:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        return None
    return child.text.strip()


def _innermost(exc: BaseException) -> str:
    """The most specific reason in an exception chain (urllib3 wraps the socket error)."""
    seen: set[int] = set()
    reason: BaseException = exc
    while id(reason) not in seen:
        seen.add(id(reason))
        nested = getattr(reason, "reason", None) or reason.__cause__ or reason.__context__
        if not isinstance(nested, BaseException):
            break
        reason = nested
    return str(reason) or type(reason).__name__


def _shown_body(body: str, secrets: tuple[str, ...], limit: int = _BODY_SHOWN) -> str:
    """A body as one printable line (outside_text.clean_line: no escapes, no controls), cut
    to a readable length, scrubbed of the key."""
    line = scrub(clean_line(body, len(body)), secrets)
    if not line:
        return "(empty body)"
    if len(line) > limit:
        return f"{line[:limit]}... ({len(body)} chars)"
    return line


def _retry_after(value: str | None, now: float) -> float | None:
    """A Retry-After header in seconds from now (delay-seconds or an HTTP date), within
    [0, RETRY_AFTER_MAX]; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        seconds = float(int(text[:12]))
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT; one without a zone is taken as such
            return None
        seconds = when.timestamp() - now
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def _mentions_encoding(exc: BaseException) -> bool:
    """Whether an encoding error is anywhere in `exc`'s chain (its text may quote the key)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UnicodeError):
            return True
        seen.add(id(current))
        nested = getattr(current, "reason", None)
        current = (
            nested
            if isinstance(nested, BaseException)
            else (current.__cause__ or current.__context__)
        )
    return False


def _scrub_url(url: str) -> str:
    """A URL fit for a message: no userinfo, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
