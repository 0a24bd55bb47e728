"""Outages and what was done about them, extracted from facts: the substance of `reconciler report`.

`extract(envelopes, since=..., until=...)` folds the facts with the same `fold` as `replay`
and the daemon (one source of truth) and turns the states into:

- **lanes**: for WAN, the IPv4 and IPv6 probe verdicts, the tunnel and HE's endpoint, the
  spans during which each kept one value (`Segment`), each naming the fact that began it;
- **action marks**: every action started, with its reason, causes and outcome;
- **incidents**: one per outage, a stretch during which IPv4 or IPv6 was out (an outage of
  the family as reconciler.model.outages defines it for the notifications and metrics too:
  from the first failed probe of the streak that brought the verdict down, or for IPv6 a
  new WAN address, to the probe after which the verdict is up again) or HE's endpoint was
  wrong for our WAN address; overlapping conditions are one incident. Each names the first
  change that explains it, the actions taken, the daemon's verdict while IPv6 was out (its
  causes, from model.verdict), and its time to repair: its duration, from the outage's start
  to its end (the same figure the hooks and the metrics give);
- **totals** for the window and for each UTC day: a family's down time is the time of its
  outages (with a verdict), its up time the rest of the time with a verdict.

Facts before `since` are folded (the state at `since` is exact) but only matter for what was
already so when the window opened: an outage that began before it keeps its real start. A
window without any fact is all "unknown": nothing says the state before it still held.
While the daemon was stopped nothing was observed: every lane is "stopped" then, and
availability counts only the time with a verdict. Pure: no I/O, time is passed in;
unknown facts only move the sequence number, as in the fold.

Time follows the log's order, as in `replay`: a router without a real-time clock records
facts stamped in the past until NTP steps its clock, so stamps need not rise. A fact stamped
before the one recorded ahead of it is placed at that one's time (a span never runs
backwards); the window opens at the first fact stamped at or after `since` and closes before
the first placed after `until`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs
from attrs import field, frozen

from reconciler.model.actions import UpdateHeEndpoint
from reconciler.model.addresses import is_public_ipv4
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    DaemonStarted,
    DaemonStopped,
    Envelope,
    UnknownFact,
)
from reconciler.model.outages import FAMILIES, TUNNEL_FAMILY, begun, ended, under_way
from reconciler.model.state import FoldErrorHandler, ObservedState, fold
from reconciler.model.verdict import down_reason

__all__ = [
    "CONDITIONS",
    "DAY",
    "LANES",
    "ActionMark",
    "Condition",
    "Incident",
    "Moment",
    "Report",
    "Segment",
    "Totals",
    "endpoint_verdict",
    "extract",
    "lane_values",
]

DAY = 86_400.0
LANES = ("wan", "ipv4", "ipv6", "tunnel", "endpoint")
# condition kind -> (lane, the lane value that makes it an outage)
CONDITIONS: Mapping[str, tuple[str, str]] = {
    "ipv4-down": ("ipv4", "down"),
    "ipv6-down": ("ipv6", "down"),
    "endpoint-wrong": ("endpoint", "wrong"),
}
# Lanes whose changes can explain an outage (the probe verdicts are its symptoms).
_CAUSE_LANES = ("wan", "tunnel", "endpoint")
_GOOD = ("up", "matching")
_RECENT_KEPT = 256
# Changes seen before the window, kept to explain an outage the window opens in.
_EARLIER_CHANGES_KEPT = 16

Outcome = Literal["ok", "temporary", "permanent", "in-flight", "pending"]


@frozen
class Segment:
    """One lane holding one value from `start` to `end`.

    `start` may lie before the window (the value was already so when it opened); `end` is
    the window's end while `open`. `seq` is the fact that began it (0: none recorded),
    `end_seq` the one that ended it (0 while open)."""

    lane: str
    value: str
    label: str
    start: float
    end: float
    seq: int
    end_seq: int = 0
    open: bool = False


@frozen
class Moment:
    """A fact that changed a lane or is an action, with the states around it (so that a
    renderer can tell it in replay's words)."""

    envelope: Envelope
    before: ObservedState
    after: ObservedState


@frozen
class ActionMark:
    """An action started in the window, and how it ended (`outcome_seq` 0: no outcome yet;
    "in-flight" when the daemon stopped or started again without one: a crash shows)."""

    seq: int
    at: float
    key: str
    kind: str
    reason: str
    causes: tuple[int, ...]
    outcome: Outcome = "pending"
    outcome_seq: int = 0
    outcome_at: float | None = None
    message: str = ""
    unconfirmed: bool = False  # a failure that may have taken effect (an HE update unanswered)


@frozen
class Condition:
    """One of the things that make an outage, from `start` to `end` (None: still so at the
    window's end). `last_good` is when it was last seen fine before (the last successful
    probe of the family; when it last matched for the endpoint; None when never)."""

    kind: str
    start: float
    end: float | None
    seq: int
    end_seq: int
    last_good: float | None
    # IPv6's: why it was down, as the facts told it while it lasted (model.verdict), each
    # "title: detail" once, in order: the first layer broken, then what kept it so
    causes: tuple[str, ...] = ()


@frozen
class Incident:
    """One outage: overlapping conditions merged. `end` None: still open at the window's end."""

    start: float
    end: float | None
    seq: int
    end_seq: int
    conditions: tuple[Condition, ...]
    explained_by: int | None  # seq of the first change that explains it
    explained_at: float | None
    actions: tuple[int, ...]  # seqs of the ActionMarks taken for it
    time_to_repair: float | None  # None while open

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted({c.kind for c in self.conditions}))

    @property
    def causes(self) -> tuple[str, ...]:
        """Why IPv6 was down, from the facts (the daemon's verdicts while it lasted)."""
        return tuple(cause for c in self.conditions for cause in c.causes)

    def duration(self, until: float) -> float:
        """Seconds from start to end, or to `until` while open."""
        return (self.end if self.end is not None else until) - self.start


