"""The WAN as a real DHCP client owns it (issue 20): dnsmasq as the ISP's DHCP server in the
HE namespace, ISC dhclient (Debian's, with its dhclient-script) on the router's WAN, the
real daemon with no restart_command (it finds dhclient as the owner).

One story, played once: the ISP renumbers (the next renewal is refused, the client starts
over with an address from another pool), the modem reboots (carrier down and up on the
ISP's side), the upstream path breaks while link, address and default route stay. Each ends
with the tunnel repaired, the default route intact, one HE update per new address, and no
restart-wan, since none of them is something a restart of the WAN fixes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from reconciler.lab.topology import HE_ADDRESS, HE_WAN_INTERFACE, WAN_INTERFACE, Lab, wait_until
from reconciler.lab.wan_owners import DHCP_POOLS, dhcp_wan, interface_address, time_repair
from reconciler.model.facts import ActionStarted, ProbeObserved, WanAddressObserved

FIRST_POOL, SECOND_POOL = DHCP_POOLS


def started(lab: Lab, kind: str) -> list[Any]:
    return [
        e for e in lab.envelopes() if isinstance(e.fact, ActionStarted) and e.fact.action == kind
    ]


def wan_address(lab: Lab) -> str | None:
    return interface_address(lab, WAN_INTERFACE)


def default_route(lab: Lab) -> str:
    shown = subprocess.run(
        ["ip", "-n", lab.router_ns, "-4", "route", "show", "default"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return shown.stdout.strip()


def in_pool(address: str | None, pool: tuple[str, str]) -> bool:
    return address is not None and pool[0] <= address <= pool[1]


def ipv4_probes_failed(lab: Lab) -> int:
    return sum(
        1
        for e in lab.envelopes()
        if isinstance(e.fact, ProbeObserved) and e.fact.family == "ipv4" and not e.fact.ok
    )


def ipv4_probe_up_again(lab: Lab, after: int) -> bool:
    return any(
        isinstance(e.fact, ProbeObserved) and e.fact.family == "ipv4" and e.fact.ok
        for e in lab.envelopes()
        if e.seq > after
    )


def isp_ignores_pings(lab: Lab, ignore: bool) -> None:
    """HE's side stops answering pings (the IPv4 probe's target) or answers again: the path
    beyond the WAN is broken while link, address and route stay."""
    subprocess.run(
        ["ip", "netns", "exec", lab.he_ns, "sysctl", "-qw",
         f"net.ipv4.icmp_echo_ignore_all={int(ignore)}"],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def dhcp_story(lab_available: None, dhcp_available: None) -> Iterator[SimpleNamespace]:
    story = SimpleNamespace()
    with Lab(prebuild_tunnel=False) as lab, dhcp_wan(lab, FIRST_POOL) as isp:
        story.lab = lab
        story.first = wan_address(lab)
        lab.start_daemon(wan__restart_command=None)
        wait_until(lambda: lab.ping6_through_tunnel(0.5), timeout=30, what="IPv6 at first")
        story.calls_at_start = lab.he_update_calls()

        # 1. The ISP renumbers: the next renewal (T1, 3 s) is refused; dhclient-script
        # flushes the old address, adds the new one and its default route.
        repair = time_repair(
            lab,
            lambda: isp.renumber(SECOND_POOL),
            lambda: in_pool(wan_address(lab), SECOND_POOL),
        )
        story.second = wan_address(lab)
        story.renumber_repair = repair.total
        story.calls_after_renumber = lab.he_update_calls()
        story.route_after_renumber = default_route(lab)
        story.wan_restarts_after_renumber = len(started(lab, "restart-wan"))

        # 2. The modem reboots: no carrier for 3 s, then the same lease goes on.
        lab_link = ["ip", "-n", lab.he_ns, "link", "set", HE_WAN_INTERFACE]
        subprocess.run([*lab_link, "down"], check=True)
        wait_until(
            lambda: any(
                isinstance(e.fact, WanAddressObserved) and not e.fact.link_up
                for e in lab.envelopes()
            ),
            timeout=10,
            what="the daemon to see the carrier gone",
        )
        story.route_without_carrier = default_route(lab)
        time.sleep(3)
        subprocess.run([*lab_link, "up"], check=True)
        wait_until(lambda: lab.ping6_through_tunnel(0.2), timeout=30, interval=0.02,
                   what="IPv6 after the modem's reboot")  # fmt: skip
        story.calls_after_reboot = lab.he_update_calls()
        story.route_after_reboot = default_route(lab)
        story.address_after_reboot = wan_address(lab)

        # 3. The upstream path breaks, the link stays: HE's address stops answering
        # pings (the IPv4 probe's target), for longer than fail_after probes.
        failed_before = ipv4_probes_failed(lab)
        isp_ignores_pings(lab, True)
        wait_until(lambda: ipv4_probes_failed(lab) >= failed_before + 4, timeout=20,
                   what="the IPv4 probe failing")  # fmt: skip
        story.status_upstream = lab.reconciler("status", "--json")
        last_seq = lab.envelopes()[-1].seq
        isp_ignores_pings(lab, False)
        wait_until(lambda: ipv4_probe_up_again(lab, last_seq), timeout=20,
                   what="the IPv4 probe back")  # fmt: skip
        story.route_at_end = default_route(lab)
        story.wan_restarts = len(started(lab, "restart-wan"))
        story.calls_at_end = lab.he_update_calls()
        story.ipv6_at_end = lab.ping6_through_tunnel(1.0)
        story.stopped = lab.stop_daemon()
        yield story


def test_a_renumbering_gets_one_update_and_keeps_the_default_route(
    dhcp_story: SimpleNamespace,
) -> None:
    """The renumbered WAN gets exactly one HE update and a tunnel from the new address; the
    gap without an address is dhclient's own (the DHCP grace), so no restart-wan."""
    assert in_pool(dhcp_story.first, FIRST_POOL) and in_pool(dhcp_story.second, SECOND_POOL)
    assert dhcp_story.calls_at_start == 1  # the first lease, unknown to HE
    assert dhcp_story.calls_after_renumber == 2
    assert dhcp_story.lab.he_stats()["endpoint"] == dhcp_story.second
    assert dhcp_story.route_after_renumber.startswith(f"default via {HE_ADDRESS}")
    assert dhcp_story.wan_restarts_after_renumber == 0
    assert dhcp_story.renumber_repair < 30


