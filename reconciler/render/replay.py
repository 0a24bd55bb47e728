"""`reconciler replay` output: the event log told as a post-mortem, and a state as it was.

Each entry is one fact: its time, seq and type, what it changed in the observed state
("IPv6 probe: up -> down"), and for actions what was decided and why (reason and causes)
or how it ended. Observations that changed nothing are counted, not printed, so a long
quiet stretch reads as one line. The daemon itself records such observations only as
counts (`observations-counted`, one per source): consecutive counts read as one line,
"12:00:00Z-13:00:00Z: 60 IPv6 probes ok, 120 WAN observations, nothing changed". During a
busy minute (every news fact flushes the counts) they fold into the next news line's head
instead, "(+1 tunnel observation unchanged)", so an incident reads as one story (`-v` shows
them as lines of their own). Unknown
facts are shown raw. JSON schemas:
`reconciler.replay/1` (timeline) and `reconciler.replay-state/1` (`--at`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    ConfigLoaded,
    DaemonStarted,
    DaemonStopped,
    Envelope,
    HookRan,
    ObservationsCounted,
    ProbeObserved,
    UnknownFact,
    WanChosen,
    WanProbed,
)
from reconciler.model.notices import Notice
from reconciler.model.state import ObservedState
from reconciler.render.timefmt import iso

__all__ = [
    "BUSY_SPAN",
    "REPLAY_SCHEMA",
    "STATE_SCHEMA",
    "counted_line",
    "counted_parts",
    "counted_span",
    "entry_json",
    "entry_lines",
    "folded_counts",
    "is_notable",
    "quiet_line",
    "state_changes",
    "state_json",
    "state_text",
]

REPLAY_SCHEMA = "reconciler.replay/1"
STATE_SCHEMA = "reconciler.replay-state/1"


def _fact_type(envelope: Envelope) -> str:
    fact = envelope.fact
    return fact.type if isinstance(fact, UnknownFact) else fact.TYPE


def state_changes(before: ObservedState, after: ObservedState) -> list[str]:
    """What a fact changed in the state, in words: `IPv6 probe: up -> down`."""
    changes: list[str] = []

    def note(label: str, old: Any, new: Any) -> None:
        if old != new:
            changes.append(f"{label}: {_show(old)} -> {_show(new)}")

    wb, wa = before.wan, after.wan
    if wa is not None and wb is None:
        link = _updown(wa.link_up) if wa.exists else "missing"
        changes.append(f"WAN {wa.interface} observed: {link}, address {_show(wa.address)}")
    elif wa is not None and wb != wa:
        note(f"WAN {wa.interface} address", wb.address if wb else None, wa.address)
        note(f"WAN {wa.interface} link", _updown(wb.link_up) if wb else None, _updown(wa.link_up))
        note(f"WAN {wa.interface}", _present(wb.exists) if wb else None, _present(wa.exists))
    for family in ("ipv4", "ipv6"):
        pb, pa = before.probe(family), after.probe(family)
        label = "IPv4" if family == "ipv4" else "IPv6"
        note(f"{label} probe", pb.status, pa.status)
    tb, ta = before.tunnel, after.tunnel
    if ta is not None and tb is None:
        if ta.exists:
            ends = f"{_show(ta.local)} to {_show(ta.remote)}"
            changes.append(f"tunnel {ta.interface} observed: {_updown(ta.up)}, {ends}")
        else:
            changes.append(f"tunnel {ta.interface} observed: missing")
    elif ta is not None and tb != ta:
        name = f"tunnel {ta.interface}"
        note(name, _present(tb.exists) if tb else None, _present(ta.exists))
        note(f"{name} state", _updown(tb.up) if tb else None, _updown(ta.up))
        note(f"{name} local end", tb.local if tb else None, ta.local)
        note(f"{name} remote end", tb.remote if tb else None, ta.remote)
    hb, ha = before.hostname_file, after.hostname_file
    if ha is not None and hb != ha:
        note(f"hostname file {ha.path}", _digest(hb.digest if hb else None), _digest(ha.digest))
    eb, ea = before.endpoint, after.endpoint
    if ea is not None and eb != ea:
        note("HE endpoint", eb.address if eb else "unknown", ea.address)
        if eb is not None:
            note("HE endpoint made for", eb.for_local, ea.for_local)
    if before.config_digest != after.config_digest:
        note("config", _digest(before.config_digest), _digest(after.config_digest))
    return changes


def is_notable(envelope: Envelope, changes: list[str]) -> bool:
    """Whether the entry is worth its own lines (quiet observations are only counted)."""
    fact = envelope.fact
    if changes:
        return True
    if isinstance(fact, ProbeObserved):
        return not fact.ok  # every lost ping matters in a post-mortem, even before "down"
    return isinstance(
        fact,
        ActionStarted
        | ActionSucceeded
        | ActionFailed
        | ConfigLoaded
        | DaemonStarted
        | DaemonStopped
        | HookRan
        | UnknownFact,
    )


def entry_lines(
    envelope: Envelope,
    changes: list[str],
    after: ObservedState,
    notices: Sequence[Notice] = (),
) -> list[str]:
    """The text of one timeline entry: a head line, indented details, and the notifications
    the fact caused (what [notify] hooks are told)."""
    fact = envelope.fact
    head = f"{iso(envelope.at)}  #{envelope.seq:<6} {_fact_type(envelope)}"
    if envelope.source:
        head += f"  ({envelope.source})"
    lines = [head]
    detail = _detail(fact, after)
    if detail:
        lines.append(f"    {detail}")
    lines.extend(f"    changed: {change}" for change in changes)
    lines.extend(f"    notice {notice.event}: {notice.message}" for notice in notices)
    return lines


def quiet_line(count: int) -> str:
    return f"    ... {count} observation{'s' if count != 1 else ''}, nothing changed"


_COUNTED_LABELS = {
    "wan-address-observed": ("WAN observation", "WAN observations"),
    "tunnel-observed": ("tunnel observation", "tunnel observations"),
    "hostname-file-observed": ("hostname file observation", "hostname file observations"),
    "endpoint-observed": ("HE endpoint observation", "HE endpoint observations"),
    "wan-probed": ("WAN probe", "WAN probes"),
}


# Counts whose observations span at most this long, and that news follows within it, were
# flushed by a busy minute (every news fact flushes them): they fold into the news line.
BUSY_SPAN = 60.0


def counted_line(counts: list[Envelope]) -> str:
    """One line for consecutive ObservationsCounted facts: the span they cover and what was
    counted, each source once (summed), in the order first recorded."""
    first, last = counted_span(counts)
    return f"    {iso(first)}-{iso(last)}: {counted_parts(counts)}, nothing changed"


def counted_span(counts: list[Envelope]) -> tuple[float, float]:
    facts = [e.fact for e in counts if isinstance(e.fact, ObservationsCounted)]
    return min(fact.first_at for fact in facts), max(fact.last_at for fact in facts)


def counted_parts(counts: list[Envelope]) -> str:
    """ "2 tunnel observations, 1 WAN observation": one part per source and kind."""
    totals: dict[tuple[str, str], int] = {}
    for envelope in counts:
        fact = envelope.fact
        assert isinstance(fact, ObservationsCounted)
        label = fact.observed
        if fact.observed == "probe-observed":
            label = f"probe:{envelope.source.rsplit(':', 1)[-1]}"
        key = (label, fact.observed)
        totals[key] = totals.get(key, 0) + fact.count
    return ", ".join(
        _counted_part(count, label, observed) for (label, observed), count in totals.items()
    )


def folded_counts(counts: list[Envelope]) -> str:
    """What busy-minute counts add to the next news line's head."""
    return f"  (+{counted_parts(counts)} unchanged)"


