"""`reconciler doctor` on real kernel interfaces: one lab, each scenario breaking exactly one
layer (and mending it after), and doctor naming that layer first.

In the UML guest (real sit) only what sit changes runs: the healthy lab (TTL and MTU of a
sit link), the path MTU black hole and protocol 41 dropped on the way; the rest is
`host_only`, the guest's minutes being scarce. (The guest's kernel has no nftables for IPv4,
so protocol 41 blocked by nftables is tested on the host's vxlan stand-in as UDP, and by the
evaluator over the kernel's own JSON of the shipped protocol 41 rules.)

The lab's HE pings from a lab address (PING_SOURCE), never the real 66.220.2.74; its IPv6
probe target is an address of its own in the he namespace, so that the target can go down
while HE's end of the tunnel still answers.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.lab.topology import (
    FIRST_WAN_ADDRESS,
    HE_ADDRESS,
    HE_PING_SOURCE,
    HE_WAN_INTERFACE,
    PROBE_TARGET6,
    SERVER_IPV6,
    TUNNEL_INTERFACE,
    TUNNEL_MTU,
    WAN_INTERFACE,
    Lab,
    _ip,
    wait_until,
)
from reconciler.model.facts import ActionFailed, ProbeObserved

PING_SOURCE = HE_PING_SOURCE  # HE's ping source in the lab
PROBE6 = PROBE_TARGET6  # the IPv6 probe target, beyond HE's end of the tunnel


def _nft(namespace: str, script: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "-f", "-"],
        input=script,
        text=True,
        check=True,
        capture_output=True,
        timeout=20,
    )


def _nft_delete(namespace: str, table: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "delete", "table", *table.split()],
        capture_output=True,
        timeout=20,
    )


def heal_routes(lab: Lab) -> None:
    lab.route_like_a_router()


@pytest.fixture(scope="module")
def lab(lab_available: None) -> Iterator[Lab]:
    with Lab() as built:
        built.route_like_a_router()
        built.serve_probe_target6()
        built.write_config()
        yield built


def doctor(lab: Lab, *args: str) -> dict[str, Any]:
    done = lab.reconciler("doctor", "--json", "--he-ping-source", PING_SOURCE, *args)
    assert done.returncode in (0, 2), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["schema"] == "reconciler.doctor/1"
    assert done.returncode == (0 if report["ok"] else 2)
    return report


def first_failure(lab: Lab) -> tuple[int, str, str]:
    """The failing check's number and name, and its evidence line."""
    report = doctor(lab)
    failed = report["failed"]
    assert failed is not None, report["checks"]
    check = report["checks"][failed["number"] - 1]
    before = report["checks"][: failed["number"] - 1]
    assert all(c["status"] in ("pass", "warn", "unknown", "skipped") for c in before), before
    assert all(c["status"] == "not-run" for c in report["checks"][failed["number"] :])
    return failed["number"], failed["name"], check["evidence"]


def test_a_healthy_lab_passes_every_check(lab: Lab) -> None:
    """Every check passes on the working lab, and the run reads rather than writes."""
    report = doctor(lab)
    assert [c["status"] for c in report["checks"]] == ["pass"] * 11, report["checks"]
    assert report["failed"] is None
    assert not lab.state_dir.exists()  # no fact recorded, no log made


@pytest.mark.host_only
def test_a_key_file_others_can_read_fails_check_1(lab: Lab) -> None:
    lab.key_file.chmod(0o644)
    try:
        number, name, evidence = first_failure(lab)
    finally:
        lab.key_file.chmod(0o600)
    assert (number, name) == (1, "config")
    assert "chmod 600" in evidence
    assert lab.update_key not in evidence


@pytest.mark.host_only
def test_no_carrier_fails_check_2(lab: Lab) -> None:
    _ip(lab.he_ns, f"link set {HE_WAN_INTERFACE} down")
    try:
        number, name, evidence = first_failure(lab)
    finally:
        _ip(lab.he_ns, f"link set {HE_WAN_INTERFACE} up")
        heal_routes(lab)
    assert (number, name) == (2, "wan")
    assert "no carrier" in evidence


@pytest.mark.host_only
def test_no_default_route_fails_check_2(lab: Lab) -> None:
    _ip(lab.router_ns, "route del default")
    try:
        number, name, evidence = first_failure(lab)
    finally:
        heal_routes(lab)
    assert (number, name) == (2, "wan")
    assert "no IPv4 default route" in evidence


