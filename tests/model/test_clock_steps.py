"""The planner across clock steps: routers without a real-time clock boot in the past and
jump forward when NTP syncs, and a step back makes earlier facts look as if they came from
the future. A fact from the future holds nothing, so no hold lasts longer than its interval
from `now`, whatever the stamps in the log say."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model.config import ReconcileConfig
from reconciler.model.desired import desired
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    EndpointObserved,
    Envelope,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
)
from reconciler.model.plan import plan
from reconciler.model.state import ObservedState, fold
from tests.strategies import facts

from .world import T0 as START
from .world import History, make_config

ADDR = "192.0.2.10"
HOURS_2 = 7200.0

# Steps between two facts: mostly small and forward, sometimes hours either way (NTP).
_steps = st.one_of(
    st.floats(0, 120),
    st.floats(-3 * 86400, 3 * 86400),
    st.sampled_from([-HOURS_2, HOURS_2, -(50 * 365 * 86400.0)]),
)


@st.composite
def _stepped(draw: st.DrawFn) -> tuple[list[Envelope], float]:
    items = draw(st.lists(facts, max_size=30))
    at = START
    envelopes = []
    for seq, fact in enumerate(items, 1):
        at += draw(_steps)
        envelopes.append(Envelope(seq=seq, at=at, source="test", fact=fact))
    now = at + draw(_steps)
    return envelopes, now


@settings(max_examples=300, deadline=None)
@given(
    history=_stepped(),
    min_update_interval=st.floats(1, 86400),
    backoff=st.tuples(st.floats(1, 600), st.floats(1, 86400)),
    restart_window=st.floats(1, 86400),
)
def test_no_hold_ends_later_than_its_interval_from_now(
    history: tuple[list[Envelope], float],
    min_update_interval: float,
    backoff: tuple[float, float],
    restart_window: float,
) -> None:
    """Whatever the stamps (steps back and forth by hours or decades), every timed hold
    ends after `now` and no later than the longest configured interval (or retry-after hint
    HE gave) from `now`."""
    envelopes, now = history
    bounds = ReconcileConfig(
        backoff_min=min(backoff), backoff_max=max(backoff), restart_window=restart_window
    )
    config = make_config(min_update_interval=min_update_interval, reconcile=bounds)
    state = ObservedState()
    for envelope in envelopes:
        state = fold(state, envelope)
    hints = [
        e.fact.retry_after
        for e in envelopes
        if isinstance(e.fact, ActionFailed) and e.fact.retry_after is not None
    ]
    longest = max(
        [min_update_interval, bounds.backoff_max, restart_window, config.wan.dhcp_grace, *hints]
    )

    result = plan(desired(config, state), state, now)

    for held in result.held:
        if held.until is not None:
            assert now < held.until <= now + longest, held


def _updated_two_hours_ahead() -> History:
    """An update stamped two hours after the clock's `now` (the clock stepped back since)."""
    history = History(make_config(min_update_interval=600.0))
    history.record(EndpointObserved(None, "tunnel-info"))
    history.record(WanAddressObserved("em0", ADDR, True))
    history.record(TunnelObserved("gif0", True, True, ADDR, "198.51.100.1"))
    history.record(ProbeObserved("ipv4", "198.51.100.53", True, 0.01))
    key = f"update-he-endpoint:{ADDR}"
    history.record(ActionStarted(key, "update-he-endpoint", "x"), after=HOURS_2)
    history.record(ActionFailed(key, "update-he-endpoint", "temporary", "911"))
    history.now -= HOURS_2 + 1  # the clock steps back two hours
    return history


def test_an_update_stamped_in_the_future_holds_nothing() -> None:
    """After facts stamped 2 h ahead, the update goes now: a stamp from the future is no
    reason to wait (counted as "just now" it held every plan for the interval from its own
    `now`, sliding forward for as long as the gap)."""
    history = _updated_two_hours_ahead()
    assert "update-he-endpoint" in history.kinds()
    assert "update-he-endpoint" in history.kinds(later=3000.0)
    assert not [h for h in history.plan().held if h.action.KIND == "update-he-endpoint"]


def test_an_update_recorded_after_the_step_holds_as_usual() -> None:
    """What the corrected clock stamps holds for its interval: a failed update right after the
    step waits min_update_interval (the future one above is what does not count)."""
    history = _updated_two_hours_ahead()
    key = f"update-he-endpoint:{ADDR}"
    history.record(ActionStarted(key, "update-he-endpoint", "x"))
    history.record(ActionFailed(key, "update-he-endpoint", "temporary", "911"))
    held = [h for h in history.plan().held if h.action.KIND == "update-he-endpoint"]
    assert held and held[0].why in ("min-update-interval", "backoff")
    assert held[0].until is not None and history.now < held[0].until <= history.now + 600.0


def test_a_restart_stamped_in_the_future_holds_nothing() -> None:
    """A restart recorded before a step back does not hold the next one for the size of the
    step, nor its backoff from now: the tunnel that is down is restarted."""
    history = History(make_config())
    history.record(WanAddressObserved("em0", ADDR, True))
    history.record(EndpointObserved(ADDR, "tunnel-info", for_local=ADDR))
    history.record(ProbeObserved("ipv4", "198.51.100.53", True, 0.01))
    key = f"restart-tunnel:{ADDR}->198.51.100.1"
    history.record(ActionStarted(key, "restart-tunnel", "x"), after=HOURS_2)
    history.record(ActionSucceeded(key, "restart-tunnel"))
    history.record(TunnelObserved("gif0", False, True, ADDR, "198.51.100.1"))
    history.now -= HOURS_2
    assert not [h for h in history.plan().held if h.action.KIND == "restart-tunnel"]
    assert "restart-tunnel" in history.kinds()
