"""A simulated world driven by plan -> apply -> observe (Hypothesis): the loop converges when
the world allows, and never abuses Hurricane Electric."""

from __future__ import annotations

import itertools

import pytest
from attrs import define, field
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reconciler.model.actions import (
    PRIVATE_ADDRESS_REFUSED,
    Action,
    ReloadPf,
    RestartTunnel,
    RestartWan,
    RewriteHostname,
    UpdateHeEndpoint,
)
from reconciler.model.config import ReconcileConfig
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    DaemonStarted,
    EndpointObserved,
    HostnameFileObserved,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
)
from reconciler.model.hostname import digest_of

from .world import HE_SERVER, History, make_config

ADDRESSES = ["203.0.113.7", "203.0.113.9", "198.51.100.4", "192.168.1.20"]
# Public to our check (sent as myip), private to HE's (RFC 2544 benchmarking): HE refuses it.
REFUSED = "198.18.0.7"
# "crash-after": HE takes the update and the daemon dies before it records the outcome;
# "crash-before": the daemon dies before the request reaches HE.
ANSWERS = ["good", "abuse", "badauth", "911", "crash-after", "crash-before"]
MIN_UPDATE_INTERVAL = 600.0


@define
class World:
    """The network and HE as the simulation keeps them."""

    wan: str | None = "203.0.113.7"
    he_endpoint: str | None = None
    he_for_local: str | None = None
    tunnel_local: str | None = None
    tunnel_up: bool = False
    hostname_digest: str | None = None
    info_url: bool = False  # tunnelbroker.info_url set: HE's endpoint is observed
    answers: list[str] = field(factory=list)
    sends: list[tuple[float, str | None]] = field(factory=list)
    nochg: int = 0
    permanent_at: float | None = None  # when HE refused the account (badauth)
    sends_after_permanent: int = 0
    refused_by_he: frozenset[str] = frozenset()  # addresses HE refuses as private
    refusals: set[str] = field(factory=set)  # the refused addresses the log has
    resent_refused: int = 0  # sends of an address after its refusal was recorded

    def answer(self) -> str:
        return self.answers.pop(0) if self.answers else "good"


def observe(history: History, world: World) -> None:
    history.record(WanAddressObserved("em0", world.wan, True), after=0)
    history.record(
        TunnelObserved("gif0", world.tunnel_local is not None, world.tunnel_up,
                       world.tunnel_local, HE_SERVER),
        after=0,
    )  # fmt: skip
    history.record(HostnameFileObserved("/etc/hostname.gif0", world.hostname_digest), after=0)
    history.record(ProbeObserved("ipv4", "t", world.wan is not None), after=0)
    ipv6_works = (
        world.tunnel_up and world.tunnel_local == world.wan and world.he_for_local == world.wan
    )
    history.record(ProbeObserved("ipv6", "t", ipv6_works), after=0)
    if world.info_url:
        history.record(EndpointObserved(world.he_endpoint, "tunnel-info"), after=0)


class Crashed(Exception):
    """The daemon died in the middle of an action: no outcome is recorded."""


def apply(history: History, world: World, action: Action) -> bool:
    """Run one action against the world, recording intent and outcome like the daemon."""
    history.record(ActionStarted(action.key, action.KIND, action.reason, action.causes), after=0)
    ok, kind, message, retry = True, "", "", None
    match action:
        case UpdateHeEndpoint():
            answer = world.answer()
            if answer == "crash-before":
                raise Crashed
            world.sends.append((history.now, action.address))
            if world.permanent_at is not None:
                world.sends_after_permanent += 1
            # Behind NAT HE takes the request's source address: our public one for this WAN.
            becomes = action.address or f"nat-for-{action.local}"
            if becomes in world.refusals:
                world.resent_refused += 1
            if becomes in world.refused_by_he:
                # HE's legacy answer, whatever else it would have said; it takes nothing.
                if answer == "crash-after":
                    raise Crashed
                world.refusals.add(becomes)
                message = f"{PRIVATE_ADDRESS_REFUSED} {becomes} (RFC 1918)"
                history.record(ActionFailed(action.key, action.KIND, "permanent", message), after=0)
                return False
            if becomes == world.he_endpoint:
                world.nochg += 1
            if answer == "crash-after":
                world.he_endpoint, world.he_for_local = becomes, action.local
                raise Crashed
            if answer == "good":
                world.he_endpoint = becomes
                world.he_for_local = action.local
                history.record(
                    EndpointObserved(world.he_endpoint, "update", for_local=action.local), after=0
                )
            else:
                ok, message = False, answer
                kind = "permanent" if answer == "badauth" else "temporary"
                retry = 7200.0 if answer == "abuse" else None
                if kind == "permanent":
                    world.permanent_at = history.now
        case RewriteHostname():
            world.hostname_digest = digest_of(action.content.encode())
        case RestartTunnel():
            world.tunnel_local, world.tunnel_up = action.local, True
        case RestartWan() | ReloadPf():
            pass
    if ok:
        history.record(ActionSucceeded(action.key, action.KIND), after=0)
    else:
        history.record(
            ActionFailed(action.key, action.KIND, kind, message, retry),
            after=0,  # type: ignore[arg-type]
        )
    return ok


