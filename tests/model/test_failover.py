"""The failover policy (reconciler.model.failover): each WAN's health from its probes, the
active WAN folded from the choices, hysteresis both ways and the hourly budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.configfile import load_config
from reconciler.model.facts import ConfigLoaded, Envelope, ProbeObserved, WanChosen, WanProbed
from reconciler.model.failover import (
    BUDGET_WINDOW,
    FailoverView,
    Policy,
    decide,
    next_due,
    view_from_mapping,
    with_active_wan,
)
from reconciler.model.state import ObservedState, fold, state_from_mapping, state_to_mapping

T0 = 1_700_000_000.0
ORDER = ("em0", "em1")


class World:
    """The daemon's side of failover, as a fold and a decision after each fact."""

    def __init__(self, policy: Policy, fail_after: int = 3, recover_after: int = 1) -> None:
        self.policy = policy
        self.seq = 0
        self.state = ObservedState()
        self.record(
            T0 - 1,
            ConfigLoaded("d", "/c", {}, {"ipv4": fail_after}, {"ipv4": recover_after}),
        )
        self.choices: list[tuple[float, WanChosen]] = []

    def record(self, at: float, fact: object) -> None:
        self.seq += 1
        self.state = fold(self.state, Envelope(self.seq, at, "test", fact))  # type: ignore[arg-type]

    def probe(self, at: float, interface: str, ok: bool) -> None:
        self.record(at, WanProbed(interface, "192.0.2.1", ok))
        choice = decide(self.policy, self.state.failover, at)
        if choice is not None:
            fact = choice.fact()
            self.record(at, fact)
            self.choices.append((at, fact))

    @property
    def active(self) -> str:
        view = self.state.failover
        return view.active if view is not None and view.active is not None else ORDER[0]

    def switches(self) -> list[tuple[float, WanChosen]]:
        return [(at, c) for at, c in self.choices if c.kind != "held"]


def run(
    world: World, seconds: int, up: Callable[[str, float], bool], interval: float = 1.0
) -> World:
    ticks = int(seconds / interval)
    for tick in range(ticks):
        at = T0 + tick * interval
        for interface in ORDER:
            world.probe(at, interface, up(interface, at))
    return world


def policy(failback_after: float = 60.0, budget: int = 4, fail_after: int = 3) -> Policy:
    return Policy(ORDER, failback_after, budget, fail_after)


def test_fails_over_after_fail_after_probes_with_its_reason() -> None:
    """em0 down after 3 failures while em1 is healthy: one failover, its reason says why."""
    world = World(policy())
    run(world, 10, lambda i, at: True)
    assert world.choices == []
    start = T0 + 10
    for n in range(3):
        world.probe(start + n, "em1", True)
        world.probe(start + n, "em0", False)
        assert world.active == ("em1" if n == 2 else "em0")
    ((at, chosen),) = world.choices
    assert (chosen.interface, chosen.previous, chosen.kind) == ("em1", "em0", "failover")
    assert at == start + 2
    assert chosen.reason == (
        "em0 failed 3 probes at 22:13:32; em1 healthy for 12 s; failover budget 3/4 left this hour"
    )


def test_both_down_nothing_moves() -> None:
    """With no healthy WAN the tunnel stays where it is: no choice, no HE update."""
    world = World(policy())
    run(world, 5, lambda i, at: True)
    for n in range(20):
        world.probe(T0 + 5 + n, "em0", False)
        world.probe(T0 + 5 + n, "em1", False)
    assert world.choices == [] and world.active == "em0"


def test_failback_waits_for_failback_after() -> None:
    """em0 back: no failback before it has been up for failback_after, then exactly one."""
    world = World(policy(failback_after=60.0))
    run(world, 30, lambda i, at: i == "em1" or at < T0 + 10)
    assert [c.interface for _, c in world.switches()] == ["em1"]
    back = T0 + 30
    for n in range(120):
        world.probe(back + n, "em0", True)
        world.probe(back + n, "em1", True)
    (_, _failover), (at, failback) = world.switches()
    assert failback.kind == "failback" and failback.interface == "em0"
    assert at == back + 60
    assert failback.reason.startswith("em1 is the fallback; em0 healthy for 60 s")


