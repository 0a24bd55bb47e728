"""Table tests for every planner rule, and the two stories of the original write-up."""

from __future__ import annotations

import attrs
import pytest

from reconciler.model.actions import ReloadPf, RestartTunnel, RestartWan, UpdateHeEndpoint
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
    from_record,
)
from reconciler.model.hostname import digest_of, render_hostname_file
from reconciler.model.plan import backoff_delay
from reconciler.model.state import fold

from .world import HE_SERVER, History, make_config

ADDR = "203.0.113.7"
NEW = "203.0.113.9"


def healthy(history: History, address: str = ADDR) -> History:
    """Record a world where everything matches the configuration."""
    content = render_hostname_file(history.config.tunnel, address)
    history.record(WanAddressObserved("em0", address, True))
    history.record(TunnelObserved("gif0", True, True, address, HE_SERVER))
    history.record(HostnameFileObserved("/etc/hostname.gif0", digest_of(content.encode())))
    history.record(EndpointObserved(address, "update", for_local=address))
    history.record(ProbeObserved("ipv4", "198.51.100.53", True, 3.0))
    history.record(ProbeObserved("ipv6", "2001:db8::53", True, 4.0))
    return history


def fail_probe(history: History, family: str, times: int) -> None:
    for _ in range(times):
        history.record(ProbeObserved(family, "x", False))


def run_ok(history: History, action: object) -> None:
    """Record an action as started and succeeded."""
    key, kind = action.key, action.KIND  # type: ignore[attr-defined]
    history.record(ActionStarted(key, kind, "test"))
    history.record(ActionSucceeded(key, kind))


def test_healthy_world_plans_nothing() -> None:
    """When everything matches, the plan is empty and nothing is held."""
    plan = healthy(History()).plan()
    assert plan.empty and len(plan) == 0


def test_unobserved_world_plans_nothing() -> None:
    """With no observation of the WAN the planner does not guess."""
    assert History().plan().empty


@pytest.mark.parametrize(
    ("wan", "reason"),
    [
        (WanAddressObserved("em0", None, True), "no IPv4 address"),
        (WanAddressObserved("em0", ADDR, False), "link is down"),
        (WanAddressObserved("em0", None, False, exists=False), "missing"),
    ],
)
def test_wan_down_restarts_wan_only(wan: WanAddressObserved, reason: str) -> None:
    """A WAN without an address, link or interface gets restart-wan and nothing else (a
    missing one after its grace)."""
    history = healthy(History())
    history.record(wan)
    plan = history.plan(later=30.0)
    assert [a.KIND for a in plan] == ["restart-wan"]
    assert reason in plan.actions[0].reason
    assert plan.actions[0].causes


def test_single_lost_ping_changes_nothing() -> None:
    """Hysteresis: one failed IPv4 probe below fail_after plans nothing."""
    history = healthy(History())
    fail_probe(history, "ipv4", 2)
    assert history.plan().empty


def test_ipv4_probes_down_restart_wan() -> None:
    """fail_after failed IPv4 probes mean the WAN is down: restart-wan only."""
    history = healthy(History())
    fail_probe(history, "ipv4", 3)
    plan = history.plan()
    assert plan.actions == (RestartWan("em0"),)
    assert "failed 3 times" in plan.actions[0].reason


def test_wan_restart_rejudges_probes() -> None:
    """After a restart-wan the IPv4 probe must fail fail_after times again before another."""
    history = healthy(History())
    fail_probe(history, "ipv4", 3)
    run_ok(history, RestartWan("em0"))
    assert history.plan(later=10_000).empty
    fail_probe(history, "ipv4", 3)
    assert history.kinds(later=10_000) == ["restart-wan"]


def test_endpoint_differs_updates_he() -> None:
    """HE holding another address than our public WAN address asks for an update with myip."""
    history = healthy(History())
    history.record(EndpointObserved("203.0.113.99", "tunnel-info"))
    plan = history.plan()
    assert plan.actions == (UpdateHeEndpoint(ADDR, ADDR),)
    assert "203.0.113.99" in plan.actions[0].reason


def test_update_never_repeated_for_accepted_address() -> None:
    """Once HE accepted an address the planner never asks to send it again."""
    history = healthy(History())
    history.record(EndpointObserved(None, "tunnel-info"))
    run_ok(history, UpdateHeEndpoint(ADDR, ADDR))
    assert "update-he-endpoint" not in history.kinds(later=100_000)


def test_private_wan_address_sends_no_myip() -> None:
    """An RFC 1918 WAN address is never sent as myip; the update compares for_local instead."""
    history = healthy(History(), address="192.168.1.20")
    history.record(EndpointObserved("203.0.113.50", "update", for_local="192.168.1.2"))
    plan = history.plan()
    update = next(a for a in plan if isinstance(a, UpdateHeEndpoint))
    assert update.address is None and update.local == "192.168.1.20"


def test_nat_mode_update_due_on_local_change() -> None:
    """Behind NAT the update is due only when the WAN differs from HE's confirmed for_local."""
    history = History(make_config(public_address="tunnelbroker"))
    healthy(history)
    history.record(EndpointObserved("198.51.100.200", "update", for_local=ADDR))
    assert "update-he-endpoint" not in history.kinds()
    history.record(EndpointObserved("198.51.100.200", "update", for_local="203.0.113.1"))
    assert history.plan().actions[0] == UpdateHeEndpoint(None, ADDR)


def test_nat_mode_tunnel_info_does_not_repeat_the_update() -> None:
    """Behind NAT, HE's tunnel info showing the address it confirmed plans no second update
    (a nochg, which HE counts as abuse), however often it is observed."""
    history = History(make_config(public_address="tunnelbroker"))
    healthy(history)
    history.record(EndpointObserved("198.51.100.200", "update", for_local=ADDR))
    for _ in range(3):
        history.record(EndpointObserved("198.51.100.200", "tunnel-info"), after=700)
        assert history.plan().empty
    history.record(WanAddressObserved("em0", NEW, True))
    assert history.plan().actions[0] == UpdateHeEndpoint(None, NEW)


def test_min_update_interval_holds_second_update() -> None:
    """Two updates are never closer than min_update_interval."""
    history = healthy(History())
    history.record(ActionStarted(f"update-he-endpoint:{NEW}", "update-he-endpoint", "x"))
    history.record(ActionSucceeded(f"update-he-endpoint:{NEW}", "update-he-endpoint"))
    history.record(EndpointObserved(NEW, "update", for_local=NEW))
    plan = history.plan(later=100)
    assert [h.why for h in plan.held] == ["min-update-interval"]
    assert "update-he-endpoint" in history.kinds(later=700)


