"""Typed facts: the record codec, upcasting and tolerance of records we cannot type."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.model import facts
from reconciler.model.facts import (
    UPCASTERS,
    ActionFailed,
    ActionStarted,
    ConfigLoaded,
    EndpointObserved,
    ProbeObserved,
    TunnelObserved,
    UnknownFact,
    WanAddressObserved,
    from_record,
    to_record,
)
from reconciler.model.state import fold_all
from tests.strategies import facts as st_facts

EXAMPLES = [
    WanAddressObserved("em0", "203.0.113.7", True, addresses=("203.0.113.7", "203.0.113.8")),
    WanAddressObserved("em0", None, False, exists=False),
    ProbeObserved("ipv6", "2001:db8::1", False, None, "100% packet loss"),
    facts.TunnelObserved("gif0", True, True, "203.0.113.7", "198.51.100.1", "gif", 255),
    WanAddressObserved("em0", None, False, autoconf=True),
    WanAddressObserved("eth0", "198.51.100.7", True, autoconf=True, default_route=False),
    WanAddressObserved("ppp0", None, False, exists=False, default_route=False, owner="none"),
    facts.HostnameFileObserved("/etc/hostname.gif0", None),
    EndpointObserved("203.0.113.7", "update", for_local="10.0.0.2"),
    ActionStarted("restart-wan:em0", "restart-wan", "WAN has no address", causes=(3, 4)),
    facts.ActionSucceeded("restart-wan:em0", "restart-wan", "done", causes=(5,)),
    ActionFailed("update-he-endpoint:203.0.113.7", "update-he-endpoint", "temporary", "911", 600.0),
    ActionFailed("update-he-endpoint:x", "update-he-endpoint", "temporary", "t", unconfirmed=True),
    ConfigLoaded("abc", "/etc/reconciler.conf", {"wan.interface": "em0"}, {"ipv4": 3}, {"ipv4": 1}),
    facts.DaemonStarted(123, "0.1.0"),
    facts.DaemonStopped("SIGTERM"),
    facts.HookRan("address-changed", 12, "failed", 3, 0.25, "exit status 3", dropped=1),
    facts.HookRan("daemon-started", 1, "timeout", None, 30.0),
    facts.ObservationsCounted("probe-observed", 60, 1700000000.0, 1700003600.0),
    facts.WanProbed("em1", "198.51.100.1", True, 0.4, "ok"),
    facts.WanChosen("em1", "em0", "failover", "em0 failed 3 probes at 03:12:00"),
]


@pytest.mark.parametrize("fact", EXAMPLES, ids=lambda f: f.TYPE)
def test_every_fact_round_trips_through_msgpack(fact: facts.Fact) -> None:
    """A fact written as a record and read back through msgpack is the same fact."""
    record = to_record(fact, at=1700000000.5, source="test")
    packed = msgpack.packb(record, use_bin_type=True)
    envelope = from_record(7, msgpack.unpackb(packed, raw=False))
    assert envelope.fact == fact
    assert (envelope.seq, envelope.at, envelope.source) == (7, 1700000000.5, "test")


def test_every_fact_type_is_registered_once() -> None:
    """Each fact class is reachable by its TYPE name, and names do not collide."""
    classes = {type(f) for f in EXAMPLES}
    assert classes == set(facts.FACT_TYPES.values())
    assert len({c.TYPE for c in classes}) == len(classes)


def test_a_fact_type_from_a_newer_release_is_kept_raw() -> None:
    """A record of an unknown type becomes an UnknownFact carrying its data, not an error."""
    envelope = from_record(1, {"t": "dhcp-lease-observed", "v": 1, "at": 1.0, "d": {"x": 1}})
    assert envelope.fact == UnknownFact("dhcp-lease-observed", 1, {"x": 1}, "unknown fact type")


def test_a_newer_version_of_a_known_type_is_kept_raw() -> None:
    """A version above ours cannot be guessed at: it is shown raw."""
    record = to_record(ProbeObserved("ipv4", "192.0.2.1", True, 1.5), at=1.0, source="s")
    record["v"] = ProbeObserved.VERSION + 1
    fact = from_record(1, record).fact
    assert isinstance(fact, UnknownFact)
    assert "newer" in fact.problem


def test_malformed_records_do_not_crash_the_reader() -> None:
    """Missing fields, wrong shapes and missing type names all come back as UnknownFact."""
    assert isinstance(from_record(1, {"t": "probe-observed", "v": 1, "d": {}}).fact, UnknownFact)
    assert isinstance(from_record(1, {"d": {"a": 1}}).fact, UnknownFact)
    assert isinstance(from_record(1, {"t": "probe-observed", "v": 1, "d": 5}).fact, UnknownFact)


def test_old_versions_are_upcast_step_by_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record written by an older schema passes through every registered upcaster in turn."""
    monkeypatch.setattr(ProbeObserved, "VERSION", 3)
    monkeypatch.setitem(UPCASTERS, ("probe-observed", 1), lambda d: {**d, "rtt_ms": d.pop("rtt")})
    monkeypatch.setitem(UPCASTERS, ("probe-observed", 2), lambda d: {**d, "detail": "upcast"})
    old = {"t": "probe-observed", "v": 1, "at": 2.0, "src": "s"}
    old["d"] = {"family": "ipv4", "target": "192.0.2.1", "ok": True, "rtt": 0.25}
    assert from_record(1, old).fact == ProbeObserved("ipv4", "192.0.2.1", True, 0.25, "upcast")


