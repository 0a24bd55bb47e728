"""The observed state: everything the event log says about the world, folded into one value.

`fold(state, envelope)` is pure and total: any envelope, including an `UnknownFact`, yields
a new state. The state remembers the sequence number of the fact that set each value, so a
plan can name the facts it rests on ("causes"). Probe hysteresis lives here: a probe family
changes status only after `fail_after` consecutive failures or `recover_after` consecutive
successes, with the thresholds the last ConfigLoaded fact carried (3 and 1 before any).

Outages live here too: each probe view keeps the first failed probe since the last success
and the start of the family's outage under way, by the one rule of reconciler.model.outages,
so any state (a snapshot, a checkpoint) knows when the outage it is in began.

HE's endpoint is known from HE's answer to an update, from HE's tunnel info, and from the
tunnel itself: a 6in4 tunnel carries IPv6 only while HE's end points at us, so an IPv6 probe
that succeeds across a tunnel observed up with local end X (and not restarted since) shows
that HE has our endpoint for X (source "probe"; behind NAT the public address stays unknown),
proven again after an update sent since. HE changes its endpoint only when updated: a new
address after one update of unknown outcome (the daemon died during it) is that update's.

Trouble at HE's server lives here too (`he_trouble`): the updates in a row that met passing
trouble (a 5xx, 911, a time-out, a refused connection, an unknown answer; not `abuse`),
ended by any good word from HE: a good or nochg answer, its tunnel info, or the tunnel
proving that the troubled update reached HE after all (an answer that came too late).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs
from attrs import field, frozen

from reconciler.model.actions import RestartTunnel, RestartWan, UpdateHeEndpoint, is_abuse
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    ConfigLoaded,
    EndpointObserved,
    Envelope,
    HostnameFileObserved,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
    WanChosen,
    WanProbed,
)
from reconciler.model.failover import FailoverView, fold_chosen, fold_probed, view_from_mapping
from reconciler.model.fastinit import twin_builder
from reconciler.model.outages import (
    TUNNEL_FAMILY,
    after_probe,
    after_wan_change,
)

__all__ = [
    "DEFAULT_FAIL_AFTER",
    "DEFAULT_RECOVER_AFTER",
    "RECENT_STARTS_KEPT",
    "SCHEMA_VERSION",
    "ActionRecord",
    "EndpointView",
    "FoldErrorHandler",
    "HeTroubleView",
    "HostnameView",
    "ObservedState",
    "ProbeView",
    "TunnelView",
    "WanView",
    "fold",
    "fold_all",
    "state_from_mapping",
    "state_to_mapping",
]

# Bump when the shape of ObservedState changes: snapshots of another version are ignored.
# A field added with a default (WanView.autoconf, .default_route, .owner, TunnelView.ttl) needs no
# bump: an older snapshot loads with the default, and a bump would make every snapshot
# unusable at upgrade.
SCHEMA_VERSION = 1
DEFAULT_FAIL_AFTER = 3
DEFAULT_RECOVER_AFTER = 1
# Start times kept per action key; the restart limit never needs more than this.
RECENT_STARTS_KEPT = 32

ProbeStatus = Literal["unknown", "up", "down"]
FAMILIES = ("ipv4", "ipv6")


def _floats(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


@frozen
class WanView:
    """The WAN as last observed; `seq` and `at` are those of the fact that first showed it
    as it is (a DHCP grace period counts from `at`)."""

    interface: str
    address: str | None
    link_up: bool
    exists: bool
    seq: int
    at: float
    autoconf: bool = False
    default_route: bool | None = None  # the IPv4 default route leaves through it; None: unknown
    owner: str | None = None  # who restart-wan would tell; "none": nobody; None: not said


@frozen
class TunnelView:
    interface: str
    exists: bool
    up: bool
    local: str | None
    remote: str | None
    mode: str | None
    seq: int
    at: float
    ttl: int | None = None
    default_route: str | None = None  # "tunnel", "other", "none"; None: not reported


@frozen
class HostnameView:
    path: str
    digest: str | None
    seq: int
    at: float


@frozen
class EndpointView:
    """What Hurricane Electric has as our endpoint, and (behind NAT) for which WAN address."""

    address: str | None
    for_local: str | None
    source: str
    seq: int
    at: float


@frozen
class HeTroubleView:
    """Trouble at HE's server met by `count` updates in a row (none answered well since): the
    latest at `at` (fact `seq`), by the update `key`, with HE's Retry-After if it gave one.
    The planner's back-off after server trouble grows with `count`."""

    count: int
    key: str
    message: str
    retry_after: float | None
    seq: int
    at: float