def _counted_part(count: int, label: str, observed: str) -> str:
    many = count != 1
    if observed == "probe-observed":
        family = label.removeprefix("probe:")
        shown = {"ipv4": "IPv4", "ipv6": "IPv6"}.get(family, family)
        return f"{count} {shown} probe{'s' if many else ''} ok"
    one, several = _COUNTED_LABELS.get(observed, (observed, observed))
    return f"{count} {several if many else one}"


def _detail(fact: Any, after: ObservedState) -> str:
    match fact:
        case ActionStarted():
            causes = ", ".join(f"#{c}" for c in fact.causes) or "no recorded facts"
            return f"decided {fact.key}: {fact.reason} (because of {causes})"
        case ActionSucceeded():
            return f"succeeded {fact.key}" + (f": {fact.message}" if fact.message else "")
        case ActionFailed():
            retry = f", retry after {fact.retry_after:g} s" if fact.retry_after else ""
            record = after.actions.get(fact.key)
            count = f", failure {record.consecutive_failures} in a row" if record else ""
            return f"failed {fact.key} ({fact.kind}{retry}{count}): {fact.message}"
        case ProbeObserved():
            outcome = f"ok in {fact.rtt_ms:g} ms" if fact.ok and fact.rtt_ms else "ok"
            if not fact.ok:
                probe = after.probe(fact.family)
                limit = after.fail_after.get(fact.family, 3)
                outcome = f"failed ({probe.consecutive_failed} of {limit})"
                if fact.detail:
                    outcome += f": {fact.detail}"
            return f"{fact.family} probe to {fact.target} {outcome}"
        case ConfigLoaded():
            return f"configuration {fact.path} (digest {fact.digest[:12]})"
        case DaemonStarted():
            return f"daemon started, pid {fact.pid}, version {fact.version}"
        case DaemonStopped():
            return f"daemon stopped: {fact.reason}"
        case HookRan():
            how = fact.outcome + (f" ({fact.detail})" if fact.detail else "")
            dropped = f"; {fact.dropped} notification(s) dropped before it" if fact.dropped else ""
            return (
                f"notify hook for {fact.event} (from #{fact.cause}): {how} "
                f"in {fact.seconds:.2f} s{dropped}"
            )
        case WanChosen():
            if fact.kind == "held":
                return f"failover held on {fact.interface}: {fact.reason}"
            return f"{fact.kind} from {fact.previous} to {fact.interface}: {fact.reason}"
        case WanProbed():
            outcome = "ok" if fact.ok else "failed" + (f": {fact.detail}" if fact.detail else "")
            return f"ipv4 probe out of {fact.interface} to {fact.target} {outcome}"
        case UnknownFact():
            return f"not understood ({fact.problem}): v{fact.version} {dict(fact.data)!r}"
    return ""


