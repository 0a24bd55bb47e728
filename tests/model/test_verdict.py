"""The verdicts: doctor's judges over plain evidence, and the daemon's last verdict (why IPv6
is down) from facts alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    EndpointObserved,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
)
from reconciler.model.verdict import (
    RouteEvidence,
    TunnelEvidence,
    WanEvidence,
    address_class,
    down_reason,
    judge_he_view,
    judge_mtu,
    judge_tunnel,
    judge_wan,
)

from .world import HE_SERVER, History, make_config

ADDR = "203.0.113.10"
NEW = "203.0.113.11"


def wan(address: str | None = ADDR, **changes: object) -> WanEvidence:
    values: dict[str, object] = {
        "interface": "em0",
        "exists": True,
        "carrier": True,
        "addresses": (address,) if address else (),
        "default_routes": (RouteEvidence("203.0.113.1", "em0"),),
    }
    values.update(changes)
    return WanEvidence(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("203.0.113.10", "public"),
        ("192.168.1.2", "private"),
        ("10.1.2.3", "private"),
        ("172.20.0.1", "private"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        ("127.0.0.1", "unusable"),
        ("not an address", "unusable"),
    ],
)
def test_address_classes(address: str, kind: str) -> None:
    assert address_class(address) == kind


def test_the_wan_judge_names_the_lowest_problem_first() -> None:
    assert judge_wan(wan(exists=False)).evidence == "interface em0 does not exist"
    assert "no carrier" in judge_wan(wan(carrier=False, addresses=())).evidence
    assert "no IPv4 address" in judge_wan(wan(None)).evidence
    routeless = judge_wan(wan(default_routes=(RouteEvidence("10.0.0.1", "wg0"),)))
    assert routeless.status == "fail"
    assert "through wg0" in routeless.evidence
    assert judge_wan(wan()).status == "pass"


def test_cgnat_fails_and_private_behind_nat_fails_unless_configured() -> None:
    cgnat = judge_wan(wan("100.64.3.4"))
    assert cgnat.status == "fail" and "carrier-grade NAT" in cgnat.evidence
    assert "public IPv4 address" in cgnat.advice
    private = judge_wan(wan("192.168.1.2"))
    assert private.status == "fail" and "tunnelbroker" in private.advice
    nat = judge_wan(wan("192.168.1.2", public_address="tunnelbroker"))
    assert nat.status == "warn" and "forward protocol 41" in nat.evidence


def test_hes_view_with_and_without_a_hold() -> None:
    same = judge_he_view(
        he_has=ADDR, source="tunnelInfo", wan_address=ADDR, behind_nat=False, update_hold=None
    )
    assert same.status == "pass"
    held = judge_he_view(
        he_has=ADDR,
        source="tunnelInfo",
        wan_address=NEW,
        behind_nat=False,
        update_hold="abuse back-off until 06:12",
    )
    assert held.status == "fail"
    assert held.evidence == (
        f"HE has {ADDR} (tunnelInfo), the WAN has {NEW}; update held: abuse back-off until 06:12"
    )
    assert "wait" in held.advice
    unknown = judge_he_view(
        he_has=None, source="no info_url", wan_address=NEW, behind_nat=False, update_hold=None
    )
    assert unknown.status == "unknown"


def tunnel(**changes: object) -> TunnelEvidence:
    values: dict[str, object] = {
        "interface": "he-ipv6",
        "exists": True,
        "up": True,
        "mode": "sit",
        "local": ADDR,
        "remote": HE_SERVER,
        "ttl": 255,
        "mtu": 1480,
        "ipv6_addresses": ("2001:db8:1f06:abc:0::2",),
    }
    values.update(changes)
    return TunnelEvidence(**values)  # type: ignore[arg-type]


def judge(evidence: TunnelEvidence) -> tuple[str, str]:
    result = judge_tunnel(
        evidence,
        mode="sit",
        local=ADDR,
        remote=HE_SERVER,
        ttl=255,
        mtu=1480,
        client_ipv6="2001:db8:1f06:abc::2",
    )
    return result.status, result.evidence


def test_the_tunnel_judge_checks_both_ends_ttl_mtu_and_address() -> None:
    assert judge(tunnel())[0] == "pass"
    assert judge(tunnel(exists=False))[0] == "fail"
    assert "is down" in judge(tunnel(up=False))[1]
    assert f"local end 203.0.113.99, the WAN has {ADDR}" in judge(tunnel(local="203.0.113.99"))[1]
    assert "remote end 192.0.2.1" in judge(tunnel(remote="192.0.2.1"))[1]
    assert "TTL 64, configured 255" in judge(tunnel(ttl=64))[1]
    assert "MTU 1280, configured 1480" in judge(tunnel(mtu=1280))[1]
    assert "lacks 2001:db8:1f06:abc::2" in judge(tunnel(ipv6_addresses=()))[1]


def test_the_mtu_judge_names_a_black_hole_and_the_mtu_that_works() -> None:
    assert judge_mtu(1480, {1480: True, 1472: True}, "x").status == "pass"
    hole = judge_mtu(1480, {1480: False, 1472: False, 1452: True, 1400: True}, "x")
    assert hole.status == "fail"
    assert "black hole: 1480-byte packets" in hole.evidence and "1452-byte" in hole.evidence
    assert "tunnel.mtu = 1452" in hole.advice
    assert judge_mtu(1480, {1480: False, 1280: False}, "x").status == "fail"


def healthy(history: History, address: str = ADDR) -> History:
    history.record(WanAddressObserved("em0", address, True))
    history.record(TunnelObserved("gif0", True, True, address, HE_SERVER))
    history.record(EndpointObserved(address, "update", for_local=address))
    history.record(ProbeObserved("ipv4", "198.51.100.53", True, 3.0))
    history.record(ProbeObserved("ipv6", "2001:db8::53", True, 4.0))
    return history


def hhmm(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M")


def test_no_reason_while_ipv6_works() -> None:
    history = healthy(History(make_config(hostname_file=None)))
    assert down_reason(history.state, plan=history.plan()) is None


def test_the_wan_moved_and_hes_abuse_holds_the_update() -> None:
    """The issue's own example: HE has the old address, the WAN the new, the update held."""
    history = healthy(History(make_config(hostname_file=None)))
    moved = history.now + 1
    history.record(WanAddressObserved("em0", NEW, True))
    key = f"update-he-endpoint:{NEW}"
    history.record(ActionStarted(key, "update-he-endpoint", "x"))
    history.record(
        ActionFailed(key, "update-he-endpoint", "temporary", "HE refused (abuse)", 10800.0)
    )
    failed_at = history.now
    reason = down_reason(history.state, plan=history.plan(), server_ipv4=HE_SERVER)
    assert reason is not None and reason.check == "he-endpoint"
    assert reason.sentence() == (
        f"IPv6 down since {hhmm(moved)}: HE has {ADDR}, the WAN has {NEW}, "
        f"update held: abuse back-off until {hhmm(failed_at + 10800)}"
    )
    # without the configuration (report, hooks): HE's last answer stands in for the hold
    bare = down_reason(history.state)
    assert bare is not None and bare.check == "he-endpoint"
    assert "last update: HE refused (abuse)" in bare.detail


