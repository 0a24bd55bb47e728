"""Incident extraction: outage boundaries, overlapping causes, open outages, windows that
start mid-outage, explanations, actions, totals; invariants over any log (Hypothesis)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    DaemonStarted,
    DaemonStopped,
    EndpointObserved,
    Envelope,
    ProbeObserved,
    TunnelObserved,
    UnknownFact,
    WanAddressObserved,
    WanChosen,
    WanProbed,
)
from reconciler.model.incidents import CONDITIONS, DAY, LANES, extract, lane_values
from reconciler.model.state import fold_all
from tests.strategies import envelopes

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
OLD, NEW, HE = "203.0.113.7", "203.0.113.9", "198.51.100.1"


class Log:
    """Facts at offsets from T0, with seqs from 1."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def add(self, offset: float, fact: Any) -> int:
        seq = len(self.envelopes) + 1
        self.envelopes.append(Envelope(seq=seq, at=T0 + offset, source="test", fact=fact))
        return seq

    def probe(self, offset: float, family: str, ok: bool) -> int:
        return self.add(offset, ProbeObserved(family, "target", ok))

    def converged(self) -> None:
        """WAN, tunnel and HE all agree at OLD; both families up (seqs 1..5, t 0..2)."""
        self.add(0, WanAddressObserved("em0", OLD, True))
        self.add(0, TunnelObserved("gif0", True, True, OLD, HE))
        self.add(0, EndpointObserved(OLD, "update", for_local=OLD))
        self.probe(1, "ipv4", True)
        self.probe(2, "ipv6", True)


def test_outage_starts_at_the_first_failed_probe_and_ends_at_the_first_good_probe() -> None:
    """IPv6 fails three times (fail_after 3): the verdict goes down at the third failure,
    and the outage (reconciler.model.outages) dates from the first; it ends at the next
    success. (It started at the verdict, 20 s later than the hooks said, before the two
    definitions were one.)"""
    log = Log()
    log.converged()
    first = log.probe(10, "ipv6", False)
    log.probe(20, "ipv6", False)
    log.probe(30, "ipv6", False)
    log.probe(40, "ipv6", False)
    up = log.probe(50, "ipv6", True)
    report = extract(log.envelopes, since=T0, until=T0 + 100)
    [incident] = report.incidents
    assert (incident.start, incident.end) == (T0 + 10, T0 + 50)
    assert (incident.seq, incident.end_seq) == (first, up)
    assert incident.kinds == ("ipv6-down",)
    assert incident.duration(report.until) == 40
    assert incident.explained_by is None  # nothing the router sees changed
    assert incident.time_to_repair == 40
    # the lane is down for the outage the totals count (from the first failure, not from
    # the verdict at the third: it showed "up" for 20 s the availability counted as down)
    assert [(s.value, s.start - T0) for s in report.lanes["ipv6"]][-2:] == [
        ("down", 10),
        ("up", 50),
    ]
    assert report.totals.down["ipv6"] == 40 and report.totals.down["ipv4"] == 0
    assert report.totals.availability("ipv6") == (98 - 40) / 98  # verdict from t=2
    assert report.totals.repairs == (40.0,)


def test_a_single_lost_ping_is_no_outage() -> None:
    log = Log()
    log.converged()
    log.probe(10, "ipv6", False)
    log.probe(20, "ipv6", False)
    log.probe(30, "ipv6", True)
    assert extract(log.envelopes, since=T0, until=T0 + 100).incidents == ()


