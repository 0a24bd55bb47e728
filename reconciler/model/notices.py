"""Notifications: what the operator is told, derived from facts as they are folded.

`track(tracker, before, envelope, after)` is pure: the state before a fact, the fact, and the
state after it give the notifications that fact causes and the tracker's next value. The
daemon calls it for every fact it records (its hooks run the notifications), and
`reconciler metrics` calls it while it folds the log, so both count the same events.

Events:
- `address-changed`: the WAN's IPv4 address is a new one (the last known one is kept across
  a spell without an address, so a WAN that comes back with another address counts).
- `repaired`: IPv6 works across the tunnel again after an outage, with its length. What an
  outage is (when it begins and ends) is reconciler.model.outages', the same for the report.
- `action-failed`: every failed action.
- `he-abuse`: HE answered `abuse` (it blocks updates for hours).
- `needs-attention`: a hold that waiting will not lift: a permanent failure (badauth,
  nohost, !yours, ...) under the configuration in force, or the restart limit reached with
  the problem still there after the last restart. Once per cause: the same cause is told
  again only after it went away (a success, a new configuration, the problem gone).
- `wan-failover`, `wan-failback` (several WANs): the tunnel moves to another WAN, with the
  policy's reason (reconciler.model.failover); a switch due past the hour's budget is a
  `needs-attention`, told once (the policy records it once).
- `daemon-started`, `daemon-stopped`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from attrs import evolve, field, frozen

from reconciler.model.actions import RestartTunnel, RestartWan, UpdateHeEndpoint, holds_only_its_key
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    ConfigLoaded,
    DaemonStarted,
    DaemonStopped,
    Envelope,
    ProbeObserved,
    WanAddressObserved,
    WanChosen,
)
from reconciler.model.outages import ended
from reconciler.model.state import ActionRecord, ObservedState
from reconciler.model.verdict import down_reason

__all__ = [
    "EVENTS",
    "Notice",
    "NoticeTracker",
    "he_answer",
    "track",
    "tracker_for",
]

EVENTS = (
    "address-changed",
    "repaired",
    "action-failed",
    "needs-attention",
    "he-abuse",
    "daemon-started",
    "daemon-stopped",
    "wan-failover",
    "wan-failback",
)

_RESTART_KINDS = (RestartWan.KIND, RestartTunnel.KIND)
# The facts after which the needs-attention causes are judged afresh (the others change
# nothing they rest on).
_JUDGED = (
    ActionStarted,
    ActionSucceeded,
    ActionFailed,
    ConfigLoaded,
    WanAddressObserved,
    ProbeObserved,
)


@frozen
class Notice:
    """One notification: an event, a line for a human, and the details hooks get."""

    event: str
    message: str
    seq: int  # the fact that caused it (`reconciler replay` shows it)
    at: float
    wan_address: str | None = None
    previous_address: str | None = None
    action: str | None = None  # the action's key
    result: str | None = None  # HE's answer, the failure kind, or "restart-limit"
    outage_seconds: float | None = None
    down_reason: str | None = None  # needs-attention: why IPv6 is down (model.verdict)
    wan_interface: str | None = None  # several WANs: the WAN the tunnel moves to (or stays on)
    previous_interface: str | None = None

    def environment(self) -> dict[str, str]:
        """The RECONCILER_* variables a hook is run with (only the ones that apply)."""
        values = {
            "RECONCILER_EVENT": self.event,
            "RECONCILER_MESSAGE": self.message,
            "RECONCILER_SEQ": str(self.seq),
            "RECONCILER_WAN_ADDRESS": self.wan_address,
            "RECONCILER_PREVIOUS_ADDRESS": self.previous_address,
            "RECONCILER_ACTION": self.action,
            "RECONCILER_RESULT": self.result,
            "RECONCILER_DOWN_REASON": self.down_reason,
            "RECONCILER_OUTAGE_SECONDS": (
                f"{self.outage_seconds:.3f}" if self.outage_seconds is not None else None
            ),
            "RECONCILER_WAN_INTERFACE": self.wan_interface,
            "RECONCILER_PREVIOUS_INTERFACE": self.previous_interface,
        }
        # A variable holds one line: a newline in a message would split a mail header.
        return {k: v.replace("\n", " ") for k, v in values.items() if v is not None}


@frozen
class NoticeTracker:
    """What notifications remember between facts; `restart_limit` and `restart_window` are
    the configuration's ([reconcile]), which judge when the restart limit is reached."""

    restart_limit: int = 5
    restart_window: float = 900.0
    address: str | None = None  # the last WAN address known
    outage_since: float | None = None  # the IPv6 outage under way (reconciler.model.outages)
    told: frozenset[str] = field(default=frozenset())  # needs-attention causes already told


