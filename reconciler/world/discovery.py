"""Looking at the host for `reconciler init`: the IPv4 default route's interface, and an
existing tunnel link on Linux. Read-only: nothing here changes the system."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.world.runner import CommandRunner

__all__ = ["DiscoveryError", "LinkTunnel", "default_route_interface", "read_tunnel_link"]

_TIMEOUT = 10.0


class DiscoveryError(ReconcilerError):
    """The host does not have what init looked for."""


def default_route_interface(platform: str, runner: CommandRunner | None = None) -> str:
    """The interface that carries the IPv4 default route."""
    if platform == "openbsd":
        return _openbsd_default_interface(runner)
    return _linux_default_interface()


def _linux_default_interface() -> str:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for route in ipr.get_default_routes(family=socket.AF_INET):
            index = route.get_attr("RTA_OIF")
            if index is None:
                continue
            links = ipr.get_links(index)
            if links:
                return str(links[0].get_attr("IFLA_IFNAME"))
    raise DiscoveryError("no IPv4 default route: name the WAN interface with --wan IF")


def _openbsd_default_interface(runner: CommandRunner | None) -> str:
    if runner is None:
        from reconciler.world.runner import SubprocessRunner

        runner = SubprocessRunner()
    done = runner.run(["route", "-n", "get", "-inet", "default"], timeout=_TIMEOUT)
    match = re.search(r"^\s*interface:\s*(\S+)\s*$", done.stdout, re.MULTILINE)
    if not done.ok or match is None:
        raise DiscoveryError("no IPv4 default route: name the WAN interface with --wan IF")
    return match.group(1)


class LinkTunnel:
    """What an existing sit or vxlan link says: its kind and the configuration keys it fills."""

    def __init__(self, kind: str, values: dict[str, Any], local: str | None) -> None:
        self.kind = kind
        self.values = values  # "tunnel.server_ipv4" -> value
        self.local = local  # the local end: today's WAN address, not configuration


def read_tunnel_link(name: str) -> LinkTunnel:
    """The tunnel configuration an existing Linux sit or vxlan link `name` carries."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = ipr.link_lookup(ifname=name)
        if not links:
            raise DiscoveryError(f"--from-link: no link named {name}")
        link = ipr.get_links(links[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
        if kind not in ("sit", "vxlan") or data is None:
            raise DiscoveryError(
                f"--from-link: {name} is a {kind or 'plain'} link, not a sit or vxlan tunnel"
            )
        values: dict[str, Any] = {"tunnel.interface": name, "tunnel.mode": kind}
        prefix = "IFLA_SIT" if kind == "sit" else "IFLA_VXLAN"
        local = _address(data.get_attr(f"{prefix}_LOCAL"))
        remote = _address(
            data.get_attr(f"{prefix}_REMOTE" if kind == "sit" else "IFLA_VXLAN_GROUP")
        )
        if remote is not None:
            values["tunnel.server_ipv4"] = remote
        ttl = data.get_attr(f"{prefix}_TTL")
        if ttl:
            values["tunnel.ttl"] = int(ttl)
        if kind == "vxlan":
            values["tunnel.vxlan_id"] = int(data.get_attr("IFLA_VXLAN_ID"))
            port = data.get_attr("IFLA_VXLAN_PORT")
            if port:
                values["tunnel.vxlan_port"] = int(port)
        mtu = link.get_attr("IFLA_MTU")
        if mtu:
            values["tunnel.mtu"] = int(mtu)
        for message in ipr.get_addr(family=socket.AF_INET6, index=links[0]):
            # With a peer (`ip addr add A peer B`) IFA_LOCAL is ours and IFA_ADDRESS the
            # peer's; without one the kernel sends IFA_ADDRESS alone.
            given = message.get_attr("IFA_ADDRESS")
            ours = message.get_attr("IFA_LOCAL") or given
            address = ipaddress.IPv6Address(ours)
            if address.is_link_local:
                continue
            values["tunnel.client_ipv6"] = str(address)
            values["tunnel.prefixlen"] = int(message["prefixlen"])
            if given and given != ours:
                values["tunnel.server_ipv6"] = str(ipaddress.IPv6Address(given))
            break
        if "tunnel.server_ipv6" not in values:
            gateway = _ipv6_default_gateway(ipr, links[0])
            if gateway is not None:
                values["tunnel.server_ipv6"] = gateway
        return LinkTunnel(kind, values, local)


def _ipv6_default_gateway(ipr: Any, index: int) -> str | None:
    for route in ipr.get_default_routes(family=socket.AF_INET6):
        if route.get_attr("RTA_OIF") == index and route.get_attr("RTA_GATEWAY"):
            return str(ipaddress.IPv6Address(route.get_attr("RTA_GATEWAY")))
    return None


def _address(value: Any) -> str | None:
    if not value or value in ("0.0.0.0", "::"):
        return None
    return str(value)