def test_overlapping_causes_are_one_incident_explained_by_the_first_change() -> None:
    """The WAN gets a new address: IPv6 goes down, HE's endpoint is wrong, then IPv4 too;
    the update fixes HE, a later probe IPv6. One incident, three conditions, explained by
    the WAN change, repaired from that change to the last condition's end."""
    log = Log()
    log.converged()
    change = log.add(10, WanAddressObserved("em0", NEW, True))
    for offset in (11, 12, 13):
        log.probe(offset, "ipv6", False)
    for offset in (14, 15, 16):
        log.probe(offset, "ipv4", False)
    reason = f"HE has {OLD}, the WAN has {NEW}"
    key = f"update-he-endpoint:{NEW}"
    started = log.add(17, ActionStarted(key, "update-he-endpoint", reason, [change, 3]))
    log.add(18, ActionSucceeded(f"update-he-endpoint:{NEW}", "update-he-endpoint", "good"))
    fixed = log.add(18, EndpointObserved(NEW, "update", for_local=NEW))
    log.probe(19, "ipv4", True)
    log.add(20, TunnelObserved("gif0", True, True, NEW, HE))
    back = log.probe(25, "ipv6", True)
    report = extract(log.envelopes, since=T0, until=T0 + 60)
    [incident] = report.incidents
    assert incident.kinds == ("endpoint-wrong", "ipv4-down", "ipv6-down")
    by_kind = {c.kind: c for c in incident.conditions}
    assert (by_kind["endpoint-wrong"].start, by_kind["endpoint-wrong"].end) == (T0 + 10, T0 + 18)
    assert by_kind["endpoint-wrong"].end_seq == fixed
    assert (by_kind["ipv4-down"].start, by_kind["ipv4-down"].end) == (T0 + 14, T0 + 19)
    # IPv6's outage begins at the address change (its first failure came after it)
    assert (by_kind["ipv6-down"].start, by_kind["ipv6-down"].seq) == (T0 + 10, change)
    assert (incident.start, incident.end, incident.end_seq) == (T0 + 10, T0 + 25, back)
    assert incident.explained_by == change
    assert incident.actions == (started,)
    assert incident.time_to_repair == 15
    [mark] = report.actions
    assert (mark.seq, mark.outcome) == (started, "ok")
    assert report.totals.he_updates == report.totals.he_updates_ok == 1


def test_separate_outages_are_separate_incidents() -> None:
    log = Log()
    log.converged()
    for offset in (10, 11, 12):
        log.probe(offset, "ipv6", False)
    log.probe(13, "ipv6", True)
    for offset in (30, 31, 32):
        log.probe(offset, "ipv4", False)
    log.probe(33, "ipv4", True)
    report = extract(log.envelopes, since=T0, until=T0 + 60)
    assert [(i.kinds, i.start - T0, i.end) for i in report.incidents] == [
        (("ipv6-down",), 10, T0 + 13),
        (("ipv4-down",), 30, T0 + 33),
    ]
    assert report.totals.outages == 2


def test_an_outage_still_open_at_the_end_of_the_window() -> None:
    """No good probe before `until`: the incident has no end, lasts to `until`, has no time
    to repair yet, and counts as an outage but not as a repair."""
    log = Log()
    log.converged()
    log.add(5, WanAddressObserved("em0", None, False))
    for offset in (10, 20, 30):
        log.probe(offset, "ipv4", False)
    later = log.probe(200, "ipv4", True)  # after the window: not read
    report = extract(log.envelopes, since=T0, until=T0 + 100)
    [incident] = report.incidents
    assert incident.end is None and incident.end_seq == 0
    # from the WAN losing its link and address (nothing crosses it from then on)
    assert incident.duration(report.until) == 95
    assert incident.time_to_repair is None
    assert report.totals.outages == 1 and report.totals.repairs == ()
    assert report.last_seq == later - 1
    assert report.lanes["ipv4"][-1].open and report.lanes["ipv4"][-1].value == "down"
    assert report.lanes["wan"][-1].value == "link-down"