def test_permanent_failure_holds_until_config_changes() -> None:
    """badauth holds every update while the config digest is the one it failed under."""
    history = healthy(History())
    history.record(EndpointObserved(None, "tunnel-info"))
    key = f"update-he-endpoint:{ADDR}"
    history.record(ActionStarted(key, "update-he-endpoint", "x"))
    history.record(ActionFailed(key, "update-he-endpoint", "permanent", "badauth"))
    plan = history.plan(later=10**7)
    assert plan.held[0].why == "permanent-failure" and plan.held[0].until is None
    history.config = make_config(digest="d2" * 32)
    assert history.kinds(later=10**7) == ["update-he-endpoint"]


# An address our check takes for public (it is sent as myip) and HE's for private (RFC 2544
# benchmarking): HE answers its legacy RFC 1918 refusal.
REFUSED = "198.18.0.7"


def refused(address: str | None) -> str:
    """The message of HE's refusal of a private address, worded as every release records it
    (an old log's wording must keep meaning "this address only")."""
    return (
        f"HE refuses the private address {address or '(source)'} (RFC 1918); behind NAT send "
        'no myip (wan.public_address = "tunnelbroker")'
    )


def refuse_update(history: History, update: UpdateHeEndpoint, message: str) -> None:
    history.record(ActionStarted(update.key, update.KIND, "x"))
    history.record(ActionFailed(update.key, update.KIND, "permanent", message))


def test_a_refused_private_address_holds_only_the_update_for_it() -> None:
    """HE refusing a private address holds the update for that address (until the
    configuration changes), however long; a new WAN address is updated once the minimum
    interval since the refused attempt has passed, not held until the configuration changes."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", REFUSED, True))
    (update,) = (a for a in history.plan() if isinstance(a, UpdateHeEndpoint))
    assert update == UpdateHeEndpoint(REFUSED, REFUSED)
    refuse_update(history, update, refused(REFUSED))
    (hold, *waiting) = history.plan(later=10**7).held
    assert (hold.action, hold.why, hold.until) == (update, "permanent-failure", None)
    assert "another WAN address" in hold.detail and "RFC 1918" in hold.detail
    assert {h.why for h in waiting} == {"waiting"}  # the tunnel waits for HE, as ever
    history.record(WanAddressObserved("em0", NEW, True))
    # Still a rate gate: the refused request was an attempt like any other.
    (soon,) = (h for h in history.plan().held if h.action.KIND == UpdateHeEndpoint.KIND)
    assert (soon.action, soon.why) == (UpdateHeEndpoint(NEW, NEW), "min-update-interval")
    assert history.plan(later=600).actions[0] == UpdateHeEndpoint(NEW, NEW)
    # Back to the refused address before HE took the new one: still not sent again.
    history.record(WanAddressObserved("em0", REFUSED, True), after=600)
    (again, *_) = history.plan(later=10**7).held
    assert (again.action, again.why) == (update, "permanent-failure")
    history.config = make_config(digest="d2" * 32)
    assert history.plan(later=10**7).actions[0] == update


def test_a_refused_address_stays_held_after_another_is_accepted() -> None:
    """HE takes the next WAN address; the WAN then comes back to the refused one: it is not
    sent again (HE would refuse it again), and the hold names the refusal."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", REFUSED, True))
    refuse_update(history, UpdateHeEndpoint(REFUSED, REFUSED), refused(REFUSED))
    history.record(WanAddressObserved("em0", NEW, True), after=700)
    run_ok(history, UpdateHeEndpoint(NEW, NEW))
    history.record(EndpointObserved(NEW, "update", for_local=NEW))
    history.record(WanAddressObserved("em0", REFUSED, True), after=700)
    (hold, *_) = history.plan(later=10**7).held
    assert (hold.action, hold.why) == (UpdateHeEndpoint(REFUSED, REFUSED), "permanent-failure")


def test_a_refusal_behind_nat_holds_only_the_update_for_that_wan_address() -> None:
    """Behind NAT no myip is sent and the refusal is of the source HE saw: it holds the
    update made for that WAN address; the update for a new WAN address goes out."""
    history = History(make_config(public_address="tunnelbroker"))
    healthy(history)
    history.record(EndpointObserved("198.51.100.200", "update", for_local="203.0.113.1"))
    update = UpdateHeEndpoint(None, ADDR)
    assert history.plan().actions[0] == update
    refuse_update(history, update, refused(None))
    assert history.plan(later=10**7).held[0].why == "permanent-failure"
    history.record(WanAddressObserved("em0", NEW, True))
    assert history.plan(later=600).actions[0] == UpdateHeEndpoint(None, NEW)


@pytest.mark.parametrize("version", [1, 2])
def test_a_refusal_in_an_old_log_holds_only_its_address(version: int) -> None:
    """An old log's refusal (an action-failed record of v1 or v2, as those releases wrote it,
    read through the upcasters) folds as before and holds only the refused address."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", REFUSED, True))
    key = f"update-he-endpoint:{REFUSED}"
    history.record(ActionStarted(key, "update-he-endpoint", "x"))
    fields = {
        "key": key,
        "action": "update-he-endpoint",
        "kind": "permanent",
        "message": refused(REFUSED),
        "retry_after": None,
        "causes": [3],
    }
    if version == 2:
        fields["unconfirmed"] = False
    record = {"t": "action-failed", "v": version, "at": history.now + 1, "src": "x", "d": fields}
    envelope = from_record(len(history.envelopes) + 1, record)
    assert envelope.fact == ActionFailed(key, "update-he-endpoint", "permanent", refused(REFUSED),
                                         causes=(3,))  # fmt: skip
    history.envelopes.append(envelope)
    history.state = fold(history.state, envelope)
    assert history.state.actions[key].last_outcome == "permanent"
    assert history.plan(later=10**7).held[0].why == "permanent-failure"
    history.record(WanAddressObserved("em0", NEW, True))
    assert history.plan(later=600).actions[0] == UpdateHeEndpoint(NEW, NEW)


@pytest.mark.parametrize(
    "message",
    [
        "HE rejected the username or update key (badauth); not retrying",
        "HE knows no tunnel with this id (nohost)",
        "the tunnel id belongs to another account (!yours)",
        "HE did not accept the tunnel id as a hostname (notfqdn)",
        "HE says too many or malformed hostnames were sent (numhost)",
        "update key file /etc/key is empty",
    ],
)
def test_an_account_refusal_still_holds_every_address_until_the_config_changes(
    message: str,
) -> None:
    """badauth & co. are about the account or the tunnel, not the address: a new WAN address
    is held too, and only a new configuration (or key file) lifts the hold."""
    history = healthy(History())
    history.record(EndpointObserved(None, "tunnel-info"))
    refuse_update(history, UpdateHeEndpoint(ADDR, ADDR), message)
    history.record(WanAddressObserved("em0", NEW, True))
    (hold, *_) = history.plan(later=10**7).held
    assert (hold.action, hold.why, hold.until) == (
        UpdateHeEndpoint(NEW, NEW),
        "permanent-failure",
        None,
    )
    assert "waiting for the configuration to change" in hold.detail
    history.config = make_config(digest="d2" * 32)
    assert history.plan(later=10**7).actions[0] == UpdateHeEndpoint(NEW, NEW)


def test_an_account_refusal_after_a_refused_address_holds_everything() -> None:
    """A refused address, then badauth for the next one: every update is held, and the hold
    says that the configuration must change (another address would not help)."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", REFUSED, True))
    refuse_update(history, UpdateHeEndpoint(REFUSED, REFUSED), refused(REFUSED))
    history.record(WanAddressObserved("em0", NEW, True), after=700)
    refuse_update(history, UpdateHeEndpoint(NEW, NEW), "HE rejected the update key (badauth)")
    for address in (REFUSED, NEW, "203.0.113.30"):
        history.record(WanAddressObserved("em0", address, True), after=700)
        (hold, *_) = history.plan(later=10**7).held
        assert hold.why == "permanent-failure"
        assert "waiting for the configuration to change" in hold.detail


