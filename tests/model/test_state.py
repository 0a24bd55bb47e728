"""The fold: hysteresis, action records, causes, snapshots, and fold algebra (Hypothesis)."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    ConfigLoaded,
    EndpointObserved,
    Envelope,
    ProbeObserved,
    TunnelObserved,
    UnknownFact,
    WanAddressObserved,
)
from reconciler.model.state import (
    ObservedState,
    ProbeView,
    fold,
    fold_all,
    state_from_mapping,
    state_to_mapping,
)
from tests.strategies import envelopes

from .world import History


def probes(history: History, family: str, pattern: str) -> list[str]:
    """Record probes by pattern ("x" failed, "o" ok) and return the status after each."""
    statuses = []
    for mark in pattern:
        history.record(ProbeObserved(family, "t", mark == "o"))
        statuses.append(history.state.probe(family).status)
    return statuses


def test_probe_status_waits_for_fail_after() -> None:
    """A family goes down only after fail_after consecutive failures (default 3)."""
    history = History(loaded=False)
    assert probes(history, "ipv6", "oxxoxxx") == ["up", "up", "up", "up", "up", "up", "down"]


def test_probe_recover_after_from_config_loaded() -> None:
    """recover_after carried by ConfigLoaded decides how many successes bring a family up."""
    history = History(loaded=False)
    history.record(ConfigLoaded("d", "p", fail_after={"ipv4": 1}, recover_after={"ipv4": 2}))
    assert probes(history, "ipv4", "xooxoo") == ["down", "down", "up", "down", "down", "up"]


def test_unknown_until_judged() -> None:
    """Before enough probes a family stays unknown."""
    history = History(loaded=False)
    assert probes(history, "ipv4", "xx") == ["unknown", "unknown"]


def test_action_record_tracks_attempts_and_outcomes() -> None:
    """Started/failed/succeeded facts count attempts, failures in a row and what is in flight."""
    history = History()
    key = "restart-wan:em0"
    history.record(ActionStarted(key, "restart-wan", "r"))
    assert history.state.actions[key].in_flight
    history.record(ActionFailed(key, "restart-wan", "temporary", "boom", 30.0))
    history.record(ActionStarted(key, "restart-wan", "r"))
    history.record(ActionFailed(key, "restart-wan", "permanent", "nope"))
    record = history.state.actions[key]
    assert (record.attempts, record.consecutive_failures, record.last_outcome) == (
        2,
        2,
        "permanent",
    )
    assert record.permanent_digest == history.config.digest and not record.in_flight
    history.record(ActionStarted(key, "restart-wan", "r"))
    history.record(ActionSucceeded(key, "restart-wan"))
    record = history.state.actions[key]
    assert (record.consecutive_failures, record.last_outcome, record.permanent_digest) == (
        0,
        "ok",
        None,
    )


def test_crash_in_the_middle_is_visible() -> None:
    """An ActionStarted without an outcome stays in flight after the fold."""
    history = History()
    history.record(ActionStarted("reload-pf:x", "reload-pf", "r"))
    assert [r.key for r in history.state.actions.values() if r.in_flight] == ["reload-pf:x"]


def test_cause_is_the_fact_that_first_showed_a_value() -> None:
    """Repeating an unchanged observation keeps the seq of the fact that first showed it."""
    history = History()
    first = history.record(WanAddressObserved("em0", "203.0.113.7", True))
    history.record(WanAddressObserved("em0", "203.0.113.7", True))
    assert history.state.wan is not None and history.state.wan.seq == first


def test_unknown_fact_only_moves_seq() -> None:
    """A fact this version does not know changes nothing but the seq and time."""
    state = ObservedState()
    after = fold(state, Envelope(7, 5.0, "x", UnknownFact("future", 9, {"a": 1})))
    assert (after.seq, after.at) == (7, 5.0)
    assert state_to_mapping(after) | {"seq": 0, "at": 0.0} == state_to_mapping(state)


@given(envelopes(), st.data())
def test_fold_prefix_snapshot_then_rest_equals_fold_all(
    items: list[Envelope], data: st.DataObject
) -> None:
    """Folding a prefix, snapshotting it, and folding the rest equals folding everything."""
    cut = data.draw(st.integers(0, len(items)))
    whole = fold_all(items)
    prefix = fold_all(items[:cut])
    resumed = fold_all(items[cut:], state_from_mapping(state_to_mapping(prefix)))
    assert state_to_mapping(resumed) == state_to_mapping(whole)


@given(envelopes())
def test_snapshot_mapping_round_trips(items: list[Envelope]) -> None:
    """state_from_mapping(state_to_mapping(s)) == s for every folded state."""
    state = fold_all(items)
    assert state_from_mapping(state_to_mapping(state)) == state


def test_snapshot_of_other_schema_is_refused() -> None:
    """A mapping of another schema version raises ValueError (callers fold the log instead)."""
    mapping = state_to_mapping(ObservedState()) | {"schema": 999}
    try:
        state_from_mapping(mapping)
    except ValueError as exc:
        assert "999" in str(exc)
    else:
        raise AssertionError("schema 999 was accepted")


@given(envelopes())
def test_fold_leaves_every_earlier_state_untouched(items: list[Envelope]) -> None:
    """Each state the fold returned still reads the same after every later fact is folded."""
    states, seen = [], []
    current = ObservedState()
    for envelope in items:
        current = fold(current, envelope)
        states.append(current)
        seen.append(state_to_mapping(current))
    assert [state_to_mapping(s) for s in states] == seen


def test_probe_view_fields_are_in_the_order_the_fold_builds_them() -> None:
    """The probe fold builds ProbeView positionally: its field order is part of that code."""
    assert [a.name for a in attrs.fields(ProbeView)] == [
        "family",
        "status",
        "consecutive_ok",
        "consecutive_failed",
        "target",
        "last_ok",
        "last_seq",
        "last_at",
        "seq",
        "since",
        "failing_since",
        "failing_seq",
        "outage_since",
        "outage_seq",
    ]


def test_tunnel_info_of_the_confirmed_address_keeps_its_for_local() -> None:
    """HE's tunnel info repeating the address HE last confirmed keeps the WAN address it was
    confirmed for; the view moves to the new fact."""
    history = History()
    history.record(EndpointObserved("198.51.100.200", "update", for_local="192.168.1.20"))
    seq = history.record(EndpointObserved("198.51.100.200", "tunnel-info"))
    endpoint = history.state.endpoint
    assert endpoint is not None
    assert (endpoint.address, endpoint.for_local, endpoint.source, endpoint.seq) == (
        "198.51.100.200",
        "192.168.1.20",
        "tunnel-info",
        seq,
    )


def test_tunnel_info_of_another_address_forgets_for_local() -> None:
    """HE's tunnel info showing an address other than the confirmed one says nothing about
    which WAN address it was made for."""
    history = History()
    history.record(EndpointObserved("198.51.100.200", "update", for_local="192.168.1.20"))
    history.record(EndpointObserved("198.51.100.201", "tunnel-info"))
    endpoint = history.state.endpoint
    assert endpoint is not None and endpoint.for_local is None


UPDATE = "update-he-endpoint"


def test_tunnel_info_of_a_new_address_after_a_crashed_update_is_that_updates() -> None:
    """HE changes its endpoint only when updated: a new address HE shows after the one update
    since its last view whose outcome is unknown (the daemon died during it) is that update's
    doing, for its WAN address; updates answered without taking effect do not count."""
    history = History()
    history.record(EndpointObserved("198.51.100.200", "update", for_local="192.168.1.20"))
    history.record(ActionStarted(f"{UPDATE}:192.168.1.30", UPDATE, "r"))  # the daemon dies
    history.record(ActionStarted(f"{UPDATE}:192.168.1.40", UPDATE, "r"))
    history.record(ActionFailed(f"{UPDATE}:192.168.1.40", UPDATE, "temporary", "abuse", 7200.0))
    history.record(EndpointObserved("198.51.100.201", "tunnel-info"))
    endpoint = history.state.endpoint
    assert endpoint is not None
    assert (endpoint.address, endpoint.for_local) == ("198.51.100.201", "192.168.1.30")
    history.record(EndpointObserved("198.51.100.201", "tunnel-info"))  # the same, later
    assert history.state.endpoint is not None
    assert history.state.endpoint.for_local == "192.168.1.30"


def test_tunnel_info_of_a_new_address_after_two_crashed_updates_is_nobodys() -> None:
    """Two updates of unknown outcome since HE's last view (one died, one got no complete
    answer): either may have made HE's new address, so it is for no known WAN address."""
    history = History()
    history.record(EndpointObserved("198.51.100.200", "update", for_local="192.168.1.20"))
    history.record(ActionStarted(f"{UPDATE}:192.168.1.30", UPDATE, "r"))  # the daemon dies
    history.record(ActionStarted(f"{UPDATE}:192.168.1.40", UPDATE, "r"))
    history.record(
        ActionFailed(f"{UPDATE}:192.168.1.40", UPDATE, "temporary", "late", unconfirmed=True)
    )
    history.record(EndpointObserved("198.51.100.201", "tunnel-info"))
    assert history.state.endpoint is not None and history.state.endpoint.for_local is None