# No __weakref__ slot (nothing takes weak references to states): it lets the fold build
# states and probe views through a mutable twin of the same layout (see fastinit.twin_builder).
@frozen(weakref_slot=False)
class ProbeView:
    """One probe family after hysteresis. `seq` is the fact that set the current status.

    `failing_since`/`failing_seq`: the first failed probe since the last successful one
    (None after a success); `outage_since`/`outage_seq`: the start of the family's outage
    under way (None: none), by the rule of reconciler.model.outages."""

    family: str
    status: ProbeStatus = "unknown"
    consecutive_ok: int = 0
    consecutive_failed: int = 0
    target: str = ""
    last_ok: bool | None = None
    last_seq: int = 0
    last_at: float = 0.0
    seq: int = 0
    since: float = 0.0
    failing_since: float | None = None
    failing_seq: int = 0
    outage_since: float | None = None
    outage_seq: int = 0


@frozen
class ActionRecord:
    """What the log says about one action key: attempts, outcomes, and what is in flight."""

    key: str
    kind: str
    attempts: int = 0
    consecutive_failures: int = 0
    last_outcome: str | None = None  # "ok" | "temporary" | "permanent"
    last_message: str = ""
    failed_at: float | None = None
    retry_after: float | None = None
    permanent_digest: str | None = None  # config digest when it failed permanently
    last_started_at: float | None = None
    last_started_seq: int = 0
    in_flight: bool = False  # started, no outcome yet (a crash in the middle shows)
    # The last attempt failed without an answer and may have taken effect (an HE update
    # answered after the deadline): for the planner, as unknown as an in-flight one.
    unconfirmed: bool = False
    last_success_at: float | None = None
    last_success_seq: int = 0
    last_outcome_seq: int = 0
    recent_starts: tuple[float, ...] = field(default=(), converter=_floats)


@frozen(weakref_slot=False)
class ObservedState:
    seq: int = 0
    at: float = 0.0
    config_digest: str | None = None
    config_seq: int = 0
    fail_after: Mapping[str, int] = field(
        factory=lambda: dict.fromkeys(FAMILIES, DEFAULT_FAIL_AFTER), hash=False
    )
    recover_after: Mapping[str, int] = field(
        factory=lambda: dict.fromkeys(FAMILIES, DEFAULT_RECOVER_AFTER), hash=False
    )
    wan: WanView | None = None
    # The WAN's last address, kept across a spell without one (a new one ends the tunnel).
    last_wan_address: str | None = None
    probes: Mapping[str, ProbeView] = field(
        factory=lambda: {f: ProbeView(family=f) for f in FAMILIES}, hash=False
    )
    tunnel: TunnelView | None = None
    hostname_file: HostnameView | None = None
    endpoint: EndpointView | None = None
    last_update_attempt_at: float | None = None
    last_update_attempt_seq: int = 0
    actions: Mapping[str, ActionRecord] = field(factory=dict, hash=False)
    # Server trouble since HE last answered well (None: none).
    he_trouble: HeTroubleView | None = None
    # Several WANs: each one's health and the active one (reconciler.model.failover).
    failover: FailoverView | None = None

    def probe(self, family: str) -> ProbeView:
        return self.probes.get(family) or ProbeView(family=family)

    def records_of(self, kind: str) -> list[ActionRecord]:
        """Every action record of one kind (e.g. every update-he-endpoint key)."""
        return [r for r in self.actions.values() if r.kind == kind]

    def last_success_seq_of(self, kind: str) -> int:
        return max((r.last_success_seq for r in self.records_of(kind)), default=0)

    def last_started_seq_of(self, kind: str) -> int:
        return max((r.last_started_seq for r in self.records_of(kind)), default=0)


FoldErrorHandler = Callable[[Envelope, Exception], None]


def fold(
    state: ObservedState, envelope: Envelope, on_error: FoldErrorHandler | None = None
) -> ObservedState:
    """The state after `envelope`; pure, and total over every fact (unknown ones only move seq).

    A fact the fold cannot take (a malformed record the decoder let through) counts as
    unknown: one bad record must not stop a replay or the daemon for good. `on_error`, when
    given, hears of it, so that the caller can log it.
    """
    # Dispatch on the exact type: one dict lookup instead of a chain of class patterns.
    folder = _FOLDERS.get(type(envelope.fact), _fold_other)
    try:
        return folder(state, envelope.fact, envelope.seq, envelope.at)
    except Exception as exc:  # the backstop: a try costs nothing until it catches
        if on_error is not None:
            on_error(envelope, exc)
        return _moved(state, envelope.seq, envelope.at)