def test_temporary_failure_backs_off_exponentially() -> None:
    """Temporary failures hold the key for backoff_min, then doubling delays."""
    # A minimum interval shorter than the backoff, so that the backoff is the latest hold.
    history = healthy(History(make_config(min_update_interval=1.0)))
    history.record(EndpointObserved(None, "tunnel-info"))
    key = f"update-he-endpoint:{ADDR}"
    for failures, delay in [(1, 5.0), (2, 10.0), (3, 20.0)]:
        history.record(ActionStarted(key, "update-he-endpoint", "x"), after=1000)
        history.record(ActionFailed(key, "update-he-endpoint", "temporary", "911"))
        plan = history.plan()
        assert plan.held[0].why == "backoff"
        assert plan.held[0].until == pytest.approx(history.now + delay)
        assert failures == history.state.actions[key].consecutive_failures


def test_abuse_retry_after_holds_for_hours() -> None:
    """An `abuse` answer's retry-after hint holds every update for hours, not seconds."""
    history = healthy(History())
    history.record(EndpointObserved(None, "tunnel-info"))
    key = f"update-he-endpoint:{ADDR}"
    history.record(ActionStarted(key, "update-he-endpoint", "x"))
    history.record(ActionFailed(key, "update-he-endpoint", "temporary", "abuse", 7200.0))
    assert history.plan(later=3600).held[0].why == "retry-after"
    assert "update-he-endpoint" in history.kinds(later=7201)


def test_backoff_delay_is_capped() -> None:
    """The backoff doubles from the minimum and never exceeds the maximum."""
    assert [backoff_delay(n, 5, 60) for n in range(6)] == [0, 5, 10, 20, 40, 60]


def test_hostname_file_differs_rewrites() -> None:
    """A hostname file that differs from its render is rewritten with the render."""
    history = healthy(History())
    history.record(HostnameFileObserved("/etc/hostname.gif0", "0" * 64))
    (action,) = history.plan().actions
    assert action.KIND == "rewrite-hostname"
    assert f"tunnel {ADDR} {HE_SERVER}" in action.content  # type: ignore[union-attr]


def test_no_hostname_file_configured_no_rewrite() -> None:
    """Without tunnel.hostname_file there is never a rewrite."""
    history = healthy(History(make_config(hostname_file=None)))
    history.record(HostnameFileObserved("/etc/hostname.gif0", "0" * 64))
    assert history.plan().empty


@pytest.mark.parametrize(
    ("tunnel", "reason"),
    [
        (TunnelObserved("gif0", False, False, None, None), "missing"),
        (TunnelObserved("gif0", True, False, ADDR, HE_SERVER), "is down"),
        (TunnelObserved("gif0", True, True, "203.0.113.1", HE_SERVER), "local end"),
        (TunnelObserved("gif0", True, True, ADDR, "198.51.100.99"), "remote end"),
        (
            TunnelObserved("gif0", True, True, ADDR, HE_SERVER, default_route="none"),
            "no IPv6 default route (::/0) through gif0",
        ),
    ],
)
def test_tunnel_problems_restart_tunnel_then_reload_pf(tunnel: TunnelObserved, reason: str) -> None:
    """A missing, down or misaddressed tunnel is restarted, and the firewall reloaded after."""
    history = healthy(History())
    history.record(tunnel)
    plan = history.plan()
    assert plan.actions == (RestartTunnel("gif0", ADDR, HE_SERVER), ReloadPf(ADDR))
    assert reason in plan.actions[0].reason


@pytest.mark.parametrize("route", ["tunnel", "other", None])
def test_a_default_route_through_the_tunnel_or_a_native_one_needs_nothing(
    route: str | None,
) -> None:
    """IPv6's default route through the tunnel is right; one only through another interface
    (a native route from router advertisements, say) is not ours to replace; a platform that
    does not report it (None) says nothing."""
    history = healthy(History())
    history.record(TunnelObserved("gif0", True, True, ADDR, HE_SERVER, default_route=route))
    assert history.plan().empty


def test_with_local_any_the_tunnels_local_end_is_left_alone() -> None:
    """tunnel.local = "any": a tunnel whose local end is not the WAN address (an owner's
    Local=, or the kernel's source while the WAN moves) is not restarted for it; a tunnel
    that is down still is."""
    config = make_config()
    config = attrs.evolve(config, tunnel=attrs.evolve(config.tunnel, local="any"))
    history = healthy(History(config))
    history.record(TunnelObserved("gif0", True, True, "203.0.113.1", HE_SERVER))
    assert history.plan().empty
    history.record(TunnelObserved("gif0", True, False, "203.0.113.1", HE_SERVER))
    assert history.kinds() == ["restart-tunnel", "reload-pf"]


