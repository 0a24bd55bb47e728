"""Recording news only: the recorder counts observations that change nothing, and the plan is
the same at every point as when every observation is recorded (the claim the daemon rests on)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.eventlog import EventLog
from reconciler.history import load_state
from reconciler.model import facts as f
from reconciler.model.desired import desired
from reconciler.model.plan import Plan, plan
from reconciler.model.state import ObservedState
from reconciler.recorder import Recorder
from reconciler.statedir import events_dir
from tests.model.world import make_config
from tests.strategies import action_facts, observation_facts

T0 = 1_700_000_000.0
CONFIG = make_config(digest="c1" * 32)  # the digest the strategies' ConfigLoaded may carry
IPV6 = f.ProbeObserved("ipv6", "2001:db8::53", True, rtt_ms=12.0)
WAN = f.WanAddressObserved("em0", "203.0.113.7", True, addresses=("203.0.113.7",))


@contextmanager
def _log_dir() -> Iterator[Path]:
    # tmpfs when there is one: hundreds of examples, each append an fdatasync.
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = Path(tempfile.mkdtemp(prefix="rc-news-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _source(fact: object) -> str:
    if isinstance(fact, f.ProbeObserved):
        return f"observer:probe:{fact.family}"
    if isinstance(fact, f.WanAddressObserved | f.TunnelObserved | f.HostnameFileObserved):
        return f"observer:{type(fact).__name__}"
    if isinstance(fact, f.EndpointObserved):
        return "observer:he"
    return "executor"


def _renumbered(current: Plan, seqs: dict[int, int]) -> Plan:
    """The plan with every cause renumbered from the full log's seqs to the news log's (a
    counted fact's to the recorded one it repeated)."""

    def action(a: object) -> object:
        return attrs.evolve(a, causes=tuple(seqs[c] for c in a.causes))  # type: ignore[attr-defined]

    return Plan(
        actions=tuple(action(a) for a in current.actions),  # type: ignore[misc]
        held=tuple(attrs.evolve(h, action=action(h.action)) for h in current.held),
        now=current.now,
    )


def _plan(state: ObservedState, now: float) -> Plan:
    return plan(desired(CONFIG, state), state, now)


# A small world whose facts recur: the quiet stretches a real log is made of, and every turn
# the planner cares about (a family going down and recovering under thresholds above 1, a
# tunnel rebuilt under a proven endpoint, HE's endpoint learnt without its WAN address).
A, B, HE = "203.0.113.7", "203.0.113.9", "198.51.100.1"
C = "192.168.1.20"  # behind NAT: only the tunnel can prove what HE has
V4, V6 = "198.51.100.53", "2001:db8::53"
_WORLD: list[f.Fact] = [
    f.WanAddressObserved("em0", A, True, addresses=(A,)),
    f.WanAddressObserved("em0", B, True, addresses=(B,)),
    f.WanAddressObserved("em0", A, False, addresses=(A,)),
    f.WanAddressObserved("em0", None, True),
    f.WanAddressObserved("em0", C, True, addresses=(C,)),
    f.TunnelObserved("gif0", True, True, C, HE),
    f.ActionStarted(f"restart-tunnel:{C}->{HE}", "restart-tunnel", "test"),
    f.ProbeObserved("ipv4", V4, True, 3.0),
    f.ProbeObserved("ipv4", V4, False, detail="timeout"),
    f.ProbeObserved("ipv6", V6, True, 4.0),
    f.ProbeObserved("ipv6", V6, True, 5.0),
    f.ProbeObserved("ipv6", V6, False, detail="timeout"),
    f.TunnelObserved("gif0", True, True, A, HE),
    f.TunnelObserved("gif0", True, True, B, HE),
    f.TunnelObserved("gif0", True, False, A, HE),
    f.TunnelObserved("gif0", False, False, None, None),
    f.HostnameFileObserved("/etc/hostname.gif0", "a" * 64),
    f.HostnameFileObserved("/etc/hostname.gif0", None),
    f.EndpointObserved(A, "tunnel-info"),
    f.EndpointObserved(B, "tunnel-info"),
    f.EndpointObserved(None, "tunnel-info"),
    f.EndpointObserved(A, "update", for_local=A),
    f.ConfigLoaded("c1" * 32, "/etc/reconciler.conf", fail_after={"ipv4": 2, "ipv6": 2},
                   recover_after={"ipv4": 2, "ipv6": 3}),
    f.ConfigLoaded("c1" * 32, "/etc/reconciler.conf", fail_after={"ipv4": 2, "ipv6": 2},
                   recover_after={"ipv4": 3, "ipv6": 2}),
    f.ConfigLoaded("c1" * 32, "/etc/reconciler.conf", fail_after={"ipv4": 1, "ipv6": 1},
                   recover_after={"ipv4": 1, "ipv6": 1}),
    f.ActionStarted(f"restart-tunnel:{A}->{HE}", "restart-tunnel", "test"),
    f.ActionSucceeded(f"restart-tunnel:{A}->{HE}", "restart-tunnel"),
    f.ActionStarted(f"restart-tunnel:{B}->{HE}", "restart-tunnel", "test"),
    f.ActionStarted("restart-wan:em0", "restart-wan", "test"),
    f.ActionFailed("restart-wan:em0", "restart-wan", "temporary", "exit 1"),
    f.ActionStarted(f"update-he-endpoint:{A}", "update-he-endpoint", "test"),
    f.ActionSucceeded(f"update-he-endpoint:{A}", "update-he-endpoint"),
    f.ActionFailed(f"update-he-endpoint:{B}", "update-he-endpoint", "temporary", "abuse",
                   retry_after=3600.0),
    f.ActionSucceeded(f"reload-pf:{A}", "reload-pf"),
]  # fmt: skip


@st.composite
def _histories(draw: st.DrawFn) -> list[tuple[float, f.Fact]]:
    generated = st.one_of(observation_facts, action_facts)
    pool = draw(st.lists(st.sampled_from(_WORLD) | generated, min_size=1, max_size=10))
    runs = draw(st.lists(st.tuples(st.sampled_from(pool), st.integers(1, 5)), min_size=4,
                         max_size=30))  # fmt: skip
    picks = [fact for fact, times in runs for _ in range(times)]
    steps = draw(st.lists(st.sampled_from([0.0, 1.0, 30.0, 400.0, 5000.0]),
                          min_size=len(picks), max_size=len(picks)))  # fmt: skip
    at, history = T0, []
    for fact, step in zip(picks, steps, strict=True):
        at += step
        history.append((at, fact))
    return history


def _assert_same_plans(history: list[tuple[float, f.Fact]], interval: float) -> None:
    """After each fact, and at times after it, the plan over the news-only log equals the
    plan over the log of everything, causes renumbered."""
    now = [T0]
    with (
        _log_dir() as base,
        EventLog.open(base / "all") as all_log,
        EventLog.open(events_dir(base / "news")) as news_log,
    ):
        everything = Recorder(all_log, lambda: now[0])
        news = Recorder(news_log, lambda: now[0], quiet_summary_interval=interval)
        seqs: dict[int, int] = {}
        last_kept: dict[str, int] = {}  # per source, the seq of its last recorded fact
        for at, fact in history:
            now[0] = at
            full = everything.record(fact, _source(fact))
            kept = news.record(fact, _source(fact))
            if kept.seq:
                seqs[full.seq] = last_kept[kept.source] = kept.seq
            else:  # counted: it repeated the last recorded fact of its source
                seqs[full.seq] = last_kept[kept.source]
            for later in (at, at + 31.0, at + 700.0, at + 90000.0):
                expected = _renumbered(_plan(everything.state, later), seqs)
                assert _plan(news.state, later) == expected
            # and the same outages (reconciler.model.outages), so the report of the news log
            # tells the outages the hooks were told
            for family in ("ipv4", "ipv6"):
                mine, all_ = news.state.probe(family), everything.state.probe(family)
                assert (mine.outage_since, mine.failing_since) == (
                    all_.outage_since,
                    all_.failing_since,
                )
                assert seqs.get(all_.outage_seq, 0) == mine.outage_seq
        # The news log is the truth the news recorder folded: start-up reads the same state.
        assert load_state(base / "news")[0] == news.state


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_histories(), st.sampled_from([60.0, 3600.0]))
def test_recording_news_plans_exactly_as_recording_everything(
    history: list[tuple[float, f.Fact]], interval: float
) -> None:
    """For any sequence of facts, recording news plans exactly as recording everything."""
    _assert_same_plans(history, interval)