_STATE_FIELDS = tuple(a.name for a in attrs.fields(ObservedState))
_SEQ, _AT = (_STATE_FIELDS.index(name) for name in ("seq", "at"))
# The rarer facts copy a state's fields with one C-level attrgetter and build the new state
# without attrs' __init__ (_make_state, below).
_state_values = operator.attrgetter(*_STATE_FIELDS)


def _moved(state: ObservedState, seq: int, at: float, **changes: Any) -> ObservedState:
    """`state` as of a new seq and time, with `changes` applied, in one construction."""
    values = list(_state_values(state))
    values[_SEQ] = seq
    values[_AT] = at
    for name, value in changes.items():
        values[_STATE_FIELDS.index(name)] = value
    moved: ObservedState = _make_state(*values)
    return moved


# A probe fact moves seq and at and replaces one probe view: the bulk of any log.
# Built through a mutable twin of the same layout (see fastinit.twin_builder): a probe fact
# then costs one state and one probe view at a few ns per field.
_probe_step = twin_builder(ObservedState, ("seq", "at", "probes"))
_make_state = twin_builder(ObservedState)
_make_probe_view = twin_builder(ProbeView)


def _fold_wan(state: ObservedState, fact: WanAddressObserved, seq: int, at: float) -> ObservedState:
    wan = WanView(
        fact.interface,
        fact.address,
        fact.link_up,
        fact.exists,
        seq,
        at,
        fact.autoconf,
        fact.default_route,
        fact.owner,
    )
    if state.wan is not None and _same_wan(state.wan, wan):
        wan = state.wan  # the value's cause is the fact that first showed it
    actions = state.actions
    if _wan_usable(wan) and state.probe("ipv4").status != "down":
        actions = _forget_recent_starts(actions, RestartWan.KIND)
    probes = state.probes
    if state.wan is not None and _wan_usable(state.wan) and not _wan_usable(wan):
        # The WAN lost its link or its address: nothing crosses it, so each family with a
        # verdict is out from here (see outages), whatever the probes will take to notice.
        probes = {
            family: probe if probe.status == "unknown" else _outage_begun(probe, seq, at)
            for family, probe in probes.items()
        }
    known = state.last_wan_address
    if wan.address is not None and wan.address != known:
        if known is not None:
            # The tunnel's local end is gone: its family's outage begins (see outages).
            tunnel_family = _outage_begun(probes[TUNNEL_FAMILY], seq, at)
            probes = {**probes, TUNNEL_FAMILY: tunnel_family}
        return _moved(
            state, seq, at, wan=wan, actions=actions, probes=probes, last_wan_address=wan.address
        )
    if probes is not state.probes:
        return _moved(state, seq, at, wan=wan, actions=actions, probes=probes)
    return _moved(state, seq, at, wan=wan, actions=actions)


def _outage_begun(probe: ProbeView, seq: int, at: float) -> ProbeView:
    """`probe` with its family's outage begun by a change of the WAN (see outages)."""
    marks = (probe.failing_since, probe.failing_seq, probe.outage_since, probe.outage_seq)
    failing_since, failing_seq, outage_since, outage_seq = after_wan_change(marks, seq, at)
    return attrs.evolve(
        probe,
        failing_since=failing_since,
        failing_seq=failing_seq,
        outage_since=outage_since,
        outage_seq=outage_seq,
    )


def _fold_tunnel(state: ObservedState, fact: TunnelObserved, seq: int, at: float) -> ObservedState:
    tunnel = TunnelView(
        fact.interface,
        fact.exists,
        fact.up,
        fact.local,
        fact.remote,
        fact.mode,
        seq,
        at,
        fact.ttl,
        fact.default_route,
    )
    old = state.tunnel
    if (
        old is not None
        and _same_tunnel(old, tunnel)
        and not _tunnel_restarted_since(state, old.seq)
    ):
        tunnel = old  # unchanged; after a restart, though, this is news about a rebuilt tunnel
    return _moved(state, seq, at, tunnel=tunnel)