@frozen
class Totals:
    """Figures for a span (the window, or one UTC day of it)."""

    start: float
    end: float
    # family -> seconds with a verdict (up or down) outside / inside the family's outages
    up: Mapping[str, float]
    down: Mapping[str, float]
    outages: int  # incidents that began in the span (or were open when it began)
    repairs: tuple[float, ...]  # times to repair of the incidents that ended in the span
    he_updates: int
    he_updates_ok: int

    def availability(self, family: str) -> float | None:
        """Fraction of the time with a verdict that the family was up; None without any."""
        up, down = self.up.get(family, 0.0), self.down.get(family, 0.0)
        return up / (up + down) if up + down > 0 else None

    @property
    def mean_repair(self) -> float | None:
        return sum(self.repairs) / len(self.repairs) if self.repairs else None

    @property
    def worst_repair(self) -> float | None:
        return max(self.repairs) if self.repairs else None


@frozen
class Report:
    since: float
    until: float
    lanes: Mapping[str, tuple[Segment, ...]]
    actions: tuple[ActionMark, ...]
    incidents: tuple[Incident, ...]
    totals: Totals
    days: tuple[Totals, ...]
    moments: Mapping[int, Moment] = field(hash=False)  # seq -> notable fact
    facts: int  # facts in the window
    unknown: int  # of which the fold could not type or take
    first_seq: int  # first and last seq in the window (0: none)
    last_seq: int

    @property
    def empty(self) -> bool:
        return self.facts == 0


def endpoint_verdict(state: ObservedState) -> str:
    """ "matching", "wrong" or "unknown": whether HE's endpoint is the one for our WAN address.

    Unknown while either is unknown, and behind NAT when HE showed an address without saying
    for which WAN address (ours is private: HE's can be right or wrong)."""
    wan, endpoint = state.wan, state.endpoint
    if endpoint is None or wan is None or not wan.exists or wan.address is None:
        return "unknown"
    if endpoint.for_local is not None:
        return "matching" if endpoint.for_local == wan.address else "wrong"
    if endpoint.address is None:
        return "unknown"
    if endpoint.address == wan.address:
        return "matching"
    return "wrong" if is_public_ipv4(wan.address) else "unknown"


