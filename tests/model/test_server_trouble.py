"""The planner's back-off after trouble at HE's server (issue 19): it starts at backoff_min,
grows with updates in a row that met trouble up to he_backoff_max, ends at HE's first good
word (good, nochg, its tunnel info, or the tunnel proving a late-answered update), honours
Retry-After, and holds a new address only for the back-off's next slot."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model.actions import HE_ABUSE, UpdateHeEndpoint
from reconciler.model.config import ReconcileConfig
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    EndpointObserved,
    HostnameFileObserved,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
)
from reconciler.model.hostname import digest_of, render_hostname_file
from reconciler.model.plan import Held

from .world import HE_SERVER, History, make_config

OLD = "203.0.113.7"
ADDRESSES = ["203.0.113.9", "203.0.113.11", "203.0.113.13", "203.0.113.15"]
BOUNDS = ReconcileConfig(backoff_min=10.0, backoff_max=3600.0, he_backoff_max=600.0)
SERVER_TROUBLE = "HE answered HTTP 503: <html><body>Service Unavailable</body></html>"


def working(history: History, address: str = OLD) -> History:
    """A network that works with `address`, as a fresh start-up observes it."""
    content = render_hostname_file(history.config.tunnel, address)
    history.record(WanAddressObserved("em0", address, True))
    history.record(TunnelObserved("gif0", True, True, address, HE_SERVER))
    history.record(HostnameFileObserved("/etc/hostname.gif0", digest_of(content.encode())))
    history.record(ProbeObserved("ipv4", "198.51.100.53", True, 3.0))
    history.record(ProbeObserved("ipv6", "2001:db8::53", True, 4.0))
    return history


def trouble_history(*, min_update_interval: float = 1.0) -> History:
    return working(History(make_config(min_update_interval=min_update_interval, reconcile=BOUNDS)))


def send(
    history: History,
    address: str,
    outcome: str = "trouble",
    *,
    retry_after: float | None = None,
    unconfirmed: bool = False,
) -> UpdateHeEndpoint:
    """The WAN moves to `address` (if it is not there) and its update goes out now, meeting
    `outcome`: "trouble" (a 503), "good", or "abuse"."""
    if history.state.wan is None or history.state.wan.address != address:
        history.record(WanAddressObserved("em0", address, True), after=0.0)
    update = UpdateHeEndpoint(address, address)
    history.record(ActionStarted(update.key, update.KIND, "test"), after=0.0)
    if outcome == "good":
        history.record(ActionSucceeded(update.key, update.KIND, f"HE endpoint good: {address}"))
        history.record(EndpointObserved(address, "update", for_local=address), after=0.0)
    else:
        message = f"{HE_ABUSE}; waiting hours" if outcome == "abuse" else SERVER_TROUBLE
        history.record(
            ActionFailed(
                update.key, update.KIND, "temporary", message, retry_after, unconfirmed=unconfirmed
            )
        )
    return update


def update_hold(history: History, later: float = 0.0) -> Held | None:
    """The hold on the update the plan wants now (None: it goes, or none is wanted)."""
    held = [h for h in history.plan(later=later).held if h.action.KIND == UpdateHeEndpoint.KIND]
    return held[0] if held else None


def test_one_503_holds_a_new_address_only_for_backoff_min() -> None:
    """After one 503 (no Retry-After: the client no longer puts 600 s on it) a WAN change two
    minutes later is updated at once: the back-off's first slot (backoff_min) is long over,
    and so is min_update_interval."""
    history = trouble_history(min_update_interval=30.0)
    send(history, ADDRESSES[0])
    hold = update_hold(history)
    assert hold is not None and hold.why == "min-update-interval"
    history.record(WanAddressObserved("em0", ADDRESSES[1], True), after=120.0)
    assert "update-he-endpoint" in history.kinds()


def test_a_new_address_waits_for_the_next_slot_not_for_nothing() -> None:
    """Trouble at HE is not one address's: a new address right after it waits for the
    back-off's slot (backoff_min after the trouble), not a moment longer."""
    history = trouble_history()
    send(history, ADDRESSES[0])
    failed_at = history.now
    history.record(WanAddressObserved("em0", ADDRESSES[1], True), after=2.0)
    hold = update_hold(history)
    assert hold is not None and (hold.why, hold.until) == ("backoff", failed_at + 10.0)
    assert "trouble at HE" in hold.detail
    assert "update-he-endpoint" in history.kinds(later=failed_at + 10.0 - history.now)


