"""The Hurricane Electric tunnelbroker client: endpoint updates and tunnelInfo reads.

Every answer HE can give (see ../shared/TUNNELBROKER.md) becomes an `Outcome`; nothing here
raises into the caller, because executors and observers record what happened as facts.

The update key is read from its file at the moment of each call and travels only in the HTTP
Basic `Authorization` header. It is never stored on the client, never put in a URL, and every
message built here is scrubbed of it (and of its Basic-auth encoding) before it leaves, in
case a server or an exception echoes it back.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import xml.etree.ElementTree as ElementTree
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import requests
from attrs import frozen

from reconciler.errors import one_line
from reconciler.model.actions import Outcome
from reconciler.model.config import TunnelbrokerConfig

__all__ = [
    "ABUSE_RETRY_AFTER",
    "HE_PING_SOURCE",
    "SERVER_RETRY_AFTER",
    "TunnelInfo",
    "TunnelbrokerClient",
    "UpdateResult",
]

log = logging.getLogger(__name__)

# inadyn waits this long after server-side trouble; HE publishes no better number.
SERVER_RETRY_AFTER: Final = 600.0
# `abuse` means HE has blocked us for updating too often: wait hours, not minutes.
ABUSE_RETRY_AFTER: Final = 3 * 3600.0
# HE pings a new endpoint from here before it accepts it.
HE_PING_SOURCE: Final = "66.220.2.74"

# Bodies longer than this are cut in messages; enough for an HTML error page's gist.
_BODY_SHOWN: Final = 200
_BODY_LOGGED: Final = 4000
# tunnelInfo is a few hundred bytes; refuse to read megabytes from a broken server.
_MAX_BODY: Final = 64 * 1024

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


class _KeyUnavailable(Exception):
    """The update key file is missing, unreadable or empty (message names the file only)."""


class TunnelbrokerClient:
    """Talks to HE with TLS verified, bounded timeouts and a fresh connection per call."""

    def __init__(
        self,
        config: TunnelbrokerConfig,
        *,
        session: requests.Session | None = None,
        server_retry_after: float = SERVER_RETRY_AFTER,
        abuse_retry_after: float = ABUSE_RETRY_AFTER,
    ) -> None:
        self.config = config
        self.server_retry_after = server_retry_after
        self.abuse_retry_after = abuse_retry_after
        if session is None:
            session = requests.Session()
            # Proxies, a netrc file or REQUESTS_CA_BUNDLE from the environment must not
            # change where the key goes or which CA is trusted: the config decides.
            session.trust_env = False
        self._session = session

    def __repr__(self) -> str:
        return f"TunnelbrokerClient(tunnel_id={self.config.tunnel_id!r}, url={self._shown_url()!r})"

    def close(self) -> None:
        """Release the session's pooled connections."""
        self._session.close()

    # -- the update -------------------------------------------------------------------------

    def update(self, address: str | None, expected: str | None) -> UpdateResult:
        """Tell HE our endpoint. `address` goes out as `myip`; None lets HE use our source.

        `expected` is the address HE should report back. When no `myip` is sent (behind
        NAT) HE reports our public address, which we cannot know in advance, so any real
        unicast IPv4 address in a `good`/`nochg` answer counts as success then.
        """
        try:
            key = self._read_key()
        except _KeyUnavailable as exc:
            return UpdateResult(Outcome.permanent(str(exc)))
        params = {"hostname": self.config.tunnel_id}
        if address is not None:
            params["myip"] = address
        log.debug(
            "tunnelbroker update for tunnel %s: myip=%s",
            self.config.tunnel_id,
            address if address is not None else "(none: HE takes the source address)",
        )
        try:
            response = self._get(self.config.update_url, params, key)
        except Exception as exc:  # the caller records outcomes, never crashes
            return UpdateResult(self._request_failure("update", exc, key))
        status, body = response
        secrets = _secrets(self.config.username, key)
        result = self._classify_update(status, body, address, expected, secrets)
        self._log_outcome("update", result.outcome)
        return result

    def _classify_update(
        self,
        status: int,
        body: str,
        address: str | None,
        expected: str | None,
        secrets: tuple[str, ...],
    ) -> UpdateResult:
        words = body.split()
        first = words[0] if words else ""
        if 500 <= status <= 599:
            return UpdateResult(
                Outcome.temporary(
                    f"HE answered HTTP {status}: {_shown_body(body, secrets)}",
                    self.server_retry_after,
                )
            )
        if first in ("good", "nochg"):
            return self._classify_success(first, words[1:2], address, expected, secrets)
        if first in _PERMANENT_WORDS:
            return UpdateResult(Outcome.permanent(_PERMANENT_WORDS[first]))
        if first in _SERVER_TROUBLE_WORDS:
            return UpdateResult(
                Outcome.temporary(_SERVER_TROUBLE_WORDS[first], self.server_retry_after)
            )
        if first == "abuse":
            return UpdateResult(
                Outcome.temporary(
                    "HE blocked updates for too many requests (abuse); waiting hours",
                    self.abuse_retry_after,
                )
            )
        lowered = body.lower()
        if first.lower().startswith("-error") and "pingable" in lowered:
            return UpdateResult(Outcome.temporary(_unpingable(address), self.server_retry_after))
        if first.lower().startswith("-error") and ("rfc1918" in lowered or "private" in lowered):
            return UpdateResult(
                Outcome.permanent(
                    f"HE refuses the private address {address or '(source)'} (RFC 1918); "
                    'behind NAT send no myip (wan.public_address = "tunnelbroker")'
                )
            )
        if status in (401, 403):
            return UpdateResult(
                Outcome.permanent(
                    f"HE refused the credentials (HTTP {status}); not retrying: "
                    f"{_shown_body(body, secrets)}"
                )
            )
        if status != 200:
            return UpdateResult(
                Outcome.permanent(f"HE answered HTTP {status}: {_shown_body(body, secrets)}")
            )
        # The outcome carries a cut; the log gets the body whole (up to a sane bound), as
        # pfSense does, so an operator can see what HE really said.
        log.warning(
            "tunnelbroker: unknown answer (HTTP %s, %d chars): %s",
            status,
            len(body),
            _shown_body(body, secrets, limit=_BODY_LOGGED),
        )
        return UpdateResult(
            Outcome.permanent(f"HE gave an unknown answer: {_shown_body(body, secrets)}")
        )

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
            return UpdateResult(
                Outcome.temporary(
                    f"HE answered {word!r} without an address", self.server_retry_after
                )
            )
        ip = _parse_ipv4(reported)
        if ip is None:
            return UpdateResult(
                Outcome.permanent(
                    f"HE gave an unknown answer: {_shown_body(f'{word} {reported}', secrets)}"
                )
            )
        if ip.is_loopback or ip.is_unspecified:
            # HE could not ping the new address, so it did not take it.
            return UpdateResult(Outcome.temporary(_unpingable(address), self.server_retry_after))
        # Without myip, HE reports the public address our request came from (NAT): whatever
        # real address it names is ours.
        if reported == wanted or address is None:
            return UpdateResult(Outcome.ok(f"HE endpoint {word}: {reported}"), reported)
        return UpdateResult(
            Outcome.temporary(
                f"HE reports endpoint {reported}, not {wanted}", self.server_retry_after
            ),
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
        except _KeyUnavailable as exc:
            return TunnelInfo(Outcome.permanent(str(exc)))
        params = {} if "tid=" in urlsplit(url).query else {"tid": self.config.tunnel_id}
        try:
            status, body = self._get(url, params, key)
        except Exception as exc:  # the caller records outcomes, never crashes
            return TunnelInfo(self._request_failure("tunnel info", exc, key))
        info = self._parse_tunnel_info(status, body, _secrets(self.config.username, key))
        self._log_outcome("tunnel info", info.outcome)
        return info

    def _parse_tunnel_info(self, status: int, body: str, secrets: tuple[str, ...]) -> TunnelInfo:
        if 500 <= status <= 599:
            return TunnelInfo(
                Outcome.temporary(
                    f"HE tunnelInfo answered HTTP {status}: {_shown_body(body, secrets)}",
                    self.server_retry_after,
                )
            )
        if status != 200 or body.split()[:1] == ["badauth"]:
            return TunnelInfo(
                Outcome.permanent(
                    f"HE tunnelInfo answered HTTP {status}: {_shown_body(body, secrets)}"
                )
            )
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            return TunnelInfo(
                Outcome.permanent(f"HE tunnelInfo is not XML: {_shown_body(body, secrets)}")
            )
        wanted = str(self.config.tunnel_id)
        tunnels = [root] if root.tag == "tunnel" else list(root.iter("tunnel"))
        for tunnel in tunnels:
            if tunnel.get("id", wanted) != wanted:
                continue
            client = _text(tunnel, "clientv4")
            if client is not None and _parse_ipv4(client) is None:
                return TunnelInfo(
                    Outcome.permanent(
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
        path = self.config.update_key_file
        try:
            key = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise _KeyUnavailable(f"update key file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise _KeyUnavailable(f"update key file {path} cannot be read: {reason}") from None
        if not key:
            raise _KeyUnavailable(f"update key file {path} is empty")
        return key

    def _get(self, url: str, params: dict[str, str], key: str) -> tuple[int, str]:
        verify: bool | str = str(self.config.ca_file) if self.config.ca_file else True
        try:
            with self._session.get(
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
                    if len(raw) > _MAX_BODY:
                        break
                if 300 <= response.status_code <= 399:
                    target = _scrub_url(response.headers.get("Location", "?"))
                    return response.status_code, f"redirect to {target}"
                encoding = response.encoding or "utf-8"
                return response.status_code, raw[:_MAX_BODY].decode(encoding, errors="replace")
        finally:
            # Drop whatever the pool still holds (a stalled socket after a time-out, say).
            self._session.close()

    def _request_failure(self, what: str, exc: Exception, key: str) -> Outcome:
        if isinstance(exc, requests.exceptions.SSLError):
            kind = "TLS verification failed"
        elif isinstance(exc, requests.exceptions.ConnectTimeout):
            kind = "connecting timed out"
        elif isinstance(exc, requests.Timeout):
            kind = "no answer in time"
        elif isinstance(exc, requests.ConnectionError):
            kind = "connection failed"
        else:
            kind = type(exc).__name__
        detail = _scrub(one_line(_innermost(exc)), _secrets(self.config.username, key))
        message = f"HE {what} at {self._shown_url()}: {kind}: {detail}"
        log.warning("%s", message)
        # An untrusted certificate will not fix itself in ten minutes, but a middlebox or a
        # clock can; keep retrying, slowly, and let the message say why.
        return Outcome.temporary(message, self.server_retry_after)

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
    """A body as one printable line, cut to a readable length, scrubbed of the key."""
    printable = "".join(ch if ch.isprintable() else " " for ch in body)
    line = _scrub(one_line(printable), secrets)
    if not line:
        return "(empty body)"
    if len(line) > limit:
        return f"{line[:limit]}... ({len(body)} chars)"
    return line


def _secrets(username: str, key: str) -> tuple[str, ...]:
    """The key and the Basic-auth token that encodes it: what no message may contain."""
    token = base64.b64encode(f"{username}:{key}".encode()).decode("ascii")
    return (key, token) if key else ()


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _scrub_url(url: str) -> str:
    """A URL fit for a message: no userinfo, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