def tracker_for(
    state: ObservedState, restart_limit: int = 5, restart_window: float = 900.0
) -> NoticeTracker:
    """The tracker for a daemon starting on `state` (the log's past): an outage under way
    continues (from its start, which the state keeps), and causes that already hold are not
    told again."""
    base = NoticeTracker(
        restart_limit=restart_limit,
        restart_window=restart_window,
        address=state.wan.address if state.wan is not None else None,
        outage_since=state.probe("ipv6").outage_since,
    )
    return evolve(base, told=frozenset(_causes(base, state, state.at)))


def track(
    tracker: NoticeTracker, before: ObservedState, envelope: Envelope, after: ObservedState
) -> tuple[NoticeTracker, tuple[Notice, ...]]:
    """The notifications `envelope` causes, given the state before and after it."""
    fact = envelope.fact
    seq, at = envelope.seq, envelope.at
    notices: list[Notice] = []
    address = tracker.address
    repaired = ended(before, after, "ipv6", seq, at) if isinstance(fact, ProbeObserved) else None
    if repaired is not None:
        outage = repaired.seconds(at)
        notices.append(
            Notice(
                "repaired",
                f"IPv6 works across the tunnel again after {outage:.1f} s",
                seq,
                at,
                wan_address=address,
                outage_seconds=outage,
            )
        )
    if isinstance(fact, WanAddressObserved):
        new = after.wan.address if after.wan is not None else None
        if new is not None and new != address:
            if address is not None:
                notices.append(
                    Notice(
                        "address-changed",
                        f"the WAN address changed from {address} to {new}",
                        seq,
                        at,
                        wan_address=new,
                        previous_address=address,
                    )
                )
            address = new
    elif isinstance(fact, ActionFailed):
        answer = he_answer(fact.action, fact.message, succeeded=False)
        notices.append(
            Notice(
                "action-failed",
                f"{fact.key} failed ({fact.kind}): {fact.message}",
                seq,
                at,
                wan_address=address,
                action=fact.key,
                result=answer or fact.kind,
            )
        )
        if answer == "abuse":
            notices.append(
                Notice(
                    "he-abuse",
                    f"HE blocks updates for too many requests (abuse): {fact.message}",
                    seq,
                    at,
                    wan_address=address,
                    action=fact.key,
                    result=answer,
                )
            )
    elif isinstance(fact, WanChosen):
        notices.append(_wan_chosen_notice(fact, seq, at, address))
    elif isinstance(fact, DaemonStarted):
        notices.append(
            Notice(
                "daemon-started",
                f"reconciler {fact.version} started (pid {fact.pid})",
                seq,
                at,
                wan_address=address,
            )
        )
    elif isinstance(fact, DaemonStopped):
        notices.append(
            Notice("daemon-stopped", f"reconciler stopped: {fact.reason}", seq, at, address)
        )
    outage_since = after.probe("ipv6").outage_since
    if address != tracker.address or outage_since != tracker.outage_since:
        # most facts change neither: no new tracker (the replay of a big log notices)
        tracker = evolve(tracker, address=address, outage_since=outage_since)
    if isinstance(fact, _JUDGED):
        tracker, attention = _attention(tracker, after, seq, at)
        notices.extend(attention)
    return tracker, tuple(notices)


def _wan_chosen_notice(fact: WanChosen, seq: int, at: float, address: str | None) -> Notice:
    if fact.kind == "held":
        event, message = "needs-attention", f"the tunnel stays on {fact.interface}: {fact.reason}"
    else:
        event = "wan-failback" if fact.kind == "failback" else "wan-failover"
        message = f"the tunnel moves from {fact.previous} to {fact.interface}: {fact.reason}"
    return Notice(
        event,
        message,
        seq,
        at,
        wan_address=address,
        result=fact.kind,
        wan_interface=fact.interface,
        previous_interface=fact.previous,
    )


def _attention(
    tracker: NoticeTracker, state: ObservedState, seq: int, at: float
) -> tuple[NoticeTracker, list[Notice]]:
    """needs-attention for each cause that holds now and was not told; causes that went
    away are forgotten, so that they are told again if they come back."""
    causes = _causes(tracker, state, at)
    if not causes and not tracker.told:
        return tracker, []
    notices = [
        _attention_notice(cause, record, tracker, state, seq, at)
        for cause, record in sorted(causes.items())
        if cause not in tracker.told
    ]
    return evolve(tracker, told=frozenset(causes)), notices