def lane_values(state: ObservedState, running: bool = True) -> dict[str, tuple[str, str]]:
    """Each lane's (value, label) in `state`; every lane is "stopped" while the daemon is
    not `running` (nothing was observed: the last values are not known to hold)."""
    if not running:
        return dict.fromkeys(LANES, ("stopped", ""))
    wan = state.wan
    if wan is None:
        wan_value = ("unknown", "")
    elif not wan.exists:
        wan_value = ("missing", wan.interface)
    elif not wan.link_up:
        wan_value = ("link-down", wan.address or "")
    elif wan.address is None:
        wan_value = ("no-address", "")
    else:
        wan_value = ("up", wan.address)
    if wan is not None and state.failover is not None:
        # Several WANs: the lane says which one the tunnel is on (a switch is a new span).
        value, label = wan_value
        wan_value = (value, f"{wan.interface} {label}".strip())
    tunnel = state.tunnel
    if tunnel is None:
        tunnel_value = ("unknown", "")
    elif not tunnel.exists:
        tunnel_value = ("missing", tunnel.interface)
    else:
        tunnel_value = ("up" if tunnel.up else "down", tunnel.local or "")
    endpoint = state.endpoint
    he_label = (endpoint.address or endpoint.for_local or "") if endpoint is not None else ""
    values = {
        "wan": wan_value,
        "tunnel": tunnel_value,
        "endpoint": (endpoint_verdict(state), he_label),
    }
    for family in ("ipv4", "ipv6"):
        probe = state.probe(family)
        # Down while its outage is under way (outages: the WAN's change begins it before
        # any probe can fail), so the lane shows what the availability counts.
        values[family] = ("down" if probe.outage_since is not None else probe.status, "")
    return values


def extract(
    envelopes: Iterable[Envelope],
    *,
    since: float,
    until: float,
    start: ObservedState | None = None,
    on_error: FoldErrorHandler | None = None,
) -> Report:
    """The report of [since, until] from `envelopes` (in log order) folded onto `start`.

    Envelopes may begin before `since` (they make the state at `since`); those after
    `until` end the extraction."""
    builder = _Builder(since, until, start if start is not None else ObservedState())
    state = builder.state
    placed = -math.inf
    for envelope in envelopes:
        placed = max(placed, envelope.at)
        if placed > until:
            break
        after = fold(state, envelope, on_error)
        builder.step(state, envelope, after, placed)
        state = after
    return builder.finish()