def test_a_default_route_removed_again_is_put_back_without_settling() -> None:
    """The route was there after the last restart and someone (networkd) removed it: the
    tunnel is restarted at once, not held to settle as a restart that did not help; the
    restart limit still bounds a fight over it."""
    history = healthy(History(make_config(reload_command=())))
    for round_ in range(5):
        history.record(TunnelObserved("gif0", True, True, ADDR, HE_SERVER, default_route="none"))
        plan = history.plan()
        assert plan.actions == (RestartTunnel("gif0", ADDR, HE_SERVER),), round_
        run_ok(history, plan.actions[0])
        history.record(TunnelObserved("gif0", True, True, ADDR, HE_SERVER, default_route="tunnel"))
    history.record(TunnelObserved("gif0", True, True, ADDR, HE_SERVER, default_route="none"))
    plan = history.plan()
    assert not plan.actions and plan.held[0].why == "restart-limit"


def test_no_firewall_command_no_reload() -> None:
    """With reload_command = [] the plan never reloads a firewall."""
    history = healthy(History(make_config(reload_command=())))
    history.record(TunnelObserved("gif0", True, False, ADDR, HE_SERVER))
    assert history.kinds() == ["restart-tunnel"]


def test_reload_pf_after_restart_success() -> None:
    """A tunnel restart newer than the last firewall reload asks for reload-pf alone."""
    history = healthy(History())
    run_ok(history, RestartTunnel("gif0", ADDR, HE_SERVER))
    assert history.kinds() == ["reload-pf"]
    run_ok(history, ReloadPf(ADDR))
    assert history.plan().empty


def test_ipv6_down_while_ipv4_up_restarts_tunnel() -> None:
    """IPv6 probes down (after hysteresis) with IPv4 up restart the tunnel."""
    history = healthy(History())
    fail_probe(history, "ipv6", 2)
    assert history.plan().empty
    fail_probe(history, "ipv6", 1)
    assert history.kinds() == ["restart-tunnel", "reload-pf"]


def test_restart_limit_stops_useless_restarts() -> None:
    """restart_limit restarts within restart_window that did not help are held and reported."""
    bounds = ReconcileConfig(backoff_min=1, backoff_max=1, restart_limit=3, restart_window=900)
    history = healthy(History(make_config(reconcile=bounds)))
    for _ in range(3):
        fail_probe(history, "ipv6", 3)
        assert history.kinds(later=5) == ["restart-tunnel", "reload-pf"]
        run_ok(history, RestartTunnel("gif0", ADDR, HE_SERVER))
        run_ok(history, ReloadPf(ADDR))
    fail_probe(history, "ipv6", 3)
    plan = history.plan(later=5)
    assert [(h.action.KIND, h.why) for h in plan.held] == [
        ("restart-tunnel", "restart-limit"),
        ("reload-pf", "waiting"),
    ]
    assert "restart-tunnel" not in [a.KIND for a in plan]


def test_restarts_that_helped_do_not_count() -> None:
    """When IPv6 comes back up, earlier restarts stop counting towards the limit."""
    bounds = ReconcileConfig(backoff_min=1, backoff_max=1, restart_limit=2, restart_window=900)
    history = healthy(History(make_config(reconcile=bounds)))
    for _ in range(4):
        fail_probe(history, "ipv6", 3)
        assert "restart-tunnel" in history.kinds(later=5)
        run_ok(history, RestartTunnel("gif0", ADDR, HE_SERVER))
        run_ok(history, ReloadPf(ADDR))
        history.record(ProbeObserved("ipv6", "x", True))


def test_story_ipv4_up_tunnel_drops() -> None:
    """Story 1: IPv4 up, the tunnel drops: restart the tunnel (and pf), nothing else."""
    history = healthy(History())
    history.record(TunnelObserved("gif0", True, False, ADDR, HE_SERVER))
    fail_probe(history, "ipv6", 3)
    assert history.kinds() == ["restart-tunnel", "reload-pf"]
    run_ok(history, RestartTunnel("gif0", ADDR, HE_SERVER))
    run_ok(history, ReloadPf(ADDR))
    history.record(TunnelObserved("gif0", True, True, ADDR, HE_SERVER))
    history.record(ProbeObserved("ipv6", "x", True))
    assert history.plan().empty


def test_story_ipv4_down_then_back_with_new_address() -> None:
    """Story 2: WAN down -> restart-wan; back with a new address -> update, rewrite, restart,
    reload, in that order; then nothing."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", None, True))
    fail_probe(history, "ipv4", 3)
    assert history.kinds() == ["restart-wan"]
    run_ok(history, RestartWan("em0"))
    history.record(WanAddressObserved("em0", NEW, True))
    history.record(ProbeObserved("ipv4", "x", True))
    plan = history.plan()
    assert [a.KIND for a in plan] == [
        "update-he-endpoint",
        "rewrite-hostname",
        "restart-tunnel",
        "reload-pf",
    ]
    for action in plan:
        run_ok(history, action)
    content = render_hostname_file(history.config.tunnel, NEW)
    history.record(EndpointObserved(NEW, "update", for_local=NEW))
    history.record(HostnameFileObserved("/etc/hostname.gif0", digest_of(content.encode())))
    history.record(TunnelObserved("gif0", True, True, NEW, HE_SERVER))
    assert history.plan().empty


def test_actions_carry_reason_and_causes() -> None:
    """Every planned action names a reason and the seqs of the facts it rests on."""
    history = healthy(History())
    wan_seq = history.record(WanAddressObserved("em0", NEW, True))
    for action in history.plan():
        assert action.reason
        assert action.causes and all(0 < c <= history.state.seq for c in action.causes)
    assert wan_seq in history.plan().actions[0].causes


def update_backing_off(history: History) -> str:
    """Record an update of ADDR that HE answered with a temporary failure (911) just now."""
    history.record(EndpointObserved(None, "tunnel-info"))
    key = f"update-he-endpoint:{ADDR}"
    history.record(ActionStarted(key, "update-he-endpoint", "x"))
    history.record(ActionFailed(key, "update-he-endpoint", "temporary", "911"))
    return key


def test_hold_reports_the_hold_that_ends_last() -> None:
    """A held update shows the latest of its holds: min-update-interval beyond the backoff."""
    history = healthy(History())
    update_backing_off(history)
    started_at = history.state.last_update_attempt_at
    assert started_at is not None
    (hold,) = history.plan().held
    assert hold.why == "min-update-interval"
    assert hold.until == pytest.approx(started_at + 600.0)


def test_permanent_hold_wins_over_timed_holds() -> None:
    """A permanent failure (no end) wins over a backoff and the minimum interval."""
    history = healthy(History())
    history.record(EndpointObserved(None, "tunnel-info"))
    old_key = f"update-he-endpoint:{NEW}"
    history.record(ActionStarted(old_key, "update-he-endpoint", "x"))
    history.record(ActionFailed(old_key, "update-he-endpoint", "permanent", "badauth"))
    update_backing_off(history)
    (hold,) = history.plan().held
    assert (hold.why, hold.until) == ("permanent-failure", None)


def test_actions_wait_for_a_held_update() -> None:
    """With the update held, rewrite-hostname, restart-tunnel and reload-pf wait for it."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", NEW, True))
    history.record(EndpointObserved(ADDR, "tunnel-info"))
    key = f"update-he-endpoint:{NEW}"
    history.record(ActionStarted(key, "update-he-endpoint", "x"))
    history.record(ActionFailed(key, "update-he-endpoint", "temporary", "911"))
    plan = history.plan(later=3)
    assert plan.actions == ()
    update, *waiting = plan.held
    assert (update.action.KIND, update.why) == ("update-he-endpoint", "min-update-interval")
    assert [h.action.KIND for h in waiting] == ["rewrite-hostname", "restart-tunnel", "reload-pf"]
    assert all(h.why == "waiting" for h in waiting)
    assert all(h.detail == "waiting for update-he-endpoint" for h in waiting)
    assert all(h.until == update.until for h in waiting)
    assert history.kinds(later=10_000) == [
        "update-he-endpoint",
        "rewrite-hostname",
        "restart-tunnel",
        "reload-pf",
    ]


