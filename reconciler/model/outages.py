"""Outages of a family: when IPv4 or IPv6 stopped working and when it worked again.

One definition, used by everything that speaks of an outage: `reconciler report` (its
incidents), the notifications (`repaired` and its outage length) and the metrics (time to
repair, outage seconds). The fold (reconciler.model.state) applies it to every fact and
keeps the outage under way in each family's probe view, so a daemon that starts from a
snapshot, a replay from a checkpoint and a report folded from the log's first record all see
the same outage with the same start.

An outage of a family

- **begins** at the first failed probe since the last successful one, once the failures
  that follow it bring the verdict down (`fail_after` in a row: a single lost ping is no
  outage, but once the streak is confirmed the users were without the family from its first
  failure, not from the probe that happened to be the `fail_after`-th);
- for IPv6 also begins when the WAN gets an address other than the last one it had (after
  a spell without one too), the `address-changed` notification: the tunnel's local end is
  gone and HE sends its packets to the old address from that moment, so IPv6 across the
  tunnel is gone before any probe can tell (a repair within seconds would otherwise never
  count as an outage). When IPv6 probes were already failing, the outage begins at the
  first of those failures, whichever came first;
- for both families also begins when the WAN loses its link or its address (it had both):
  nothing crosses it from that moment, whatever the probes take to notice;
- **ends** at the successful probe after which the verdict says the family works (with the
  default `recover_after = 1`, the first success). Successes before the verdict (a link
  that flaps under `recover_after > 1`) do not end it: an outage is counted until the
  operator's own standard of "working again" was met, never shorter.

Why the first failed probe, and not the verdict: a network administrator asks how long the
users had no IPv6. The verdict is the moment the daemon was sure enough to act, which is
`fail_after - 1` probe intervals after the loss (with the shipped intervals, a minute or
more per outage); dating the outage from it understates every outage by that much, and
makes the report disagree with what the hooks were told.

An outage runs across a stop of the daemon: nothing was observed meanwhile, so nothing says
the family came back; it ends only when a probe shows it working.

Pure: the rule is applied to values (`after_probe`, `after_wan_change`); the readers take
states. Time comes with the facts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from reconciler.model.state import ObservedState

__all__ = [
    "FAMILIES",
    "TUNNEL_FAMILY",
    "Marks",
    "Outage",
    "after_probe",
    "after_wan_change",
    "begun",
    "ended",
    "under_way",
]

FAMILIES = ("ipv4", "ipv6")
# The family whose outage a change of the WAN address begins (the tunnel's).
TUNNEL_FAMILY = "ipv6"


@frozen
class Outage:
    """One outage of `family`: from `start` (fact `seq`) to `end` (fact `end_seq`); `end`
    None while under way."""

    family: str
    start: float
    seq: int
    end: float | None = None
    end_seq: int = 0

    def seconds(self, until: float) -> float:
        """Its length (to `until` while under way); never negative, whatever the clock did."""
        return max(0.0, (self.end if self.end is not None else until) - self.start)


# --- the rule, on a probe view's values (the fold calls these) -----------------------------

# A family's outage marks, as its probe view keeps them: (failing_since, failing_seq,
# outage_since, outage_seq).
Marks = tuple[float | None, int, float | None, int]


def after_probe(ok: bool, status: str, marks: Marks, seq: int, at: float) -> Marks:
    """A family's outage marks after a probe (`ok`) that left its verdict at `status`."""
    failing_since, failing_seq, outage_since, outage_seq = marks
    if ok:
        if outage_since is not None and status == "up":
            return None, 0, None, 0  # the outage ends here
        return None, 0, outage_since, outage_seq
    if failing_since is None:
        failing_since, failing_seq = at, seq
    if outage_since is None and status == "down":
        outage_since, outage_seq = failing_since, failing_seq
    return failing_since, failing_seq, outage_since, outage_seq


def after_wan_change(marks: Marks, seq: int, at: float) -> Marks:
    """The tunnel family's outage marks after the WAN got another address than its last."""
    failing_since, failing_seq, outage_since, outage_seq = marks
    if outage_since is None:
        outage_since, outage_seq = (
            (failing_since, failing_seq) if failing_since is not None else (at, seq)
        )
    return failing_since, failing_seq, outage_since, outage_seq


# --- readers, on folded states ---------------------------------------------------------------


def under_way(state: ObservedState, family: str) -> Outage | None:
    """The outage of `family` under way in `state`, if any."""
    probe = state.probe(family)
    if probe.outage_since is None:
        return None
    return Outage(family, probe.outage_since, probe.outage_seq)


def begun(before: ObservedState, after: ObservedState, family: str) -> Outage | None:
    """The outage of `family` that the fact between the two states began, if any."""
    if before.probe(family).outage_since is not None:
        return None
    return under_way(after, family)


def ended(
    before: ObservedState, after: ObservedState, family: str, seq: int, at: float
) -> Outage | None:
    """The outage of `family` that the fact `seq` at `at` (between the two states) ended."""
    if after.probe(family).outage_since is not None:
        return None
    running = under_way(before, family)
    if running is None:
        return None
    return Outage(family, running.start, running.seq, at, seq)
