"""Several WANs, one tunnel: each WAN's health, which WAN is active and why, and the policy
that moves the tunnel between them. Pure: time is an argument.

HE has one endpoint per tunnel, so every switch is an HE update, and an endpoint that
changes too often gets the tunnel locked. Hence hysteresis both ways and a budget:

- A WAN's health is folded from its own probes (`WanProbed`, sent out of that WAN) with the
  IPv4 probe's thresholds: down after `fail_after` failures in a row, up after
  `recover_after` successes in a row. The counts stop at their threshold, so a steady WAN
  folds to the same view probe after probe (no news for the recorder).
- Fail over when the active WAN is down and another is healthy (up, its last probe good):
  the first such in priority order. With none healthy nothing moves (nothing is sent).
- Fail back to a WAN earlier in the order only once it has been up for `failback_after`.
- At most `budget_per_hour` switches within any hour. A switch due past it is not made:
  the choice "held" is recorded once (needs-attention), and the tunnel stays.

The choice is a fact (`WanChosen`) with its reason, so replay, status, hooks and metrics all
read the same story. The daemon runs with `with_active_wan(config, active)`: the ordinary
plan then sees the active WAN's address and does what any new address needs (update HE,
move the tunnel's local end, reload pf).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import attrs
from attrs import frozen

from reconciler.model.config import Config
from reconciler.model.facts import WanChosen, WanProbed

__all__ = [
    "BUDGET_WINDOW",
    "Choice",
    "FailoverView",
    "Policy",
    "WanHealth",
    "active_interface",
    "decide",
    "fold_chosen",
    "fold_probed",
    "next_due",
    "policy_of",
    "view_from_mapping",
    "with_active_wan",
]

BUDGET_WINDOW = 3600.0  # the budget counts switches within this many seconds
_SWITCHES_KEPT = 64  # more than any budget (at most 60 an hour)

HealthStatus = Literal["unknown", "up", "down"]
ChoiceKind = Literal["failover", "failback", "held"]


@frozen
class WanHealth:
    """One WAN's health from its own probes. The counts stop at their thresholds."""

    interface: str
    status: HealthStatus = "unknown"
    consecutive_failed: int = 0
    consecutive_ok: int = 0
    up_since: float | None = None  # the probe that brought it up
    down_since: float | None = None  # the probe that brought it down
    seq: int = 0  # the fact that last changed its status


@frozen
class FailoverView:
    """Each WAN's health and the active WAN (None: none chosen yet, the first is)."""

    active: str | None = None
    health: tuple[WanHealth, ...] = ()
    switches: tuple[float, ...] = ()  # when each recent failover or failback was chosen
    held_seq: int = 0  # the "held" choice said for this spell (0: none since the last switch)
    chosen_seq: int = 0
    reason: str = ""

    def of(self, interface: str) -> WanHealth | None:
        for health in self.health:
            if health.interface == interface:
                return health
        return None


def fold_probed(
    view: FailoverView | None,
    fact: WanProbed,
    seq: int,
    at: float,
    fail_after: int,
    recover_after: int,
) -> FailoverView:
    """`view` after one probe out of `fact.interface`."""
    view = view or FailoverView()
    old = view.of(fact.interface) or WanHealth(fact.interface)
    if fact.ok:
        ok = min(old.consecutive_ok + 1, recover_after)
        new = attrs.evolve(old, consecutive_failed=0, consecutive_ok=ok)
        if old.status != "up" and ok >= recover_after:
            new = attrs.evolve(new, status="up", up_since=at, seq=seq)
    else:
        failed = min(old.consecutive_failed + 1, fail_after)
        new = attrs.evolve(old, consecutive_failed=failed, consecutive_ok=0)
        if old.status != "down" and failed >= fail_after:
            new = attrs.evolve(new, status="down", down_since=at, seq=seq)
    if new == old:
        return view
    others = tuple(h for h in view.health if h.interface != fact.interface)
    return attrs.evolve(view, health=tuple(sorted((*others, new), key=lambda h: h.interface)))


def fold_chosen(view: FailoverView | None, fact: WanChosen, seq: int, at: float) -> FailoverView:
    """`view` after the policy's choice: a switch is counted against the budget; "held" is
    remembered until the next switch, so that it is said once."""
    view = view or FailoverView()
    if fact.kind == "held":
        return attrs.evolve(view, held_seq=seq, reason=fact.reason)
    recent = tuple(t for t in view.switches if t > at - BUDGET_WINDOW)
    return attrs.evolve(
        view,
        active=fact.interface,
        switches=(*recent, at)[-_SWITCHES_KEPT:],
        held_seq=0,
        chosen_seq=seq,
        reason=fact.reason,
    )


def view_from_mapping(mapping: Mapping[str, Any]) -> FailoverView:
    """The view a snapshot holds (attrs.asdict of it)."""
    values = dict(mapping)
    values["health"] = tuple(WanHealth(**h) for h in values.get("health", ()))
    values["switches"] = tuple(float(t) for t in values.get("switches", ()))
    return FailoverView(**values)


