"""Outages (reconciler.model.outages): one definition for the report, the notifications and
the metrics. The property: for any sequence of facts, the IPv6 outages of `reconciler
report` and the ones the `repaired` notifications (and the metrics beside them) tell agree
on when each began and ended."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model import facts as f
from reconciler.model.config import ReconcileConfig
from reconciler.model.facts import Envelope
from reconciler.model.incidents import extract
from reconciler.model.news import changes_nothing
from reconciler.model.outages import under_way
from reconciler.model.state import ObservedState, fold, state_from_mapping, state_to_mapping
from reconciler.model.telemetry import Telemetry
from tests.strategies import facts as any_fact

T0 = 1_700_000_000.0
A, B = "203.0.113.7", "203.0.113.9"

# The facts outages turn on, often; any other fact now and then.
_outage_facts = st.one_of(
    st.builds(f.ProbeObserved, st.just("ipv6"), st.just("2001:db8::53"), st.booleans()),
    st.builds(f.ProbeObserved, st.just("ipv6"), st.just("2001:db8::53"), st.just(False)),
    st.builds(f.ProbeObserved, st.just("ipv4"), st.just("198.51.100.53"), st.booleans()),
    st.builds(f.WanAddressObserved, st.just("em0"), st.sampled_from([A, B, None]), st.booleans()),
    st.builds(f.DaemonStopped, st.just("SIGTERM")),
    st.builds(f.DaemonStarted, st.just(7), st.just("1")),
    st.builds(
        f.ActionStarted, st.just("restart-tunnel:x"), st.just("restart-tunnel"), st.just("r")
    ),
    any_fact,
)


@st.composite
def logs(draw: st.DrawFn) -> list[Envelope]:
    """Facts in log order, stamped with rising times (whole and fractional gaps)."""
    items = draw(st.lists(st.tuples(st.floats(0, 120), _outage_facts), max_size=60))
    at, out = T0, []
    for seq, (gap, fact) in enumerate(items, 1):
        at += gap
        out.append(Envelope(seq, at, "test", fact))
    return out


def told_outages(history: list[Envelope]) -> tuple[list[tuple[float, float]], float | None]:
    """The IPv6 outages the notifications tell (start, end), and the one still under way by
    the metrics' reckoning, folding as `reconciler metrics` and the daemon do."""
    state = ObservedState()
    telemetry = Telemetry.starting_on(state, ReconcileConfig())
    ended = []
    for envelope in history:
        after = fold(state, envelope)
        for notice in telemetry.observe(state, envelope, after):
            if notice.event == "repaired":
                assert notice.outage_seconds is not None
                ended.append((notice.at - notice.outage_seconds, notice.at))
        state = after
    return ended, telemetry.tracker.outage_since


def reported_outages(
    history: list[Envelope], until: float
) -> tuple[list[tuple[float, float]], float | None]:
    """The IPv6 outages of the report over the whole log (start, end), and the open one."""
    report = extract(history, since=T0, until=until)
    conditions = [c for i in report.incidents for c in i.conditions if c.kind == "ipv6-down"]
    ended = [(c.start, c.end) for c in conditions if c.end is not None]
    still = [c.start for c in conditions if c.end is None]
    assert len(still) <= 1
    return ended, (still[0] if still else None)


def same_times(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    if len(a) != len(b):
        return False
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=0, abs_tol=1e-6)
        for p, q in zip(a, b, strict=True)
        for x, y in zip(p, q, strict=True)
    )


@settings(max_examples=300, deadline=None)
@given(logs())
def test_the_report_and_the_notifications_agree_on_every_outage(history: list[Envelope]) -> None:
    """Whatever the facts (probes, address changes, restarts, stops of the daemon), the
    report's IPv6 outages and the notifications' are the same outages: same starts, same
    ends, and the same one under way at the end."""
    until = (history[-1].at if history else T0) + 1
    told, told_open = told_outages(history)
    reported, reported_open = reported_outages(history, until)
    if not history:
        return
    assert same_times(reported, told), (reported, told)
    assert (reported_open is None) == (told_open is None)
    if told_open is not None and reported_open is not None:
        assert math.isclose(reported_open, told_open, abs_tol=1e-6)


