"""Parsers for the text OpenBSD's tools print: `ifconfig <if>` and `route -n monitor`.

Pure functions over strings, tested against fixtures in the real formats, so the platform
(reconciler.world.openbsd) only runs commands and maps results.

`ifconfig em0`:

    em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500
    \tstatus: active
    \tinet 95.163.182.60 netmask 0xfffffe00 broadcast 95.163.183.255

`ifconfig gif0` adds `\ttunnel: inet A --> B ttl 64 nodf ecn` (`ttl copy` when the TTL is
copied from the inner packet) and `\tinet6 A --> B prefixlen 128`; releases before 6.x print
`->` instead of `-->`. A DHCP interface (`inet autoconf`, dhcpleased) has AUTOCONF4 among its
flags, which ifconfig prints with the extended flags shifted 16 bits up
(`flags=808843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,AUTOCONF4>`). Each address prints as
its own `inet` line in the kernel's order, an alias exactly like the first one: nothing in
ifconfig's output tells dhcpleased's lease from a static alias (`dhcpleasectl -l <if>` does).

A missing interface: ifconfig prints `<if>: no such interface` on stderr (no `ifconfig:`
prefix) and exits 1.

`route -n monitor` prints one header line per routing message, for example

    RTM_NEWADDR: address being added to iface: len 104, if# 1, name em0, metric 0, flags:<UP>

followed by address lines; only the header lines matter here. RTM_IFINFO prints the
interface flags with route(8)'s own names, which differ from ifconfig's (`PTP`, not
`POINTOPOINT`):

    RTM_IFINFO: iface status change: len 168, if# 5, name gif0, link: down, mtu: 1480,
    flags:<PTP,MULTICAST>

(one line, broken here), and no blank line after it.

`dhcpleasectl -l <if>` prints the lease dhcpleased holds:

    em0 [Bound]
    \tinet 198.51.100.7 netmask 255.255.255.0
    \tdefault gateway 198.51.100.1
    ...
"""

from __future__ import annotations

import re

from attrs import frozen

from reconciler.world.platform import ChangeNotice

__all__ = [
    "IfconfigInterface",
    "Inet6Address",
    "InetAddress",
    "RouteGot",
    "is_missing_interface",
    "parse_default_gateway",
    "parse_ifconfig",
    "parse_lease",
    "parse_lease_gateway",
    "parse_monitor_line",
    "parse_route_get",
]


@frozen
class InetAddress:
    address: str
    netmask: str | None = None
    destination: str | None = None  # point-to-point peer
    broadcast: str | None = None


@frozen
class Inet6Address:
    address: str
    prefixlen: int | None = None
    destination: str | None = None


@frozen
class IfconfigInterface:
    name: str
    flags: frozenset[str]
    mtu: int | None
    status: str | None  # "active", "no carrier", ...; None when ifconfig prints none
    inet: tuple[InetAddress, ...]
    inet6: tuple[Inet6Address, ...]
    tunnel_local: str | None = None
    tunnel_remote: str | None = None
    tunnel_ttl: int | None = None  # `ttl N` on the tunnel line; None when absent or `copy`

    @property
    def up(self) -> bool:
        return "UP" in self.flags

    @property
    def autoconf4(self) -> bool:
        """`inet autoconf`: dhcpleased(8) manages the interface's IPv4 address (OpenBSD 6.9+)."""
        return "AUTOCONF4" in self.flags

    @property
    def link_up(self) -> bool:
        """Administratively up and, where the driver reports it, with a carrier."""
        return self.up and self.status in (None, "active")


_HEADER = re.compile(r"^(?P<name>[a-z]+[0-9]+): flags=[0-9a-f]+<(?P<flags>[^>]*)>(?P<rest>.*)$")
_MTU = re.compile(r"\bmtu (\d+)")
_ARROW = r"(?:-->|->)"  # `-->` since OpenBSD 6.x, `->` before
# `tunnel: inet A --> B` now; OpenBSD 4.x printed `physical address inet A --> B`.
_TUNNEL = re.compile(
    rf"^(?:tunnel:|physical address) inet6? (?P<local>\S+) {_ARROW} (?P<remote>\S+)"
    r"(?:.*\bttl (?P<ttl>\d+)\b)?"
)
_INET = re.compile(rf"^inet (?P<addr>[0-9.]+)(?: {_ARROW} (?P<dest>[0-9.]+))?(?P<rest>.*)$")
# A point-to-point inet6 line without a peer prints `-->` followed by nothing.
_INET6 = re.compile(
    rf"^inet6 (?P<addr>[0-9a-fA-F:]\S*)(?: {_ARROW} *(?P<dest>[0-9a-fA-F:]\S*)?)?(?P<rest>.*)$"
)
_NETMASK = re.compile(r"\bnetmask (\S+)")
_BROADCAST = re.compile(r"\bbroadcast (\S+)")
_PREFIXLEN = re.compile(r"\bprefixlen (\d+)")


_LEASE_INET = re.compile(r"^\tinet (?P<addr>[0-9.]+) netmask ", re.MULTILINE)