def test_ipv6_down_does_not_burn_restarts_while_the_update_is_held() -> None:
    """IPv6 down behind a permanently failed update: no restart-tunnel, however long it lasts."""
    bounds = ReconcileConfig(backoff_min=1, backoff_max=1, restart_limit=3, restart_window=900)
    history = healthy(History(make_config(reconcile=bounds)))
    history.record(WanAddressObserved("em0", NEW, True))
    history.record(EndpointObserved(ADDR, "tunnel-info"))
    key = f"update-he-endpoint:{NEW}"
    history.record(ActionStarted(key, "update-he-endpoint", "x"))
    history.record(ActionFailed(key, "update-he-endpoint", "permanent", "badauth"))
    for _ in range(10):
        fail_probe(history, "ipv6", 3)
        plan = history.plan(later=60)
        assert plan.actions == ()
        restart = next(h for h in plan.held if h.action.KIND == "restart-tunnel")
        assert (restart.why, restart.until) == ("waiting", None)
        assert restart.detail == "waiting for update-he-endpoint"


def observed_working(history: History, address: str = ADDR) -> History:
    """Record a fresh start-up's observations of a working network: WAN, tunnel, hostname
    file, then the probes (no update in the log, no tunnel info)."""
    content = render_hostname_file(history.config.tunnel, address)
    history.record(WanAddressObserved("em0", address, True))
    history.record(TunnelObserved("gif0", True, True, address, HE_SERVER))
    history.record(HostnameFileObserved("/etc/hostname.gif0", digest_of(content.encode())))
    history.record(ProbeObserved("ipv4", "198.51.100.53", True, 3.0))
    history.record(ProbeObserved("ipv6", "2001:db8::53", True, 4.0))
    return history


@pytest.mark.parametrize("public_address", ["interface", "tunnelbroker"])
def test_fresh_start_with_a_working_tunnel_sends_no_update(public_address: str) -> None:
    """IPv6 across the tunnel proves HE has our endpoint: a fresh start plans no update (it
    would be a nochg); a later WAN change still plans one."""
    history = observed_working(History(make_config(public_address=public_address)))
    assert history.plan().empty
    history.record(WanAddressObserved("em0", NEW, True))
    assert "update-he-endpoint" in history.kinds()


def test_restart_after_a_crash_mid_update_sends_no_duplicate() -> None:
    """A daemon killed while HE took the update rebuilds the tunnel, sees IPv6 work across it,
    and never sends the same update again."""
    history = observed_working(History())
    history.record(WanAddressObserved("em0", NEW, True))
    (update, *_) = history.plan().actions
    assert update == UpdateHeEndpoint(NEW, NEW)
    history.record(ActionStarted(update.key, update.KIND, update.reason))  # HE takes it; crash
    history.record(DaemonStarted(4321, "test"), after=5)
    history.record(ProbeObserved("ipv6", "2001:db8::53", False))  # the tunnel is still old
    plan = history.plan()
    assert [h.action.KIND for h in plan.held] == ["update-he-endpoint"]
    assert [a.KIND for a in plan] == ["rewrite-hostname", "restart-tunnel", "reload-pf"]
    for action in plan:
        run_ok(history, action)
    content = render_hostname_file(history.config.tunnel, NEW)
    history.record(HostnameFileObserved("/etc/hostname.gif0", digest_of(content.encode())))
    history.record(TunnelObserved("gif0", True, True, NEW, HE_SERVER))
    history.record(ProbeObserved("ipv6", "2001:db8::53", True))
    for later in (0, 700, 100_000):
        assert history.plan(later=later).empty


def crashed_mid_update(history: History) -> UpdateHeEndpoint:
    """A working network whose WAN moves to NEW; the daemon dies while it sends the update."""
    observed_working(history)
    history.record(WanAddressObserved("em0", NEW, True))
    (update, *_) = history.plan().actions
    assert isinstance(update, UpdateHeEndpoint)
    history.record(ActionStarted(update.key, update.KIND, update.reason))
    history.record(DaemonStarted(4321, "test"), after=5)
    return update


def test_an_update_of_unknown_outcome_waits_for_the_tunnel_to_tell() -> None:
    """However short min_update_interval, an update the daemon died during is not sent again
    until IPv6 across the tunnel rebuilt for it has had its say."""
    history = History(make_config(min_update_interval=1.0))
    crashed_mid_update(history)
    plan = history.plan(later=60)
    assert [(h.action.KIND, h.why) for h in plan.held] == [("update-he-endpoint", "unconfirmed")]
    assert [a.KIND for a in plan] == ["rewrite-hostname", "restart-tunnel", "reload-pf"]
    for action in plan:
        run_ok(history, action)
    history.record(TunnelObserved("gif0", True, True, NEW, HE_SERVER))
    history.record(ProbeObserved("ipv6", "2001:db8::53", True))  # HE had taken it
    assert "update-he-endpoint" not in history.kinds(later=100_000)