class _Builder:
    """The extraction's running part: lanes as they change, marks, and context."""

    def __init__(self, since: float, until: float, start: ObservedState) -> None:
        self.since, self.until = since, until
        self.state = start
        self.running = True
        self.in_window = False
        self.facts = self.unknown = 0
        self.first_seq = self.last_seq = 0
        self.segments: dict[str, list[Segment]] = {lane: [] for lane in LANES}
        self.current: dict[str, Segment] = {}
        for lane, (value, label) in lane_values(start).items():
            began, seq = _began(start, lane)
            self.current[lane] = Segment(lane, value, label, began, until, seq)
        self.marks: list[ActionMark] = []
        self.open_marks: dict[str, int] = {}  # action key -> index in marks
        self.moments: dict[int, Moment] = {}
        # The last facts, whatever they were: a decision may name one that set no view
        # (the failed probe that tipped a count), and it is told with the decision.
        self.recent: deque[Moment] = deque(maxlen=_RECENT_KEPT)
        self.earlier_changes: deque[Segment] = deque(maxlen=_EARLIER_CHANGES_KEPT)
        self.changes: list[Segment] = []  # cause-lane changes in the window
        self.last_ok: dict[str, float | None] = {"ipv4": None, "ipv6": None}
        self.last_good: dict[str, float | None] = {}  # condition kind#seq -> its last_good
        self.left_good: dict[str, float] = {}  # lane -> when it last left a good value
        # The families' outages (reconciler.model.outages), placed on the report's time line.
        self.outages: list[Condition] = []
        self.open_outages: dict[str, Condition] = {}
        self.failing_placed: dict[str, tuple[int, float]] = {}  # family -> (seq, placed at)
        self.causes: list[str] = []  # the open IPv6 outage's verdicts so far
        for family in FAMILIES:
            running = under_way(start, family)
            if running is not None:
                self.open_outages[family] = Condition(
                    f"{family}-down", running.start, None, running.seq, 0, None
                )

    def step(
        self, before: ObservedState, envelope: Envelope, after: ObservedState, at: float
    ) -> None:
        """One fact, placed at `at` (its stamp, or its predecessor's after a clock step)."""
        fact = envelope.fact
        if not self.in_window and at >= self.since:
            self._enter_window(after)
        if isinstance(fact, DaemonStopped):
            self.running = False
        elif isinstance(fact, DaemonStarted):
            self.running = True
            self._close_marks_without_outcome()
        elif not isinstance(fact, UnknownFact):
            self.running = True
        self._move_outages(before, after, envelope.seq, at)
        self._tell_cause(after)
        changed = self._move_lanes(after, envelope.seq, at)
        if self.in_window:
            self.facts += 1
            self.unknown += isinstance(fact, UnknownFact)
            self.first_seq = self.first_seq or envelope.seq
            self.last_seq = envelope.seq
            if (
                changed
                or _sets_a_view(before, after)
                or isinstance(fact, ActionStarted | ActionSucceeded | ActionFailed)
            ):
                self.moments[envelope.seq] = Moment(envelope, before, after)
            if isinstance(fact, ActionStarted):
                self._keep_causes(fact.causes)
            self._mark_action(envelope, at)
        elif changed or _sets_a_view(before, after):
            self.moments[envelope.seq] = Moment(envelope, before, after)
        self.recent.append(Moment(envelope, before, after))
        probe = getattr(fact, "family", None)
        if probe in self.last_ok and getattr(fact, "ok", False) is True:
            self.last_ok[probe] = at
        self.state = after

    def _keep_causes(self, causes: Iterable[int]) -> None:
        wanted = {seq for seq in causes if seq not in self.moments}
        for moment in self.recent:
            if moment.envelope.seq in wanted:
                self.moments[moment.envelope.seq] = moment

    def _enter_window(self, state: ObservedState) -> None:
        """The first fact in the window: what came before is only context from now on."""
        self.in_window = True
        # Keep only the earlier moments the state at `since` still rests on.
        referenced = {_began(state, lane)[1] for lane in LANES} | set(_view_seqs(state))
        referenced |= {change.seq for change in self.earlier_changes}
        self.moments = {s: m for s, m in self.moments.items() if s in referenced}
        for lane, segments in self.segments.items():
            self.segments[lane] = [s for s in segments if s.end >= self.since]

    def _move_lanes(self, after: ObservedState, seq: int, at: float) -> bool:
        changed = False
        for lane, (value, label) in lane_values(after, self.running).items():
            old = self.current[lane]
            if (old.value, old.label) == (value, label):
                continue
            changed = True
            if old.value in _GOOD:
                self.left_good[lane] = at
            # A family's lane is down from its outage's start (outages: an earlier failed
            # probe, or the WAN's change), as the totals count it, not from the verdict.
            outage = self.open_outages.get(lane) if value == "down" else None
            moved, by = at, seq
            if outage is not None and max(old.start, outage.start) < at:
                moved, by = max(old.start, outage.start), outage.seq
            ended = Segment(lane, old.value, old.label, old.start, moved, old.seq, by)
            if ended.end >= self.since:
                self.segments[lane].append(ended)
            new = Segment(lane, value, label, moved, self.until, by)
            self.current[lane] = new
            if lane in _CAUSE_LANES and old.value not in ("unknown", "stopped"):
                (self.changes if self.in_window else self.earlier_changes).append(new)
            if lane == "endpoint" and value == "wrong" and old.value != "wrong":
                self.last_good[_key("endpoint-wrong", seq)] = self.left_good.get(lane)
        return changed

    def _move_outages(
        self, before: ObservedState, after: ObservedState, seq: int, at: float
    ) -> None:
        """Begin and end the families' outages as the fold says, at placed times: an outage
        that begins at an earlier failed probe starts where that probe was placed."""
        for family in FAMILIES:
            if after.probe(family).failing_seq == seq:
                self.failing_placed[family] = (seq, at)
            stopped = ended(before, after, family, seq, at)
            if stopped is not None:
                running = self.open_outages.pop(family)
                self.outages.append(
                    Condition(
                        running.kind,
                        running.start,
                        max(at, running.start),
                        running.seq,
                        seq,
                        running.last_good,
                        tuple(self.causes) if family == TUNNEL_FAMILY else (),
                    )
                )
            started = begun(before, after, family)
            if started is not None:
                placed = self.failing_placed.get(family)
                if started.seq == seq:
                    start = at
                elif placed is not None and placed[0] == started.seq:
                    start = placed[1]
                else:
                    start = started.start
                self.open_outages[family] = Condition(
                    f"{family}-down", start, None, started.seq, 0, self.last_ok[family]
                )
                if family == TUNNEL_FAMILY:
                    self.causes = []

    def _tell_cause(self, after: ObservedState) -> None:
        """The daemon's verdict while IPv6 is out: each new one joins the outage's causes."""
        if TUNNEL_FAMILY not in self.open_outages:
            return
        reason = down_reason(after)
        waiting = reason is not None and reason.check == "ipv6-path"
        if reason is None or (waiting and after.probe("ipv6").consecutive_failed == 0):
            return  # all looks mended: only a probe is awaited, no cause to tell
        told = f"{reason.title}: {reason.detail}"
        if not self.causes or self.causes[-1] != told:
            self.causes.append(told)

    def _mark_action(self, envelope: Envelope, at: float) -> None:
        fact = envelope.fact
        if isinstance(fact, ActionStarted):
            self.open_marks[fact.key] = len(self.marks)
            self.marks.append(
                ActionMark(
                    envelope.seq,
                    at,
                    fact.key,
                    fact.action,
                    fact.reason,
                    tuple(fact.causes),
                )
            )
        elif isinstance(fact, ActionSucceeded | ActionFailed):
            index = self.open_marks.pop(fact.key, None)
            if index is None:
                return  # started before the window
            outcome: Outcome = "ok" if isinstance(fact, ActionSucceeded) else fact.kind
            mark = self.marks[index]
            self.marks[index] = ActionMark(
                mark.seq,
                mark.at,
                mark.key,
                mark.kind,
                mark.reason,
                mark.causes,
                outcome,
                envelope.seq,
                at,
                fact.message,
                isinstance(fact, ActionFailed) and fact.unconfirmed,
            )

    def _close_marks_without_outcome(self) -> None:
        """A daemon (re)start: what it had started without an outcome was cut short."""
        for index in self.open_marks.values():
            mark = self.marks[index]
            self.marks[index] = ActionMark(
                mark.seq, mark.at, mark.key, mark.kind, mark.reason, mark.causes, "in-flight"
            )
        self.open_marks.clear()

    def finish(self) -> Report:
        if not self.in_window:
            self._enter_window(self.state)
        lanes: dict[str, tuple[Segment, ...]] = {}
        for lane in LANES:
            last = self.current[lane]
            closing = Segment(lane, last.value, last.label, last.start, self.until, last.seq)
            lanes[lane] = (*self.segments[lane], _opened(closing))
            if not self.facts:
                # Nothing was recorded in the window: what held before it is not known to
                # hold in it (the daemon may have been off without saying so).
                unseen = Segment(lane, "unknown", "", self.since, self.until, 0)
                lanes[lane] = (_opened(unseen),)
        conditions = self._conditions(lanes)
        incidents = _incidents(
            conditions, [*self.earlier_changes, *self.changes], self.marks, self.until
        )
        marks = tuple(self.marks)
        totals = _totals(self.since, self.until, lanes, incidents, marks, closed=True)
        days = tuple(
            _totals(start, end, lanes, incidents, marks, closed=end == self.until)
            for start, end in _days(self.since, self.until)
        )
        return Report(
            since=self.since,
            until=self.until,
            lanes=lanes,
            actions=marks,
            incidents=incidents,
            totals=totals,
            days=days,
            moments=self.moments,
            facts=self.facts,
            unknown=self.unknown,
            first_seq=self.first_seq,
            last_seq=self.last_seq,
        )

    def _conditions(self, lanes: Mapping[str, tuple[Segment, ...]]) -> list[Condition]:
        found: list[Condition] = []
        if self.facts:
            # Outages that reach into the window (with no fact in it, nothing says an outage
            # still went on).
            found += [c for c in self.outages if c.end is not None and c.end >= self.since]
            found += [
                attrs.evolve(c, causes=tuple(self.causes)) if c.kind == "ipv6-down" else c
                for c in self.open_outages.values()
            ]
        for kind, (lane, bad) in CONDITIONS.items():
            if lane in FAMILIES:
                continue  # the families' outages, above
            run: list[Segment] = []
            for segment in (*lanes[lane], None):
                if segment is not None and segment.value == bad:
                    run.append(segment)  # a new label (HE's address) while still wrong
                    continue
                if run:
                    first, last = run[0], run[-1]
                    found.append(
                        Condition(
                            kind,
                            first.start,
                            None if last.open else last.end,
                            first.seq,
                            last.end_seq,
                            self.last_good.get(_key(kind, first.seq)),
                        )
                    )
                    run = []
        return found