def _fold_hostname(
    state: ObservedState, fact: HostnameFileObserved, seq: int, at: float
) -> ObservedState:
    view = HostnameView(fact.path, fact.digest, seq, at)
    old = state.hostname_file
    if old is not None and (old.path, old.digest) == (view.path, view.digest):
        view = old
    return _moved(state, seq, at, hostname_file=view)


def _fold_endpoint(
    state: ObservedState, fact: EndpointObserved, seq: int, at: float
) -> ObservedState:
    for_local = fact.for_local
    old = state.endpoint
    if (
        for_local is None
        and fact.address is not None
        and old is not None
        and old.address == fact.address
    ):
        # HE's tunnel info shows the endpoint but not which WAN address it was made for:
        # the same address HE last confirmed is still that confirmation (behind NAT, losing
        # for_local here plans the same update again: a nochg, which HE counts as abuse).
        for_local = old.for_local
    elif for_local is None and fact.address is not None:
        for_local = _local_of_the_update_since(state, old)
        if for_local is None and (old is None or old.address is None):
            # An address HE had not shown before, while IPv6 works across the tunnel: it is
            # our endpoint for the tunnel's local end. (A change from a known address is not
            # ours, unless an update of ours made it: above.)
            ipv6 = state.probes.get("ipv6")
            if ipv6 is not None and ipv6.last_ok:
                for_local = _local_proven_by_probe(state, ipv6.last_seq)
    endpoint = EndpointView(fact.address, for_local, fact.source, seq, at)
    # HE said what it has (its tunnel info, or its answer to an update): it answers well.
    return _moved(state, seq, at, endpoint=endpoint, he_trouble=None)


def _local_of_the_update_since(state: ObservedState, old: EndpointView | None) -> str | None:
    """The WAN address of the update that changed HE's endpoint from what `old` showed: HE
    changes it only when updated, so when the one update that may have reached HE since
    `old` is of unknown outcome (the daemon died during it, or no complete answer came),
    a new address is that update's doing. Behind NAT only this tells that HE's new endpoint
    is for that WAN address; without it, a WAN that comes back to the address sends the
    update again: a nochg, which HE counts as abuse. Two such updates, or none: unknown."""
    if old is None or state.last_update_attempt_seq <= old.seq:
        return None  # nothing sent since HE's endpoint was last seen (the common case)
    since = [
        record
        for record in state.actions.values()
        if record.kind == UpdateHeEndpoint.KIND
        and (record.last_started_seq > old.seq or record.last_success_seq > old.seq)
    ]
    unknown = [record for record in since if record.in_flight or record.unconfirmed]
    succeeded = [record for record in since if record.last_success_seq > old.seq]
    if len(unknown) != 1 or succeeded:
        return None
    return UpdateHeEndpoint.local_of(unknown[0].key)


def _fold_config(state: ObservedState, fact: ConfigLoaded, seq: int, at: float) -> ObservedState:
    return _moved(
        state,
        seq,
        at,
        config_digest=fact.digest,
        config_seq=seq,
        fail_after=_thresholds(fact.fail_after, state.fail_after),
        recover_after=_thresholds(fact.recover_after, state.recover_after),
    )


def _fold_succeeded(
    state: ObservedState, fact: ActionSucceeded, seq: int, at: float
) -> ObservedState:
    record = attrs.evolve(
        _record(state, fact.key, fact.action),
        consecutive_failures=0,
        last_outcome="ok",
        last_message=fact.message,
        retry_after=None,
        permanent_digest=None,
        in_flight=False,
        unconfirmed=False,
        last_success_at=at,
        last_success_seq=seq,
        last_outcome_seq=seq,
    )
    # The success settles its kind: the records of its other keys (older addresses) go,
    # unless they can still decide something, so the state does not grow with every address
    # the ISP ever handed out.
    actions = {
        key: other
        for key, other in state.actions.items()
        if other.kind != fact.action or key == fact.key or _still_decides(other, state, at)
    }
    actions[fact.key] = record
    if fact.action == UpdateHeEndpoint.KIND:  # good or nochg: HE answers well again
        return _moved(state, seq, at, actions=actions, he_trouble=None)
    return _moved(state, seq, at, actions=actions)