def test_an_update_that_never_reached_he_is_sent_once_the_tunnel_shows_it() -> None:
    """When IPv6 fails across the tunnel rebuilt for the new address, the update of unknown
    outcome did not reach HE: it is sent again."""
    history = History(make_config(min_update_interval=1.0))
    crashed_mid_update(history)
    for action in history.plan(later=60):
        run_ok(history, action)
    history.record(TunnelObserved("gif0", True, True, NEW, HE_SERVER))
    fail_probe(history, "ipv6", 2)
    assert "update-he-endpoint" not in history.kinds()
    fail_probe(history, "ipv6", 1)
    assert history.kinds()[0] == "update-he-endpoint"


def test_an_update_of_unknown_outcome_is_not_held_for_ever() -> None:
    """Without any word from the tunnel, the unconfirmed update is due after the longest of
    min_update_interval, backoff_max and restart_window."""
    bounds = ReconcileConfig(backoff_min=0.5, backoff_max=4.0, restart_window=60.0)
    history = History(make_config(min_update_interval=1.0, reconcile=bounds))
    crashed_mid_update(history)
    started_at = history.state.last_update_attempt_at
    assert started_at is not None
    (hold,) = history.plan(later=10).held
    assert (hold.why, hold.until) == ("unconfirmed", started_at + 60.0)
    assert "update-he-endpoint" in history.kinds(later=hold.until - history.now + 1)


def timed_out_update(history: History, retry_after: float = 600.0) -> UpdateHeEndpoint:
    """A working network whose WAN moves to NEW; the update goes out, HE applies it, and its
    answer comes after the deadline: a temporary failure marked unconfirmed."""
    observed_working(history)
    history.record(WanAddressObserved("em0", NEW, True))
    (update, *_) = history.plan().actions
    assert isinstance(update, UpdateHeEndpoint)
    history.record(ActionStarted(update.key, update.KIND, update.reason))
    history.record(
        ActionFailed(
            update.key, update.KIND, "temporary", "no answer in time", retry_after,
            unconfirmed=True,
        ),
        after=2,
    )  # fmt: skip
    return update


def test_a_timed_out_update_rebuilds_the_tunnel_at_once_and_is_not_sent_again() -> None:
    """An update answered after the deadline may have reached HE: like one the daemon died
    during, the tunnel is rebuilt for the new address at once (not after the 600 s pause
    that server trouble earns), and IPv6 across it settles the question without a resend."""
    history = History(make_config(min_update_interval=600.0))
    timed_out_update(history)
    plan = history.plan()
    assert [(h.action.KIND, h.why) for h in plan.held] == [("update-he-endpoint", "unconfirmed")]
    assert "no complete answer" in plan.held[0].detail
    assert [a.KIND for a in plan] == ["rewrite-hostname", "restart-tunnel", "reload-pf"]
    assert plan.actions[1] == RestartTunnel("gif0", NEW, HE_SERVER)
    for action in plan:
        run_ok(history, action)
    content = render_hostname_file(history.config.tunnel, NEW)
    history.record(HostnameFileObserved("/etc/hostname.gif0", digest_of(content.encode())))
    history.record(TunnelObserved("gif0", True, True, NEW, HE_SERVER))
    history.record(ProbeObserved("ipv6", "2001:db8::53", True))  # HE had applied it
    for later in (0, 700, 100_000):
        assert history.plan(later=later).empty


def test_a_timed_out_update_that_missed_he_backs_off_then_is_sent_again() -> None:
    """When IPv6 fails across the rebuilt tunnel, the timed-out update did not reach HE: its
    own backoff (the server-trouble pause) applies again, then it is sent."""
    history = History(make_config(min_update_interval=1.0))
    timed_out_update(history, retry_after=600.0)
    failed_at = history.now
    for action in history.plan():
        run_ok(history, action)
    history.record(TunnelObserved("gif0", True, True, NEW, HE_SERVER))
    fail_probe(history, "ipv6", 3)
    (hold,) = [h for h in history.plan().held if h.action.KIND == "update-he-endpoint"]
    assert hold.why == "retry-after" and hold.until == failed_at + 600.0
    assert history.kinds(later=failed_at + 601 - history.now)[0] == "update-he-endpoint"


def test_a_plain_temporary_failure_still_holds_what_follows() -> None:
    """A temporary failure with an answer (HE said 911) is no unconfirmed one: the update
    backs off and the tunnel waits for it, as before."""
    history = observed_working(History())
    history.record(WanAddressObserved("em0", NEW, True))
    (update, *_) = history.plan().actions
    history.record(ActionStarted(update.key, update.KIND, update.reason))
    history.record(ActionFailed(update.key, update.KIND, "temporary", "911", 600.0), after=2)
    plan = history.plan()
    assert plan.actions == ()
    assert {h.why for h in plan.held} == {"retry-after", "waiting"}


def test_a_dhcp_wan_gets_its_grace_before_restart_wan() -> None:
    """An autoconf WAN without its address (dhcpleased mid-exchange) is not restarted for
    dhcp_grace seconds from the observation that first showed it so; then it is."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", None, True, autoconf=True))
    since = history.now
    history.record(WanAddressObserved("em0", None, True, autoconf=True), after=10.0)
    plan = history.plan()
    assert plan.actions == ()
    [held] = plan.held
    assert (held.action.KIND, held.why, held.until) == ("restart-wan", "dhcp-grace", since + 30)
    assert history.kinds(later=since + 30 - history.now) == ["restart-wan"]


def test_a_dhcp_wan_with_its_link_down_waits_too() -> None:
    """Link down counts as mid-DHCP; a static WAN, a failing probe or a zero grace do not
    wait."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", ADDR, False, autoconf=True))
    assert [h.why for h in history.plan().held] == ["dhcp-grace"]
    static = healthy(History())
    static.record(WanAddressObserved("em0", None, True))
    assert static.kinds() == ["restart-wan"]
    probing = healthy(History())
    probing.record(WanAddressObserved("em0", ADDR, True, autoconf=True))
    fail_probe(probing, "ipv4", 3)
    assert probing.kinds() == ["restart-wan"]
    config = make_config()
    config = attrs.evolve(config, wan=attrs.evolve(config.wan, dhcp_grace=0.0))
    impatient = healthy(History(config))
    impatient.record(WanAddressObserved("em0", None, True, autoconf=True))
    assert impatient.kinds() == ["restart-wan"]