def _view_seqs(state: ObservedState) -> tuple[int, ...]:
    """The facts the state's views rest on: what a decision can name as its causes."""
    views = (state.wan, state.tunnel, state.endpoint, state.hostname_file)
    seqs = [view.seq for view in views if view is not None]
    seqs += [probe.seq for probe in state.probes.values()]
    return (*seqs, state.config_seq)


def _sets_a_view(before: ObservedState, after: ObservedState) -> bool:
    """Whether a fact set one of the views a decision may name as a cause (the fold keeps a
    view as it was when an observation repeats it)."""
    return _view_seqs(before) != _view_seqs(after)


def _key(kind: str, seq: int) -> str:
    return f"{kind}#{seq}"


def _opened(segment: Segment) -> Segment:
    return Segment(
        segment.lane,
        segment.value,
        segment.label,
        segment.start,
        segment.end,
        segment.seq,
        0,
        True,
    )


def _began(state: ObservedState, lane: str) -> tuple[float, int]:
    """When and by which fact a lane's value in `state` began (0, 0: never observed)."""
    view: object
    if lane in ("ipv4", "ipv6"):
        probe = state.probe(lane)
        return (probe.since, probe.seq) if probe.seq else (0.0, 0)
    if lane == "endpoint":
        # The verdict changes with either side: the later of the two views began it.
        views = [v for v in (state.wan, state.endpoint) if v is not None]
        latest = max(views, key=lambda v: v.seq, default=None)
        return (latest.at, latest.seq) if latest is not None else (0.0, 0)
    view = state.wan if lane == "wan" else state.tunnel
    if view is None:
        return 0.0, 0
    return getattr(view, "at", 0.0), getattr(view, "seq", 0)


