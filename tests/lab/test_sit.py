"""What only a real 6in4 tunnel shows, seen on the lab's wire: the daemon's sit link carries
IPv6 as IP protocol 41 between the two WAN addresses, at HE's MTU of 1480 unfragmented, and
HE's end follows a successful update. Needs a kernel with sit (`make test-sit` runs these in
a user-mode Linux guest; see tests/conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.lab.topology import (
    CLIENT_IPV6,
    FIRST_WAN_ADDRESS,
    HE_ADDRESS,
    MODE_ENV,
    SERVER_IPV6,
    WAN_INTERFACE,
    Lab,
    kernel_has_sit,
    wait_until,
)
from reconciler.model.facts import ActionSucceeded, ProbeObserved

pytestmark = pytest.mark.sit

NEW_ADDRESS = "203.0.113.11"
IPPROTO_ICMPV6 = 58
IPPROTO_UDP = 17
PINGS = 3


def _ping(lab: Lab, *options: str) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", lab.router_ns, "ping", "-6", "-n", "-c", "1", "-W", "3"]
    return subprocess.run(
        [*argv, *options, SERVER_IPV6], capture_output=True, text=True, timeout=30
    )


def _converged(lab: Lab) -> bool:
    return any(
        isinstance(e.fact, ProbeObserved) and e.fact.family == "ipv6" and e.fact.ok
        for e in lab.envelopes()
    )


def _tunnelled(packets: list[dict[str, Any]], src: str, dst: str) -> list[dict[str, Any]]:
    """The protocol-41 packets from src to dst that carry ICMPv6 between the tunnel ends."""
    return [
        p
        for p in packets
        if (p["proto"], p["src"], p["dst"]) == (41, src, dst)
        and p.get("inner", {}).get("next_header") == IPPROTO_ICMPV6
        and {p["inner"]["src"], p["inner"]["dst"]} == {CLIENT_IPV6, SERVER_IPV6}
    ]


def test_the_lab_picks_sit_where_the_kernel_has_it(
    lab_available: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lab() without a mode takes sit here, though every namespace already holds the sit0
    fallback device (any, any), the same ends as a sit link made without any."""
    monkeypatch.delenv(MODE_ENV, raising=False)
    with Lab(with_fake_he=False) as lab:
        assert lab.interface_state("sit0")["link_type"] == "sit"
        assert kernel_has_sit(lab.he_ns)
        assert lab.mode == "sit"
        wait_until(lab.ping6_through_tunnel, timeout=10, what="IPv6 across the sit tunnel")


@pytest.fixture(scope="module")
def sit_lab(lab_available: None) -> Iterator[Lab]:
    """A sit lab whose router tunnel the daemon built (none prebuilt), converged."""
    with Lab(mode="sit", prebuild_tunnel=False) as lab:
        lab.start_daemon()
        wait_until(lambda: _converged(lab), timeout=60, what="the daemon's tunnel to carry IPv6")
        yield lab
        assert lab.stop_daemon() == 0


def test_ipv6_travels_as_protocol_41_between_the_wan_addresses(sit_lab: Lab) -> None:
    """Pings to HE's tunnel address cross the veth as IPv4 protocol 41 from the WAN address
    to HE's and back, with the configured TTL of 255, and never as vxlan's UDP."""
    lab = sit_lab
    with lab.capture_internet() as packets:
        for _ in range(PINGS):
            assert _ping(lab).returncode == 0
    there = _tunnelled(packets, FIRST_WAN_ADDRESS, HE_ADDRESS)
    back = _tunnelled(packets, HE_ADDRESS, FIRST_WAN_ADDRESS)
    assert len(there) >= PINGS and len(back) >= PINGS, packets
    assert {p["inner"]["dst"] for p in there} == {SERVER_IPV6}
    assert {p["ttl"] for p in there} == {255}  # the router's tunnel.ttl, on the wire
    assert not [p for p in packets if p["proto"] == IPPROTO_UDP], "vxlan-like UDP on the wire"


def test_tunnel_mtu_is_1480_and_a_1480_byte_ping_crosses_unfragmented(sit_lab: Lab) -> None:
    """The daemon's sit link has HE's MTU of 1480 over the 1500-byte veth: a 1480-byte IPv6
    ping (1432 bytes of data) with fragmentation forbidden crosses as 1500-byte IPv4 packets
    with DF set and no fragments, and one byte more does not fit."""
    lab = sit_lab
    tunnel = lab.tunnel_state()
    wan = lab.interface_state(WAN_INTERFACE)
    assert tunnel is not None and (tunnel["mtu"], wan["mtu"]) == (1480, 1500)
    assert tunnel["linkinfo"]["info_data"]["pmtudisc"] is True
    with lab.capture_internet() as packets:
        full = _ping(lab, "-s", "1432", "-M", "do")
    assert full.returncode == 0, full.stdout + full.stderr
    # The big ping's packets, not the daemon's own small probes that cross meanwhile:
    # 1440 bytes after the IPv6 header (1432 of data and the 8-byte ICMPv6 header).
    there, back = (
        [p for p in _tunnelled(packets, src, dst) if p["inner"]["payload_length"] == 1440]
        for src, dst in ((FIRST_WAN_ADDRESS, HE_ADDRESS), (HE_ADDRESS, FIRST_WAN_ADDRESS))
    )
    assert there and back, packets
    for packet in there + back:
        assert (packet["length"], packet["df"], packet["mf"], packet["offset"]) == (
            1500, True, False, 0,
        ), packet  # fmt: skip
    assert [p for p in packets if p["mf"] or p["offset"]] == []
    too_big = _ping(lab, "-s", "1433", "-M", "do")
    assert too_big.returncode != 0, "a 1481-byte IPv6 packet fit a 1480 MTU tunnel"


def test_he_end_follows_a_successful_update(lab_available: None) -> None:
    """After the WAN moves, the daemon's update makes HE point its sit end at the new address
    (keeping its TTL), the router's end moves in place with its TTL, and IPv6 crosses as
    protocol 41 from the new address."""
    with Lab(mode="sit") as lab:
        lab.start_daemon()
        wait_until(lambda: _converged(lab), timeout=60, what="a good IPv6 probe")
        router_index = lab.tunnel_state()["ifindex"]  # type: ignore[index]
        lab.set_wan_address(NEW_ADDRESS)
        wait_until(
            lambda: [
                e
                for e in lab.envelopes()
                if isinstance(e.fact, ActionSucceeded) and e.fact.action == "update-he-endpoint"
            ],
            timeout=60,
            what="a successful update",
        )
        wait_until(lab.ping6_through_tunnel, timeout=60, what="IPv6 at the new address")
        assert lab.he_stats()["endpoint"] == NEW_ADDRESS
        he_end = lab.interface_state("he6", namespace=lab.he_ns)["linkinfo"]["info_data"]
        assert (he_end["remote"], he_end["ttl"]) == (NEW_ADDRESS, 255)
        router_end = lab.tunnel_state()
        assert router_end is not None and router_end["ifindex"] == router_index
        assert (router_end["linkinfo"]["info_data"]["local"], router_end["linkinfo"]["info_data"]
                ["ttl"]) == (NEW_ADDRESS, 255)  # fmt: skip
        with lab.capture_internet() as packets:
            assert _ping(lab).returncode == 0
        assert _tunnelled(packets, NEW_ADDRESS, HE_ADDRESS), packets
        assert _tunnelled(packets, HE_ADDRESS, NEW_ADDRESS), packets
        assert not _tunnelled(packets, FIRST_WAN_ADDRESS, HE_ADDRESS)
        assert lab.stop_daemon() == 0