# Notice fields only some notices fill: left out when empty, so a log replays as before.
_ONLY_WHEN_SET = ("down_reason", "wan_interface", "previous_interface")


def _notice_json(notice: Notice) -> dict[str, Any]:
    values = attrs.asdict(notice)
    for name in _ONLY_WHEN_SET:
        if not values[name]:
            del values[name]
    return dict(_plain(values))


def entry_json(
    envelope: Envelope, changes: list[str], notices: Sequence[Notice] = ()
) -> dict[str, Any]:
    """One timeline entry as a JSON-ready mapping (an element of `entries`)."""
    fact = envelope.fact
    if isinstance(fact, UnknownFact):
        data: dict[str, Any] = {"raw": _plain(dict(fact.data)), "problem": fact.problem}
    else:
        data = _plain(attrs.asdict(fact, recurse=False))
    return {
        "seq": envelope.seq,
        "at": iso(envelope.at),
        "type": _fact_type(envelope),
        "source": envelope.source,
        "fact": data,
        "changes": changes,
        "notices": [_notice_json(notice) for notice in notices],
    }


def state_text(state: ObservedState, at: float) -> str:
    """The observed state as it was at `at`, as text."""
    lines = [f"State at {iso(at)} (event log up to #{state.seq}, last fact {iso(state.at)})"]
    wan = state.wan
    if wan is None:
        lines.append("  WAN: not observed")
    else:
        link = "missing" if not wan.exists else _updown(wan.link_up)
        lines.append(f"  WAN {wan.interface}: {link}, address {_show(wan.address)} (#{wan.seq})")
    for family in ("ipv4", "ipv6"):
        p = state.probe(family)
        lines.append(
            f"  {family} probe: {p.status} since {iso(p.since) or '-'} "
            f"({p.consecutive_ok} ok / {p.consecutive_failed} failed in a row)"
        )
    t = state.tunnel
    if t is None:
        lines.append("  tunnel: not observed")
    elif not t.exists:
        lines.append(f"  tunnel {t.interface}: missing (#{t.seq})")
    else:
        lines.append(
            f"  tunnel {t.interface}: {_updown(t.up)}, {_show(t.local)} -> {_show(t.remote)}"
            f" (#{t.seq})"
        )
    h = state.hostname_file
    if h is not None:
        lines.append(f"  hostname file {h.path}: {_digest(h.digest)} (#{h.seq})")
    e = state.endpoint
    if e is None:
        lines.append("  HE endpoint: unknown")
    else:
        lines.append(
            f"  HE endpoint: {_show(e.address)} for {_show(e.for_local)} via {e.source} (#{e.seq})"
        )
    lines.append(f"  config: {_digest(state.config_digest)}")
    for key, r in sorted(state.actions.items()):
        status = "in flight (no outcome recorded)" if r.in_flight else (r.last_outcome or "-")
        lines.append(
            f"  action {key}: {status}, {r.attempts} attempt(s), "
            f"{r.consecutive_failures} failure(s) in a row"
            + (f": {r.last_message}" if r.last_message and r.last_outcome != "ok" else "")
        )
    return "\n".join(lines) + "\n"


def state_json(state: ObservedState, at: float) -> dict[str, Any]:
    """The observed state as it was at `at` (schema `reconciler.replay-state/1`)."""
    body = _plain(attrs.asdict(state, recurse=True))
    return {"schema": STATE_SCHEMA, "at": iso(at), "state": body}


def _plain(value: Any) -> Any:
    """Make msgpack/attrs values JSON-ready (bytes as hex, tuples as lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _show(value: Any) -> str:
    return "none" if value is None else str(value)


def _updown(value: bool) -> str:
    return "up" if value else "down"


def _present(value: bool) -> str:
    return "present" if value else "missing"


def _digest(value: str | None) -> str:
    return "missing" if value is None else f"sha256:{value[:12]}"