def test_budget_spent_holds_and_says_needs_attention_once() -> None:
    """Past the budget the tunnel stays; "held" is said once, not on every probe."""
    world = World(policy(failback_after=2.0, budget=2, fail_after=1))
    run(world, 120, lambda i, at: i == "em1" or int(at - T0) % 10 < 5)
    assert len(world.switches()) == 2
    held = [c for _, c in world.choices if c.kind == "held"]
    assert len(held) == 1
    assert "failover budget 0/2 left this hour: staying on" in held[0].reason


def test_budget_frees_after_an_hour() -> None:
    """Switches older than an hour no longer count."""
    world = World(policy(failback_after=2.0, budget=1, fail_after=1))
    run(world, 20, lambda i, at: i == "em1" or not T0 + 5 <= at < T0 + 10)
    assert len(world.switches()) == 1  # failover; the failback is held by the budget
    assert world.choices[-1][1].kind == "held"
    later = T0 + BUDGET_WINDOW + 10
    world.probe(later, "em1", True)
    world.probe(later, "em0", True)
    assert world.switches()[-1][1].kind == "failback"


def test_view_survives_a_snapshot() -> None:
    """The failover view goes through the snapshot mapping unchanged."""
    world = run(World(policy()), 30, lambda i, at: i == "em1" or at < T0 + 10)
    assert world.state.failover is not None
    again = state_from_mapping(state_to_mapping(world.state))
    assert again == world.state
    assert view_from_mapping({"active": "em1"}) == FailoverView(active="em1")


def test_steady_probes_fold_to_the_same_view() -> None:
    """A healthy WAN probed again changes nothing (the recorder counts it, no news)."""
    world = run(World(policy()), 5, lambda i, at: True)
    before = world.state.failover
    world.probe(T0 + 100, "em0", True)
    assert world.state.failover == before


# --- properties -----------------------------------------------------------------------------

