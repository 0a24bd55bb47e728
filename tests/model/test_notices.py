"""Notifications derived from facts (reconciler.model.notices) and the counters beside them
(reconciler.model.telemetry): pure, so every rule is a table of facts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.model.actions import PRIVATE_ADDRESS_REFUSED
from reconciler.model.config import ReconcileConfig
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    ConfigLoaded,
    DaemonStarted,
    DaemonStopped,
    EndpointObserved,
    Fact,
    HookRan,
    ProbeObserved,
    WanAddressObserved,
)
from reconciler.model.notices import Notice, he_answer, tracker_for
from reconciler.model.state import ObservedState
from reconciler.model.telemetry import Telemetry

from .world import History

OLD, NEW = "203.0.113.10", "203.0.113.11"
BADAUTH = "HE rejected the username or update key (badauth); not retrying"


class Told(History):
    """A History that also runs Telemetry and keeps every notice."""

    def __init__(self, reconcile: ReconcileConfig | None = None) -> None:
        self.telemetry = Telemetry.starting_on(ObservedState(), reconcile or ReconcileConfig())
        self.notices: list[Notice] = []
        super().__init__()

    def record(self, fact: Fact, *, after: float = 1.0) -> int:
        before = self.state
        seq = super().record(fact, after=after)
        self.notices.extend(self.telemetry.observe(before, self.envelopes[-1], self.state))
        return seq

    def events(self) -> list[str]:
        return [n.event for n in self.notices]

    def wan(self, address: str | None, *, after: float = 1.0) -> int:
        return self.record(WanAddressObserved("em0", address, True), after=after)

    def probe(self, family: str, ok: bool, *, after: float = 1.0) -> int:
        return self.record(ProbeObserved(family, "t", ok, 12.5 if ok else None), after=after)


def converged() -> Told:
    told = Told()
    told.wan(OLD)
    told.probe("ipv6", True)
    return told


def test_address_change_then_repair_tells_both_addresses_and_the_outage() -> None:
    told = converged()
    changed = told.wan(NEW)
    told.probe("ipv6", False, after=2.0)
    repaired = told.probe("ipv6", True, after=3.0)
    assert told.events() == ["address-changed", "repaired"]
    change, repair = told.notices
    assert (change.seq, change.wan_address, change.previous_address) == (changed, NEW, OLD)
    env = change.environment()
    assert env["RECONCILER_WAN_ADDRESS"] == NEW and env["RECONCILER_PREVIOUS_ADDRESS"] == OLD
    assert env["RECONCILER_EVENT"] == "address-changed" and env["RECONCILER_SEQ"] == str(changed)
    assert repair.seq == repaired and repair.outage_seconds == pytest.approx(5.0)
    assert repair.environment()["RECONCILER_OUTAGE_SECONDS"] == "5.000"
    assert told.telemetry.repairs.count == 1
    assert told.telemetry.outage_seconds == pytest.approx(5.0)


def test_first_address_and_a_spell_without_one_are_no_change() -> None:
    """The first address seen is not a change; losing the address and getting the same one
    back is not either, and getting another one back is, from the last known."""
    told = converged()
    told.wan(None)
    told.wan(OLD)
    assert told.events() == []
    told.wan(None)
    told.wan(NEW)
    assert told.events() == ["address-changed"]
    assert told.notices[0].previous_address == OLD


def test_a_single_lost_ping_is_no_outage() -> None:
    told = converged()
    told.probe("ipv6", False)
    told.probe("ipv6", True)
    assert told.events() == []


def test_outage_starts_at_the_first_failed_probe_of_the_streak() -> None:
    """fail_after (3 by default) failures bring IPv6 down; the outage counts from the first."""
    told = converged()
    for _ in range(3):
        told.probe("ipv6", False, after=10.0)
    assert told.telemetry.tracker.outage_since == told.envelopes[-3].at
    told.probe("ipv6", True, after=10.0)
    assert told.events() == ["repaired"]
    assert told.notices[0].outage_seconds == pytest.approx(30.0)
    assert told.telemetry.outage_total(told.now + 100) == pytest.approx(30.0)


def test_outage_under_way_counts_up_to_now() -> None:
    told = converged()
    told.wan(NEW)
    assert told.telemetry.outage_total(told.now + 7.0) == pytest.approx(7.0)


def test_badauth_needs_attention_once_however_long_it_lasts() -> None:
    told = converged()
    told.record(ActionStarted("update-he-endpoint:" + NEW, "update-he-endpoint", "r"))
    failed = told.record(
        ActionFailed("update-he-endpoint:" + NEW, "update-he-endpoint", "permanent", BADAUTH)
    )
    for _ in range(50):  # a long wait: probes, observations, the daemon's passes
        told.probe("ipv4", True, after=60.0)
        told.wan(NEW, after=0.0)
    assert told.events().count("needs-attention") == 1
    attention = told.notices[told.events().index("needs-attention")]
    assert attention.seq == failed and attention.result == "badauth"
    assert attention.action == "update-he-endpoint:" + NEW
    assert told.events().count("action-failed") == 1
    assert told.telemetry.he_answers == {"badauth": 1}


def test_badauth_is_told_again_under_a_new_configuration() -> None:
    told = converged()
    key = "update-he-endpoint:" + NEW
    told.record(ActionFailed(key, "update-he-endpoint", "permanent", BADAUTH))
    told.record(ConfigLoaded("d1" * 32, "p"))  # the same configuration again: still told
    assert told.events().count("needs-attention") == 1
    told.record(ConfigLoaded("d2" * 32, "p"))  # a new key file: the hold lifts
    told.record(ActionFailed(key, "update-he-endpoint", "permanent", BADAUTH))
    assert told.events().count("needs-attention") == 2


def test_a_refused_private_address_is_told_as_that_address_alone_and_badauth_after_it_too() -> None:
    """HE's refusal of a private address holds only that address (plan.py): the notice says
    so, and a later badauth, which holds every update, is told on its own."""
    told = converged()
    refused = "198.18.0.7"
    told.record(
        ActionFailed(
            "update-he-endpoint:" + refused,
            "update-he-endpoint",
            "permanent",
            f"{PRIVATE_ADDRESS_REFUSED} {refused} (RFC 1918); not retrying",
        )
    )
    (attention,) = [n for n in told.notices if n.event == "needs-attention"]
    assert "another WAN address is" in attention.message
    assert "nothing more is tried" not in attention.message
    told.record(
        ActionFailed("update-he-endpoint:" + NEW, "update-he-endpoint", "permanent", BADAUTH)
    )
    attentions = [n for n in told.notices if n.event == "needs-attention"]
    assert len(attentions) == 2
    assert attentions[1].result == "badauth"
    assert "nothing more is tried until the configuration" in attentions[1].message


def test_abuse_is_he_abuse_and_a_temporary_failure_is_not_attention() -> None:
    told = converged()
    message = "HE blocked updates for too many requests (abuse); waiting hours"
    told.record(ActionFailed("update-he-endpoint:x", "update-he-endpoint", "temporary", message))
    assert told.events() == ["action-failed", "he-abuse"]
    assert told.notices[0].result == "abuse"


def test_restart_limit_needs_attention_once_while_the_problem_stays() -> None:
    told = Told(ReconcileConfig(restart_limit=2, restart_window=100.0))
    told.wan(OLD)
    key = f"restart-tunnel:{OLD}->x"
    for _ in range(2):
        told.record(ActionStarted(key, "restart-tunnel", "r"))
        told.record(ActionSucceeded(key, "restart-tunnel"))
        assert "needs-attention" not in told.events()  # the last restart may yet have helped
        told.probe("ipv6", False)
    assert told.events() == ["needs-attention"]
    assert told.notices[0].result == "restart-limit"
    told.probe("ipv6", False)
    assert told.events() == ["needs-attention"]
    for _ in range(3):  # IPv6 back: the restarts are forgotten
        told.probe("ipv6", True)
    for _ in range(2):  # and the same trouble again later
        told.record(ActionStarted(key, "restart-tunnel", "r"))
        told.record(ActionSucceeded(key, "restart-tunnel"))
        told.probe("ipv6", False)
    assert told.events().count("needs-attention") == 2


def test_daemon_start_and_stop_and_counters_start_afresh() -> None:
    told = converged()
    told.record(ActionSucceeded("reload-pf:x", "reload-pf"))
    told.record(DaemonStopped("SIGTERM"))
    told.record(DaemonStarted(pid=42, version="1.2"))
    assert told.events() == ["daemon-stopped", "daemon-started"]
    assert "pid 42" in told.notices[1].message
    assert told.telemetry.actions == {}
    assert told.telemetry.notices == {"daemon-started": 1}
    assert told.telemetry.version == "1.2" and told.telemetry.started_at == told.now


def test_a_restarted_daemon_does_not_tell_a_standing_cause_again() -> None:
    told = converged()
    told.record(ActionFailed("update-he-endpoint:x", "update-he-endpoint", "permanent", BADAUTH))
    told.record(DaemonStarted(pid=43, version="1.2"))
    told.probe("ipv4", True)
    assert told.events().count("needs-attention") == 1
    # and a daemon built on that state (start-up from a snapshot) agrees
    fresh = tracker_for(told.state)
    assert fresh.told == told.telemetry.tracker.told


def test_counters_of_actions_answers_hooks_and_rtt() -> None:
    told = converged()
    told.record(
        ActionSucceeded("update-he-endpoint:x", "update-he-endpoint", f"HE endpoint good: {NEW}")
    )
    told.record(ActionFailed("restart-wan:em0", "restart-wan", "temporary", "boom"))
    told.record(HookRan("action-failed", 5, "failed", 3, 0.1, "exit 3", dropped=2))
    assert told.telemetry.actions == {
        ("update-he-endpoint", "ok"): 1,
        ("restart-wan", "temporary"): 1,
    }
    assert told.telemetry.he_answers == {"good": 1}
    assert told.telemetry.hook_runs == {"failed": 1} and told.telemetry.hook_dropped == 2
    assert told.telemetry.last_rtt["ipv6"] == pytest.approx(0.0125)
    assert told.telemetry.rtt["ipv6"].count == 1


@pytest.mark.parametrize(
    ("message", "succeeded", "answer"),
    [
        ("HE endpoint good: 203.0.113.11", True, "good"),
        ("HE endpoint nochg: 203.0.113.11", True, "nochg"),
        (BADAUTH, False, "badauth"),
        ("HE knows no tunnel with this id (nohost)", False, "nohost"),
        ("the tunnel id belongs to another account (!yours)", False, "!yours"),
        ("HE reports trouble on its side (911)", False, "911"),
        ("HE answered HTTP 503: oops", False, "http-503"),
        ("HE update at https://h/nic/update: no answer in time: x", False, "no-answer"),
        ("update key file /k does not exist", False, None),
    ],
)
def test_he_answer_from_the_outcome_message(message: str, succeeded: bool, answer: str) -> None:
    assert he_answer("update-he-endpoint", message, succeeded=succeeded) == answer
    assert he_answer("restart-wan", message, succeeded=succeeded) is None


def test_a_clock_stepped_back_makes_no_counter_go_down() -> None:
    told = converged()
    told.record(DaemonStarted(pid=7, version="1"))
    told.wan(NEW)
    before = told.telemetry.outage_total(told.now)
    told.probe("ipv6", True, after=-3600.0)  # the clock went back an hour
    assert told.events()[-1] == "repaired"
    assert told.notices[-1].outage_seconds == 0.0
    assert told.telemetry.outage_seconds >= 0.0
    assert told.telemetry.outage_total(told.now) >= 0.0 and before >= 0.0


def test_needs_attention_says_why_ipv6_is_down() -> None:
    """badauth after the WAN moved: the hook's text and RECONCILER_DOWN_REASON name the
    layer (HE's view), what HE has, what the WAN has, and HE's answer."""
    told = converged()
    told.record(EndpointObserved(OLD, "update", for_local=OLD))
    moved = told.wan(NEW)
    key = f"update-he-endpoint:{NEW}"
    told.record(ActionStarted(key, "update-he-endpoint", "moved"))
    told.record(ActionFailed(key, "update-he-endpoint", "permanent", BADAUTH))
    (attention,) = [n for n in told.notices if n.event == "needs-attention"]
    since = told.envelopes[moved - 1].at
    hhmm = datetime.fromtimestamp(since, UTC).strftime("%H:%M")
    expected = f"IPv6 down since {hhmm}: HE has {OLD}, the WAN has {NEW}, last update: {BADAUTH}"
    assert attention.environment()["RECONCILER_DOWN_REASON"] == expected
    assert attention.message.endswith(expected)
