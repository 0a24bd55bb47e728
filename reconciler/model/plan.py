"""The planner: `plan(desired, observed, now)` decides what to do, and what to hold back.

Pure and level-based: it reads the folded state, never "the event that just arrived", so
the daemon and `reconciler diff` get the same answer from the same log. The rules:

- WAN down (missing, link down, no address, or the IPv4 probe down after hysteresis):
  `restart-wan` only; nothing that needs IPv4 is attempted. When a DHCP client owns the WAN
  (`autoconf`) and its link is down or it has no address, that client is mid-exchange or
  waiting for the link: restart-wan is held ("dhcp-grace") for `wan.dhcp_grace` seconds
  from the observation that first showed the WAN so, rather than fight it. A WAN interface
  that is gone (pppd redialling) gets the same grace ("wan-grace").
  Restart-wan is for what a restart can fix: an IPv4 probe failing while the link, an
  address and the default route are all there says the path beyond the WAN is broken, and
  it is held ("upstream") until the WAN changes; and where nobody can be told to restart
  the WAN (its owner observed as "none") it is held ("no-owner"): the WAN is only observed.
- HE's endpoint differs from our public address: `update-he-endpoint`, never twice for an
  address HE accepted (behind NAT, where the public address can change unseen: once more
  per IPv6 outage that a tunnel restart did not end), never within `min_update_interval`
  of the last attempt, never after a permanent failure until the configuration changes.
  HE refusing a private address (RFC 1918) is permanent for that address only: the update
  for another WAN address goes out.
- The hostname file differs from its render: `rewrite-hostname`.
- The tunnel is missing, down, has the wrong ends, or IPv6 is down while IPv4 is not:
  `restart-tunnel`; after a tunnel restart: `reload-pf`.
- Order (ACTION_ORDER): an action waits for its predecessor's success. A wanted action that
  is held (backoff, permanent failure, minimum interval, ...) holds every action after it
  ("waiting"): a tunnel rebuilt before HE follows cannot carry IPv6, and restarting it again
  and again only burns the restart limit.
- Temporary failures back off exponentially per key (honouring a retry-after hint); restarts
  are spaced the same way, and `restart_limit` restarts within `restart_window` that did not
  fix the problem stop and are reported as held.
- An update the daemon died during (started, no outcome), or one that went out and got no
  complete answer (timed out: the outcome is marked unconfirmed), may have reached HE, and
  still may after later attempts for other addresses that did not succeed (until HE's
  endpoint is observed): it is not sent again ("unconfirmed") until IPv6 fails across the
  tunnel rebuilt for it (it did not), or for the longest of `min_update_interval`,
  `backoff_max` and `restart_window` at most (the tunnel may never tell); its own backoff
  waits meanwhile, and the actions after it go ahead at once, whatever else holds it (another
  update's retry-after), so that the tunnel can tell.
  Such an update also makes HE's earlier word for another address out of date (HE may have
  taken it since): a WAN back at an address HE had gets its update again, held the same
  way until IPv6 across a tunnel from that address fails (a nochg if HE still has it).
- When several holds apply, the one that ends last is reported (a permanent one, which has
  no end, wins): that is when the action can run.
- A fact stamped after `now` (the clock stepped back since, or was wrong when it stamped)
  holds nothing: how long ago it happened is unknown, and counting it as "just now" made
  the hold slide forward with every `apply` for as long as the gap. Facts recorded since are
  stamped by the clock as it is, and hold as usual. (The daemon never plans over one: its
  clock, reconciler.runclock, never reads earlier than the log's newest stamp.)

Facts about the world that were never observed lead to no action (the plan does not guess),
with one exception: HE's endpoint, which may only be learnt by updating it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from attrs import frozen

from reconciler.model.actions import (
    ACTION_ORDER,
    Action,
    ReloadPf,
    RestartTunnel,
    RestartWan,
    RewriteHostname,
    UpdateHeEndpoint,
    holds_only_its_key,
    is_abuse,
)
from reconciler.model.desired import DesiredState
from reconciler.model.state import ActionRecord, ObservedState

__all__ = [
    "WAN_WAITS",
    "Held",
    "HoldReason",
    "Plan",
    "backoff_delay",
    "plan",
    "server_trouble_delay",
]

HoldReason = Literal[
    "backoff", "retry-after", "settling", "min-update-interval", "permanent-failure",
    "restart-limit", "waiting", "unconfirmed", "dhcp-grace", "wan-grace", "upstream",
    "no-owner",
]  # fmt: skip
# Holds that end when the WAN changes (a new observation), not at a time or a new config.
WAN_WAITS: frozenset[HoldReason] = frozenset({"upstream", "no-owner"})

_RESTARTS = (RestartWan.KIND, RestartTunnel.KIND)


@frozen
class Held:
    """An action the rules want but that must wait: `until` is when it becomes due (None:
    not by time; a permanent failure waits for the configuration to change, or, HE having
    refused a private address, for another WAN address, which is another action)."""

    action: Action
    why: HoldReason
    detail: str
    until: float | None


@frozen
class Plan:
    """The actions to run now, in ACTION_ORDER, and the ones held back. Iterates over actions."""

    actions: tuple[Action, ...]
    held: tuple[Held, ...] = ()
    now: float = 0.0

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def empty(self) -> bool:
        """Nothing to do and nothing waiting: the network matches the configuration."""
        return not self.actions and not self.held


def backoff_delay(failures: int, minimum: float, maximum: float) -> float:
    """Exponential backoff: `minimum` after the first failure, doubling, capped at `maximum`."""
    if failures <= 0:
        return 0.0
    return float(min(maximum, minimum * 2 ** min(failures - 1, 62)))


def plan(desired: DesiredState, observed: ObservedState, now: float) -> Plan:
    """What to do now to bring `observed` to `desired`; pure, and empty once they match."""
    wanted = _wanted(desired, observed)
    reload = _reload_after_restart(desired, observed, wanted)
    if reload is not None:
        wanted.append(reload)
    order = {kind: i for i, kind in enumerate(ACTION_ORDER)}
    wanted.sort(key=lambda a: order[a.KIND])
    actions: list[Action] = []
    held: list[Held] = []
    blocker: Held | None = None  # the held predecessor that ends last
    for action in wanted:
        holds = []
        if blocker is not None:
            holds.append(
                Held(action, "waiting", f"waiting for {blocker.action.KIND}", blocker.until)
            )
        holds.extend(_holds(action, desired, observed, now))
        hold = _latest(holds)
        if hold is None:
            actions.append(action)
            continue
        held.append(hold)
        if _blocks_successors(hold, desired, observed) and (
            blocker is None or _later(hold, blocker)
        ):
            blocker = hold
    return Plan(actions=tuple(actions), held=tuple(held), now=now)


# --- what the rules want -----------------------------------------------------------------


def _wanted(desired: DesiredState, observed: ObservedState) -> list[Action]:
    wan = observed.wan
    if wan is None:
        return []  # nothing known about the WAN: no guessing
    ipv4 = observed.probe("ipv4")
    fail_after4 = observed.fail_after.get("ipv4", 3)
    wan_causes = [wan.seq]
    problem = None
    if not wan.exists:
        problem = f"WAN interface {wan.interface} is missing"
    elif not wan.link_up:
        problem = f"WAN {wan.interface} link is down"
    elif wan.address is None or desired.local is None:
        problem = f"WAN {wan.interface} has no IPv4 address"
    if problem is None and ipv4.status == "down":
        if ipv4.consecutive_failed < fail_after4:
            return []  # judged afresh after a restart: wait for the probes
        problem = f"IPv4 probe to {ipv4.target} failed {ipv4.consecutive_failed} times in a row"
        if wan.default_route:
            problem += f" while {wan.interface} has its link, address and default route"
        wan_causes.append(ipv4.last_seq)
    if problem is not None:
        return [RestartWan(desired.wan_interface, reason=problem, causes=_causes(wan_causes))]
    local = desired.local
    assert local is not None  # checked above
    wanted: list[Action] = []
    update = _update_endpoint(desired, observed, local)
    if update is not None:
        wanted.append(update)
    rewrite = _rewrite_hostname(desired, observed)
    if rewrite is not None:
        wanted.append(rewrite)
    restart = _restart_tunnel(desired, observed, local)
    if restart is not None:
        wanted.append(restart)
    return wanted


def _update_endpoint(
    desired: DesiredState, observed: ObservedState, local: str
) -> UpdateHeEndpoint | None:
    assert observed.wan is not None
    endpoint = observed.endpoint
    candidate = UpdateHeEndpoint(desired.myip, local)
    causes = [observed.wan.seq]
    known = _known_at_he_since(desired, observed, local)
    if known:
        # HE's word that it has this address is out of date once an update for another
        # address whose outcome is unknown has gone out since: HE may have taken that one,
        # and IPv6 would stay down for good if this address were never sent again. Nor may
        # it go out blindly (HE may still have it: a nochg, which HE counts as abuse): the
        # update is wanted, and waits for IPv6 across a tunnel from this address to tell
        # ("unconfirmed", see _hold_update).
        since = _unknown_update_since(observed, candidate.key, known)
        if since is None:
            return _update_behind_nat(desired, observed, local, known)
        return UpdateHeEndpoint(
            desired.myip,
            local,
            reason=f"HE had {local}'s endpoint, but an update of unknown outcome "
            f"({since.key}) went out since",
            causes=_causes([*causes, known, since.last_started_seq]),
        )
    if endpoint is None:
        reason = f"HE's endpoint is unknown; the WAN has {local}"
    else:
        causes.append(endpoint.seq)
        if desired.myip is not None and endpoint.address is not None:
            # Our public address is known, and so is HE's endpoint: they differ.
            reason = f"HE has {endpoint.address}, the WAN has {desired.myip}"
        elif endpoint.for_local is not None:
            # Behind NAT (or a private address) HE sees our public address, which we cannot
            # know; what HE confirmed last was made for another WAN address.
            reason = (
                f"HE's endpoint {endpoint.address or '(address unknown)'} is for "
                f"{endpoint.for_local}, the WAN has {local}"
            )
        elif endpoint.address is None:
            reason = f"HE has no endpoint, the WAN has {local}"
        else:
            reason = (
                f"HE has {endpoint.address}, not known to be for the WAN's {local} "
                "(public address behind NAT)"
            )
    return UpdateHeEndpoint(desired.myip, local, reason=reason, causes=_causes(causes))


def _update_behind_nat(
    desired: DesiredState, observed: ObservedState, local: str, known: int
) -> UpdateHeEndpoint | None:
    """Behind NAT the public address HE has can change without any change we can see: the
    WAN keeps its private address. When IPv6 stays down across a tunnel restarted during
    the outage, one update without myip (HE takes the request's source) finds out; none
    goes out again before the next outage. HE's tunnel info showing the address it had does
    not settle it: that is the old public address, which HE keeps until it is updated."""
    if desired.myip is not None:
        return None
    ipv6, ipv4 = observed.probe("ipv6"), observed.probe("ipv4")
    if ipv6.status != "down" or ipv4.status == "down":
        return None
    if observed.last_update_attempt_seq > ipv6.outage_seq:
        return None  # this outage had its update (HE's tunnel info since says no more)
    restarted = observed.last_success_seq_of(RestartTunnel.KIND)
    if restarted <= ipv6.outage_seq or ipv6.last_seq <= restarted:
        return None  # the tunnel has not been restarted in this outage yet
    if ipv6.consecutive_failed < observed.fail_after.get("ipv6", 3):
        return None  # judged afresh after the restart: wait for the probes
    return UpdateHeEndpoint(
        None,
        local,
        reason="IPv6 stays down across the restarted tunnel: behind NAT the public address "
        "HE has may be an old one",
        causes=_causes([known, restarted, ipv6.last_seq]),
    )


def _known_at_he_since(desired: DesiredState, observed: ObservedState, local: str) -> int:
    """The fact after which HE is known to have our endpoint for the WAN address `local`
    (HE's answer to our update, its tunnel info, IPv6 across the tunnel), or 0."""
    endpoint = observed.endpoint
    record = observed.actions.get(UpdateHeEndpoint(desired.myip, local).key)
    endpoint_seq = endpoint.seq if endpoint is not None else 0
    if record is not None and record.last_success_seq > endpoint_seq:
        return record.last_success_seq  # HE accepted it and has said nothing different since
    if endpoint is None:
        return 0
    if desired.myip is not None and endpoint.address is not None:
        return endpoint.seq if endpoint.address == desired.myip else 0
    return endpoint.seq if endpoint.for_local == local else 0


def _superseding_update(
    desired: DesiredState, observed: ObservedState, action: UpdateHeEndpoint
) -> ActionRecord | None:
    """The update of unknown outcome for another address that went out after HE was known to
    have `action`'s (see _update_endpoint), if any."""
    known = _known_at_he_since(desired, observed, action.local)
    return _unknown_update_since(observed, action.key, known) if known else None


def _unknown_update_since(observed: ObservedState, key: str, seq: int) -> ActionRecord | None:
    """The latest update other than `key` started after fact `seq` whose outcome is unknown."""
    latest: ActionRecord | None = None
    for record in observed.records_of(UpdateHeEndpoint.KIND):
        if (
            record.key != key
            and record.last_started_seq > seq
            and (latest is None or record.last_started_seq > latest.last_started_seq)
            and _outcome_unknown(record, observed)
        ):
            latest = record
    return latest


def _rewrite_hostname(desired: DesiredState, observed: ObservedState) -> RewriteHostname | None:
    target = desired.hostname_file
    seen = observed.hostname_file
    if target is None or seen is None or seen.digest == target.digest:
        return None
    assert observed.wan is not None
    if seen.digest is None:
        reason = f"{target.path} is missing"
    else:
        reason = f"{target.path} differs from its render for {desired.local}"
    return RewriteHostname(
        target.path,
        target.content,
        target.digest,
        reason=reason,
        causes=_causes([seen.seq, observed.wan.seq]),
    )


def _restart_tunnel(
    desired: DesiredState, observed: ObservedState, local: str
) -> RestartTunnel | None:
    tunnel = observed.tunnel
    if tunnel is None:
        return None
    assert observed.wan is not None
    reasons: list[str] = []
    causes = [tunnel.seq]
    if not tunnel.exists:
        reasons.append(f"tunnel {tunnel.interface} is missing")
    else:
        if not tunnel.up:
            reasons.append(f"tunnel {tunnel.interface} is down")
        if tunnel.local != local and desired.tunnel_local == "wan":
            reasons.append(f"tunnel local end is {tunnel.local or 'unset'}, the WAN has {local}")
            causes.append(observed.wan.seq)
        if tunnel.remote != desired.tunnel_remote:
            reasons.append(
                f"tunnel remote end is {tunnel.remote or 'unset'}, HE's server is "
                f"{desired.tunnel_remote}"
            )
        if tunnel.default_route == "none":
            reasons.append(_no_route_reason(tunnel.interface))
        if tunnel.ttl is not None and tunnel.ttl != desired.tunnel_ttl:
            reasons.append(
                f"tunnel TTL is {tunnel.ttl}, the configuration says {desired.tunnel_ttl}"
            )
    ipv6, ipv4 = observed.probe("ipv6"), observed.probe("ipv4")
    if (
        ipv6.status == "down"
        and ipv4.status != "down"
        and ipv6.consecutive_failed >= observed.fail_after.get("ipv6", 3)
    ):
        reasons.append(
            f"IPv6 probe to {ipv6.target} failed {ipv6.consecutive_failed} times in a row "
            "while IPv4 is up"
        )
        causes.append(ipv6.last_seq)
    if not reasons:
        return None
    return RestartTunnel(
        desired.tunnel_interface,
        local,
        desired.tunnel_remote,
        reason="; ".join(reasons),
        causes=_causes(causes),
    )


def _no_route_reason(interface: str) -> str:
    return f"no IPv6 default route (::/0) through {interface}"


def _reload_after_restart(
    desired: DesiredState, observed: ObservedState, wanted: list[Action]
) -> ReloadPf | None:
    if not desired.reload_firewall or desired.local is None:
        return None
    restart = next((a for a in wanted if a.KIND == RestartTunnel.KIND), None)
    if restart is not None:
        return ReloadPf(
            desired.local,
            reason="the firewall follows the tunnel restart planned before it",
            causes=restart.causes,
        )
    restarted = observed.last_success_seq_of(RestartTunnel.KIND)
    reloaded = observed.last_success_seq_of(ReloadPf.KIND)
    if restarted > reloaded:
        return ReloadPf(
            desired.local,
            reason="the tunnel was restarted after the last firewall reload",
            causes=(restarted,),
        )
    return None


def _causes(seqs: list[int]) -> tuple[int, ...]:
    return tuple(sorted({s for s in seqs if s > 0}))


# --- what holds an action back ----------------------------------------------------------


def _holds(
    action: Action, desired: DesiredState, observed: ObservedState, now: float
) -> list[Held]:
    """Every hold that applies to `action` now (the caller reports the one that ends last)."""
    bounds = desired.reconcile
    same_kind = observed.records_of(action.KIND)
    record = observed.actions.get(action.key)
    holds: list[Held] = []
    # A permanent failure holds the whole kind (badauth is not about one address) until the
    # configuration, or the key file, changes; HE refusing a private address holds only the
    # update that would send that address again (a new WAN address is another key).
    permanent = _permanent_hold(action, desired, same_kind)
    if permanent is not None:
        holds.append(permanent)
    if action.KIND in _RESTARTS and record is not None:
        recent = [t for t in record.recent_starts if t > now - bounds.restart_window]
        if len(recent) >= bounds.restart_limit:
            holds.append(
                Held(
                    action,
                    "restart-limit",
                    f"{len(recent)} restarts within {bounds.restart_window:g} s did not help",
                    _due(min(recent), bounds.restart_window, now),
                )
            )
    if (
        record is not None
        and record.last_outcome == "temporary"
        and record.failed_at is not None
        and action.KIND != UpdateHeEndpoint.KIND  # HE's trouble is the service's: below
    ):
        delay = backoff_delay(record.consecutive_failures, bounds.backoff_min, bounds.backoff_max)
        why: HoldReason = "backoff"
        if record.retry_after is not None and record.retry_after > delay:
            delay, why = record.retry_after, "retry-after"
        due = _due(record.failed_at, delay, now)
        if now < due:
            holds.append(
                Held(
                    action,
                    why,
                    f"{record.consecutive_failures} failure(s), last: {record.last_message}",
                    due,
                )
            )
    if action.KIND == UpdateHeEndpoint.KIND:
        holds.extend(_hold_update(action, desired, observed, now, same_kind))
    # A tunnel whose only fault is a missing default route was put right by the last
    # restart (it adds the route, or fails): someone removed it since (networkd on
    # `networkctl reconfigure`), so there is nothing to let settle; the restart limit still
    # bounds a fight over it.
    route_only = action.reason == _no_route_reason(desired.tunnel_interface)
    if action.KIND in _RESTARTS and record is not None and not route_only:
        hold = _hold_settling(action, record, desired, now)
        if hold is not None:
            holds.append(hold)
    if action.KIND == RestartWan.KIND:
        holds.extend(_hold_wan(action, desired, observed, now))
    return holds


def _permanent_hold(
    action: Action, desired: DesiredState, same_kind: list[ActionRecord]
) -> Held | None:
    """The hold a permanent failure under the configuration in force puts on `action`; one
    of the whole kind first (it says more: another address would not help either)."""
    failed = [
        r
        for r in same_kind
        if r.last_outcome == "permanent" and r.permanent_digest == desired.config_digest
    ]
    record = next((r for r in failed if not holds_only_its_key(r.kind, r.last_message)), None)
    waiting = "waiting for the configuration to change"
    if record is None:
        record = next((r for r in failed if r.key == action.key), None)
        waiting = "waiting for another WAN address or a change of the configuration"
    if record is None:
        return None
    return Held(
        action,
        "permanent-failure",
        f"{record.key} failed permanently ({record.last_message}); {waiting}",
        None,
    )


def _hold_wan(
    action: Action, desired: DesiredState, observed: ObservedState, now: float
) -> list[Held]:
    """What holds restart-wan beside the common holds: a grace, a problem a restart cannot
    fix, or nobody to tell."""
    wan = observed.wan
    if wan is None:
        return []
    holds = []
    grace = _hold_grace(action, desired, observed, now)
    if grace is not None:
        holds.append(grace)
    intact = wan.exists and wan.link_up and wan.address is not None and wan.default_route
    if intact and observed.probe("ipv4").status == "down":
        holds.append(
            Held(
                action,
                "upstream",
                "the path beyond the WAN is broken (link, address and default route are "
                "there): a restart of the WAN cannot fix it; waiting for the WAN to change",
                None,
            )
        )
    if wan.owner == "none":
        holds.append(
            Held(
                action,
                "no-owner",
                f"nobody can be told to restart {wan.interface} (set wan.restart_command): "
                "observing it",
                None,
            )
        )
    return holds


def _hold_grace(
    action: Action, desired: DesiredState, observed: ObservedState, now: float
) -> Held | None:
    """A DHCP client (dhcpleased, dhclient, networkd) keeps its lease through a short link
    loss, and between losing an address and getting the next runs a whole DISCOVER/REQUEST
    exchange: a restart in the middle fights it and spends the restart limit. Its link down,
    its address or its default route missing, the WAN gets `dhcp_grace` seconds from when
    it was first seen so. A WAN interface that is gone (pppd redialling, a USB modem
    re-enumerating) gets the same, DHCP or not: it is about to come back, and there is
    nothing to restart."""
    wan = observed.wan
    if wan is None or desired.dhcp_grace <= 0:
        return None
    due = _due(wan.at, desired.dhcp_grace, now)
    if now >= due:
        return None
    if not wan.exists:
        detail = f"{wan.interface} is gone: waiting {desired.dhcp_grace:g} s for it to return"
        return Held(action, "wan-grace", detail, due)
    # dhclient-script adds the address, then the default route: a WAN seen between the two
    # (the IPv4 probe failing since the address went) is mid-exchange too.
    mid_exchange = not wan.link_up or wan.address is None or wan.default_route is False
    if not wan.autoconf or not mid_exchange:
        return None  # address and route are there: a failing probe is not DHCP's business
    return Held(
        action,
        "dhcp-grace",
        f"{wan.interface} is a DHCP interface: waiting {desired.dhcp_grace:g} s for its lease",
        due,
    )


def _blocks_successors(hold: Held, desired: DesiredState, observed: ObservedState) -> bool:
    """Whether the actions after a held one must wait for it.

    An update whose outcome is unknown (the daemon died while it ran) and that only the
    minimum interval holds may well have reached HE: rebuilding the tunnel for it lets an IPv6
    probe show whether it did, rather than sending it again once the interval has passed. An
    "unconfirmed" hold (that update's, or one for an address HE had before it) waits for the
    same probe: it never holds the tunnel back.
    """
    if hold.why == "unconfirmed":
        return False  # it waits for the tunnel to tell
    action = hold.action
    if not isinstance(action, UpdateHeEndpoint):
        return True
    # Nor does anything else that holds an update waiting for the tunnel (another update's
    # retry-after, say) keep the tunnel from telling, until it has: a hold that outlasts the
    # "unconfirmed" one would otherwise end in the update sent blindly (a nochg if HE has it).
    record = observed.actions.get(action.key)
    if (
        record is not None
        and _outcome_unknown(record, observed)
        and (hold.why == "min-update-interval" or not _update_missed_he(action, record, observed))
    ):
        return False
    since = _superseding_update(desired, observed, action)
    return since is None or _update_missed_he(action, since, observed)


def _outcome_unknown(record: ActionRecord, observed: ObservedState) -> bool:
    """Whether HE may have taken `record`'s update unbeknown to us: the daemon died while it
    ran, or it went out and no complete answer came back (unconfirmed), and it is the latest
    update attempt, or nothing since tells what HE has.

    A later attempt for another address settles it only by succeeding; one that failed or
    whose outcome is unknown too leaves this update as likely at HE as before, so a WAN that
    comes back to its address must not send it again blindly (a nochg, which HE counts as
    abuse). An update confirmed since, or HE's endpoint observed since (an answer, the
    tunnel info, IPv6 across the tunnel), tells what HE has.
    """
    if not (record.in_flight or record.unconfirmed):
        return False
    start = record.last_started_seq
    if start == observed.last_update_attempt_seq:
        return True
    endpoint = observed.endpoint
    return observed.last_success_seq_of(UpdateHeEndpoint.KIND) < start and (
        endpoint is None or endpoint.seq < start
    )


def _awaiting_the_tunnel(action: Action, record: ActionRecord, observed: ObservedState) -> bool:
    """Whether `action` is an update whose outcome is unknown and that the tunnel has not yet
    shown to have missed HE: only the "unconfirmed" hold applies to it then."""
    return (
        isinstance(action, UpdateHeEndpoint)
        and _outcome_unknown(record, observed)
        and not _update_missed_he(action, record, observed)
    )


def _due(at: float, delay: float, now: float) -> float:
    """When something that happened at `at` stops holding for `delay` seconds.

    A time after `now` is a clock step (a router without a real-time clock boots in the past
    and NTP moves it on; a step back makes earlier facts look future): it is no reason to
    wait, so it is due `now`.
    """
    return now if at > now else at + delay


def _later(a: Held, b: Held) -> bool:
    """Whether hold `a` ends after hold `b` (None, a permanent hold, never ends)."""
    if b.until is None:
        return False
    return a.until is None or a.until > b.until


def _latest(holds: list[Held]) -> Held | None:
    """The hold that ends last; the first listed among equals."""
    latest: Held | None = None
    for hold in holds:
        if latest is None or _later(hold, latest):
            latest = hold
    return latest


def _hold_update(
    action: Action,
    desired: DesiredState,
    observed: ObservedState,
    now: float,
    same_kind: list[ActionRecord],
) -> list[Held]:
    holds: list[Held] = []
    # HE's "abuse" blocks the account, not one address: its hint holds every update.
    for other in same_kind:
        if (
            other.last_outcome == "temporary"
            and other.retry_after
            and other.failed_at
            and is_abuse(other.kind, other.last_message)
        ):
            due = _due(other.failed_at, other.retry_after, now)
            if now < due:
                holds.append(Held(action, "retry-after", f"{other.key}: {other.last_message}", due))
    if isinstance(action, UpdateHeEndpoint):
        trouble = _hold_server_trouble(action, desired, observed, now)
        if trouble is not None:
            holds.append(trouble)
        record = observed.actions.get(action.key)
        if (
            record is not None
            and _outcome_unknown(record, observed)
            and not _update_missed_he(action, record, observed)
        ):
            what = (
                "the daemon stopped while the update ran"
                if record.in_flight
                else "the update got no complete answer"
            )
            holds.extend(
                _hold_unconfirmed(action, record, f"{what}, so HE may have it", desired, now)
            )
        # HE had this address, but an update for another one of unknown outcome went out
        # since (see _update_endpoint): IPv6 across a tunnel from this address tells whether
        # HE still has it (then the fold proves it again, and the update is not wanted).
        since = _superseding_update(desired, observed, action)
        if since is not None and not _update_missed_he(action, since, observed):
            what = f"an update of unknown outcome ({since.key}) went out since, so HE may not"
            holds.extend(_hold_unconfirmed(action, since, f"HE had it, but {what}", desired, now))
    last = observed.last_update_attempt_at
    if last is not None and now < _due(last, desired.min_update_interval, now):
        holds.append(
            Held(
                action,
                "min-update-interval",
                f"the last update was attempted less than {desired.min_update_interval:g} s ago",
                _due(last, desired.min_update_interval, now),
            )
        )
    return holds


def server_trouble_delay(count: int, retry_after: float | None, desired: DesiredState) -> float:
    """How long after the latest of `count` updates in a row that met trouble at HE's server
    the next update may go: backoff_min, doubling with each, up to he_backoff_max; longer
    when HE's Retry-After says so (the client bounds it)."""
    return max(_trouble_slot(count, desired), retry_after or 0.0)


def _trouble_slot(count: int, desired: DesiredState) -> float:
    bounds = desired.reconcile
    return backoff_delay(count, bounds.backoff_min, max(bounds.he_backoff_max, bounds.backoff_min))


def _hold_server_trouble(
    action: UpdateHeEndpoint, desired: DesiredState, observed: ObservedState, now: float
) -> Held | None:
    """The back-off after trouble at HE's server (a 5xx, 911, a time-out...): one slot for
    every update, the new address's included (HE's trouble is not one address's), counted
    from the latest trouble and growing with the updates in a row that met it; over at HE's
    first good word (see the fold's he_trouble). An update of unknown outcome waits for the
    tunnel instead ("unconfirmed"), as long as the tunnel may yet tell."""
    trouble = observed.he_trouble
    if trouble is None:
        return None
    record = observed.actions.get(action.key)
    if (
        trouble.key == action.key
        and record is not None
        and _awaiting_the_tunnel(action, record, observed)
    ):
        return None
    delay = server_trouble_delay(trouble.count, trouble.retry_after, desired)
    due = _due(trouble.at, delay, now)
    if now >= due:
        return None
    why: HoldReason = "retry-after" if delay > _trouble_slot(trouble.count, desired) else "backoff"
    detail = (
        f"trouble at HE, {trouble.count} update(s) in a row; last ({trouble.key}): "
        f"{trouble.message}"
    )
    return Held(action, why, detail, due)


def _hold_unconfirmed(
    action: UpdateHeEndpoint, unknown: ActionRecord, what: str, desired: DesiredState, now: float
) -> list[Held]:
    """The wait for IPv6 across a tunnel from `action.local` to tell whether HE has the
    address, `unknown` being the update of unknown outcome that leaves it open; for the
    longest of min_update_interval, backoff_max and restart_window at most (the tunnel may
    never tell)."""
    if unknown.last_started_at is None:
        return []
    bounds = desired.reconcile
    patience = max(desired.min_update_interval, bounds.backoff_max, bounds.restart_window)
    due = _due(unknown.last_started_at, patience, now)
    if now >= due:
        return []
    detail = f"{what}; waiting for IPv6 across a tunnel from {action.local} to show whether"
    return [Held(action, "unconfirmed", detail, due)]


def _update_missed_he(
    action: UpdateHeEndpoint, record: ActionRecord, observed: ObservedState
) -> bool:
    """Whether IPv6 failed (after hysteresis) across a tunnel from the update's local end,
    after the update: had it reached HE, IPv6 would work."""
    tunnel, ipv6 = observed.tunnel, observed.probe("ipv6")
    return (
        tunnel is not None
        and tunnel.exists
        and tunnel.up
        and tunnel.local == action.local
        and ipv6.last_ok is False
        and ipv6.last_seq > max(tunnel.seq, record.last_started_seq)
        and ipv6.consecutive_failed >= observed.fail_after.get("ipv6", 3)
    )


def _hold_settling(
    action: Action, record: ActionRecord, desired: DesiredState, now: float
) -> Held | None:
    # A restart that "succeeded" but did not fix the problem: give it time before the next.
    bounds = desired.reconcile
    if record.last_outcome == "temporary" or record.last_started_at is None:
        return None
    recent = [t for t in record.recent_starts if t > now - bounds.restart_window]
    if not recent:
        return None
    due = _due(
        record.last_started_at,
        backoff_delay(len(recent), bounds.backoff_min, bounds.backoff_max),
        now,
    )
    if now < due:
        return Held(action, "settling", f"restarted {len(recent)} time(s) recently", due)
    return None
