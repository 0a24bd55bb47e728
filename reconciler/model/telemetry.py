"""Telemetry: the notifications and the counters a stream of facts adds up to.

`Telemetry.observe(before, envelope, after)` steps the notification tracker
(reconciler.model.notices) and counts what Prometheus is shown as counters and histograms:
actions by action and result, HE's answers, probe round-trip times, times to repair, outage
seconds, notifications and hook runs. The daemon feeds it every fact it records; `reconciler
metrics` feeds it the log. Counters start afresh at every `daemon-started` fact, as a
process's counters do (Prometheus sees a reset and the new start time), so the command
shows exactly what the running daemon exports. No I/O: time comes with the facts.
"""

from __future__ import annotations

import bisect
from collections import Counter

import attrs
from attrs import define, field

from reconciler.model.config import ReconcileConfig
from reconciler.model.facts import (
    ActionFailed,
    ActionSucceeded,
    DaemonStarted,
    Envelope,
    HookRan,
    ProbeObserved,
)
from reconciler.model.notices import Notice, NoticeTracker, he_answer, track, tracker_for
from reconciler.model.state import ObservedState

__all__ = ["REPAIR_BUCKETS", "RTT_BUCKETS", "Histogram", "Telemetry"]

# Seconds. Pings across a tunnel take milliseconds to a few hundred; repairs take under a
# second with kernel notices, a probe interval or more without, hours when HE holds us.
RTT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REPAIR_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


@define
class Histogram:
    """Observations in buckets (`counts[i]`: values <= bounds[i]; the last: above them all)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(factory=list)
    total: float = 0.0

    def __attrs_post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus shows them, ending with +Inf."""
        running, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts), self.total)


@define
class Telemetry:
    """The notification tracker and the counters since the last `daemon-started` fact."""

    tracker: NoticeTracker = field(factory=NoticeTracker)
    started_at: float | None = None
    version: str | None = None
    actions: Counter[tuple[str, str]] = field(factory=Counter)  # (action, result)
    he_answers: Counter[str] = field(factory=Counter)
    notices: Counter[str] = field(factory=Counter)  # by event
    hook_runs: Counter[str] = field(factory=Counter)  # by outcome
    hook_dropped: int = 0  # as the hook-ran facts report them
    last_rtt: dict[str, float] = field(factory=dict)  # seconds, by family
    rtt: dict[str, Histogram] = field(factory=dict)
    repairs: Histogram = field(factory=lambda: Histogram(REPAIR_BUCKETS))
    outage_seconds: float = 0.0  # outages repaired since the start (their part after it)

    @classmethod
    def starting_on(cls, state: ObservedState, reconcile: ReconcileConfig) -> Telemetry:
        """Telemetry for a daemon (or a fold) whose past is `state`."""
        return cls(tracker_for(state, reconcile.restart_limit, reconcile.restart_window))

    def observe(
        self, before: ObservedState, envelope: Envelope, after: ObservedState
    ) -> tuple[Notice, ...]:
        """Count `envelope` and return the notifications it causes."""
        fact = envelope.fact
        if isinstance(fact, DaemonStarted):
            self._restart(before, envelope.at, fact.version)
        self.tracker, notices = track(self.tracker, before, envelope, after)
        if isinstance(fact, ProbeObserved):
            if fact.ok and fact.rtt_ms is not None:
                seconds = fact.rtt_ms / 1000.0
                self.last_rtt[fact.family] = seconds
                histogram = self.rtt.get(fact.family)
                if histogram is None:
                    histogram = self.rtt[fact.family] = Histogram(RTT_BUCKETS)
                histogram.observe(seconds)
        elif isinstance(fact, ActionSucceeded):
            self.actions[(fact.action, "ok")] += 1
            answer = he_answer(fact.action, fact.message, succeeded=True)
            if answer is not None:
                self.he_answers[answer] += 1
        elif isinstance(fact, ActionFailed):
            self.actions[(fact.action, fact.kind)] += 1
            answer = he_answer(fact.action, fact.message, succeeded=False)
            if answer is not None:
                self.he_answers[answer] += 1
        elif isinstance(fact, HookRan):
            self.hook_runs[fact.outcome] += 1
            self.hook_dropped += fact.dropped
        for notice in notices:
            self.notices[notice.event] += 1
            if notice.event == "repaired" and notice.outage_seconds is not None:
                self.repairs.observe(notice.outage_seconds)
                since = envelope.at - notice.outage_seconds
                # max(0, ...): a clock stepped back must not make a counter go down
                self.outage_seconds += max(0.0, envelope.at - max(since, self.started_at or since))
        return notices

    def outage_total(self, now: float) -> float:
        """Outage seconds since the start, the one under way (if any) counted up to `now`."""
        since = self.tracker.outage_since
        if since is None:
            return self.outage_seconds
        return self.outage_seconds + max(0.0, now - max(since, self.started_at or since))

    def dropped(self, count: int) -> None:
        """Count notifications a full hook queue dropped (they reach the log with the next
        hook run, which counts them again only in a fold that starts afresh)."""
        self.hook_dropped += count

    def copy(self) -> Telemetry:
        """A copy to render from while the original goes on counting."""
        return Telemetry(
            tracker=self.tracker,
            started_at=self.started_at,
            version=self.version,
            actions=Counter(self.actions),
            he_answers=Counter(self.he_answers),
            notices=Counter(self.notices),
            hook_runs=Counter(self.hook_runs),
            hook_dropped=self.hook_dropped,
            last_rtt=dict(self.last_rtt),
            rtt={family: h.copy() for family, h in self.rtt.items()},
            repairs=self.repairs.copy(),
            outage_seconds=self.outage_seconds,
        )

    def _restart(self, before: ObservedState, at: float, version: str) -> None:
        # Counters start afresh, as a process's do.
        tracker = self.tracker
        fresh = Telemetry(tracker_for(before, tracker.restart_limit, tracker.restart_window))
        for name in attrs.fields_dict(Telemetry):
            setattr(self, name, getattr(fresh, name))
        self.started_at, self.version = at, version