def _incidents(
    conditions: list[Condition],
    changes: list[Segment],
    marks: list[ActionMark],
    until: float,
) -> tuple[Incident, ...]:
    """Overlapping (or touching) conditions merged into incidents, in time order."""
    groups: list[list[Condition]] = []
    group_end = -math.inf
    for condition in sorted(conditions, key=lambda c: (c.start, c.seq)):
        end = condition.end if condition.end is not None else math.inf
        if groups and condition.start <= group_end:
            groups[-1].append(condition)
            group_end = max(group_end, end)
        else:
            groups.append([condition])
            group_end = end
    return tuple(_incident(group, changes, marks, until) for group in groups)


def _incident(
    group: list[Condition], changes: list[Segment], marks: list[ActionMark], until: float
) -> Incident:
    first = group[0]
    open_ = any(c.end is None for c in group)
    last = max(group, key=lambda c: (c.end or 0.0, c.end_seq))
    end = None if open_ else last.end
    end_seq = 0 if open_ else last.end_seq
    explained = _explanation(group, changes, end_seq)
    explained_at = explained.start if explained is not None else None
    began = min(first.start, explained_at) if explained_at is not None else first.start
    horizon = end if end is not None else until
    taken = tuple(m.seq for m in marks if began <= m.at <= horizon)
    # Repaired in the incident's duration: the outages date from the first sign the router
    # sees (the WAN's change, a failed probe), the same start the hooks and metrics use.
    repair = None if end is None else end - first.start
    return Incident(
        start=first.start,
        end=end,
        seq=first.seq,
        end_seq=end_seq,
        conditions=tuple(group),
        explained_by=explained.seq if explained is not None else None,
        explained_at=explained_at,
        actions=taken,
        time_to_repair=repair,
    )