def test_trouble_in_a_row_grows_across_addresses_up_to_the_ceiling() -> None:
    """Each update in a row that meets trouble doubles the wait, whichever address it was for,
    up to he_backoff_max (600 s), never backoff_max (an hour)."""
    history = trouble_history()
    waits = []
    for n in range(8):
        send(history, ADDRESSES[n % len(ADDRESSES)])
        failed_at = history.now
        history.record(WanAddressObserved("em0", ADDRESSES[(n + 1) % len(ADDRESSES)], True))
        hold = update_hold(history)
        assert hold is not None and hold.until is not None
        waits.append(hold.until - failed_at)
        history.now = hold.until
    assert waits == [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0]


@pytest.mark.parametrize(
    "good_word",
    ["good", "tunnel-info"],
)
def test_any_good_word_from_he_resets_the_back_off(good_word: str) -> None:
    """A good answer, or HE's tunnel info, ends the trouble: the next trouble starts again at
    backoff_min, and an update wanted after the good word goes at once."""
    history = trouble_history()
    for address in ADDRESSES[:3]:
        send(history, address)
        history.now += 1000.0
    send(history, ADDRESSES[3])  # the fourth in a row: 80 s
    if good_word == "good":
        send(history, ADDRESSES[3], "good")
    else:
        history.record(EndpointObserved(ADDRESSES[2], "tunnel-info"))
        assert update_hold(history) is None
        assert "update-he-endpoint" in history.kinds()
    assert history.state.he_trouble is None
    send(history, ADDRESSES[0])
    failed_at = history.now
    history.record(WanAddressObserved("em0", ADDRESSES[1], True))
    hold = update_hold(history)
    assert hold is not None and hold.until == failed_at + 10.0


def test_retry_after_sets_a_longer_wait_and_a_shorter_one_does_not_shorten_it() -> None:
    """HE's Retry-After holds every update that long when it is longer than the slot; a
    shorter one leaves the slot as it is."""
    history = trouble_history()
    send(history, ADDRESSES[0], retry_after=120.0)
    failed_at = history.now
    history.record(WanAddressObserved("em0", ADDRESSES[1], True))
    hold = update_hold(history)
    assert hold is not None and (hold.why, hold.until) == ("retry-after", failed_at + 120.0)
    history.now = failed_at + 121.0
    send(history, ADDRESSES[1], retry_after=1.0)
    failed_at = history.now
    hold = update_hold(history, later=0.5)
    assert hold is not None and (hold.why, hold.until) == ("backoff", failed_at + 20.0)


def test_the_same_request_never_goes_faster_than_min_update_interval() -> None:
    """However short the back-off, the same update waits min_update_interval after its last
    attempt."""
    history = trouble_history(min_update_interval=300.0)
    send(history, ADDRESSES[0])
    started_at = history.state.last_update_attempt_at
    assert started_at is not None
    hold = update_hold(history, later=15.0)
    assert hold is not None and (hold.why, hold.until) == (
        "min-update-interval",
        started_at + 300.0,
    )


def test_abuse_still_holds_every_update_for_hours() -> None:
    """abuse is no server trouble: its hours hold every address, a new one included."""
    history = trouble_history()
    send(history, ADDRESSES[0], "abuse", retry_after=3 * 3600.0)
    history.record(WanAddressObserved("em0", ADDRESSES[1], True), after=700.0)
    hold = update_hold(history)
    assert hold is not None and hold.why == "retry-after" and "abuse" in hold.detail
    assert history.state.he_trouble is None