def step(history: History, world: World, dt: float) -> bool:
    """One reconcile pass after `dt` seconds; True when the plan was empty."""
    history.now += dt
    observe(history, world)
    plan = history.plan()
    try:
        for action in plan:
            if not apply(history, world, action):
                break
    except Crashed:
        history.record(DaemonStarted(4321, "sim"), after=1)  # started again from the log
    return plan.empty


scenario = st.lists(
    st.tuples(st.none() | st.sampled_from(ADDRESSES), st.sampled_from(ANSWERS)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@example(
    # Found by Hypothesis: HE takes the update for .7 (the daemon dies before recording it),
    # the update for .9 never reaches HE, and the WAN comes back to .7, which HE has.
    [(None, "crash-after"), (None, "crash-before"), ("203.0.113.9", "good")]
    + [(None, "good")] * 9
    + [("203.0.113.7", "good")],
    "interface",
    False,
)
@example(
    # Found by Hypothesis: HE takes the update for .7 (the daemon dies before recording it);
    # the one for .9 meets HE's abuse lock-out, whose retry-after outlasts the wait for the
    # tunnel; the WAN comes back to .7, which HE has: the tunnel must be rebuilt to tell.
    [(None, "crash-after"), ("203.0.113.9", "abuse")]
    + [(None, "good")] * 9
    + [("203.0.113.7", "good")],
    "interface",
    False,
)
@given(scenario, st.sampled_from(["interface", "tunnelbroker"]), st.booleans())
def test_loop_converges_and_never_abuses_he(
    events: list[tuple[str | None, str]], public_address: str, info_url: bool
) -> None:
    """Random address changes and HE answers, with and without HE's tunnel info, behind NAT
    or not: no nochg, no two sends within the minimum interval, nothing after a permanent
    failure, and convergence once the world allows."""
    history, world, converged = live_through_with_bounds(events, public_address, info_url)
    assert_never_abused(world)
    if world.permanent_at is None:
        assert converged, f"did not converge: {history.plan()}"
        assert world.tunnel_local == world.wan
        assert world.he_for_local == world.wan  # IPv6 works across the tunnel
    else:
        plan = history.plan()
        assert all(
            h.why == "permanent-failure" for h in plan.held if h.action.KIND == "update-he-endpoint"
        )


def live_through(history: History, world: World, events: list[tuple[str | None, str]]) -> bool:
    """Play `events` a minute apart (a new WAN address or none, and HE's answer to the next
    update), then let HE answer "good" from then on: True when the loop converged."""
    for new_address, answer in events:
        if new_address is not None:
            world.wan = new_address
        world.answers.append(answer)
        step(history, world, 60.0)
    world.answers.clear()  # from now on HE answers "good": the world allows convergence
    # Converged: two empty plans in a row; any() stops at the first.
    return any(step(history, world, 300.0) and step(history, world, 300.0) for _ in range(80))


def assert_never_abused(world: World) -> None:
    """No nochg, no two sends within the minimum interval, nothing after HE refused the
    account, no address sent again after HE refused it (the configuration never changes)."""
    assert world.nochg == 0
    times = [at for at, _ in world.sends]
    assert all(b - a >= MIN_UPDATE_INTERVAL for a, b in itertools.pairwise(times))
    assert world.sends_after_permanent == 0
    assert world.resent_refused == 0


@settings(max_examples=60, deadline=None)
@example(
    # The WAN has an address HE refuses as private, then a public one.
    [(REFUSED, "good")],
    "interface",
    False,
    "203.0.113.9",
)
@example(
    # Found by Hypothesis: HE takes the update for .7 (the daemon dies before recording it),
    # the one for .9 meets HE's abuse lock-out, and the WAN comes back to .7.
    [(None, "crash-after"), ("203.0.113.9", "abuse")] + [(None, "good")] * 9,
    "interface",
    False,
    "203.0.113.7",
)
@given(
    st.lists(
        st.tuples(
            st.none() | st.sampled_from([*ADDRESSES, REFUSED]),
            st.sampled_from(ANSWERS),
        ),
        min_size=1,
        max_size=25,
    ),
    st.sampled_from(["interface", "tunnelbroker"]),
    st.booleans(),
    st.sampled_from(ADDRESSES),
)
def test_an_address_he_refuses_as_private_holds_only_itself(
    events: list[tuple[str | None, str]], public_address: str, info_url: bool, final: str
) -> None:
    """HE refuses one address as private (RFC 1918), wherever it comes among random address
    changes and answers: that address is never sent again under the same configuration, HE
    is never abused, and once the WAN has an address HE takes, the loop converges on it,
    unless HE refused the account itself (badauth), which holds every update."""
    history, world, converged = live_through_with_bounds(
        [*events, (final, "good")], public_address, info_url, refused_by_he=frozenset({REFUSED})
    )
    assert_never_abused(world)
    if world.permanent_at is None:
        assert converged, f"did not converge: {history.plan()}"
        assert world.tunnel_local == world.wan == final
        assert world.he_for_local == final  # HE took the update for it, refused or not before
    else:
        plan = history.plan()
        assert all(
            h.why == "permanent-failure" for h in plan.held if h.action.KIND == "update-he-endpoint"
        )


def live_through_with_bounds(
    events: list[tuple[str | None, str]],
    public_address: str,
    info_url: bool,
    refused_by_he: frozenset[str] = frozenset(),
) -> tuple[History, World, bool]:
    """`live_through` in a fresh world with the properties' bounds."""
    bounds = ReconcileConfig(backoff_min=5, backoff_max=3600, restart_limit=5, restart_window=900)
    history = History(
        make_config(
            public_address=public_address,
            min_update_interval=MIN_UPDATE_INTERVAL,
            reconcile=bounds,
        )
    )
    world = World(info_url=info_url, refused_by_he=refused_by_he)
    return history, world, live_through(history, world, events)


@pytest.mark.parametrize(
    ("crash", "sent"),
    [
        ("crash-after", ["203.0.113.7", "203.0.113.9", "203.0.113.7"]),
        ("crash-before", ["203.0.113.7"]),
    ],
)
def test_a_crash_during_the_update_for_another_address_leaves_what_he_has_unknown(
    crash: str, sent: list[str]
) -> None:
    """HE confirmed .7; the daemon dies during the update for .9 ("crash-after": HE takes
    it; "crash-before": it never reaches HE); the WAN comes back to .7. HE's confirmation of
    .7 is older than an update that may have replaced it: IPv6 across the tunnel from .7
    tells. When it fails, .7 goes out again (once the minimum interval allows); when it
    works, nothing is sent (a nochg). (The old confirmation used to be trusted: after
    "crash-after", .7 was never sent again, IPv6 stayed down and the tunnel was rebuilt
    every 15 minutes for ever, never reaching the restart limit.)"""
    events = [(None, "good"), (None, crash)] + [(None, "good")] * 8
    events += [("203.0.113.9", "good"), ("203.0.113.7", "good")]
    history, world, converged = live_through_with_bounds(events, "interface", False)
    assert_never_abused(world)
    assert converged, f"did not converge: {history.plan()}"
    assert world.wan == world.tunnel_local == world.he_for_local == "203.0.113.7"
    assert [address for _, address in world.sends] == sent


def test_an_address_he_shows_after_a_crashed_update_is_not_sent_again() -> None:
    """Behind NAT, with HE's tunnel info: the daemon dies during the update for .9, which HE
    takes, and the tunnel info then shows HE's new endpoint; the WAN goes back to .7 (its
    update meets HE's abuse lock-out), then to .9 again. HE has .9's endpoint: sending it
    again would be a nochg, which HE counts toward a lock-out that takes IPv6 away for
    hours. (It used to be sent, the tunnel info not saying for which WAN address it was.)"""
    events = [(None, "good"), (None, "crash-after"), (None, "abuse")] + [(None, "good")] * 7
    events += [("203.0.113.9", "good"), ("203.0.113.7", "good")] + [(None, "good")] * 9
    events += [("203.0.113.9", "good")]
    history, world, converged = live_through_with_bounds(events, "tunnelbroker", True)
    assert_never_abused(world)
    assert converged, f"did not converge: {history.plan()}"
    assert world.wan == world.tunnel_local == world.he_for_local == "203.0.113.9"
