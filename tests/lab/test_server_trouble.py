"""Trouble at HE never holds IPv6 down longer than it must (issue 19), on real interfaces.

The lab's HE is the fake (reconciler.testing.fake_he), scripted to answer late or 503."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.lab.topology import Lab, wait_until
from reconciler.model.facts import ActionFailed, ActionStarted, ProbeObserved

from .test_scenarios import _assert_no_key_anywhere

SECOND = "203.0.113.11"
THIRD = "203.0.113.12"
BACKOFF_MIN = 2.0


@pytest.fixture
def lab(lab_available: None) -> Iterator[Lab]:
    with Lab() as built:
        yield built
        _assert_no_key_anywhere(built, built.keys_used)


def _facts(lab: Lab, cls: type) -> list[Any]:
    return [e.fact for e in lab.envelopes() if isinstance(e.fact, cls)]


def _update_failures(lab: Lab) -> list[ActionFailed]:
    return [f for f in _facts(lab, ActionFailed) if f.action == "update-he-endpoint"]


def _start_converged(lab: Lab, **overrides: Any) -> None:
    lab.start_daemon(reconcile__backoff_min=BACKOFF_MIN, **overrides)
    wait_until(
        lambda: any(f.family == "ipv6" and f.ok for f in _facts(lab, ProbeObserved)),
        timeout=30,
        what="a good IPv6 probe",
    )


def test_a_late_answer_proven_by_the_tunnel_holds_no_later_update(lab: Lab) -> None:
    """HE applies an update and answers after the deadline; IPv6 across the rebuilt tunnel
    proves HE took it, which ends the trouble: a second WAN change 5 s later is repaired
    within backoff_min and a few seconds (it used to wait 600 s after the late answer)."""
    _start_converged(
        lab,
        tunnelbroker__info_url=None,
        tunnelbroker__read_timeout=1.0,
        tunnelbroker__connect_timeout=1.0,
    )
    lab.he("reply", apply=1, delay=4)
    lab.move_wan_and_time_repair(SECOND, timeout=30)
    (failure,) = _update_failures(lab)
    assert failure.unconfirmed, failure
    time.sleep(5)
    repair = lab.move_wan_and_time_repair(THIRD, timeout=BACKOFF_MIN + 30)
    assert repair < BACKOFF_MIN + 5, lab.reconciler("replay").stdout[-3000:]
    assert lab.he_update_calls() == 2
    assert lab.he_stats()["endpoint"] == THIRD


def test_a_503_then_a_wan_change_later_is_updated_within_the_back_off_slot(lab: Lab) -> None:
    """HE answers one update 503 and the next is fine: a WAN change a while after the 503
    is updated at its back-off's slot (backoff_min), not 600 s after the 503."""
    _start_converged(lab)
    lab.he("script", answers="503")
    lab.set_wan_address(SECOND)
    wait_until(lambda: _update_failures(lab), timeout=30, what="the 503")
    failed = time.monotonic()
    assert "503" in _update_failures(lab)[0].message
    # The retry for SECOND comes at the slot and succeeds; then the WAN moves on.
    wait_until(lambda: lab.ping6_through_tunnel(timeout=0.3), timeout=30, what="IPv6 back")
    assert time.monotonic() - failed < BACKOFF_MIN + 10
    repair = lab.move_wan_and_time_repair(THIRD, timeout=BACKOFF_MIN + 30)
    assert repair < BACKOFF_MIN + 5, lab.reconciler("replay").stdout[-3000:]
    assert lab.he_update_calls() == 3


def test_a_first_start_with_tunnel_info_sends_no_update_for_what_he_has(
    lab_available: None,
) -> None:
    """No tunnel yet and an empty log, but HE already has our address: with info_url set
    the daemon asks HE first and builds the tunnel without an update (it would be a nochg)."""
    with Lab(prebuild_tunnel=False) as lab:
        lab.start_daemon()
        wait_until(lambda: lab.ping6_through_tunnel(timeout=0.3), timeout=30, what="IPv6")
        time.sleep(3)
        updates = [f for f in _facts(lab, ActionStarted) if f.action == "update-he-endpoint"]
        assert updates == []
        assert lab.he_update_calls() == 0
        assert lab.he_stats()["counts"].get("info", 0) >= 1, lab.he_stats()
        _assert_no_key_anywhere(lab, lab.keys_used)
