"""The one interface every platform (OpenBSD, Linux) implements, and what it reports.

Observations are plain values; the observers turn them into facts. Mutating calls raise
`TemporaryError` / `PermanentError` (reconciler.errors) when they fail; executors turn those
into outcome facts. A contract test suite (tests/world/platform_contract.py) runs against
every implementation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Protocol

from attrs import frozen

__all__ = [
    "ChangeNotice",
    "Platform",
    "TunnelState",
    "WanState",
    "Watch",
    "tunnel_address_first",
]


@frozen
class WanState:
    interface: str
    exists: bool
    link_up: bool
    # IPv4; the one the tunnel should use first (the platform orders them: OpenBSD puts
    # dhcpleased's lease and `wan.address_in` first), the rest in the kernel's order.
    addresses: tuple[str, ...] = ()
    autoconf: bool = False  # a DHCP client owns the address (OpenBSD: AUTOCONF4)
    # Whether the IPv4 default route leaves through the WAN (Linux; a route the kernel keeps
    # as `linkdown` counts); None where the platform does not observe it.
    default_route: bool | None = None
    # Who restart-wan would tell (world/wanowner.py); "none": nobody; None: the platform's own.
    owner: str | None = None

    @property
    def address(self) -> str | None:
        """The address the tunnel should use: the first one."""
        return self.addresses[0] if self.addresses else None


def tunnel_address_first(
    addresses: tuple[str, ...],
    address_in: str | None,
    lease: str | None = None,
    *,
    route_source: str | None = None,
    dynamic: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """The WAN's IPv4 `addresses` with the tunnel's first; the others keep the kernel's order.

    The tunnel's is the first inside `address_in` (`wan.address_in`, a network); else the
    source the kernel would use towards HE's server (`route_source`, the route's preferred
    source), which skips a modem-management alias added before the ISP's address; else the
    DHCP `lease` when the platform knows it; else the first `dynamic` one (a DHCP client's:
    a lifetime, not permanent); else the kernel's first."""
    chosen = None
    if address_in is not None:
        network = ipaddress.IPv4Network(address_in)
        chosen = next((a for a in addresses if ipaddress.IPv4Address(a) in network), None)
    for candidate in (route_source, lease, *dynamic):
        if chosen is None and candidate in addresses:
            chosen = candidate
    if chosen is None:
        return addresses
    return (chosen, *(a for a in addresses if a != chosen))


@frozen
class TunnelState:
    interface: str
    exists: bool
    up: bool
    local: str | None = None
    remote: str | None = None
    mode: str | None = None
    ttl: int | None = None  # of the encapsulating IPv4 packets; None: not reported
    # the IPv6 default route: "tunnel" (through it), "other" (only through another
    # interface: a native route, left alone), "none"; None: not reported
    default_route: str | None = None


@frozen
class ChangeNotice:
    """The kernel said something changed. `kind`: "address", "link", "route" (an IPv6 default
    route; `interface`: its outgoing one), "announce", or "desync"
    (messages were lost, or the monitor died: observe everything afresh)."""

    kind: str
    interface: str | None = None


class Watch(Protocol):
    def stop(self) -> None: ...


class Platform(Protocol):
    name: str

    def observe_wan(self) -> WanState: ...

    def observe_tunnel(self) -> TunnelState: ...

    def read_hostname_file(self) -> bytes | None:
        """The hostname file's bytes; None when missing or when the platform has none."""
        ...

    def write_hostname_file(self, content: str) -> bool:
        """Write atomically, keep a backup; False (and no write) when nothing changed."""
        ...

    def restart_wan(self) -> None: ...

    def restart_tunnel(self, local: str, remote: str) -> None: ...

    def reload_firewall(self) -> None: ...

    def watch(self, notify: Callable[[ChangeNotice], None]) -> Watch:
        """Call `notify` from a background thread on every kernel change until stopped."""
        ...