_SLOW_RECOVERY = [  # IPv4 recovers only after three successes: the ones between count
    f.ConfigLoaded("c1" * 32, "/etc/reconciler.conf", fail_after={"ipv4": 2, "ipv6": 2},
                   recover_after={"ipv4": 3, "ipv6": 2}),
    f.WanAddressObserved("em0", A, True, addresses=(A,)),
    *[f.ProbeObserved("ipv4", V4, False, detail="timeout")] * 2,
    *[f.ProbeObserved("ipv4", V4, True, 3.0)] * 4,
]  # fmt: skip
_PROOF_ACROSS_A_REBUILT_TUNNEL = [  # behind NAT: IPv6 across the rebuilt tunnel proves HE
    f.WanAddressObserved("em0", C, True, addresses=(C,)),
    f.TunnelObserved("gif0", True, True, C, HE),
    f.ProbeObserved("ipv6", V6, True, 4.0),
    f.ActionStarted(f"restart-tunnel:{C}->{HE}", "restart-tunnel", "test"),
    f.TunnelObserved("gif0", True, True, C, HE),
    *[f.ProbeObserved("ipv6", V6, True, 4.0)] * 2,
    f.EndpointObserved(A, "tunnel-info"),
]


_SEEN_AGAIN_AFTER_AN_UPDATE = [  # HE's info repeats itself, then contradicts an update
    f.WanAddressObserved("em0", B, True, addresses=(B,)),
    *[f.EndpointObserved(A, "tunnel-info")] * 2,
    f.ActionStarted(f"update-he-endpoint:{B}", "update-he-endpoint", "test"),
    f.ActionSucceeded(f"update-he-endpoint:{B}", "update-he-endpoint"),
    *[f.EndpointObserved(A, "tunnel-info")] * 2,
]