def _explanation(group: list[Condition], changes: list[Segment], end_seq: int) -> Segment | None:
    """The first change to WAN, tunnel or HE's endpoint since the outage's first condition
    was last seen fine, up to its start; else the first one during the outage; else None
    (the trouble lay beyond the router: nothing it sees changed)."""
    first = group[0]
    since_good = first.last_good if first.last_good is not None else -math.inf
    for change in changes:
        if since_good <= change.start and change.seq <= first.seq:
            return change
    for change in changes:
        if change.seq > first.seq and (end_seq == 0 or change.seq <= end_seq):
            return change
    return None


def _days(since: float, until: float) -> list[tuple[float, float]]:
    """The UTC days [since, until] touches, each clipped to it."""
    spans = []
    day = math.floor(since / DAY) * DAY
    while day < until:
        spans.append((max(day, since), min(day + DAY, until)))
        day += DAY
    return spans


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _totals(
    start: float,
    end: float,
    lanes: Mapping[str, tuple[Segment, ...]],
    incidents: tuple[Incident, ...],
    marks: tuple[ActionMark, ...],
    *,
    closed: bool,
) -> Totals:
    """The figures for [start, end), or [start, end] when `closed` (the window's last span,
    so that what happened at its very end counts once)."""

    def within(at: float) -> bool:
        return start <= at < end or (closed and at == end)

    up: dict[str, float] = {}
    down: dict[str, float] = {}
    for family in FAMILIES:
        # Down is the outages' time (the same outages as the incidents), where a verdict was
        # had: an outage counts from its first failed probe, before the verdict turned.
        judged = [
            (max(s.start, start), min(s.end, end))
            for s in lanes[family]
            if s.value in ("up", "down") and s.end > start and s.start < end
        ]
        outages = [
            (c.start, c.end if c.end is not None else end)
            for i in incidents
            for c in i.conditions
            if c.kind == f"{family}-down"
        ]
        known = sum(b - a for a, b in judged)
        down[family] = sum(_overlap(a, b, c, d) for a, b in judged for c, d in outages)
        up[family] = max(0.0, known - down[family])
    began = sum(1 for i in incidents if within(max(i.start, start)) and (i.end or end) > start)
    repairs = tuple(
        i.time_to_repair
        for i in incidents
        if i.time_to_repair is not None and i.end is not None and within(i.end)
    )
    updates = [m for m in marks if m.kind == UpdateHeEndpoint.KIND and within(m.at)]
    return Totals(
        start=start,
        end=end,
        up=up,
        down=down,
        outages=began,
        repairs=repairs,
        he_updates=len(updates),
        he_updates_ok=sum(1 for m in updates if m.outcome == "ok"),
    )