def test_a_window_that_starts_mid_outage_keeps_the_real_start() -> None:
    """The outage began before `since`: the incident keeps its real start and explanation,
    availability counts only the window, and the day it began is not in the totals."""
    log = Log()
    log.converged()
    cause = log.add(5, WanAddressObserved("em0", None, True))
    for offset in (10, 20, 30):
        log.probe(offset, "ipv4", False)
    log.add(35, ActionStarted("restart-wan:em0", "restart-wan", "no address", [cause]))
    log.add(36, ActionSucceeded("restart-wan:em0", "restart-wan"))
    log.add(40, WanAddressObserved("em0", OLD, True))
    restart = log.add(110, ActionStarted("restart-wan:em0", "restart-wan", "still", [cause]))
    log.add(111, ActionFailed("restart-wan:em0", "restart-wan", "temporary", "busy"))
    log.probe(150, "ipv6", True)
    end = log.probe(150, "ipv4", True)
    report = extract(log.envelopes, since=T0 + 100, until=T0 + 200)
    [incident] = report.incidents
    # from the address lost (both families out from then on), so duration and time to
    # repair are one figure
    assert incident.start == T0 + 5 and incident.start < report.since
    assert incident.duration(report.until) == incident.time_to_repair
    assert (incident.end, incident.end_seq) == (T0 + 150, end)
    assert incident.explained_by == cause and cause in report.moments
    assert incident.actions == (restart,)  # only actions in the window are marks
    assert incident.time_to_repair == 145
    assert report.totals.down["ipv4"] == 50 and report.totals.up["ipv4"] == 50
    assert report.totals.outages == 1 and report.totals.repairs == (145.0,)
    assert report.first_seq == restart
    [mark] = report.actions
    assert (mark.outcome, mark.message) == ("temporary", "busy")


def test_an_outage_that_ended_before_the_window_is_not_in_it() -> None:
    log = Log()
    log.converged()
    for offset in (10, 11, 12):
        log.probe(offset, "ipv6", False)
    log.probe(13, "ipv6", True)
    log.probe(100, "ipv6", True)
    report = extract(log.envelopes, since=T0 + 50, until=T0 + 150)
    assert report.incidents == ()
    assert report.totals.availability("ipv6") == 1.0
    assert all(s.end >= report.since for lane in LANES for s in report.lanes[lane])


def test_a_tunnel_change_during_the_outage_explains_it_when_nothing_came_before() -> None:
    """IPv6 goes down first; the tunnel is seen down only later: that is the explanation."""
    log = Log()
    log.converged()
    for offset in (10, 11, 12):
        log.probe(offset, "ipv6", False)
    seen = log.add(13, TunnelObserved("gif0", True, False, OLD, HE))
    log.add(20, TunnelObserved("gif0", True, True, OLD, HE))
    log.probe(21, "ipv6", True)
    [incident] = extract(log.envelopes, since=T0, until=T0 + 30).incidents
    assert incident.explained_by == seen
    assert incident.time_to_repair == 11  # from the outage's start: the change came later


def test_the_daemon_stopped_is_no_verdict_and_cuts_actions_short() -> None:
    """While stopped, every lane is "stopped" (no verdict counted in availability); an action
    started without an outcome before a restart shows as in flight."""
    log = Log()
    log.converged()
    started = log.add(10, ActionStarted("restart-tunnel:x", "restart-tunnel", "down", []))
    log.add(11, DaemonStopped("killed"))
    log.add(51, DaemonStarted(pid=2, version="0"))
    log.probe(52, "ipv6", True)
    report = extract(log.envelopes, since=T0, until=T0 + 100)
    assert [s.value for s in report.lanes["ipv6"]] == ["unknown", "up", "stopped", "up"]
    assert [s.value for s in report.lanes["wan"]] == ["unknown", "up", "stopped", "up"]
    assert report.totals.up["ipv6"] == 98 - 40
    assert report.totals.availability("ipv6") == 1.0
    [mark] = report.actions
    assert (mark.seq, mark.outcome) == (started, "in-flight")


def test_unknown_facts_are_counted_and_change_nothing() -> None:
    log = Log()
    log.converged()
    log.add(10, UnknownFact("route-observed", 1, {"x": 1}, "unknown fact type"))
    log.add(11, UnknownFact("probe-observed", 1, {"family": 3}, "malformed"))
    report = extract(log.envelopes, since=T0, until=T0 + 20)
    assert (report.facts, report.unknown) == (7, 2)
    assert report.incidents == ()