_SEEN_AGAIN_AFTER_AN_UNKNOWN_UPDATE = [  # HE's word repeated after an update that may have
    # changed it: the repeat says HE still has this address (found by the property in CI)
    f.EndpointObserved(None, "update", for_local=A),
    f.WanAddressObserved("em0", A, True, addresses=(A,)),
    f.ActionStarted(f"update-he-endpoint:{B}", "update-he-endpoint", "test"),
    f.EndpointObserved(None, "update", for_local=A),
]


@pytest.mark.parametrize(
    "story",
    [
        _SLOW_RECOVERY,
        _PROOF_ACROSS_A_REBUILT_TUNNEL,
        _SEEN_AGAIN_AFTER_AN_UPDATE,
        _SEEN_AGAIN_AFTER_AN_UNKNOWN_UPDATE,
    ],
    ids=["recovery", "proof", "endpoint-again", "endpoint-again-after-unknown"],
)
def test_recording_news_plans_as_everything_in_the_delicate_stories(story: list[f.Fact]) -> None:
    """The turns the quiet rule must not miss: a success that brings a family nearer to
    recovery, the first success after the tunnel was observed anew, HE's endpoint seen
    again after an update HE accepted (it says HE did not keep it), and seen again after an
    update of unknown outcome went out (it says HE did not take that one)."""
    _assert_same_plans([(T0 + 30.0 * i, fact) for i, fact in enumerate(story)], 3600.0)


def test_quiet_observations_are_counted_and_summarised_once_an_hour(tmp_path: Path) -> None:
    """A quiet hour of WAN observations every 30 s and IPv6 probes every 60 s is four facts:
    the first of each source, then one summary per source once an hour has passed since
    the first observation counted (at 30 s)."""
    now = [T0]
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, lambda: now[0], quiet_summary_interval=3600.0)
        for tick in range(122):  # 0 .. 3630 s
            now[0] = T0 + 30.0 * tick
            recorder.record(WAN, "observer:wan")
            if tick % 2 == 0:
                recorder.record(attrs.evolve(IPV6, rtt_ms=10.0 + tick), "observer:probe:ipv6")
        records = [record for _, record in log.read(1)]
    assert [r["t"] for r in records] == [
        "wan-address-observed",
        "probe-observed",
        "observations-counted",
        "observations-counted",
    ]
    counted = {r["src"]: r["d"] for r in records[2:]}
    assert counted["observer:probe:ipv6"] == {
        "observed": "probe-observed", "count": 60, "first_at": T0 + 60.0, "last_at": T0 + 3600.0,
    }  # fmt: skip
    assert counted["observer:wan"]["count"] == 121


def test_news_goes_in_at_once_after_the_counts_so_far(tmp_path: Path) -> None:
    """A probe failure is recorded at once, right after the summary of what came before it,
    and so is the first success after it (the family is recovering)."""
    now = [T0]
    failed = f.ProbeObserved("ipv6", "2001:db8::53", False, detail="timeout")
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, lambda: now[0], quiet_summary_interval=3600.0)
        for step, fact in enumerate([IPV6, IPV6, IPV6, failed, IPV6, IPV6]):
            now[0] = T0 + 60.0 * step
            recorder.record(fact, "observer:probe:ipv6")
        kinds = [(r["t"], r["d"].get("ok"), r["d"].get("count")) for _, r in log.read(1)]
    assert kinds == [
        ("probe-observed", True, None),
        ("observations-counted", None, 2),
        ("probe-observed", False, None),
        ("probe-observed", True, None),
    ]


def test_a_changed_address_list_is_recorded_though_the_state_ignores_it(tmp_path: Path) -> None:
    """Every change of the WAN's addresses is recorded, a secondary one included."""
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, lambda: T0, quiet_summary_interval=3600.0)
        recorder.record(WAN, "observer:wan")
        assert recorder.record(WAN, "observer:wan").seq == 0
        second = attrs.evolve(WAN, addresses=("203.0.113.7", "203.0.113.99"))
        assert recorder.record(second, "observer:wan").seq == 3  # after the count (#2)
        assert [r["t"] for _, r in log.read(1)][1] == "observations-counted"


def test_counts_are_recorded_before_the_final_fact(tmp_path: Path) -> None:
    """At the stop the counts so far go in before DaemonStopped; nothing is lost."""
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, lambda: T0, quiet_summary_interval=3600.0)
        for _ in range(5):
            recorder.record(WAN, "observer:wan")
        recorder.record_final(lambda _state: f.DaemonStopped("SIGTERM"), "daemon")
        kinds = [(r["t"], r["d"].get("count")) for _, r in log.read(1)]
    assert kinds == [
        ("wan-address-observed", None),
        ("observations-counted", 4),
        ("daemon-stopped", None),
    ]


def test_interval_zero_records_every_observation(tmp_path: Path) -> None:
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, lambda: T0)
        for _ in range(3):
            recorder.record(WAN, "observer:wan")
        assert log.last_seq == 3
