"""The lab with the tunnel's routes and owner as Linux has them (issue 21): the IPv6 default
route watched and repaired at once; systemd-networkd (run in the router namespace by
reconciler.testing.networkd) owning the tunnel link."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.lab.topology import (
    CLIENT_IPV6,
    FIRST_WAN_ADDRESS,
    HE_ADDRESS,
    TUNNEL_INTERFACE,
    TUNNEL_MTU,
    TUNNEL_PREFIXLEN,
    VXLAN_ID,
    VXLAN_PORT,
    Lab,
    wait_until,
)
from reconciler.model.facts import ActionStarted, ProbeObserved
from reconciler.testing.networkd import Networkd


@pytest.fixture
def lab(lab_available: None) -> Iterator[Lab]:
    with Lab() as built:
        yield built


def _ipv6_default(lab: Lab) -> list[dict[str, Any]]:
    shown = subprocess.run(
        ["ip", "-n", lab.router_ns, "-6", "-j", "route", "show", "default"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    routes: list[dict[str, Any]] = json.loads(shown.stdout)
    return routes


def _converged(lab: Lab) -> None:
    def ipv6_ok() -> bool:
        return any(
            isinstance(e.fact, ProbeObserved) and e.fact.family == "ipv6" and e.fact.ok
            for e in lab.envelopes()
        )

    wait_until(ipv6_ok, timeout=30, what="a good IPv6 probe")
    assert lab.daemon_running(), lab.daemon_stderr()


def test_a_deleted_ipv6_default_route_is_back_within_a_second(lab: Lab) -> None:
    """`networkctl reconfigure` (or anyone) deletes ::/0: the route watch sees it and the
    tunnel is repaired at once, instead of after fail_after IPv6 probes (minutes); deleted
    again a moment later, it is back as fast (not held to settle)."""
    lab.start_daemon(probe_ipv6__interval=60.0, tunnel__observe_interval=60.0)
    _converged(lab)
    assert [r["dev"] for r in _ipv6_default(lab)] == [TUNNEL_INTERFACE]
    for round_ in (1, 2):
        repairs = len(_route_repairs(lab))
        subprocess.run(
            ["ip", "-n", lab.router_ns, "-6", "route", "del", "default", "dev", TUNNEL_INTERFACE],
            check=True,
            timeout=10,
        )
        deleted = time.monotonic()
        wait_until(lambda: _ipv6_default(lab), timeout=5, interval=0.02, what="::/0 back")
        took = time.monotonic() - deleted
        assert took < 1.0, f"round {round_}: ::/0 came back after {took:.2f} s"
        wait_until(lambda: len(_route_repairs(lab)) > repairs, timeout=5, what="the repair")  # noqa: B023


def _route_repairs(lab: Lab) -> list[Any]:
    return [f for f in _facts(lab, ActionStarted) if "no IPv6 default route" in f.reason]


def _facts(lab: Lab, cls: type[Any]) -> list[Any]:
    """The restart-tunnel facts of type `cls` in the log."""
    return [
        e.fact
        for e in lab.envelopes()
        if isinstance(e.fact, cls) and e.fact.action == "restart-tunnel"
    ]


NETDEV = f"""[NetDev]
Name={TUNNEL_INTERFACE}
Kind=vxlan
MTUBytes={TUNNEL_MTU["vxlan"]}

[VXLAN]
VNI={VXLAN_ID}
Local={FIRST_WAN_ADDRESS}
Remote={HE_ADDRESS}
DestinationPort={VXLAN_PORT}
Independent=yes
"""
TUNNEL_NETWORK = f"""[Match]
Name={TUNNEL_INTERFACE}

[Network]
Address={CLIENT_IPV6}/{TUNNEL_PREFIXLEN}
LinkLocalAddressing=no
IPv6AcceptRA=no
"""
NEW_ADDRESS = "203.0.113.11"


@pytest.fixture
def networkd_lab(
    lab_available: None, networkd_available: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Lab, Networkd]]:
    """The lab (vxlan: networkd's stand-in for sit here) whose router tunnel networkd makes
    from a .netdev; the daemon is told networkd owns it and finds networkd's bus."""
    with Lab(mode="vxlan", prebuild_tunnel=False) as lab, Networkd(lab.router_ns) as networkd:
        networkd.write("he-ipv6.netdev", NETDEV)
        networkd.write("he-ipv6.network", TUNNEL_NETWORK)
        networkd.start()
        networkd.wait_setup(TUNNEL_INTERFACE, "configured", timeout=10)
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", networkd.bus_address)
        lab.config_overrides.update(
            tunnel__owner="networkd", tunnel__networkd_dir=str(networkd.config_dir)
        )
        yield lab, networkd


def test_networkd_owning_the_tunnel_keeps_our_local_end_and_route(
    networkd_lab: tuple[Lab, Networkd],
) -> None:
    """The WAN moves: the daemon updates HE, moves networkd's link in place and tells
    networkd (a drop-in, networkctl reload). `networkctl reconfigure` then drops our ::/0
    (networkd manages the link's routes): it is put back at once (the time is measured by
    the test above, without networkd's own work in the way). A reboot (networkd stopped,
    the link deleted, networkd started) brings the link back with the new end."""
    lab, networkd = networkd_lab
    index = lab.tunnel_state()["ifindex"]  # type: ignore[index]
    lab.start_daemon()
    _converged(lab)
    lab.move_wan_and_time_repair(NEW_ADDRESS, timeout=30)
    assert lab.tunnel_local() == NEW_ADDRESS
    assert lab.tunnel_state()["ifindex"] == index  # type: ignore[index]  # never recreated
    drop_in = networkd.config_dir / "he-ipv6.netdev.d" / "reconciler.conf"
    wait_until(drop_in.exists, timeout=5, what="the drop-in")
    assert f"Local={NEW_ADDRESS}" in drop_in.read_text()

    wait_until(lambda: _ipv6_default(lab), timeout=5, what="::/0 through the tunnel")
    repairs = len(_route_repairs(lab))
    networkd.reconfigure(TUNNEL_INTERFACE)  # drops the route networkd did not configure
    wait_until(lambda: len(_route_repairs(lab)) > repairs, timeout=10, what="the route's repair")
    wait_until(lambda: _ipv6_default(lab), timeout=5, what="::/0 back")

    lab.stop_daemon()
    networkd.stop()
    subprocess.run(["ip", "-n", lab.router_ns, "link", "del", TUNNEL_INTERFACE], check=True)
    networkd.start()
    networkd.wait_setup(TUNNEL_INTERFACE, "configured", timeout=10)
    assert lab.tunnel_local() == NEW_ADDRESS