def _causes(tracker: NoticeTracker, state: ObservedState, at: float) -> dict[str, ActionRecord]:
    """Every hold that waiting will not lift, by cause, with the record that shows it."""
    causes: dict[str, ActionRecord] = {}
    for record in state.actions.values():
        if record.last_outcome == "permanent" and record.permanent_digest == state.config_digest:
            if holds_only_its_key(record.kind, record.last_message):
                # HE refused one address: a cause of its own, so a later account refusal
                # (which holds the whole kind) is still told.
                causes[f"permanent:{record.key}:{state.config_digest}"] = record
            else:
                # One cause per kind and configuration: such a failure holds the whole kind.
                causes.setdefault(f"permanent:{record.kind}:{state.config_digest}", record)
        elif record.kind in _RESTART_KINDS and _restart_limit_reached(tracker, state, record, at):
            causes[f"restart-limit:{record.key}"] = record
    return causes


def _restart_limit_reached(
    tracker: NoticeTracker, state: ObservedState, record: ActionRecord, at: float
) -> bool:
    """`restart_limit` restarts within the window, and the problem still there after the
    last one (the fold forgets the restarts once it has gone)."""
    recent = [t for t in record.recent_starts if t > at - tracker.restart_window]
    if len(recent) < tracker.restart_limit or record.in_flight:
        return False
    family = "ipv6" if record.kind == RestartTunnel.KIND else "ipv4"
    probe = state.probe(family)
    if probe.last_ok is False and probe.last_seq > record.last_started_seq:
        return True
    wan = state.wan
    return (
        record.kind == RestartWan.KIND
        and wan is not None
        and wan.at > (record.last_started_at or 0.0)
        and not (wan.exists and wan.link_up and wan.address is not None)
    )


def _attention_notice(
    cause: str,
    record: ActionRecord,
    tracker: NoticeTracker,
    state: ObservedState,
    seq: int,
    at: float,
) -> Notice:
    """The notice for `cause`, told with why IPv6 is down when it is (the daemon's verdict
    from the facts: the hook's reader learns the layer, not only the failed action)."""
    notice = _attention_told(cause, record, tracker, state, seq, at)
    reason = down_reason(state)
    if reason is None:
        return notice
    sentence = reason.sentence()
    return evolve(notice, message=f"{notice.message}. {sentence}", down_reason=sentence)


def _attention_told(
    cause: str,
    record: ActionRecord,
    tracker: NoticeTracker,
    state: ObservedState,
    seq: int,
    at: float,
) -> Notice:
    address = tracker.address
    if cause.startswith("permanent:"):
        answer = he_answer(record.kind, record.last_message, succeeded=False)
        waits_for = (
            "that address is not sent again; another WAN address is, and a change of the "
            "configuration (then SIGHUP) retries it"
            if holds_only_its_key(record.kind, record.last_message)
            else "nothing more is tried until the configuration or the key file changes "
            "(then SIGHUP)"
        )
        return Notice(
            "needs-attention",
            f"{record.key} failed permanently ({record.last_message}); {waits_for}",
            record.last_outcome_seq or seq,
            at,
            wan_address=address,
            action=record.key,
            result=answer or "permanent",
        )
    recent = [t for t in record.recent_starts if t > at - tracker.restart_window]
    return Notice(
        "needs-attention",
        f"{len(recent)} restarts ({record.kind}) within {tracker.restart_window:g} s did not "
        "help; no more until the window has passed",
        seq,
        at,
        wan_address=address,
        action=record.key,
        result="restart-limit",
    )


# --- HE's answer, from an update's outcome message -----------------------------------------
#
# The update outcome's message names HE's answer word (reconciler.world.tunnelbroker writes
# them; tests/world/test_tunnelbroker checks every answer against this reading).

_ANSWER_WORD = re.compile(r"\((badauth|nohost|!yours|notfqdn|numhost|911|dnserr|abuse)\)")
_SUCCESS_WORD = re.compile(r"^HE endpoint (good|nochg)\b")
_MESSAGE_ANSWERS: Mapping[str, str] = {
    "could not ping": "unpingable",
    "RFC 1918": "private-address",
    "HE reports endpoint": "other-endpoint",
    "without an address": "no-address",
    "unknown answer": "unknown",
    "no answer in time": "no-answer",
    "connecting timed out": "no-answer",
    "connection failed": "no-answer",
    "TLS verification failed": "no-answer",
}
_HTTP_STATUS = re.compile(r"HTTP (\d{3})")


def he_answer(action: str, message: str, *, succeeded: bool) -> str | None:
    """HE's answer to an endpoint update, from its outcome message: the protocol's word
    (good, nochg, badauth, abuse, ...), `http-NNN`, `no-answer`, or None when HE was not
    asked (another action, or the key file could not be read)."""
    if action != UpdateHeEndpoint.KIND:
        return None
    if succeeded:
        match = _SUCCESS_WORD.match(message)
        return match.group(1) if match else "good"
    match = _ANSWER_WORD.search(message)
    if match:
        return match.group(1)
    for text, answer in _MESSAGE_ANSWERS.items():
        if text in message:
            return answer
    status = _HTTP_STATUS.search(message)
    if status:
        return f"http-{status.group(1)}"
    return None