def parse_lease(text: str) -> str | None:
    """The address of the lease `dhcpleasectl -l <if>` shows; None while there is none."""
    match = _LEASE_INET.search(text)
    return match["addr"] if match else None


_LEASE_GATEWAY = re.compile(r"^\tdefault gateway (?P<addr>[0-9.]+)\s*$", re.MULTILINE)


def parse_lease_gateway(text: str) -> str | None:
    """The default gateway of the lease `dhcpleasectl -l <if>` shows; None without one."""
    match = _LEASE_GATEWAY.search(text)
    return match["addr"] if match and _is_ipv4(match["addr"]) else None


def parse_default_gateway(text: str, interface: str) -> str | None:
    """The gateway of the IPv4 default route through `interface` in `route -n show -inet`
    (columns: Destination Gateway Flags Refs Use Mtu Prio Iface); None without one."""
    for line in text.splitlines():
        words = line.split()
        default = len(words) >= 8 and words[0] == "default" and words[-1] == interface
        if default and _is_ipv4(words[1]):
            return words[1]
    return None


@frozen
class RouteGot:
    """What `route -n get -inet <addr>` says of the route that carries `addr`."""

    destination: str
    gateway: str | None
    host: bool  # a host route (HOST among its flags)
    label: str | None


def parse_route_get(text: str) -> RouteGot:
    """route.c's print_getmsg output: "destination: X", "gateway: G", "flags: <...>",
    "label: L" (each on its own line, right-aligned names)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.strip().partition(": ")
        if colon and name in ("destination", "gateway", "flags", "label"):
            fields.setdefault(name, value.strip())
    if "destination" not in fields:
        raise ValueError("no destination line")
    flags = fields.get("flags", "").strip("<>").split(",")
    return RouteGot(
        destination=fields["destination"],
        gateway=fields.get("gateway"),
        host="HOST" in flags,
        label=fields.get("label"),
    )


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def is_missing_interface(stderr: str) -> bool:
    """ifconfig's complaint about an interface that does not exist."""
    return "no such interface" in stderr.lower() or "device not configured" in stderr.lower()


def parse_ifconfig(text: str) -> IfconfigInterface:
    """Parse the output of `ifconfig <if>` (one interface). ValueError when it is not that."""
    lines = text.splitlines()
    header = _HEADER.match(lines[0]) if lines else None
    if header is None:
        first = lines[0] if lines else "(no output)"
        raise ValueError(f"not ifconfig output: {first[:80]!r}")
    flags = frozenset(f for f in header["flags"].split(",") if f)
    mtu_match = _MTU.search(header["rest"])
    status: str | None = None
    inet: list[InetAddress] = []
    inet6: list[Inet6Address] = []
    tunnel_local = tunnel_remote = None
    tunnel_ttl: int | None = None
    for raw in lines[1:]:
        line = raw.strip()
        if line.startswith("status: "):
            status = line.removeprefix("status: ").strip()
        elif (tunnel := _TUNNEL.match(line)) is not None:
            tunnel_local, tunnel_remote = tunnel["local"], tunnel["remote"]
            tunnel_ttl = int(tunnel["ttl"]) if tunnel["ttl"] else None
        elif (v4 := _INET.match(line)) is not None:
            netmask = _NETMASK.search(v4["rest"])
            broadcast = _BROADCAST.search(v4["rest"])
            inet.append(
                InetAddress(
                    v4["addr"],
                    netmask[1] if netmask else None,
                    v4["dest"],
                    broadcast[1] if broadcast else None,
                )
            )
        elif (v6 := _INET6.match(line)) is not None:
            prefixlen = _PREFIXLEN.search(v6["rest"])
            inet6.append(
                Inet6Address(
                    v6["addr"], int(prefixlen[1]) if prefixlen else None, v6["dest"] or None
                )
            )
    return IfconfigInterface(
        name=header["name"],
        flags=flags,
        mtu=int(mtu_match[1]) if mtu_match else None,
        status=status,
        inet=tuple(inet),
        inet6=tuple(inet6),
        tunnel_local=tunnel_local,
        tunnel_remote=tunnel_remote,
        tunnel_ttl=tunnel_ttl,
    )


_MESSAGE = re.compile(r"^(?P<type>RTM_[A-Z0-9_]+):")
_NAME = re.compile(r"\bname ([^\s,]+)")
_KINDS = {
    "RTM_NEWADDR": "address",
    "RTM_DELADDR": "address",
    "RTM_CHGADDRATTR": "address",
    "RTM_IFINFO": "link",
    "RTM_IFANNOUNCE": "announce",
    "RTM_DESYNC": "desync",
}


def parse_monitor_line(line: str) -> ChangeNotice | None:
    """The notice one line of `route -n monitor` output stands for, or None.

    Route additions and removals, proposals and address lines are not notices: the
    observers look at interfaces and addresses only."""
    message = _MESSAGE.match(line)
    if message is None:
        return None
    kind = _KINDS.get(message["type"])
    if kind is None:
        return None
    if kind == "desync":
        return ChangeNotice("desync")
    name = _NAME.search(line)
    return ChangeNotice(kind, name[1] if name else None)