def test_a_tunnel_with_another_ttl_is_restarted() -> None:
    """gif0 observed with TTL 64 while the configuration says 255: restart-tunnel."""
    history = healthy(History())
    history.record(TunnelObserved("gif0", True, True, ADDR, HE_SERVER, ttl=64))
    plan = history.plan()
    assert [a.KIND for a in plan] == ["restart-tunnel", "reload-pf"]
    assert "tunnel TTL is 64, the configuration says 255" in plan.actions[0].reason
    history.record(TunnelObserved("gif0", True, True, ADDR, HE_SERVER, ttl=255))
    run_ok(history, plan.actions[0])
    run_ok(history, plan.actions[1])
    assert history.plan().empty


THIRD = "198.51.100.4"


def back_after_another_attempt(history: History, *, third: str) -> None:
    """After an update for NEW of unknown outcome, the WAN moves to THIRD and its update
    goes out once the minimum interval allows; `third` is how that one ends ("crash-before":
    the daemon dies before it reaches HE, and IPv6 across the tunnel rebuilt for THIRD
    fails; "good": HE takes it). Then the WAN comes back to NEW."""
    crashed_mid_update(history)
    history.record(WanAddressObserved("em0", THIRD, True), after=600)
    (update, *_) = history.plan().actions
    assert update == UpdateHeEndpoint(THIRD, THIRD)
    history.record(ActionStarted(update.key, update.KIND, update.reason))
    if third == "good":
        history.record(EndpointObserved(THIRD, "update", for_local=THIRD))
        history.record(ActionSucceeded(update.key, update.KIND))
    else:
        history.record(DaemonStarted(4321, "test"), after=5)
        for action in history.plan(later=60):
            run_ok(history, action)
        history.record(TunnelObserved("gif0", True, True, THIRD, HE_SERVER))
        fail_probe(history, "ipv6", 3)
    history.record(WanAddressObserved("em0", NEW, True), after=600)


def test_an_update_of_unknown_outcome_still_counts_after_a_later_attempt_that_missed() -> None:
    """The update for NEW may have reached HE; the later one for THIRD did not (the daemon
    died before it went out, and IPv6 failed across the tunnel for THIRD). When the WAN comes
    back to NEW, HE may well have NEW: sending it would be a nochg, which HE counts as abuse.
    The update waits ("unconfirmed") while the tunnel is rebuilt for NEW, and IPv6 across it
    settles the question (found by the simulation: test_simulation's first @example)."""
    history = History(make_config(min_update_interval=600.0))
    back_after_another_attempt(history, third="crash-before")
    plan = history.plan()
    assert [(h.action.KIND, h.why) for h in plan.held] == [("update-he-endpoint", "unconfirmed")]
    assert RestartTunnel("gif0", NEW, HE_SERVER) in plan.actions
    for action in plan:
        run_ok(history, action)
    content = render_hostname_file(history.config.tunnel, NEW)
    history.record(HostnameFileObserved("/etc/hostname.gif0", digest_of(content.encode())))
    history.record(TunnelObserved("gif0", True, True, NEW, HE_SERVER))
    history.record(ProbeObserved("ipv6", "2001:db8::53", True))  # HE had taken NEW
    for later in (0, 700, 100_000):
        assert history.plan(later=later).empty


def test_an_older_update_of_unknown_outcome_that_missed_is_sent_once_the_tunnel_shows_it() -> None:
    """Back at NEW, IPv6 fails across the tunnel rebuilt for it: the old update did not
    reach HE, and it is sent."""
    history = History(make_config(min_update_interval=600.0))
    back_after_another_attempt(history, third="crash-before")
    for action in history.plan():
        run_ok(history, action)
    history.record(TunnelObserved("gif0", True, True, NEW, HE_SERVER))
    fail_probe(history, "ipv6", 3)
    assert history.kinds()[0] == "update-he-endpoint"


def test_a_later_confirmed_update_settles_an_older_one_of_unknown_outcome() -> None:
    """HE confirmed THIRD after the update for NEW of unknown outcome: HE has THIRD, so when
    the WAN comes back to NEW the update is sent at once (the minimum interval has passed)."""
    history = History(make_config(min_update_interval=600.0))
    back_after_another_attempt(history, third="good")
    assert history.kinds()[0] == "update-he-endpoint"


def back_after_a_crash_mid_update(history: History) -> None:
    """HE has our endpoint for ADDR (IPv6 works across the tunnel); the WAN moves to NEW, the
    daemon dies while it sends NEW's update, and the WAN comes back to ADDR before the
    tunnel was rebuilt."""
    crashed_mid_update(history)
    history.record(WanAddressObserved("em0", ADDR, True), after=60)


def test_a_crash_during_another_update_makes_what_he_had_unknown() -> None:
    """HE's word that it had ADDR is older than the update for NEW of unknown outcome: HE may
    have NEW. The update for ADDR is wanted and waits ("unconfirmed", holding nothing back)
    for IPv6 across the tunnel from ADDR; when that fails, HE has lost ADDR, and the update
    goes out once the minimum interval allows, before the tunnel is rebuilt. (It used to
    trust HE's old word: ADDR was never sent again and IPv6 stayed down for good.)"""
    history = History(make_config(min_update_interval=600.0))
    back_after_a_crash_mid_update(history)
    started_at = history.state.last_update_attempt_at
    assert started_at is not None
    plan = history.plan()
    assert plan.actions == ()
    [hold] = plan.held
    assert (hold.action, hold.why) == (UpdateHeEndpoint(ADDR, ADDR), "unconfirmed")
    assert f"update-he-endpoint:{NEW}" in hold.detail
    fail_probe(history, "ipv6", 3)  # HE took NEW
    plan = history.plan()
    assert plan.actions == ()
    assert [(h.action.KIND, h.why) for h in plan.held] == [
        ("update-he-endpoint", "min-update-interval"),
        ("restart-tunnel", "waiting"),
        ("reload-pf", "waiting"),
    ]
    later = started_at + 600 - history.now
    assert history.plan(later=later).actions[0] == UpdateHeEndpoint(ADDR, ADDR)


def test_ipv6_across_the_tunnel_shows_he_kept_what_it_had_after_a_crash() -> None:
    """Back at ADDR after the update for NEW of unknown outcome, IPv6 works across the tunnel
    from ADDR: HE still has ADDR, and nothing is sent (it would be a nochg), ever."""
    history = History(make_config(min_update_interval=600.0))
    back_after_a_crash_mid_update(history)
    history.record(ProbeObserved("ipv6", "2001:db8::53", True))  # NEW never reached HE
    for later in (0, 700, 100_000):
        assert history.plan(later=later).empty