def test_a_window_without_facts_is_empty_and_unknown() -> None:
    """Nothing recorded in the window (the daemon off without a word, or a window after the
    log): no lane claims the state before it still held, and no availability is made up."""
    log = Log()
    log.converged()
    for offset in (10, 11, 12):
        log.probe(offset, "ipv6", False)  # an outage open when the log ends
    report = extract(log.envelopes, since=T0 + 1000, until=T0 + 2000)
    assert report.empty and (report.first_seq, report.last_seq) == (0, 0)
    for lane in LANES:
        [span] = report.lanes[lane]
        assert (span.value, span.start, span.end, span.open) == (
            "unknown",
            T0 + 1000,
            T0 + 2000,
            True,
        )
    assert report.totals.availability("ipv6") is None
    assert report.incidents == ()
    assert extract([], since=T0, until=T0 + 10).lanes["wan"][0].value == "unknown"


def test_days_split_at_utc_midnight() -> None:
    """An outage across midnight counts on both days; its repair on the day it ended."""
    midnight = (T0 // DAY + 1) * DAY
    log = Log()
    log.converged()
    base = midnight - T0
    for offset in (-30, -20, -10):
        log.probe(base + offset, "ipv6", False)
    log.probe(base + 50, "ipv6", True)
    report = extract(log.envelopes, since=midnight - 3600, until=midnight + 3600)
    first, second = report.days
    assert (first.start, first.end, second.end) == (midnight - 3600, midnight, midnight + 3600)
    assert (first.outages, second.outages) == (1, 1)
    assert (first.repairs, second.repairs) == ((), (80.0,))  # from the first failure
    assert (first.down["ipv6"], second.down["ipv6"]) == (30, 50)
    assert report.totals.outages == 1


def test_endpoint_behind_nat_is_unknown_not_wrong() -> None:
    """HE shows a public address without saying for which WAN address while the WAN has a
    private one: it may be right, so it is no outage."""
    log = Log()
    log.add(0, WanAddressObserved("em0", "192.168.1.20", True))
    log.add(1, EndpointObserved("198.51.100.4", "tunnel-info"))
    report = extract(log.envelopes, since=T0, until=T0 + 10)
    assert report.lanes["endpoint"][-1].value == "unknown"
    assert report.incidents == ()


# --- invariants over any log ---------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(envelopes(max_size=40), st.floats(0, 1), st.floats(0, 1))
def test_invariants_over_any_log(history: list[Envelope], since_at: float, length: float) -> None:
    """Whatever the log: every lane is a gapless run of spans ending with the final state's
    value; incidents are disjoint and in order, each holding its conditions; every moment
    with an outage condition lies in an incident; availability is a fraction."""
    check_invariants(history, since_at, length)


@settings(max_examples=100, deadline=None)
@given(envelopes(max_size=30), st.lists(st.floats(-3600, 3600), min_size=30, max_size=30))
def test_invariants_hold_across_clock_steps(history: list[Envelope], steps: list[float]) -> None:
    """Stamps that jump back and forth (a router's clock stepped by NTP) change nothing of
    the above: spans never run backwards, incidents stay disjoint."""
    at, stepped = T0, []
    for envelope, step in zip(history, steps, strict=False):
        at += step
        stepped.append(Envelope(envelope.seq, at, envelope.source, envelope.fact))
    check_invariants(stepped, 0.2, 0.9)


def test_a_fact_stamped_in_the_past_is_placed_after_its_predecessor() -> None:
    """The clock stepped back 1000 s between two facts: the second is placed at the first's
    time, so the outage lasts 0 s rather than minus 990."""
    log = Log()
    log.converged()
    for offset in (2000, 2001, 2002):
        log.probe(offset, "ipv6", False)
    up = log.probe(1010, "ipv6", True)
    report = extract(log.envelopes, since=T0, until=T0 + 3000)
    [incident] = report.incidents
    assert (incident.start, incident.end, incident.end_seq) == (T0 + 2000, T0 + 2002, up)
    assert all(s.start <= s.end for lane in LANES for s in report.lanes[lane])


def check_invariants(history: list[Envelope], since_at: float, length: float) -> None:
    stamps = [e.at for e in history] or [T0]
    first, last = min(stamps), max(stamps)
    since = first - 10 + since_at * (last - first + 20)
    until = since + length * (last - first + 20)
    report = extract(history, since=since, until=until)
    placed: list[float] = []
    read: list[Envelope] = []
    for envelope in history:
        placed.append(max([envelope.at, *placed[-1:]]))
        if placed[-1] > until:
            placed.pop()
            break
        read.append(envelope)
    final = fold_all(read)
    for lane in LANES:
        spans = report.lanes[lane]
        assert spans and spans[-1].open and spans[-1].end == until
        for a, b in itertools.pairwise(spans):
            assert a.end == b.start and a.end_seq == b.seq and not a.open
        assert all(span.start <= span.end for span in spans)
        assert spans[0].start <= max(since, spans[0].start)
        unseen = spans[-1].value == "stopped" or report.empty
        if not unseen:
            assert (spans[-1].value, spans[-1].label) == lane_values(final)[lane]
    for a, b in zip(report.incidents, report.incidents[1:], strict=False):
        assert a.end is not None and a.end < b.start
    for incident in report.incidents:
        for condition in incident.conditions:
            assert incident.start <= condition.start
            if incident.end is not None:
                assert condition.end is not None and condition.end <= incident.end
    for kind, (lane, bad) in CONDITIONS.items():
        for span in report.lanes[lane]:
            if span.value == bad and span.end > span.start and span.end > since:
                middle = max(span.start, since) + (span.end - max(span.start, since)) / 2
                assert any(
                    i.start <= middle <= (i.end if i.end is not None else until)
                    for i in report.incidents
                ), (kind, span)
    for family in ("ipv4", "ipv6"):
        availability = report.totals.availability(family)
        assert availability is None or 0.0 <= availability <= 1.0
        assert report.totals.up[family] + report.totals.down[family] <= until - since + 1e-6
    assert report.facts == sum(1 for p in placed if since <= p <= until)


def test_a_wrong_endpoint_is_explained_by_what_came_since_it_last_matched() -> None:
    """The link drops with the address (HE's endpoint can no longer be judged), then comes
    back with a new address (now HE's endpoint is wrong): the drop is the first change."""
    log = Log()
    log.converged()
    down = log.add(10, WanAddressObserved("em0", None, False))
    log.add(12, WanAddressObserved("em0", NEW, True))
    log.add(13, EndpointObserved(NEW, "update", for_local=NEW))
    log.add(13, TunnelObserved("gif0", True, True, NEW, HE))
    log.probe(13, "ipv4", True)
    log.probe(13, "ipv6", True)
    [incident] = extract(log.envelopes, since=T0, until=T0 + 20).incidents
    # the drop began both families' outages (nothing crossed the WAN)
    assert incident.kinds == ("endpoint-wrong", "ipv4-down", "ipv6-down")
    assert (incident.explained_by, incident.explained_at) == (down, T0 + 10)
    assert incident.time_to_repair == 3


def test_every_fact_a_decision_can_name_is_kept_for_its_why() -> None:
    """An observation that sets a view without changing a lane (HE's endpoint seen before
    the WAN) is still told when an action names it as a cause."""
    log = Log()
    seen = log.add(0, EndpointObserved(OLD, "tunnel-info"))
    log.add(1, WanAddressObserved("em0", NEW, True))
    log.add(2, ActionStarted(f"update-he-endpoint:{NEW}", "update-he-endpoint", "x", [seen]))
    report = extract(log.envelopes, since=T0, until=T0 + 10)
    assert seen in report.moments
    repeated = log.add(3, WanAddressObserved("em0", NEW, True))
    assert repeated not in extract(log.envelopes, since=T0, until=T0 + 10).moments


def test_a_cause_that_set_no_view_is_kept_when_a_decision_names_it() -> None:
    """The failed probe that tipped a count changes no lane, but a decision naming it
    brings it into the report, so its why can tell it; facts nobody names are not kept."""
    log = Log()
    log.converged()
    quiet = log.probe(10, "ipv6", False)
    named = log.probe(11, "ipv6", False)
    log.add(12, ActionStarted("restart-tunnel:x", "restart-tunnel", "ipv6 failing", [named]))
    report = extract(log.envelopes, since=T0, until=T0 + 20)
    assert named in report.moments and quiet not in report.moments
    assert report.moments[named].envelope.seq == named


def test_an_unconfirmed_failure_is_marked_so() -> None:
    """An HE update answered too late may have taken effect: its mark says so."""
    log = Log()
    log.converged()
    key = f"update-he-endpoint:{NEW}"
    log.add(10, ActionStarted(key, "update-he-endpoint", "new address"))
    log.add(40, ActionFailed(key, "update-he-endpoint", "temporary", "timeout", unconfirmed=True))
    log.add(50, ActionStarted(key, "update-he-endpoint", "new address"))
    log.add(51, ActionFailed(key, "update-he-endpoint", "temporary", "911"))
    marks = extract(log.envelopes, since=T0, until=T0 + 60).actions
    assert [(m.outcome, m.unconfirmed) for m in marks] == [
        ("temporary", True),
        ("temporary", False),
    ]


def test_an_ipv6_outage_is_told_with_its_causes_from_the_facts() -> None:
    """The daemon's verdict while IPv6 was out, each once, in order: HE's endpoint was
    behind the WAN, then the tunnel's local end; the report shows them as the cause."""
    log = Log()
    log.converged()
    log.add(10, WanAddressObserved("em0", NEW, True))
    key = f"update-he-endpoint:{NEW}"
    log.add(11, ActionStarted(key, "update-he-endpoint", "moved"))
    log.add(12, ActionSucceeded(key, "update-he-endpoint", "good"))
    log.add(12, EndpointObserved(NEW, "update", for_local=NEW))
    log.add(13, TunnelObserved("gif0", True, True, NEW, HE))
    log.probe(14, "ipv4", True)
    log.probe(14, "ipv6", True)
    [incident] = extract(log.envelopes, since=T0, until=T0 + 20).incidents
    assert incident.causes == (
        f"HE's view of our endpoint: HE has {OLD}, the WAN has {NEW}",
        f"the tunnel: its local end is {OLD}, the WAN has {NEW}",
    )
    assert incident.duration(T0 + 20) == incident.time_to_repair == 4


def test_with_several_wans_the_wan_lane_names_the_active_wan() -> None:
    """Several WANs: the report's WAN lane says which WAN the tunnel is on, and a failover is
    a new span; one WAN keeps the lane's label as it was (the address alone)."""
    log = Log()
    log.converged()
    log.add(3, WanProbed("em0", "target", True))
    log.add(10, WanChosen("em1", "em0", "failover", "em0 failed 3 probes"))
    log.add(10, WanAddressObserved("em1", NEW, True))
    report = extract(log.envelopes, since=T0, until=T0 + 20)
    labels = [(s.value, s.label) for s in report.lanes["wan"] if s.value != "unknown"]
    assert labels[-2:] == [("up", f"em0 {OLD}"), ("up", f"em1 {NEW}")]
    one = Log()
    one.converged()
    single = extract(one.envelopes, since=T0, until=T0 + 20)
    assert [(s.value, s.label) for s in single.lanes["wan"] if s.value != "unknown"] == [
        ("up", OLD)
    ]