@frozen
class Policy:
    """What the decision needs of the configuration."""

    order: tuple[str, ...]  # the WANs, preferred first
    failback_after: float
    budget_per_hour: int
    fail_after: int


@frozen
class Choice:
    interface: str
    previous: str
    kind: ChoiceKind
    reason: str

    def fact(self) -> WanChosen:
        return WanChosen(self.interface, self.previous, self.kind, self.reason)


def policy_of(config: Config) -> Policy | None:
    """The failover policy of `config`; None with one WAN."""
    failover = config.failover
    if failover is None:
        return None
    ipv4 = config.probes.get("ipv4")
    return Policy(
        order=tuple(w.interface for w in failover.wans),
        failback_after=failover.failback_after,
        budget_per_hour=failover.budget_per_hour,
        fail_after=ipv4.fail_after if ipv4 is not None else 3,
    )


def active_interface(policy: Policy, view: FailoverView | None) -> str:
    """The WAN the tunnel is on: the last one chosen, else the first in the order."""
    if view is not None and view.active in policy.order:
        return view.active
    return policy.order[0]


def decide(policy: Policy, view: FailoverView | None, now: float) -> Choice | None:
    """The switch due now, or "held" once when one is due past the budget; None otherwise."""
    view = view or FailoverView()
    active = active_interface(policy, view)
    current = view.of(active)
    if current is not None and current.status == "down":
        candidates = [i for i in policy.order if i != active and _healthy(view.of(i))]
        if not candidates:
            return None  # every WAN down: stay, send nothing
        target, kind = candidates[0], "failover"
        why = f"{active} failed {policy.fail_after} probes at {_clock(current.down_since)}"
    else:
        ahead = policy.order[: policy.order.index(active)]
        ready = [i for i in ahead if _healthy_for(view.of(i), policy.failback_after, now)]
        if not ready:
            return None
        target, kind = ready[0], "failback"
        why = f"{active} is the fallback"
    target_health = view.of(target)
    assert target_health is not None and target_health.up_since is not None
    healthy = f"{target} healthy for {_duration(now - target_health.up_since)}"
    used = sum(1 for t in view.switches if now - BUDGET_WINDOW < t <= now)
    left = policy.budget_per_hour - used
    if left <= 0:
        if view.held_seq:
            return None  # said once for this spell
        reason = (
            f"{why}; {healthy}; failover budget 0/{policy.budget_per_hour} left this hour: "
            f"staying on {active}"
        )
        return Choice(active, active, "held", reason)
    budget = f"failover budget {left - 1}/{policy.budget_per_hour} left this hour"
    return Choice(target, active, kind, f"{why}; {healthy}; {budget}")  # type: ignore[arg-type]


def next_due(policy: Policy, view: FailoverView | None, now: float) -> float | None:
    """When the decision may change with no new fact: a preferred WAN up now reaches
    failback_after, or the oldest switch leaves the budget's hour. None: only a new fact can
    change it. (A steady probe is no news, so the daemon would not ask again by itself.)"""
    if view is None:
        return None
    active = active_interface(policy, view)
    times = [
        health.up_since + policy.failback_after
        for interface in policy.order[: policy.order.index(active)]
        for health in [view.of(interface)]
        if _healthy(health) and health is not None and health.up_since is not None
    ]
    recent = [t for t in view.switches if now - BUDGET_WINDOW < t <= now]
    if len(recent) >= policy.budget_per_hour:
        times.append(min(recent) + BUDGET_WINDOW)
    later = [t for t in times if t > now]
    return min(later) if later else None


def with_active_wan(config: Config, interface: str) -> Config:
    """`config` as the daemon runs it with `interface` active: its WAN, and the IPv4 probe
    sent out of it to its own target. One WAN: `config` itself."""
    if config.failover is None:
        return config
    wans = {w.interface: w for w in config.failover.wans}
    wan = wans.get(interface, config.failover.wans[0])
    probes = dict(config.probes)
    ipv4 = probes.get("ipv4")
    if ipv4 is not None:
        target = wan.probe_target or ipv4.target
        probes["ipv4"] = attrs.evolve(ipv4, target=target, source=wan.interface)
    return attrs.evolve(config, wan=wan, probes=probes)


def _healthy(health: WanHealth | None) -> bool:
    return health is not None and health.status == "up" and health.consecutive_failed == 0


def _healthy_for(health: WanHealth | None, seconds: float, now: float) -> bool:
    return (
        _healthy(health)
        and health is not None
        and health.up_since is not None
        and now - health.up_since >= seconds
    )


def _clock(at: float | None) -> str:
    if at is None:
        return "an unknown time"
    return f"{datetime.fromtimestamp(at, UTC):%H:%M:%S}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
