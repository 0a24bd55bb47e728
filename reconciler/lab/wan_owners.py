"""The lab's WAN owned by a real client instead of the lab's hand (issue 20): a DHCP WAN
(dnsmasq as the ISP in the HE namespace, dhclient on the router's wan0) and a PPPoE WAN
(pppoe-server as the ISP, pppd's ppp0 on the router). The tests and the repair bench use the
same set-ups and the same measure of a repair.

    with Lab(prebuild_tunnel=False) as lab, dhcp_wan(lab) as isp:
        lab.start_daemon(wan__restart_command=None)
        ...
        seconds = time_repair(lab, lambda: isp.renumber(SECOND_POOL), lambda: ...)
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from attrs import frozen

from reconciler.lab.topology import HE_ADDRESS, HE_WAN_INTERFACE, WAN_INTERFACE, Lab, wait_until
from reconciler.testing.dhcp import Dhclient, DhcpServer
from reconciler.testing.networkd import Networkd
from reconciler.testing.pppoe import PppClient, PppoeServer

__all__ = [
    "DHCP_POOLS",
    "PPPOE_ADDRESSES",
    "PPP_INTERFACE",
    "Repair",
    "dhcp_wan",
    "interface_address",
    "networkd_wan",
    "pppoe_wan",
    "time_repair",
]

DHCP_POOLS = (("203.0.113.50", "203.0.113.59"), ("203.0.113.70", "203.0.113.79"))
PPP_INTERFACE = "ppp0"
PPPOE_ADDRESSES = ("203.0.113.60", "203.0.113.70")


def interface_address(lab: Lab, interface: str = WAN_INTERFACE) -> str | None:
    """The router's first IPv4 address on `interface` (None: none, or no such link)."""
    shown = subprocess.run(
        ["ip", "-n", lab.router_ns, "-4", "-o", "addr", "show", "dev", interface],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    words = shown.stdout.split()
    return words[words.index("inet") + 1].split("/")[0] if "inet" in words else None


@contextmanager
def dhcp_wan(lab: Lab, pool: tuple[str, str] = DHCP_POOLS[0]) -> Iterator[DhcpServer]:
    """The router's WAN as dhclient holds it, leased from `pool` by dnsmasq on HE's side
    (the router is the default route's gateway); the server, for renumbering."""
    subprocess.run(["ip", "-n", lab.router_ns, "addr", "flush", "dev", WAN_INTERFACE],
                   check=True)  # fmt: skip
    lab.wan_address = None
    with DhcpServer(lab.he_ns, HE_WAN_INTERFACE, HE_ADDRESS, lab.workdir) as isp:
        isp.start(pool)
        with Dhclient(lab.router_ns, WAN_INTERFACE, lab.workdir) as client:
            client.start()
            yield isp


NETWORKD_DHCP = f"""[Match]
Name={WAN_INTERFACE}

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
"""


@contextmanager
def networkd_wan(
    lab: Lab, pool: tuple[str, str] = DHCP_POOLS[0]
) -> Iterator[tuple[DhcpServer, Networkd]]:
    """The router's WAN as systemd-networkd's DHCP client holds it (networkd run in the
    router's namespace with its own /run and D-Bus: reconciler.testing.networkd), leased by
    dnsmasq on HE's side; the server and networkd (whose `env()` a daemon needs to reach its
    bus)."""
    subprocess.run(["ip", "-n", lab.router_ns, "addr", "flush", "dev", WAN_INTERFACE],
                   check=True)  # fmt: skip
    lab.wan_address = None
    with DhcpServer(lab.he_ns, HE_WAN_INTERFACE, HE_ADDRESS, lab.workdir) as isp:
        isp.start(pool)
        with Networkd(lab.router_ns) as networkd:
            networkd.write(f"{WAN_INTERFACE}.network", NETWORKD_DHCP)
            networkd.start()
            networkd.wait_setup(WAN_INTERFACE, "configured", timeout=20)
            yield isp, networkd


@contextmanager
def pppoe_wan(lab: Lab, address: str = PPPOE_ADDRESSES[0]) -> Iterator[PppoeServer]:
    """The router's WAN as pppd's ppp0 over the lab's veth, `address` from pppoe-server on
    HE's side; the server, for redials."""
    subprocess.run(["ip", "-n", lab.router_ns, "addr", "flush", "dev", WAN_INTERFACE],
                   check=True)  # fmt: skip
    lab.wan_address = None
    with PppoeServer(lab.he_ns, HE_WAN_INTERFACE, HE_ADDRESS, lab.workdir) as isp:
        isp.start(address)
        with PppClient(lab.router_ns, WAN_INTERFACE, PPP_INTERFACE, lab.workdir) as client:
            client.start(lambda: interface_address(lab, PPP_INTERFACE))
            yield isp


@frozen
class Repair:
    """Seconds from the ISP's change to IPv6 across the tunnel (`total`), and from the new
    address on the WAN to it (`after_address`: the daemon's part)."""

    total: float
    after_address: float


def time_repair(
    lab: Lab,
    change: Callable[[], None],
    new_address: Callable[[], bool],
    *,
    timeout: float = 60.0,
) -> Repair:
    """Run the ISP's `change`, then time the repair: polled every 20 ms, a ping across the
    tunnel given 0.2 s each, as Lab.move_wan_and_time_repair measures."""
    began = time.monotonic()
    change()
    wait_until(new_address, timeout=timeout, interval=0.02, what="the WAN's new address")
    arrived = time.monotonic()
    wait_until(
        lambda: lab.ping6_through_tunnel(timeout=0.2),
        timeout=timeout,
        interval=0.02,
        what="IPv6 across the tunnel from the new address",
    )
    done = time.monotonic()
    return Repair(total=done - began, after_address=done - arrived)