def log_of(*facts: tuple[float, f.Fact]) -> list[Envelope]:
    return [Envelope(seq, T0 + at, "test", fact) for seq, (at, fact) in enumerate(facts, 1)]


def probe(ok: bool, family: str = "ipv6") -> f.ProbeObserved:
    return f.ProbeObserved(family, "t", ok)


def test_a_stop_of_the_daemon_does_not_end_an_outage() -> None:
    """IPv6 down when the daemon stops and still down after it starts: one outage, from the
    first failed probe to the first good one after the start (the report cut it in two
    at the stop, and the hooks dated it from the verdict after the start)."""
    history = log_of(
        (0, probe(True)),
        (10, probe(False)),
        (20, probe(False)),
        (30, probe(False)),
        (40, f.DaemonStopped("SIGTERM")),
        (100, f.DaemonStarted(8, "1")),
        (110, probe(False)),
        (120, probe(True)),
    )
    told, _ = told_outages(history)
    reported, _ = reported_outages(history, T0 + 200)
    assert told == reported == [(T0 + 10, T0 + 120)]


def test_an_address_change_begins_an_ipv6_outage_and_failures_before_it_count() -> None:
    history = log_of(
        (0, f.WanAddressObserved("em0", A, True)),
        (1, probe(True)),
        (5, f.WanAddressObserved("em0", B, True)),
        (9, probe(True)),
        (20, probe(False)),
        (25, f.WanAddressObserved("em0", None, False)),
        (26, f.WanAddressObserved("em0", A, True)),  # back with another address than B
        (30, probe(False)),
        (40, probe(True)),
    )
    told, _ = told_outages(history)
    reported, _ = reported_outages(history, T0 + 50)
    # the first from the change to B, the second from the failure before the change to A
    assert told == reported == [(T0 + 5, T0 + 9), (T0 + 20, T0 + 40)]


def test_a_daemon_starting_from_a_snapshot_knows_when_the_outage_began() -> None:
    """The state keeps the outage's start, so a daemon that starts from a snapshot (and a
    replay from a checkpoint) tells the same length as a fold from the first record."""
    history = log_of(
        (0, probe(True)),
        (10, probe(False)),
        (20, probe(False)),
        (30, probe(False)),
    )
    state = ObservedState()
    for envelope in history:
        state = fold(state, envelope)
    restored = state_from_mapping(state_to_mapping(state))
    running = under_way(restored, "ipv6")
    assert running is not None and (running.start, running.seq) == (T0 + 10, 2)
    telemetry = Telemetry.starting_on(restored, ReconcileConfig())
    back = Envelope(5, T0 + 50, "test", probe(True))
    [repaired] = telemetry.observe(restored, back, fold(restored, back))
    assert repaired.event == "repaired" and repaired.outage_seconds == 40.0


def test_a_snapshot_from_before_the_outage_marks_dates_the_outage_from_the_verdict() -> None:
    history = log_of((0, probe(True)), (10, probe(False)), (20, probe(False)), (30, probe(False)))
    state = ObservedState()
    for envelope in history:
        state = fold(state, envelope)
    old = state_to_mapping(state)
    for view in old["probes"].values():
        for name in ("failing_since", "failing_seq", "outage_since", "outage_seq"):
            del view[name]
    del old["last_wan_address"]
    running = under_way(state_from_mapping(old), "ipv6")
    assert running is not None and running.start == T0 + 30


def test_the_success_that_ends_an_address_change_outage_is_news() -> None:
    """IPv6 stayed up by its verdict, but the address change began an outage: the success
    that ends it is recorded (news), so the log holds the end the hooks were told."""
    history = log_of(
        (0, f.WanAddressObserved("em0", A, True)),
        (1, f.TunnelObserved("gif0", True, True, A, "198.51.100.1")),
        (2, probe(True)),
        (3, probe(True)),
        (4, f.WanAddressObserved("em0", B, True)),
    )
    state = ObservedState()
    for envelope in history:
        state = fold(state, envelope)
    again = fold(state, Envelope(6, T0 + 9, "test", probe(True)))
    assert under_way(state, "ipv6") is not None and under_way(again, "ipv6") is None
    assert not changes_nothing(state, again)