def test_a_missing_upcaster_leaves_the_record_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a path from the old version, the record is shown raw rather than misread."""
    monkeypatch.setattr(ProbeObserved, "VERSION", 2)
    old = {"t": "probe-observed", "v": 1, "d": {"family": "ipv4", "target": "t", "ok": True}}
    fact = from_record(1, old).fact
    assert isinstance(fact, UnknownFact)
    assert "upcaster" in fact.problem


def _general_path(seq: int, record: dict[str, object]) -> facts.Envelope:
    """from_record as it reads without its fast path."""
    envelope = facts.Envelope(seq, 0.0, "", facts._typed(record["t"], record["v"], record["d"]))
    return facts.Envelope(seq, float(record["at"]), str(record["src"]), envelope.fact)  # type: ignore[arg-type]


@given(st_facts, st.floats(0, 2e9), st.integers(1, 10**9))
def test_fast_decode_equals_the_general_path(fact: facts.Fact, at: float, seq: int) -> None:
    """Every fact type, as written and read back, takes the fast path to the same envelope."""
    record = msgpack.unpackb(msgpack.packb(to_record(fact, at=at, source="s")))
    fast = facts._fast_envelope(seq, record)
    assert fast is not None
    assert fast == _general_path(seq, record) == facts.Envelope(seq, at, "s", fact)
    assert type(fast.fact) is type(fact)


@pytest.mark.parametrize("fact", EXAMPLES, ids=lambda f: f.TYPE)
@pytest.mark.parametrize(
    "bend",
    [
        lambda r: r["d"].update(extra=1),
        lambda r: r["d"].pop(next(iter(r["d"]))),
        lambda r: r.update(at=7),
        lambda r: r.update(v=0),
        lambda r: r.update(v=True),
        lambda r: r.update(src=5),
        lambda r: r.update(d=[1]),
    ],
    ids=["extra-key", "missing-key", "int-time", "old-version", "bool-version", "odd-src", "list"],
)
def test_records_off_the_fast_path_decode_as_before(fact: facts.Fact, bend: Any) -> None:
    """A record the fast path does not fit is left to the general path, whatever it holds."""
    record = msgpack.unpackb(msgpack.packb(to_record(fact, at=1.0, source="s")))
    bend(record)
    assert facts._fast_envelope(4, record) is None
    assert from_record(4, record).seq == 4


EXAMPLE_OF = {fact.TYPE: fact for fact in EXAMPLES}

# (fact type, field, a value of the wrong type) as a damaged or foreign writer might leave them.
MALFORMED = [
    ("probe-observed", "family", ["ipv4"]),
    ("probe-observed", "ok", "yes"),
    ("probe-observed", "rtt_ms", "3 ms"),
    ("probe-observed", "target", None),
    ("config-loaded", "fail_after", [3]),
    ("config-loaded", "recover_after", {"ipv4": "1"}),
    ("wan-address-observed", "address", 5),
    ("wan-address-observed", "addresses", "203.0.113.7"),
    ("wan-address-observed", "link_up", 1),
    ("tunnel-observed", "up", None),
    ("hostname-file-observed", "digest", 7),
    ("endpoint-observed", "for_local", {"a": 1}),
    ("action-started", "causes", ["a"]),
    ("action-succeeded", "key", ["k"]),
    ("action-failed", "kind", "fatal"),
    ("action-failed", "retry_after", True),
    ("daemon-started", "pid", 1.5),
    ("daemon-stopped", "reason", b"SIGTERM"),
]


def _record_of(fact: facts.Fact) -> dict[str, Any]:
    record: dict[str, Any] = msgpack.unpackb(msgpack.packb(to_record(fact, at=1.0, source="s")))
    return record


@pytest.mark.parametrize(("type_name", "name", "value"), MALFORMED)
@pytest.mark.parametrize("path", ["fast", "general"])
def test_a_field_of_the_wrong_type_makes_the_record_unknown(
    type_name: str, name: str, value: object, path: str
) -> None:
    """A known type with a field of the wrong type decodes as UnknownFact naming the field,
    on either decoding path, and folds as unknown."""
    record = _record_of(EXAMPLE_OF[type_name])
    record["d"][name] = value
    if path == "general":
        record["d"]["added-by-a-newer-writer"] = 1
    envelope = from_record(9, record)
    assert isinstance(envelope.fact, UnknownFact)
    assert envelope.fact.problem.startswith(f"malformed: {name} should be")
    assert envelope.fact.type == type_name and envelope.fact.data == record["d"]
    assert fold_all([envelope]).seq == 9


_any_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


@given(st_facts, st.data())
def test_any_field_value_decodes_and_folds_without_a_crash(
    fact: facts.Fact, data: st.DataObject
) -> None:
    """Whatever value one field holds, decoding gives a fact whose fields fit its type, or an
    UnknownFact, and the fold takes it."""
    record = _record_of(fact)
    name = data.draw(st.sampled_from(sorted(record["d"])))
    record["d"][name] = data.draw(_any_value)
    envelope = from_record(3, record)
    if not isinstance(envelope.fact, UnknownFact):
        assert facts._field_problem(type(envelope.fact), record["d"]) is None
    assert fold_all([envelope]).seq == 3


def test_v1_wan_and_tunnel_records_still_read() -> None:
    """Logs written before v2: a WAN fact reads as not autoconf, a tunnel one with no TTL."""
    wan = {"t": "wan-address-observed", "v": 1, "at": 1.0, "src": "observer:wan"}
    wan["d"] = {"interface": "em0", "address": "192.0.2.7", "link_up": True, "exists": True}
    assert from_record(1, wan).fact == WanAddressObserved("em0", "192.0.2.7", True)
    tunnel = {"t": "tunnel-observed", "v": 1, "at": 1.0, "src": "observer:tunnel"}
    tunnel["d"] = {"interface": "gif0", "exists": True, "up": True, "local": "192.0.2.7"}
    tunnel["d"] |= {"remote": "198.51.100.1", "mode": "gif"}
    fact = from_record(2, tunnel).fact
    assert fact == TunnelObserved("gif0", True, True, "192.0.2.7", "198.51.100.1", "gif", None)
    assert TunnelObserved.VERSION == 3


def test_v2_wan_records_read_with_the_default_route_unknown() -> None:
    """Logs written before v3 did not observe the IPv4 default route: None, not False (which
    would read as "the DHCP client's route is gone")."""
    wan = {"t": "wan-address-observed", "v": 2, "at": 1.0, "src": "observer:wan"}
    wan["d"] = {"interface": "em0", "address": "192.0.2.7", "link_up": True, "exists": True}
    wan["d"] |= {"addresses": ["192.0.2.7"], "autoconf": True}
    fact = from_record(1, wan).fact
    assert fact == WanAddressObserved("em0", "192.0.2.7", True, addresses=("192.0.2.7",),
                                      autoconf=True)  # fmt: skip
    assert isinstance(fact, WanAddressObserved) and fact.default_route is None
    assert fact.owner is None  # v3 -> v4: the platform's own way, as before
    assert WanAddressObserved.VERSION == 4


def test_v2_tunnel_records_read_with_the_default_route_unknown() -> None:
    """A tunnel fact written before v3 did not look at the IPv6 default route: unknown."""
    tunnel = {"t": "tunnel-observed", "v": 2, "at": 1.0, "src": "observer:tunnel"}
    tunnel["d"] = {"interface": "he-ipv6", "exists": True, "up": True, "local": "192.0.2.7"}
    tunnel["d"] |= {"remote": "198.51.100.1", "mode": "sit", "ttl": None}
    fact = from_record(2, tunnel).fact
    assert isinstance(fact, TunnelObserved) and fact.default_route is None
    assert fact == TunnelObserved("he-ipv6", True, True, "192.0.2.7", "198.51.100.1", "sit")


def test_v1_action_failed_reads_as_confirmed() -> None:
    """A failure recorded before v2 had an answer as far as anyone can tell: not unconfirmed."""
    old = {"t": "action-failed", "v": 1, "at": 1.0, "src": "executor"}
    old["d"] = {"key": "update-he-endpoint:192.0.2.7", "action": "update-he-endpoint"}
    old["d"] |= {"kind": "temporary", "message": "no answer in time", "retry_after": 600.0}
    fact = from_record(1, old).fact
    assert fact == ActionFailed(
        "update-he-endpoint:192.0.2.7", "update-he-endpoint", "temporary", "no answer in time",
        600.0,
    )  # fmt: skip
    assert isinstance(fact, ActionFailed) and fact.unconfirmed is False
    assert ActionFailed.VERSION == 2