def test_a_wan_interface_that_is_gone_is_waited_for_then_restarted() -> None:
    """pppd redialling removes ppp0: the WAN's absence gets the grace (DHCP or not), counted
    from the observation that first showed it gone; back within it, nothing is restarted."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", None, False, exists=False))
    gone = history.now
    history.record(WanAddressObserved("em0", None, False, exists=False), after=10.0)
    [held] = history.plan().held
    assert (held.action.KIND, held.why, held.until) == ("restart-wan", "wan-grace", gone + 30)
    assert "em0 is gone" in held.detail
    assert history.kinds(later=gone + 30 - history.now) == ["restart-wan"]
    redial = healthy(History())
    redial.record(WanAddressObserved("em0", None, False, exists=False))
    redial.record(WanAddressObserved("em0", NEW, True), after=20.0)
    assert "restart-wan" not in redial.kinds(later=100.0)


def test_a_probe_failure_with_link_address_and_default_route_restarts_nothing() -> None:
    """An IPv4 probe failing while the WAN has its link, address and default route says the
    path beyond it is broken: restart-wan is held ("upstream", until the WAN changes), not
    run, however long it lasts; without the default route (the DHCP client's lost) or where
    it is not observed (OpenBSD) the WAN is restarted as before."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", ADDR, True, default_route=True))
    fail_probe(history, "ipv4", 3)
    plan = history.plan(later=3600.0)
    assert plan.actions == ()
    [held] = plan.held
    assert (held.action.KIND, held.why, held.until) == ("restart-wan", "upstream", None)
    assert "default route" in held.action.reason
    history.record(WanAddressObserved("em0", ADDR, True, default_route=False))
    assert history.kinds() == ["restart-wan"]
    unknown = healthy(History())
    fail_probe(unknown, "ipv4", 3)
    assert unknown.kinds() == ["restart-wan"]


def test_a_wan_nobody_can_restart_is_only_observed() -> None:
    """With no owner to tell (no DHCP client, networkd, NetworkManager..., no
    restart_command) a WAN without its address is held ("no-owner"), never restarted."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", None, True, owner="none"))
    plan = history.plan(later=3600.0)
    assert plan.actions == ()
    [held] = plan.held
    assert (held.action.KIND, held.why, held.until) == ("restart-wan", "no-owner", None)
    assert "wan.restart_command" in held.detail
    history.record(WanAddressObserved("em0", None, True, owner="dhclient"))
    assert history.kinds() == ["restart-wan"]


def test_behind_nat_a_tunnel_restart_that_does_not_help_sends_one_update_per_outage() -> None:
    """Behind NAT (a private WAN address, no myip) the public address may change unseen:
    IPv6 down gives restart-tunnel first; when IPv6 stays down across the restarted tunnel,
    one update without myip goes out; once HE has answered it, no second one in the same
    outage (a nochg is abuse), however long IPv6 stays down; the next outage may send one."""
    private = "192.168.1.20"
    history = healthy(History(), address=private)
    history.record(EndpointObserved("198.51.100.200", "update", for_local=private))
    fail_probe(history, "ipv6", 3)
    # HE's tunnel info still shows the old public address: it says nothing of the new one
    history.record(EndpointObserved("198.51.100.200", "tunnel-info"))
    assert history.kinds(later=100) == ["restart-tunnel", "reload-pf"]
    for action in history.plan(later=100).actions:
        run_ok(history, action)
    fail_probe(history, "ipv6", 2)
    assert "update-he-endpoint" not in history.kinds(later=200)  # judged afresh: not yet
    fail_probe(history, "ipv6", 1)
    plan = history.plan(later=200)
    update = plan.actions[0]
    assert update == UpdateHeEndpoint(None, private)
    assert "behind NAT" in update.reason
    history.record(ActionStarted(update.key, update.KIND, update.reason), after=200)
    history.record(EndpointObserved("198.51.100.201", "update", for_local=private))
    history.record(ActionSucceeded(update.key, update.KIND))
    fail_probe(history, "ipv6", 3)
    for later in (300, 3000):
        assert "update-he-endpoint" not in history.kinds(later=later)
    history.record(ProbeObserved("ipv6", "x", True))  # the outage ends
    fail_probe(history, "ipv6", 3)
    for action in history.plan(later=3100).actions:
        run_ok(history, action)
    fail_probe(history, "ipv6", 3)
    assert history.kinds(later=3200)[0] == "update-he-endpoint"


def test_with_a_public_address_a_failing_tunnel_sends_no_update() -> None:
    """With a public WAN address HE's endpoint is compared with it: IPv6 down across a
    restarted tunnel sends no update (HE has that very address)."""
    history = healthy(History())
    fail_probe(history, "ipv6", 3)
    for action in history.plan(later=100).actions:
        run_ok(history, action)
    fail_probe(history, "ipv6", 3)
    assert "update-he-endpoint" not in history.kinds(later=200)


def test_a_dhcp_wan_between_its_address_and_its_route_is_given_the_grace() -> None:
    """dhclient-script adds the address, then the default route: seen in between, with the
    IPv4 probe failing since the address went, the WAN is mid-exchange (dhcp-grace), not
    restarted (a slow router ran `dhclient -r` in the middle of its own renumbering); a
    route still missing after the grace is restarted (the owner renews it)."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", None, True, autoconf=True, default_route=False))
    fail_probe(history, "ipv4", 3)
    history.record(WanAddressObserved("em0", NEW, True, autoconf=True, default_route=False))
    since = history.now
    [held] = history.plan().held
    assert (held.action.KIND, held.why, held.until) == ("restart-wan", "dhcp-grace", since + 30)
    assert history.kinds(later=since + 30 - history.now) == ["restart-wan"]
    history.record(WanAddressObserved("em0", NEW, True, autoconf=True, default_route=True))
    assert "restart-wan" not in history.kinds(later=100)  # held upstream, if anything


def test_behind_nat_tunnel_info_showing_another_address_than_he_saw_updates() -> None:
    """Behind NAT with tunnelInfo: HE showing another endpoint than the one it saw at our
    last update (someone else moved it) plans an update without myip at once."""
    private = "192.168.1.20"
    history = healthy(History(), address=private)
    history.record(EndpointObserved("198.51.100.200", "update", for_local=private))
    assert history.plan().empty
    history.record(EndpointObserved("198.51.100.99", "tunnel-info"))
    update = history.plan().actions[0]
    assert update == UpdateHeEndpoint(None, private)
    assert "HE has 198.51.100.99" in update.reason