def test_ipv6_across_the_tunnel_proves_hes_endpoint_again_after_an_update() -> None:
    """HE's endpoint for X is known; an update for another address goes out and its outcome
    is unknown: IPv6 that works across the tunnel from X after it shows HE still has X, as a
    new view (whose cause is the probe), the address kept."""
    history = History()
    history.record(TunnelObserved("gif0", True, True, "203.0.113.7", "198.51.100.1"))
    history.record(EndpointObserved("203.0.113.7", "update", for_local="203.0.113.7"))
    history.record(ProbeObserved("ipv6", "t", True))
    before = history.state.endpoint
    history.record(ActionStarted(f"{UPDATE}:203.0.113.9", UPDATE, "r"))  # the daemon dies
    assert history.state.endpoint == before
    seq = history.record(ProbeObserved("ipv6", "t", True))
    endpoint = history.state.endpoint
    assert endpoint is not None
    assert (endpoint.address, endpoint.for_local, endpoint.source, endpoint.seq) == (
        "203.0.113.7",
        "203.0.113.7",
        "probe",
        seq,
    )


def test_ipv6_across_the_tunnel_proves_hes_endpoint() -> None:
    """An IPv6 probe that succeeds across a tunnel observed up with local end X shows that HE
    has our endpoint for X (source "probe"; the public address stays unknown)."""
    history = History()
    history.record(TunnelObserved("gif0", True, True, "192.168.1.20", "198.51.100.1"))
    seq = history.record(ProbeObserved("ipv6", "t", True))
    endpoint = history.state.endpoint
    assert endpoint is not None
    assert (endpoint.address, endpoint.for_local, endpoint.source, endpoint.seq) == (
        None,
        "192.168.1.20",
        "probe",
        seq,
    )
    history.record(ProbeObserved("ipv6", "t", True))
    assert history.state.endpoint == endpoint  # the cause stays the fact that first showed it