def _still_decides(record: ActionRecord, state: ObservedState, at: float) -> bool:
    """Whether a record of a settled kind's other key can still hold or explain anything:
    an intent with no outcome (a crash shows), a permanent failure under the configuration in
    force (it holds the whole kind; HE's refusal of a private address holds that address,
    should the WAN come back to it), or a retry-after hint not yet over (abuse holds every
    update)."""
    if record.in_flight:
        return True
    if record.last_outcome == "permanent":
        return record.permanent_digest == state.config_digest
    if record.retry_after is not None and record.failed_at is not None:
        return record.failed_at + record.retry_after > at
    return False


def _fold_failed(state: ObservedState, fact: ActionFailed, seq: int, at: float) -> ObservedState:
    record = _record(state, fact.key, fact.action)
    record = attrs.evolve(
        record,
        consecutive_failures=record.consecutive_failures + 1,
        last_outcome=fact.kind,
        last_message=fact.message,
        failed_at=at,
        retry_after=fact.retry_after,
        permanent_digest=state.config_digest if fact.kind == "permanent" else None,
        in_flight=False,
        unconfirmed=fact.unconfirmed and fact.kind == "temporary",
        last_outcome_seq=seq,
    )
    actions = {**state.actions, fact.key: record}
    if (
        fact.action == UpdateHeEndpoint.KIND
        and fact.kind == "temporary"
        and not is_abuse(fact.action, fact.message)
    ):
        trouble = state.he_trouble
        count = (trouble.count if trouble is not None else 0) + 1
        he_trouble = HeTroubleView(count, fact.key, fact.message, fact.retry_after, seq, at)
        return _moved(state, seq, at, actions=actions, he_trouble=he_trouble)
    return _moved(state, seq, at, actions=actions)


def _fold_wan_probed(state: ObservedState, fact: WanProbed, seq: int, at: float) -> ObservedState:
    # Each WAN's probe is an IPv4 probe: the IPv4 thresholds of the configuration apply.
    fail_after, recover_after = state.fail_after["ipv4"], state.recover_after["ipv4"]
    view = fold_probed(state.failover, fact, seq, at, fail_after, recover_after)
    return _moved(state, seq, at, failover=view)


def _fold_wan_chosen(state: ObservedState, fact: WanChosen, seq: int, at: float) -> ObservedState:
    failover = fold_chosen(state.failover, fact, seq, at)
    if fact.kind == "held":
        return _moved(state, seq, at, failover=failover)
    # The IPv4 probe judged the WAN left behind: the new one is judged afresh (its own
    # probes found it healthy), or the planner would hold or restart it for the old one's
    # failures. The outage marks stay: an outage ends at a good probe, as ever.
    probe = attrs.evolve(
        state.probe("ipv4"),
        status="unknown",
        consecutive_ok=0,
        consecutive_failed=0,
        seq=seq,
        since=at,
    )
    return _moved(state, seq, at, failover=failover, probes={**state.probes, "ipv4": probe})


def _fold_other(state: ObservedState, fact: Any, seq: int, at: float) -> ObservedState:
    for cls, folder in _FOLDERS.items():
        if isinstance(fact, cls):  # a subclass of a known fact folds as its base
            return folder(state, fact, seq, at)
    # DaemonStarted/Stopped and unknown facts change nothing we plan on.
    return _moved(state, seq, at)


def fold_all(
    envelopes: Any, state: ObservedState | None = None, on_error: FoldErrorHandler | None = None
) -> ObservedState:
    """Fold an iterable of envelopes onto `state` (an empty state when None)."""
    current = state if state is not None else ObservedState()
    for envelope in envelopes:
        current = fold(current, envelope, on_error)
    return current


def _same_wan(a: WanView, b: WanView) -> bool:
    return (a.interface, a.address, a.link_up, a.exists, a.autoconf, a.default_route, a.owner) == (
        b.interface,
        b.address,
        b.link_up,
        b.exists,
        b.autoconf,
        b.default_route,
        b.owner,
    )


def _same_tunnel(a: TunnelView, b: TunnelView) -> bool:
    return (a.interface, a.exists, a.up, a.local, a.remote, a.mode, a.ttl, a.default_route) == (
        b.interface,
        b.exists,
        b.up,
        b.local,
        b.remote,
        b.mode,
        b.ttl,
        b.default_route,
    )


def _wan_usable(wan: WanView) -> bool:
    return wan.exists and wan.link_up and wan.address is not None


def _thresholds(given: Mapping[str, int], previous: Mapping[str, int]) -> dict[str, int]:
    merged = dict(previous)
    for family, value in given.items():
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            merged[str(family)] = value
    return merged