@contextlib.contextmanager
def wan_moved(lab: Lab, address: str, prefixlen: int = 24) -> Iterator[None]:
    """The WAN at `address` with an on-link default route; back to the first one after."""
    _ip(lab.router_ns, f"addr flush dev {WAN_INTERFACE} scope global")
    _ip(lab.router_ns, f"addr add {address}/{prefixlen} dev {WAN_INTERFACE}")
    _ip(lab.router_ns, f"route replace default dev {WAN_INTERFACE}")
    try:
        yield
    finally:
        lab.set_wan_address(FIRST_WAN_ADDRESS)
        heal_routes(lab)


@pytest.mark.host_only
def test_a_cgnat_address_fails_check_2(lab: Lab) -> None:
    with wan_moved(lab, "100.64.7.10", 10):
        number, name, evidence = first_failure(lab)
        report = doctor(lab)
    assert (number, name) == (2, "wan")
    assert "carrier-grade NAT" in evidence
    assert "public IPv4 address" in report["failed"]["advice"]


@contextlib.contextmanager
def behind_nat(lab: Lab) -> Iterator[str]:
    """A masquerading namespace between the router and the "internet": the router's wan1
    (192.168.77.2) -> nat (lan0 192.168.77.1, up0 198.51.100.2, masquerade) -> he (inet1
    198.51.100.1). Yields the router's private address; everything goes after."""
    nat = f"rc-nat-{lab.run_id}"
    _ip(None, f"netns add {nat}")
    try:
        _ip(nat, "link set lo up")
        _ip(lab.router_ns, f"link add wan1 type veth peer name lan0 netns {nat}")
        _ip(nat, f"link add up0 type veth peer name inet1 netns {lab.he_ns}")
        _ip(lab.router_ns, "addr add 192.168.77.2/24 dev wan1")
        _ip(lab.router_ns, "link set wan1 up")
        _ip(nat, "addr add 192.168.77.1/24 dev lan0")
        _ip(nat, "addr add 198.51.100.2/24 dev up0")
        _ip(nat, "link set lan0 up")
        _ip(nat, "link set up0 up")
        _ip(lab.he_ns, "addr add 198.51.100.1/24 dev inet1")
        _ip(lab.he_ns, "link set inet1 up")
        _ip(nat, "route add default via 198.51.100.1")
        subprocess.run(
            ["ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True
        )
        _nft(
            nat,
            "table ip rcnat {\n chain post {\n type nat hook postrouting priority 100\n"
            ' oifname "up0" masquerade\n }\n}\n',
        )
        _ip(lab.router_ns, "route replace default via 192.168.77.1 dev wan1")
        yield "192.168.77.2"
    finally:
        _ip(None, f"netns del {nat}", check=False)  # its veths go with it
        heal_routes(lab)
        lab.write_config()


@pytest.mark.host_only
@pytest.mark.nftables
def test_a_private_address_behind_nat_fails_check_2_or_warns_when_configured(lab: Lab) -> None:
    """Behind a masquerading NAT: check 2 fails while the configuration sends the private
    address as ours; with public_address = "tunnelbroker" it warns (the NAT must forward
    protocol 41) and IPv4 through the NAT still works."""
    with behind_nat(lab) as private:
        lab.write_config(wan__interface="wan1")
        number, name, evidence = first_failure(lab)
        assert (number, name) == (2, "wan")
        assert f"{private} is private" in evidence and "behind NAT" in evidence
        lab.write_config(wan__interface="wan1", wan__public_address="tunnelbroker")
        checks = doctor(lab)["checks"]
    assert checks[1]["status"] == "warn"
    assert "forward protocol 41" in checks[1]["evidence"]
    assert checks[2]["status"] == "pass"


@pytest.mark.host_only
def test_he_endpoint_stale_with_the_update_held_fails_check_4(lab: Lab) -> None:
    """The WAN moved under the running daemon; HE answered its update "abuse": HE still has
    the old address. doctor names the hold (from the plan over the daemon's log), and the
    daemon's own verdict says the same in `status` and in the report's incident."""
    lab.start_daemon()
    try:
        wait_until(
            lambda: _facts(lab, lambda f: isinstance(f, ProbeObserved) and f.family == "ipv6"),
            timeout=15,
            what="the daemon's first IPv6 probe",
        )
        lab.he("script", answers="abuse")
        with wan_moved(lab, "203.0.113.20"):
            heal_routes(lab)
            wait_until(
                lambda: _facts(lab, lambda f: isinstance(f, ActionFailed) and "abuse" in f.message),
                timeout=15,
                what="HE's abuse answer in the log",
            )
            number, name, evidence = first_failure(lab)
            status = lab.reconciler("status")
            report = lab.reconciler("report")
            lab.stop_daemon()
    finally:
        if lab.daemon_running():
            lab.stop_daemon()
    assert (number, name) == (4, "he-endpoint")
    assert "HE has 203.0.113.10" in evidence and "the WAN has 203.0.113.20" in evidence
    assert "update held: abuse back-off until" in evidence
    verdict = next(line for line in status.stdout.splitlines() if line.startswith("verdict:"))
    assert "IPv6 down since" in verdict
    assert "HE has 203.0.113.10, the WAN has 203.0.113.20, update held: abuse back-off" in verdict
    assert "HE&#x27;s view of our endpoint: HE has 203.0.113.10, the WAN has 203.0.113.20" in (
        report.stdout
    )


def _facts(lab: Lab, wanted: Any) -> list[Any]:
    return [e.fact for e in lab.envelopes() if wanted(e.fact)]


@pytest.mark.host_only
def test_hes_refusal_of_our_key_fails_check_4(lab: Lab) -> None:
    """HE no longer takes the update key (badauth on tunnelInfo): the daemon's updates would
    be refused alike, so HE's view fails, and the key never shows."""
    other = lab.workdir / "he-accepts-other.key"
    lab.write_secret(other, "lab-key-other-doctor")
    lab.he("credentials", key_file=str(other))
    try:
        number, name, evidence = first_failure(lab)
    finally:
        lab.he("credentials", key_file=str(lab.he_key_file))
    assert (number, name) == (4, "he-endpoint")
    assert "badauth" in evidence
    assert all(key not in evidence for key in lab.keys_used)


@pytest.mark.host_only
@pytest.mark.nftables
def test_echo_from_he_blocked_by_nftables_fails_check_5(lab: Lab) -> None:
    _nft(
        lab.router_ns,
        "table inet rcdoctor {\n chain input {\n type filter hook input priority 0\n"
        " policy accept\n ct state established,related accept\n"
        f" ip saddr {PING_SOURCE} icmp type echo-request drop\n }}\n}}\n",
    )
    try:
        number, name, evidence = first_failure(lab)
    finally:
        _nft_delete(lab.router_ns, "inet rcdoctor")
    assert (number, name) == (5, "he-ping")
    assert f"ICMP echo from {PING_SOURCE}" in evidence and "dropped by" in evidence


def _block_tunnel_packets(lab: Lab) -> None:
    match = "ip protocol 41" if lab.mode == "sit" else "udp dport 4789"
    _nft(
        lab.router_ns,
        "table ip rcdoctor {\n chain input {\n type filter hook input priority 0\n"
        f" ip saddr {HE_ADDRESS} {match} drop\n }}\n}}\n",
    )


@pytest.mark.host_only
@pytest.mark.nftables
def test_the_tunnels_packets_blocked_fail_check_6(lab: Lab) -> None:
    _block_tunnel_packets(lab)
    try:
        number, name, evidence = first_failure(lab)
    finally:
        _nft_delete(lab.router_ns, "ip rcdoctor")
    assert (number, name) == (6, "tunnel-packets")
    assert HE_ADDRESS in evidence and "dropped by" in evidence


@contextlib.contextmanager
def tunnel_packets_dropped_upstream(lab: Lab) -> Iterator[None]:
    """Protocol 41 vanishes before the firewall sees it (an ISP's filter, a NAT that does
    not forward it): a tc filter on the WAN's ingress drops it (u32 on the IPv4 header:
    flower's dissector would look inside the encapsulation). The host's kernel has no tc
    classifiers; the UML guest's has."""
    subprocess.run(
        ["tc", "-n", lab.router_ns, "qdisc", "add", "dev", WAN_INTERFACE, "ingress"],
        check=True, capture_output=True, timeout=20,
    )  # fmt: skip
    try:
        subprocess.run(
            ["tc", "-n", lab.router_ns, "filter", "add", "dev", WAN_INTERFACE, "ingress",
             "protocol", "ip", "u32", "match", "ip", "protocol", "41", "0xff",
             "action", "drop"],
            check=True, capture_output=True, timeout=20,
        )  # fmt: skip
        yield
    finally:
        subprocess.run(
            ["tc", "-n", lab.router_ns, "qdisc", "del", "dev", WAN_INTERFACE, "ingress"],
            capture_output=True, timeout=20,
        )  # fmt: skip


@pytest.mark.sit
def test_protocol_41_dropped_upstream_fails_check_8_on_a_sit_tunnel(lab: Lab) -> None:
    """Real 6in4: the firewall would pass protocol 41, but it never arrives: the far end does
    not answer, and doctor says where to look (HE's endpoint, the ISP, a NAT)."""
    assert lab.mode == "sit"
    with tunnel_packets_dropped_upstream(lab):
        number, name, evidence = first_failure(lab)
        advice = doctor(lab)["failed"]["advice"]
    assert (number, name) == (8, "far-end")
    assert SERVER_IPV6 in evidence
    assert "protocol 41 is dropped before it reaches us" in advice


@pytest.mark.host_only
def test_a_wrong_tunnel_remote_fails_check_7(lab: Lab) -> None:
    _ip(lab.router_ns, f"link set {TUNNEL_INTERFACE} type {lab.mode} remote 203.0.113.99")
    try:
        number, name, evidence = first_failure(lab)
    finally:
        _ip(lab.router_ns, f"link set {TUNNEL_INTERFACE} type {lab.mode} remote {HE_ADDRESS}")
        heal_routes(lab)
    assert (number, name) == (7, "tunnel")
    assert f"remote end 203.0.113.99, HE's server is {HE_ADDRESS}" in evidence


@pytest.mark.host_only
@pytest.mark.nftables
def test_a_far_end_that_does_not_answer_fails_check_8(lab: Lab) -> None:
    _nft(
        lab.he_ns,
        "table ip6 rcdoctor {\n chain input {\n type filter hook input priority 0\n"
        " icmpv6 type echo-request drop\n }\n}\n",
    )
    try:
        number, name, evidence = first_failure(lab)
    finally:
        _nft_delete(lab.he_ns, "ip6 rcdoctor")
    assert (number, name) == (8, "far-end")
    assert SERVER_IPV6 in evidence


@pytest.mark.host_only
def test_no_ipv6_default_route_fails_check_9(lab: Lab) -> None:
    _ip(lab.router_ns, "-6 route del default")
    try:
        number, name, evidence = first_failure(lab)
    finally:
        heal_routes(lab)
    assert (number, name) == (9, "ipv6-route")
    assert f"no IPv6 default route through {TUNNEL_INTERFACE}" in evidence


@contextlib.contextmanager
def mtu_black_hole(lab: Lab) -> Iterator[int]:
    """HE's side of the "internet" takes 1400-byte packets at most and drops bigger ones
    silently: no ICMP too-big ever comes back (the veth drops them as it receives them).
    Yields the largest tunnel MTU that still gets through (sit adds 20 bytes, vxlan 50)."""
    _ip(lab.he_ns, f"link set {HE_WAN_INTERFACE} mtu 1400")
    try:
        yield 1380 if lab.mode == "sit" else 1340
    finally:
        _ip(lab.he_ns, f"link set {HE_WAN_INTERFACE} mtu 1500")
        heal_routes(lab)


@pytest.mark.host_only
def test_an_mtu_black_hole_fails_check_10_with_the_mtu_that_works(lab: Lab) -> None:
    with mtu_black_hole(lab) as works:
        number, name, evidence = first_failure(lab)
    assert (number, name) == (10, "path-mtu")
    assert f"black hole: {TUNNEL_MTU[lab.mode]}-byte packets" in evidence
    assert f"{works}-byte ones get through" in evidence


@pytest.mark.sit
def test_an_mtu_black_hole_under_6in4_finds_1380(lab: Lab) -> None:
    """On real sit: 1480 is HE's MTU; a 1400-byte path leaves 1380 for IPv6."""
    assert lab.mode == "sit"
    with mtu_black_hole(lab):
        number, _name, evidence = first_failure(lab)
    assert number == 10
    assert "black hole: 1480-byte packets" in evidence and "1380-byte ones" in evidence


@pytest.mark.host_only
def test_the_ipv6_probe_target_down_fails_check_11(lab: Lab) -> None:
    _ip(lab.he_ns, f"addr del {PROBE6}/128 dev lo")
    try:
        number, name, evidence = first_failure(lab)
    finally:
        _ip(lab.he_ns, f"addr add {PROBE6}/128 dev lo")
    assert (number, name) == (11, "ipv6-path")
    assert PROBE6 in evidence


def test_every_break_was_mended(lab: Lab) -> None:
    """After the scenarios the lab is healthy again: each undid exactly what it broke."""
    report = doctor(lab)
    assert report["ok"], report["checks"]