def test_ipv6_probe_proves_nothing_without_a_working_tunnel() -> None:
    """A failed probe, a tunnel down, or one restarted since it was observed, proves nothing."""
    history = History()
    history.record(TunnelObserved("gif0", True, True, "192.168.1.20", "198.51.100.1"))
    history.record(ProbeObserved("ipv6", "t", False))
    history.record(ProbeObserved("ipv4", "t", True))
    assert history.state.endpoint is None
    history.record(ActionStarted("restart-tunnel:x", "restart-tunnel", "r"))
    history.record(ProbeObserved("ipv6", "t", True))
    assert history.state.endpoint is None
    history.record(TunnelObserved("gif0", True, False, "192.168.1.20", "198.51.100.1"))
    history.record(ProbeObserved("ipv6", "t", True))
    assert history.state.endpoint is None


def test_ipv6_probe_keeps_an_unconfirmed_tunnel_info_address() -> None:
    """HE's tunnel info without a known WAN address gets it from a probe across the tunnel."""
    history = History()
    history.record(EndpointObserved("198.51.100.200", "tunnel-info"))
    history.record(TunnelObserved("gif0", True, True, "192.168.1.20", "198.51.100.1"))
    history.record(ProbeObserved("ipv6", "t", True))
    endpoint = history.state.endpoint
    assert endpoint is not None
    assert (endpoint.address, endpoint.for_local) == ("198.51.100.200", "192.168.1.20")


def test_tunnel_info_after_a_probe_proof_is_for_the_proven_address() -> None:
    """HE's tunnel info while IPv6 works across the tunnel is the endpoint for its local end."""
    history = History()
    history.record(TunnelObserved("gif0", True, True, "192.168.1.20", "198.51.100.1"))
    history.record(ProbeObserved("ipv6", "t", True))
    history.record(EndpointObserved("198.51.100.200", "tunnel-info"))
    endpoint = history.state.endpoint
    assert endpoint is not None
    assert (endpoint.address, endpoint.for_local) == ("198.51.100.200", "192.168.1.20")