def test_a_modem_reboot_restarts_nothing_and_keeps_the_route(dhcp_story: SimpleNamespace) -> None:
    """Carrier lost and back: the kernel keeps dhclient's route (linkdown) and nothing of
    ours deletes it; same address, no HE update, no restart-wan."""
    assert "linkdown" in dhcp_story.route_without_carrier
    assert dhcp_story.route_after_reboot.startswith(f"default via {HE_ADDRESS}")
    assert "linkdown" not in dhcp_story.route_after_reboot
    assert dhcp_story.address_after_reboot == dhcp_story.second
    assert dhcp_story.calls_after_reboot == dhcp_story.calls_after_renumber


def test_a_broken_upstream_path_is_held_not_restarted(dhcp_story: SimpleNamespace) -> None:
    """The IPv4 probe failing with link, address and default route there: restart-wan is
    held (upstream) and never run; the story ends as it began, IPv6 working, two updates."""
    import json

    status = json.loads(dhcp_story.status_upstream.stdout)
    held = [h for h in status["held"] if h["kind"] == "restart-wan"]
    assert [h["why"] for h in held] == ["upstream"], status["held"]
    assert dhcp_story.wan_restarts == 0
    assert dhcp_story.route_at_end.startswith(f"default via {HE_ADDRESS}")
    assert dhcp_story.calls_at_end == 2
    assert dhcp_story.ipv6_at_end
    assert dhcp_story.stopped == 0


def test_networkd_as_the_dhcp_client_renumbers_the_same_way(
    lab_available: None, dhcp_available: None, networkd_available: None
) -> None:
    """systemd-networkd as the WAN's DHCP client (its own /run and D-Bus in the router's
    namespace): found as the owner, and a renumbering gets exactly one HE update, keeps the
    default route and runs no restart-wan."""
    from reconciler.lab.wan_owners import networkd_wan

    with (
        Lab(prebuild_tunnel=False) as lab,
        networkd_wan(lab, FIRST_POOL) as (isp, networkd),
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("DBUS_SYSTEM_BUS_ADDRESS", networkd.bus_address)
        lab.start_daemon(wan__restart_command=None)
        wait_until(lambda: lab.ping6_through_tunnel(0.5), timeout=30, what="IPv6 at first")
        calls = lab.he_update_calls()
        owners = {e.fact.owner for e in lab.envelopes() if isinstance(e.fact, WanAddressObserved)}
        assert owners == {"networkd"}
        time_repair(
            lab,
            lambda: isp.renumber(SECOND_POOL),
            lambda: in_pool(wan_address(lab), SECOND_POOL),
        )
        time.sleep(2)  # long enough for a second update to show
        assert lab.he_update_calls() == calls + 1
        assert lab.he_stats()["endpoint"] == wan_address(lab)
        assert default_route(lab).startswith(f"default via {HE_ADDRESS}")
        assert started(lab, "restart-wan") == []
        assert lab.stop_daemon() == 0
