"""Behind a NAT modem (issue 20, item 6): the router's WAN has a private address, a
namespace between it and the internet masquerades (nftables), and the NAT's public address
changes while the router sees nothing change at all.

    rc-router-<id>  wan0 192.168.1.20/24 ── lan0 192.168.1.1/24  rc-nat-<id>
                                            wan0 203.0.113.10/24 ── inet0 203.0.113.1  rc-he-<id>

The NAT forwards the tunnel's packets from HE to the router (a "DMZ host", as modems
offer). The fake HE, like HE, takes the request's source address when no myip is sent.
When the public address moves to 203.0.113.12, IPv6 fails; a tunnel restart cannot help;
one update without myip within that outage tells HE the new address, and IPv6 returns.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from reconciler.lab.topology import (
    HE_ADDRESS,
    HE_WAN_INTERFACE,
    WAN_INTERFACE,
    Lab,
    wait_until,
)
from reconciler.model.facts import ActionStarted

PRIVATE = "192.168.1.20"
NAT_LAN = "192.168.1.1"
FIRST_PUBLIC = "203.0.113.10"
SECOND_PUBLIC = "203.0.113.12"
VXLAN_PORT = 4789


def ip(namespace: str, *argv: str) -> None:
    subprocess.run(["ip", "-n", namespace, *argv], check=True, capture_output=True, text=True)


def nat_rules(router: str) -> str:
    """Masquerade what leaves for the internet; the tunnel's packets from HE (sit: protocol
    41; vxlan: UDP 4789) go to the router."""
    return f"""table ip nat {{
  chain prerouting {{
    type nat hook prerouting priority dstnat;
    iifname "{WAN_INTERFACE}" fib daddr type local ip protocol 41 dnat to {router}
    iifname "{WAN_INTERFACE}" fib daddr type local udp dport {VXLAN_PORT} dnat to {router}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat;
    oifname "{WAN_INTERFACE}" masquerade
  }}
}}
"""


def started_updates(lab: Lab) -> list[ActionStarted]:
    return [
        e.fact
        for e in lab.envelopes()
        if isinstance(e.fact, ActionStarted) and e.fact.action == "update-he-endpoint"
    ]


@pytest.fixture(scope="module")
def nat_story(lab_available: None) -> Iterator[SimpleNamespace]:
    story = SimpleNamespace()
    with Lab(prebuild_tunnel=False) as lab:
        story.lab = lab
        nat = lab.add_namespace("nat")
        # The lab's "internet" veth moves into the NAT router; the router gets a LAN link.
        ip(lab.router_ns, "link", "set", WAN_INTERFACE, "netns", nat)
        ip(nat, "addr", "add", f"{FIRST_PUBLIC}/24", "dev", WAN_INTERFACE)
        ip(nat, "link", "set", WAN_INTERFACE, "up")
        ip(lab.router_ns, "link", "add", WAN_INTERFACE, "type", "veth", "peer", "name", "lan0",
           "netns", nat)  # fmt: skip
        ip(nat, "addr", "add", f"{NAT_LAN}/24", "dev", "lan0")
        ip(nat, "link", "set", "lan0", "up")
        ip(lab.router_ns, "addr", "add", f"{PRIVATE}/24", "dev", WAN_INTERFACE)
        ip(lab.router_ns, "link", "set", WAN_INTERFACE, "up")
        ip(lab.router_ns, "route", "add", "default", "via", NAT_LAN)
        subprocess.run(["ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True)  # fmt: skip
        subprocess.run(["ip", "netns", "exec", nat, "nft", "-f", "-"], input=nat_rules(PRIVATE),
                       text=True, check=True)  # fmt: skip
        lab.start_daemon(wan__restart_command=None)
        wait_until(lambda: lab.ping6_through_tunnel(0.5), timeout=30, what="IPv6 behind NAT")
        story.endpoint_at_start = lab.he_stats()["endpoint"]
        story.updates_at_start = started_updates(lab)

        # The ISP gives the NAT modem another public address; the router sees no change.
        ip(nat, "addr", "flush", "dev", WAN_INTERFACE)
        ip(nat, "addr", "add", f"{SECOND_PUBLIC}/24", "dev", WAN_INTERFACE)
        ip(lab.he_ns, "neigh", "flush", "dev", HE_WAN_INTERFACE)  # the old address is gone
        wait_until(lambda: lab.ping6_through_tunnel(0.2), timeout=60, interval=0.05,
                   what="IPv6 back after the NAT's new public address")  # fmt: skip
        story.endpoint_after = lab.he_stats()["endpoint"]
        story.updates_after = started_updates(lab)
        story.tunnel_restarts = [
            e.fact
            for e in lab.envelopes()
            if isinstance(e.fact, ActionStarted) and e.fact.action == "restart-tunnel"
        ]
        story.stopped = lab.stop_daemon()
        yield story


def test_behind_nat_he_takes_the_public_address_it_sees(nat_story: SimpleNamespace) -> None:
    """The first update goes without myip (the WAN's address is private) and HE takes the
    NAT's public address from the request."""
    assert nat_story.endpoint_at_start == FIRST_PUBLIC
    assert [u.key for u in nat_story.updates_at_start] == [f"update-he-endpoint:{PRIVATE}"]


def test_a_new_public_address_reaches_he_within_the_outage(nat_story: SimpleNamespace) -> None:
    """The NAT's public address changes: after a tunnel restart that cannot help, exactly
    one more update (no myip) within the outage; HE has the new address, IPv6 is back."""
    assert nat_story.endpoint_after == SECOND_PUBLIC
    assert len(nat_story.updates_after) == 2
    assert "behind NAT" in nat_story.updates_after[-1].reason
    assert nat_story.tunnel_restarts, "the tunnel was not restarted first"
    assert nat_story.stopped == 0
    assert HE_ADDRESS not in (nat_story.endpoint_at_start, nat_story.endpoint_after)