def test_tunnel_observed_after_a_restart_proves_again() -> None:
    """A tunnel seen unchanged after a restart is news about the rebuilt tunnel: its view moves
    to that fact, and a probe across it proves HE's endpoint again."""
    history = History()
    first = history.record(TunnelObserved("gif0", True, True, "192.168.1.20", "198.51.100.1"))
    assert history.record(TunnelObserved("gif0", True, True, "192.168.1.20", "198.51.100.1"))
    assert history.state.tunnel is not None and history.state.tunnel.seq == first
    history.record(ActionStarted("restart-tunnel:x", "restart-tunnel", "r"))
    history.record(ActionSucceeded("restart-tunnel:x", "restart-tunnel"))
    again = history.record(TunnelObserved("gif0", True, True, "192.168.1.20", "198.51.100.1"))
    assert history.state.tunnel.seq == again
    history.record(ProbeObserved("ipv6", "t", True))
    endpoint = history.state.endpoint
    assert endpoint is not None and endpoint.for_local == "192.168.1.20"


def test_a_fact_the_fold_cannot_take_counts_as_unknown() -> None:
    """A fact that makes its folder raise (a list for a family) only moves seq, and the
    caller's on_error hears of it."""
    errors: list[tuple[int, str]] = []
    bad = Envelope(5, 9.0, "x", ProbeObserved(["ipv6"], "t", True))  # type: ignore[arg-type]
    state = fold_all(
        [bad], on_error=lambda envelope, exc: errors.append((envelope.seq, type(exc).__name__))
    )
    assert (state.seq, state.at) == (5, 9.0)
    assert state_to_mapping(state) | {"seq": 0, "at": 0.0} == state_to_mapping(ObservedState())
    assert errors == [(5, "TypeError")]
    assert fold(ObservedState(), bad).seq == 5  # without a handler, quietly


def _succeed(history: History, key: str, kind: str) -> None:
    history.record(ActionStarted(key, kind, "r"))
    history.record(ActionSucceeded(key, kind))


def test_action_records_do_not_grow_with_every_address_the_isp_hands_out() -> None:
    """A success settles its kind: after 500 address changes the state holds one record per
    kind, the newest, and last_success_seq_of still names the newest success."""
    history = History()
    for n in range(500):
        address = f"203.0.{n // 250}.{n % 250 + 1}"
        _succeed(history, f"update-he-endpoint:{address}", "update-he-endpoint")
        _succeed(history, f"restart-tunnel:{address}->198.51.100.1", "restart-tunnel")
        _succeed(history, f"reload-pf:{address}", "reload-pf")
    assert sorted(history.state.actions) == [
        "reload-pf:203.0.1.250",
        "restart-tunnel:203.0.1.250->198.51.100.1",
        "update-he-endpoint:203.0.1.250",
    ]
    assert history.state.last_success_seq_of("reload-pf") == len(history.envelopes)


def test_a_success_keeps_what_can_still_hold_or_explain_its_kind() -> None:
    """Another key's intent without outcome, its permanent failure under the configuration in
    force, and its unexpired retry-after survive a success of the kind; an expired hint and a
    plain earlier success do not."""
    kind = "update-he-endpoint"
    history = History()
    history.record(ActionStarted(f"{kind}:a", kind, "r"))  # the daemon died here
    history.record(ActionStarted(f"{kind}:b", kind, "r"))
    history.record(ActionFailed(f"{kind}:b", kind, "permanent", "badauth"))
    history.record(ActionStarted(f"{kind}:c", kind, "r"))
    history.record(ActionFailed(f"{kind}:c", kind, "temporary", "abuse", retry_after=3600.0))
    history.record(ActionStarted(f"{kind}:d", kind, "r"))
    history.record(ActionFailed(f"{kind}:d", kind, "temporary", "911", retry_after=1.0))
    _succeed(history, f"{kind}:e", kind)
    _succeed(history, f"{kind}:f", kind)
    assert sorted(history.state.actions) == [f"{kind}:{k}" for k in "abcf"]


def test_a_snapshot_from_before_autoconf_and_ttl_still_loads() -> None:
    """Snapshots written before WanView.autoconf and TunnelView.ttl existed load with their
    defaults (static WAN, TTL unknown): the upgrade keeps using them."""
    state = fold_all(
        [
            Envelope(1, 1.0, "t", WanAddressObserved("em0", "192.0.2.7", True, autoconf=True)),
            Envelope(2, 2.0, "t", TunnelObserved("gif0", True, True, "192.0.2.7", "x", "gif", 64)),
        ]
    )
    mapping = state_to_mapping(state)
    assert (mapping["wan"]["autoconf"], mapping["tunnel"]["ttl"]) == (True, 64)
    del mapping["wan"]["autoconf"], mapping["tunnel"]["ttl"]
    old = state_from_mapping(mapping)
    assert old.wan is not None and old.tunnel is not None
    assert (old.wan.autoconf, old.tunnel.ttl) == (False, None)
    assert old.wan.address == "192.0.2.7"