flaps = st.lists(st.booleans(), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    em0=flaps,
    em1=flaps,
    period=st.integers(1, 10),
    budget=st.integers(1, 6),
    fail_after=st.integers(1, 4),
    recover_after=st.integers(1, 3),
    failback_after=st.sampled_from([0.0, 5.0, 30.0, 90.0]),
)
def test_policy_never_abuses_he(
    em0: Sequence[bool],
    em1: Sequence[bool],
    period: int,
    budget: int,
    fail_after: int,
    recover_after: int,
    failback_after: float,
) -> None:
    """Whatever the WANs do: never more switches (HE updates) within an hour than the budget;
    never a switch to a WAN that is not healthy (so with both down nothing is sent); never a
    failback before the WAN has been up for failback_after; "held" said at most once between
    switches."""
    world = World(Policy(ORDER, failback_after, budget, fail_after), fail_after, recover_after)
    patterns = {"em0": em0, "em1": em1}
    up_since: dict[str, float | None] = {"em0": None, "em1": None}
    health_before: dict[str, str] = {}
    for tick in range(4 * 60):  # four minutes, a probe a second
        at = T0 + tick
        for interface in ORDER:
            pattern = patterns[interface]
            ok = pattern[(tick // period) % len(pattern)]
            count = len(world.choices)
            world.probe(at, interface, ok)
            view = world.state.failover
            assert view is not None
            for health in view.health:
                if health.status == "up" and health_before.get(health.interface) != "up":
                    up_since[health.interface] = at
                health_before[health.interface] = health.status
            for _, chosen in world.choices[count:]:
                if chosen.kind == "held":
                    continue
                target = view.of(chosen.interface)
                assert target is not None and target.status == "up"
                assert target.consecutive_failed == 0
                if chosen.kind == "failback":
                    since = up_since[chosen.interface]
                    assert since is not None and at - since >= failback_after
    times = [at for at, _ in world.switches()]
    for i, at in enumerate(times):
        assert sum(1 for t in times[i:] if t < at + BUDGET_WINDOW) <= budget
    kinds = [c.kind for _, c in world.choices]
    assert "held,held" not in ",".join(kinds)


def test_flapping_every_5s_for_2_minutes_stays_within_the_budget() -> None:
    """The issue's scenario: em0 up 5 s, down 5 s, for two minutes; at most the budget of HE
    updates, and needs-attention (held) said once."""
    world = World(policy(failback_after=3.0, budget=4, fail_after=3))
    run(world, 120, lambda i, at: i == "em1" or int(at - T0) // 5 % 2 == 0)
    assert len(world.switches()) == 4
    assert [c.kind for _, c in world.choices].count("held") == 1


def test_next_due_is_when_a_failback_or_the_budget_frees() -> None:
    """A steady probe is no news, so the daemon asks again at next_due: when the preferred
    WAN reaches failback_after, or when the oldest switch leaves the hour."""
    pol = policy(failback_after=60.0, budget=1)
    world = World(pol)
    run(world, 30, lambda i, at: i == "em1" or not T0 + 5 <= at < T0 + 10)
    view = world.state.failover
    assert view is not None and world.active == "em1"
    em0 = view.of("em0")
    assert em0 is not None and em0.up_since == T0 + 10
    # the failback would be due at T0 + 70, but the budget (1) is spent until an hour on
    (at, _), *_ = world.switches()
    assert next_due(pol, view, T0 + 30) == T0 + 70
    assert next_due(pol, view, T0 + 70) == at + BUDGET_WINDOW
    assert next_due(policy(failback_after=60.0, budget=4), view, T0 + 30) == T0 + 70
    assert next_due(pol, None, T0) is None


def test_with_active_wan_runs_on_that_wans_own_settings(tmp_path: Path) -> None:
    """The active WAN's own settings drive everything: its interface, restart, grace,
    address choice and public address (behind NAT on one WAN only: no myip there), and the
    IPv4 probe leaves through it to its own target. One WAN: the config itself."""
    from tests.config.test_config_wans import SINGLE_WAN, TWO_WANS
    from tests.config.test_configfile import VALID, write_config

    nat = 'probe_target = "192.0.2.1"\npublic_address = "tunnelbroker"'
    two = TWO_WANS.replace('probe_target = "192.0.2.1"', nat)
    config = load_config(write_config(tmp_path, VALID.replace(SINGLE_WAN, two)))
    second = with_active_wan(config, "veth1")
    assert second.wan == config.failover.wans[1]  # type: ignore[union-attr]
    assert second.wan.public_address == "tunnelbroker"
    assert (second.probes["ipv4"].target, second.probes["ipv4"].source) == ("192.0.2.1", "veth1")
    assert second.probes["ipv6"] == config.probes["ipv6"]
    first = with_active_wan(config, "veth0")
    assert first.wan == config.wan
    assert (first.probes["ipv4"].target, first.probes["ipv4"].source) == ("198.51.100.53", "veth0")
    (tmp_path / "one").mkdir()
    one = load_config(write_config(tmp_path / "one", VALID))
    assert with_active_wan(one, "veth9") is one


def test_a_switch_judges_ipv4_afresh_on_the_new_wan() -> None:
    """The IPv4 probe's failures were the old WAN's: after a switch the family is judged
    afresh (unknown), so the planner neither holds nor restarts the new WAN for them; a
    held choice changes nothing of it."""
    world = World(policy(budget=1, failback_after=1.0, fail_after=2), fail_after=2)
    run(world, 5, lambda i, at: True)
    for n in range(2):
        world.record(T0 + 5 + n, ProbeObserved("ipv4", "192.0.2.1", False))
        world.probe(T0 + 5 + n, "em1", True)
        world.probe(T0 + 5 + n, "em0", False)
    assert world.active == "em1"
    probe = world.state.probe("ipv4")
    assert (probe.status, probe.consecutive_failed) == ("unknown", 0)
    world.record(T0 + 8, ProbeObserved("ipv4", "192.0.2.1", False))
    world.record(T0 + 9, ProbeObserved("ipv4", "192.0.2.1", False))
    assert world.state.probe("ipv4").status == "down"
    run_from = T0 + 10
    for n in range(5):  # em0 back: the failback is held by the budget (1)
        world.probe(run_from + n, "em0", True)
    assert world.choices[-1][1].kind == "held"
    assert world.state.probe("ipv4").status == "down"