def _fold_probe(state: ObservedState, fact: ProbeObserved, seq: int, at: float) -> ObservedState:
    family = fact.family
    ok = fact.ok
    probes = state.probes
    old = probes.get(family) or ProbeView(family=family)
    status = old.status
    if ok:
        ok_count, fail_count = old.consecutive_ok + 1, 0
    else:
        ok_count, fail_count = 0, old.consecutive_failed + 1
    if ok and status != "up" and ok_count >= state.recover_after.get(family, 1):
        status, status_seq, since = "up", seq, at
    elif not ok and status != "down" and fail_count >= state.fail_after.get(family, 3):
        status, status_seq, since = "down", seq, at
    else:
        status_seq, since = old.seq, old.since
    if ok and old.outage_since is None:
        # The bulk of a log, kept off a call: a success outside an outage clears the marks.
        failing_since, failing_seq, outage_since, outage_seq = None, 0, None, 0
    else:
        marks = (old.failing_since, old.failing_seq, old.outage_since, old.outage_seq)
        failing_since, failing_seq, outage_since, outage_seq = after_probe(
            ok, status, marks, seq, at
        )
    # ProbeView's fields in order: family, status, consecutive_ok, consecutive_failed,
    # target, last_ok, last_seq, last_at, seq, since, then the outage marks.
    view = _make_probe_view(
        family,
        status,
        ok_count,
        fail_count,
        fact.target,
        ok,
        seq,
        at,
        status_seq,
        since,
        failing_since,
        failing_seq,
        outage_since,
        outage_seq,
    )
    if ok and family == "ipv6":
        tunnel, endpoint = state.tunnel, state.endpoint
        if tunnel is not None and (
            endpoint is None
            or endpoint.for_local != tunnel.local
            or endpoint.seq < state.last_update_attempt_seq
        ):
            proven = _endpoint_proven_by_probe(state, seq, at)
            if proven is not None:  # rare: the first success across a changed tunnel, or
                # after an update (which may have changed HE's endpoint)
                trouble = state.he_trouble
                if trouble is not None and UpdateHeEndpoint.local_of(trouble.key) == (
                    proven.for_local
                ):
                    # The troubled update reached HE after all (its answer came too late):
                    # the trouble it stood for is over.
                    trouble = None
                return _fold_probe(
                    _moved(state, state.seq, state.at, endpoint=proven, he_trouble=trouble),
                    fact,
                    seq,
                    at,
                )
    if status == "up" and old.status != "up":
        # The problem a restart was meant to fix has gone: its restarts stop counting.
        gone = RestartWan.KIND if family == "ipv4" else RestartTunnel.KIND
        actions = _forget_recent_starts(state.actions, gone)
        return _moved(state, seq, at, probes={**probes, family: view}, actions=actions)
    new_state: ObservedState = _probe_step(state, seq, at, {**probes, family: view})
    return new_state


def _local_proven_by_probe(state: ObservedState, probe_seq: int) -> str | None:
    """The tunnel's local end, if a successful IPv6 probe recorded at `probe_seq` crossed it:
    the tunnel was observed up before the probe and has not been restarted since."""
    tunnel = state.tunnel
    if tunnel is None or not (tunnel.exists and tunnel.up) or tunnel.local is None:
        return None
    if tunnel.seq >= probe_seq:
        return None  # observed after the probe: the probe may have crossed another tunnel
    if _tunnel_restarted_since(state, tunnel.seq):
        return None  # rebuilt since it was observed: its ends are unknown until observed
    return tunnel.local


def _tunnel_restarted_since(state: ObservedState, seq: int) -> bool:
    return any(
        record.kind == RestartTunnel.KIND and record.last_started_seq > seq
        for record in state.actions.values()
    )


def _endpoint_proven_by_probe(state: ObservedState, seq: int, at: float) -> EndpointView | None:
    """The endpoint view a successful IPv6 probe (fact `seq`) proves, or None."""
    local = _local_proven_by_probe(state, seq)
    old = state.endpoint
    if local is None:
        return None
    if old is not None and old.for_local == local and old.seq > state.last_update_attempt_seq:
        return None  # known already; but an update sent since may have changed it (proven again)
    # An address HE showed without saying for which WAN address, or for this one, is the one
    # the probe proves; an address confirmed for another local end is stale.
    address = old.address if old is not None and old.for_local in (None, local) else None
    return EndpointView(address, local, "probe", seq, at)


