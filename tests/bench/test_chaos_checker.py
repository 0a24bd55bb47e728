"""The chaos soak's log invariants (bench/chaos.py) on crafted logs: each can fail."""

from __future__ import annotations

from bench.chaos import check_log
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    DaemonStarted,
    Envelope,
    Fact,
)

KIND = "update-he-endpoint"


def log(*items: tuple[float, Fact]) -> list[Envelope]:
    return [Envelope(seq=i + 1, at=at, source="t", fact=fact) for i, (at, fact) in enumerate(items)]


def update(address: str, reason: str = "HE has 203.0.113.1, the WAN has x") -> ActionStarted:
    return ActionStarted(f"{KIND}:{address}", KIND, reason)


def answered(address: str, word: str) -> ActionSucceeded:
    return ActionSucceeded(f"{KIND}:{address}", KIND, f"HE endpoint {word}: {address}")


def test_a_clean_log_has_no_violation() -> None:
    envelopes = log(
        (0.0, update("203.0.113.5")),
        (0.2, answered("203.0.113.5", "good")),
        (2.5, update("203.0.113.6", "HE's endpoint is unknown; the WAN has 203.0.113.6")),
        (2.7, answered("203.0.113.6", "nochg")),
    )
    assert check_log(envelopes, 2.0) == []


def test_updates_closer_than_min_update_interval_are_a_violation() -> None:
    envelopes = log((0.0, update("203.0.113.5")), (1.0, update("203.0.113.6")))
    (problem,) = check_log(envelopes, 2.0)
    assert "went 1.00 s after" in problem


def test_a_nochg_the_planner_could_foresee_is_a_violation() -> None:
    envelopes = log((0.0, update("203.0.113.5")), (0.1, answered("203.0.113.5", "nochg")))
    (problem,) = check_log(envelopes, 2.0)
    assert problem.startswith("unforced nochg (record 2")


def test_a_gap_in_the_records_is_lost_facts() -> None:
    envelopes = log((0.0, update("203.0.113.5")), (0.1, answered("203.0.113.5", "good")))
    envelopes[1] = Envelope(seq=5, at=0.1, source="t", fact=envelopes[1].fact)
    (problem,) = check_log(envelopes, 2.0)
    assert problem == "lost facts: record 1 is followed by 5"


def test_a_nochg_after_an_attempt_of_unknown_outcome_is_forced() -> None:
    """HE may have taken the earlier attempt unanswered (no answer in time, or the daemon was
    killed during it): the update sent again after the tunnel said otherwise may meet nochg."""
    unconfirmed = ActionFailed(f"{KIND}:203.0.113.5", KIND, "temporary", "late", unconfirmed=True)
    envelopes = log(
        (0.0, update("203.0.113.5")),
        (3.0, unconfirmed),
        (6.0, update("203.0.113.5")),
        (6.1, answered("203.0.113.5", "nochg")),
        (9.0, update("203.0.113.6")),
        (9.1, DaemonStarted(version="x", pid=1)),
        (12.0, update("203.0.113.6")),
        (12.1, answered("203.0.113.6", "nochg")),
    )
    assert check_log(envelopes, 2.0) == []
    envelopes.append(Envelope(9, 15.0, "t", update("203.0.113.6")))
    envelopes.append(Envelope(10, 15.1, "t", answered("203.0.113.6", "nochg")))
    (problem,) = check_log(envelopes, 2.0)
    assert problem.startswith("unforced nochg (record 10")