def test_each_layer_is_named_from_facts() -> None:
    history = healthy(History(make_config(hostname_file=None)))
    history.record(ProbeObserved("ipv6", "2001:db8::53", False))
    for _ in range(3):
        history.record(ProbeObserved("ipv6", "2001:db8::53", False))
    reason = down_reason(history.state, plan=history.plan(), server_ipv4=HE_SERVER)
    assert reason is not None and reason.check == "ipv6-path"
    history.record(TunnelObserved("gif0", True, False, ADDR, HE_SERVER))
    reason = down_reason(history.state, plan=history.plan(), server_ipv4=HE_SERVER)
    assert reason is not None and reason.check == "tunnel" and "is down" in reason.detail
    history.record(TunnelObserved("gif0", True, True, ADDR, "192.0.2.9"))
    reason = down_reason(history.state, server_ipv4=HE_SERVER)
    assert reason is not None and "remote end is 192.0.2.9" in reason.detail
    for _ in range(3):
        history.record(ProbeObserved("ipv4", "198.51.100.53", False))
    reason = down_reason(history.state)
    assert reason is not None and reason.check == "ipv4-path"
    history.record(WanAddressObserved("em0", "100.64.1.2", True))
    reason = down_reason(history.state)
    assert reason is not None and reason.check == "wan" and "carrier-grade" in reason.detail
    history.record(WanAddressObserved("em0", None, False))
    reason = down_reason(history.state)
    assert reason is not None and reason.check == "wan" and "no link" in reason.detail
