"""What an old setup already says about the tunnel: pure parsers for `reconciler init`.

Each parser takes a file's text (never the network, never the file system) and returns
`Finding`s: a configuration key, the value found for it, and where it was found
(`/etc/hostname.gif0:3`), so init can tell the user where every value came from. A line a
parser cannot understand is a `SourceError` naming the file, the line number and the line:
guessing at a tunnel configuration is how a router loses IPv6.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from attrs import frozen

from reconciler.errors import ReconcilerError

__all__ = [
    "Finding",
    "SourceError",
    "UpdateCredentials",
    "parse_hostname_if",
    "parse_ifstated",
    "parse_update_url",
]


class SourceError(ReconcilerError):
    """A source init was pointed at does not say what init needs, or says it unreadably."""


@frozen
class Finding:
    key: str  # "tunnel.server_ipv4", as in the configuration file
    value: Any  # a TOML value: str, int, float, bool or a list of str
    source: str  # where it was found, for the user: "/etc/hostname.gif0:2"


@frozen
class UpdateCredentials:
    """What an update URL found in an old script holds. `key` is secret: never print it."""

    findings: tuple[Finding, ...]
    key: str | None

    def __repr__(self) -> str:  # the key must not reach a traceback or a log through repr
        return f"UpdateCredentials(findings={self.findings!r}, key={'***' if self.key else None})"


# -- /etc/hostname.<if> --------------------------------------------------------------------

# hostname.if(5) keywords that change nothing init needs to know.
_IGNORED_WORDS = {"up", "down", "create", "destroy", "-inet6", "-inet"}
_IFCONFIG = {"ifconfig", "/sbin/ifconfig"}
_ROUTE = {"route", "/sbin/route"}


def parse_hostname_if(text: str, path: str) -> list[Finding]:
    """The tunnel described by an OpenBSD `/etc/hostname.gif0`.

    Understands plain hostname.if lines (`tunnel A B`, `inet6 alias A 128` with `dest B`,
    `inet6 alias A B prefixlen N`, `mtu N`, `tunnelttl N`) and the original script's shell
    lines (`!ifconfig gif0 tunnel A B`, `!ifconfig gif0 inet6 alias ...`, `!route -n add
    -inet6 default B`).
    """
    interface = _interface_from_name(path)
    found: dict[str, Finding] = {}
    gateway: Finding | None = None
    for number, line in _lines(text):
        where = f"{path}:{number}"
        words = _split(line, where)
        if words[0].startswith("!"):
            words[0] = words[0][1:]
            if not words[0]:
                words = words[1:]
            if words and words[0] in _IFCONFIG and len(words) >= 2:
                named = words[1]
                if named not in ("$if", "${if}") and interface and named != interface:
                    raise SourceError(f"{where}: configures {named}, not {interface}: {line!r}")
                interface = interface or named
                words = words[2:]
            elif words and words[0] in _ROUTE:
                gateway = _default_route(words, where, line)
                continue
            elif words and words[0] == "sleep":
                continue
            else:
                raise SourceError(f"{where}: cannot understand this shell line: {line!r}")
        for finding in _ifconfig_words(words, where, line):
            found[finding.key] = finding
    if "tunnel.server_ipv4" not in found:
        raise SourceError(f"{path}: no tunnel line (`tunnel <local> <remote>`) in it")
    if gateway is not None and "tunnel.server_ipv6" not in found:
        found["tunnel.server_ipv6"] = Finding("tunnel.server_ipv6", gateway.value, gateway.source)
    result = list(found.values())
    if interface:
        result.insert(0, Finding("tunnel.interface", interface, path))
    return result


def _interface_from_name(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    return name.removeprefix("hostname.") if name.startswith("hostname.") else None


def _ifconfig_words(words: list[str], where: str, line: str) -> Iterator[Finding]:
    """The findings in one line of ifconfig arguments (hostname.if's plain line)."""
    i = 0
    while i < len(words):
        word = words[i]
        if word in _IGNORED_WORDS:
            i += 1
        elif word == "description":
            return  # the rest of the line is free text
        elif word == "tunnel" and i + 2 < len(words):
            _ipv4(words[i + 1], where, line)  # the local end: today's WAN address, not config
            yield Finding("tunnel.server_ipv4", str(_ipv4(words[i + 2], where, line)), where)
            i += 3
        elif word in ("mtu", "tunnelttl") and i + 1 < len(words):
            key = "tunnel.mtu" if word == "mtu" else "tunnel.ttl"
            yield Finding(key, _number(words[i + 1], where, line), where)
            i += 2
        elif word == "dest" and i + 1 < len(words):
            yield Finding("tunnel.server_ipv6", str(_ipv6(words[i + 1], where, line)), where)
            i += 2
        elif word == "inet6":
            yield from _inet6(words[i + 1 :], where, line)
            return
        else:
            raise SourceError(f"{where}: cannot understand {word!r} in {line!r}")


def _inet6(words: list[str], where: str, line: str) -> Iterator[Finding]:
    """`inet6 [alias] ADDR[/LEN] [DEST] [LEN | prefixlen LEN] [dest DEST]`."""
    if words[:1] == ["alias"]:
        words = words[1:]
    if not words:
        raise SourceError(f"{where}: inet6 without an address: {line!r}")
    address, _, length = words[0].partition("/")
    yield Finding("tunnel.client_ipv6", str(_ipv6(address, where, line)), where)
    if length:
        yield Finding("tunnel.prefixlen", _number(length, where, line), where)
    rest = words[1:]
    while rest:
        word = rest.pop(0)
        if word in ("prefixlen", "dest") and rest:
            value = rest.pop(0)
            if word == "prefixlen":
                yield Finding("tunnel.prefixlen", _number(value, where, line), where)
            else:
                yield Finding("tunnel.server_ipv6", str(_ipv6(value, where, line)), where)
        elif word.isascii() and word.isdigit():
            yield Finding("tunnel.prefixlen", _number(word, where, line), where)
        elif word in _IGNORED_WORDS:
            pass
        else:
            yield Finding("tunnel.server_ipv6", str(_ipv6(word, where, line)), where)


def _default_route(words: list[str], where: str, line: str) -> Finding:
    """`route [-n] add -inet6 default GATEWAY`: HE's end of the tunnel."""
    flags = [w for w in words[1:] if w not in ("-n", "-q")]
    if flags[:3] == ["add", "-inet6", "default"] and len(flags) == 4:
        return Finding("tunnel.server_ipv6", str(_ipv6(flags[3], where, line)), where)
    raise SourceError(f"{where}: cannot understand this route command: {line!r}")


# -- /etc/ifstated.conf --------------------------------------------------------------------

# A quoted external test: "ping ... TARGET ..." every N
_TEST = re.compile(r'"\s*((?:/sbin/)?ping6?)\b([^"]*)"\s*every\s+(\d+)')
_NETSTART = re.compile(r"(?:^|[\s\"'])(?:sh\s+)?/etc/netstart\s+([A-Za-z][A-Za-z0-9_.-]*)")
# ping options that take a value (OpenBSD's and iputils' alike)
_PING_VALUE_OPTIONS = set("cIiLlpsTVWwS")


def parse_ifstated(text: str, path: str) -> list[Finding]:
    """Probe targets and intervals from the `ping`/`ping6` tests of an ifstated.conf, and the
    WAN interface from its `sh /etc/netstart em0`."""
    found: dict[str, Finding] = {}
    tests = 0
    for number, line in _lines(text):
        where = f"{path}:{number}"
        for program, arguments, every in _TEST.findall(line):
            tests += 1
            family, target, timeout = _ping_test(program, arguments, where, line)
            prefix = f"probe.{family}"
            if f"{prefix}.interval" in found:
                continue  # the first test of a family is the one the state machine watches
            found[f"{prefix}.interval"] = Finding(f"{prefix}.interval", int(every), where)
            if target is not None:
                found[f"{prefix}.target"] = Finding(f"{prefix}.target", target, where)
            if timeout is not None:
                found[f"{prefix}.timeout"] = Finding(f"{prefix}.timeout", timeout, where)
        match = _NETSTART.search(line)
        if match and "wan.interface" not in found and not match.group(1).startswith("gif"):
            found["wan.interface"] = Finding("wan.interface", match.group(1), where)
    if tests == 0:
        raise SourceError(f'{path}: no ping or ping6 test (`"ping ..." every N`) in it')
    return list(found.values())


def _ping_test(
    program: str, arguments: str, where: str, line: str
) -> tuple[str, str | None, int | None]:
    """(family, target or None, timeout or None) of one ping test's command line."""
    words = _split(arguments, where)
    family = "ipv6" if program.endswith("6") else "ipv4"
    target: str | None = None
    timeout: int | None = None
    i = 0
    while i < len(words):
        word = words[i]
        if ">" in word or word.startswith("2>") or word in ("|", "&&", ";"):
            break  # the redirection and anything after it are the shell's business
        if word == "-6":
            family = "ipv6"
        elif word.startswith("-") and len(word) >= 2:
            option, value = word[1], word[2:]  # "-c1" carries its value, "-c 1" does not
            if option in _PING_VALUE_OPTIONS and not value and i + 1 < len(words):
                i += 1
                value = words[i]
            if option == "w" and value.isascii() and value.isdigit():
                timeout = int(value)
        else:
            target = word
        i += 1
    if target is not None:
        try:
            parsed = ipaddress.ip_address(target)
        except ValueError:
            raise SourceError(
                f"{where}: the ping target {target!r} is not an IP address: {line!r}"
            ) from None
        family = "ipv6" if parsed.version == 6 else "ipv4"
        target = str(parsed)
    return family, target, timeout


# -- an update URL in an old script ---------------------------------------------------------

_UPDATE_URL = re.compile(r"https?://[^\s\"'<>`]*tunnelbroker\.net/nic/update[^\s\"'<>`]*")


def parse_update_url(text: str, path: str) -> UpdateCredentials | None:
    """The tunnel id, username and update key in the first tunnelbroker update URL in `text`,
    or None when it has none. The key is returned apart and never named in a finding."""
    for number, line in _lines(text, keep_comments=True):
        match = _UPDATE_URL.search(line)
        if match is None:
            continue
        where = f"{path}:{number}"
        parts = urlsplit(match.group(0))
        query = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
        findings = []
        username = parts.username or query.get("username") or query.get("user")
        if username:
            findings.append(Finding("tunnelbroker.username", username, where))
        tunnel_id = query.get("hostname") or query.get("tid")
        if tunnel_id and tunnel_id.isascii() and tunnel_id.isdigit():
            findings.append(Finding("tunnelbroker.tunnel_id", tunnel_id, where))
        key = parts.password or query.get("password") or query.get("pass")
        return UpdateCredentials(tuple(findings), key or None)
    return None


# -- shared --------------------------------------------------------------------------------


def _lines(text: str, *, keep_comments: bool = False) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or (line.startswith("#") and not keep_comments):
            continue
        yield number, line


def _split(line: str, where: str) -> list[str]:
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise SourceError(f"{where}: {exc}: {line!r}") from None
    return words or [""]


def _ipv4(text: str, where: str, line: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise SourceError(f"{where}: {text!r} is not an IPv4 address: {line!r}") from None


def _ipv6(text: str, where: str, line: str) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise SourceError(f"{where}: {text!r} is not an IPv6 address: {line!r}") from None


def _number(text: str, where: str, line: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise SourceError(f"{where}: {text!r} is not a number: {line!r}")
    return int(text)