def _fold_started(state: ObservedState, fact: ActionStarted, seq: int, at: float) -> ObservedState:
    record = _record(state, fact.key, fact.action)
    starts = (*record.recent_starts, at)[-RECENT_STARTS_KEPT:]
    record = attrs.evolve(
        record,
        attempts=record.attempts + 1,
        last_started_at=at,
        last_started_seq=seq,
        in_flight=True,
        unconfirmed=False,
        recent_starts=starts,
    )
    changes: dict[str, Any] = {"actions": {**state.actions, fact.key: record}}
    if fact.action == UpdateHeEndpoint.KIND:
        changes["last_update_attempt_at"] = at
        changes["last_update_attempt_seq"] = seq
    # A restart means the probe that judged the problem must judge it afresh: the failures
    # counted before it say nothing about the rebuilt tunnel (or WAN).
    rejudged = {RestartTunnel.KIND: "ipv6", RestartWan.KIND: "ipv4"}.get(fact.action)
    if rejudged is not None:
        probe = state.probe(rejudged)
        changes["probes"] = {**state.probes, rejudged: attrs.evolve(probe, consecutive_failed=0)}
    return _moved(state, seq, at, **changes)


_FOLDERS: dict[type[Any], Callable[[ObservedState, Any, int, float], ObservedState]] = {
    WanAddressObserved: _fold_wan,
    ProbeObserved: _fold_probe,
    TunnelObserved: _fold_tunnel,
    HostnameFileObserved: _fold_hostname,
    EndpointObserved: _fold_endpoint,
    ConfigLoaded: _fold_config,
    ActionStarted: _fold_started,
    ActionSucceeded: _fold_succeeded,
    ActionFailed: _fold_failed,
    WanProbed: _fold_wan_probed,
    WanChosen: _fold_wan_chosen,
}


def _record(state: ObservedState, key: str, kind: str) -> ActionRecord:
    return state.actions.get(key) or ActionRecord(key=key, kind=kind)


def _forget_recent_starts(
    actions: Mapping[str, ActionRecord], kind: str
) -> Mapping[str, ActionRecord]:
    if not any(r.kind == kind and r.recent_starts for r in actions.values()):
        return actions
    return {
        key: attrs.evolve(r, recent_starts=()) if r.kind == kind else r
        for key, r in actions.items()
    }


# --- snapshots: a msgpack-able mapping and back -------------------------------------------

_VIEWS: dict[str, type[Any]] = {
    "he_trouble": HeTroubleView,
    "wan": WanView,
    "tunnel": TunnelView,
    "hostname_file": HostnameView,
    "endpoint": EndpointView,
}


def state_to_mapping(state: ObservedState) -> dict[str, Any]:
    """A plain mapping of `state` (lists, dicts, scalars) fit for msgpack."""
    out = attrs.asdict(state, recurse=True)
    out["schema"] = SCHEMA_VERSION
    return out


def _probe_from_mapping(mapping: Mapping[str, Any]) -> ProbeView:
    view = ProbeView(**mapping)
    if view.status == "down" and "outage_since" not in mapping:
        # A snapshot from before the outage marks: the outage under way dates from the
        # verdict, all that such a state knows of it.
        view = attrs.evolve(view, outage_since=view.since, outage_seq=view.seq)
    return view


def state_from_mapping(mapping: Mapping[str, Any]) -> ObservedState:
    """The state `state_to_mapping` described; ValueError when the mapping does not fit."""
    if mapping.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"state schema {mapping.get('schema')!r}, expected {SCHEMA_VERSION}")
    try:
        values: dict[str, Any] = {k: v for k, v in mapping.items() if k != "schema"}
        for name, cls in _VIEWS.items():
            if values.get(name) is not None:
                values[name] = cls(**values[name])
        values["probes"] = {f: _probe_from_mapping(p) for f, p in values.get("probes", {}).items()}
        if "last_wan_address" not in values:  # a snapshot from before it was kept
            wan = values.get("wan")
            values["last_wan_address"] = wan.address if wan is not None else None
        values["actions"] = {k: ActionRecord(**r) for k, r in values.get("actions", {}).items()}
        if values.get("failover") is not None:
            values["failover"] = view_from_mapping(values["failover"])
        values["fail_after"] = dict(values.get("fail_after", {}))
        values["recover_after"] = dict(values.get("recover_after", {}))
        return ObservedState(**values)
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"state mapping does not fit ObservedState: {exc}") from exc