def test_a_late_answer_proven_by_the_tunnel_holds_no_later_update() -> None:
    """HE applied an update and answered after the deadline (unconfirmed, with the 600 s
    an older client recorded): the rebuilt tunnel carries IPv6, which ends the trouble that
    update stood for. A WAN change 5 s later is updated at once, not 600 s after the answer."""
    # A first slot longer than the story: only the end of the trouble lets the update go.
    bounds = ReconcileConfig(backoff_min=60.0, he_backoff_max=600.0)
    history = working(History(make_config(min_update_interval=1.0, reconcile=bounds)))
    update = send(history, ADDRESSES[0], retry_after=600.0, unconfirmed=True)
    plan = history.plan()
    assert [h.why for h in plan.held if h.action == update] == ["unconfirmed"]
    for action in plan:
        history.record(ActionStarted(action.key, action.KIND, "test"))
        history.record(ActionSucceeded(action.key, action.KIND))
    content = render_hostname_file(history.config.tunnel, ADDRESSES[0])
    history.record(HostnameFileObserved("/etc/hostname.gif0", digest_of(content.encode())))
    history.record(TunnelObserved("gif0", True, True, ADDRESSES[0], HE_SERVER))
    history.record(ProbeObserved("ipv6", "2001:db8::53", True))
    assert history.plan().empty
    assert history.state.he_trouble is None
    history.record(WanAddressObserved("em0", ADDRESSES[1], True), after=5.0)
    assert history.kinds()[0] == "update-he-endpoint"


def test_a_late_answer_for_another_address_is_not_proven_by_the_old_tunnel() -> None:
    """IPv6 across the tunnel of an address the troubled update was not for proves nothing
    about it: the trouble stays."""
    history = trouble_history()
    send(history, ADDRESSES[0], unconfirmed=True)
    history.record(ProbeObserved("ipv6", "2001:db8::53", True))  # the tunnel is still OLD's
    assert history.state.he_trouble is not None


# --- the property ---------------------------------------------------------------------------

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["trouble", "trouble", "trouble", "good", "tunnel-info", "abuse"]),
        st.none() | st.floats(0.0, 7200.0),  # HE's Retry-After with trouble
        st.floats(0.5, 2000.0),  # seconds until the next event
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(EVENTS, st.floats(1.0, 60.0), st.floats(1.0, 900.0))
def test_the_back_off_grows_caps_resets_and_honours_retry_after(
    events: list[tuple[str, float | None, float]], backoff_min: float, ceiling: float
) -> None:
    """Whatever HE answers: after n updates in a row that met server trouble (since its last
    good word) a new address waits exactly until the latest trouble plus
    max(min(backoff_min * 2^(n-1), ceiling), Retry-After) and not a moment more; none after a
    good word; and abuse holds hours whatever else."""
    ceiling = max(ceiling, backoff_min)
    bounds = ReconcileConfig(backoff_min=backoff_min, he_backoff_max=ceiling)
    history = working(History(make_config(min_update_interval=1.0, reconcile=bounds)))
    in_a_row, last_at, last_retry, abused_until = 0, 0.0, None, 0.0
    for i, (word, retry_after, gap) in enumerate(events):
        address = f"203.0.113.{20 + i}"
        if word == "tunnel-info":
            history.record(EndpointObserved(OLD, "tunnel-info"))
            in_a_row = 0
        elif word == "abuse":
            send(history, address, "abuse", retry_after=3 * 3600.0)
            abused_until = history.now + 3 * 3600.0
        else:
            send(history, address, word, retry_after=retry_after)
            if word == "good":
                in_a_row = 0
            else:
                in_a_row, last_at, last_retry = in_a_row + 1, history.now, retry_after
        fresh = f"203.0.113.{200 + i}"  # never sent: only the shared holds apply to it
        history.record(WanAddressObserved("em0", fresh, True), after=0.0)
        hold = update_hold(history)
        due = 0.0
        if in_a_row:
            slot = min(backoff_min * 2 ** (in_a_row - 1), ceiling)
            due = last_at + max(slot, last_retry or 0.0)
            assert slot <= ceiling
        due = max(due, abused_until, (history.state.last_update_attempt_at or 0.0) + 1.0)
        if due <= history.now:
            assert hold is None, hold
        else:
            assert hold is not None and hold.until == pytest.approx(due)
        assert (history.state.he_trouble is None) == (in_a_row == 0)
        history.now += gap
