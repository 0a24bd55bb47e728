"""`reconciler diff` output: a plan that reads like `terraform plan`, as text or JSON.

One line per action: a symbol (`-/+` rebuilt, `~` changed in place), its kind, before ->
after; then its reason and the facts it rests on with their times. Held actions follow with
the time they become due. The last line is the summary. JSON: schema `reconciler.diff/1`.
"""

from __future__ import annotations

from typing import Any

from reconciler.model.actions import (
    Action,
    ReloadPf,
    RestartTunnel,
    RestartWan,
    RewriteHostname,
    UpdateHeEndpoint,
)
from reconciler.model.config import Config
from reconciler.model.desired import DesiredState
from reconciler.model.plan import WAN_WAITS, Held, Plan
from reconciler.model.state import ObservedState
from reconciler.render.timefmt import duration, iso

__all__ = [
    "DIFF_SCHEMA",
    "NO_CHANGES",
    "OBSERVE_HINT",
    "before_after",
    "cause_index",
    "diff_json",
    "diff_text",
    "not_observed_line",
    "summary_line",
    "symbol",
    "unobserved",
]

DIFF_SCHEMA = "reconciler.diff/1"
NO_CHANGES = "No changes. The network matches the configuration."
OBSERVE_HINT = "(run `reconciler diff --observe`)"


def symbol(action: Action) -> str:
    """`-/+` for what is torn down and rebuilt, `~` for what changes in place."""
    return "-/+" if isinstance(action, RestartWan | RestartTunnel) else "~"


def before_after(action: Action, observed: ObservedState, desired: DesiredState) -> tuple[str, str]:
    """What the target looks like now, and what it will look like after the action."""
    match action:
        case RestartWan():
            wan = observed.wan
            if wan is None or not wan.exists:
                before = "missing"
            elif not wan.link_up:
                before = "link down"
            elif wan.address is None:
                before = "no IPv4 address"
            else:
                before = f"{wan.address}, IPv4 probes failing"
            return f"{action.interface} {before}", f"{action.interface} up with an IPv4 address"
        case UpdateHeEndpoint():
            endpoint = observed.endpoint
            seen = (endpoint.address or "none") if endpoint is not None else "unknown"
            after = action.address or f"our NAT address (for {action.local})"
            return f"HE endpoint {seen}", f"HE endpoint {after}"
        case RewriteHostname():
            seen_file = observed.hostname_file
            digest = seen_file.digest if seen_file is not None else None
            before = f"sha256:{digest[:12]}" if digest else "missing"
            return f"{action.path} {before}", f"{action.path} sha256:{action.digest[:12]}"
        case RestartTunnel():
            tunnel = observed.tunnel
            if tunnel is None or not tunnel.exists:
                before = f"{action.interface} missing"
            else:
                state = "up" if tunnel.up else "down"
                before = f"{action.interface} {tunnel.local} to {tunnel.remote} ({state})"
            return before, f"{action.interface} {action.local} to {action.remote} (up)"
        case ReloadPf():
            return "rules loaded before the tunnel restart", "rules reloaded"
    raise AssertionError(f"unknown action {action!r}")  # pragma: no cover - closed set


def cause_index(observed: ObservedState) -> dict[int, tuple[str, float]]:
    """seq -> (fact type, time) for every fact the state remembers as a cause."""
    index: dict[int, tuple[str, float]] = {}
    if observed.wan is not None:
        index[observed.wan.seq] = ("wan-address-observed", observed.wan.at)
    if observed.tunnel is not None:
        index[observed.tunnel.seq] = ("tunnel-observed", observed.tunnel.at)
    if observed.hostname_file is not None:
        index[observed.hostname_file.seq] = ("hostname-file-observed", observed.hostname_file.at)
    if observed.endpoint is not None:
        index[observed.endpoint.seq] = ("endpoint-observed", observed.endpoint.at)
    for probe in observed.probes.values():
        if probe.last_seq:
            index[probe.last_seq] = (f"probe-observed ({probe.family})", probe.last_at)
        if probe.seq:
            index[probe.seq] = (f"probe-observed ({probe.family})", probe.since)
    for record in observed.actions.values():
        if record.last_success_seq and record.last_success_at is not None:
            index[record.last_success_seq] = (
                f"action-succeeded ({record.key})",
                record.last_success_at,
            )
    if observed.config_seq:
        index[observed.config_seq] = ("config-loaded", 0.0)
    index.pop(0, None)
    return index


def unobserved(observed: ObservedState, config: Config) -> tuple[str, ...]:
    """What the configuration has observers for that the log never showed, in plan order.

    A plan over such a state says nothing about the network: an empty one is not a match
    (a typo'd state dir, a daemon that never ran). The HE endpoint is not listed: it is only
    observable with `tunnelbroker.info_url`, and the plan works from our own address without.
    """
    missing: list[str] = []
    if observed.wan is None:
        missing.append("WAN")
    missing.extend(
        f"{family.replace('ipv', 'IPv')} probe"
        for family in sorted(config.probes)
        if observed.probe(family).last_seq == 0
    )
    if config.tunnel.hostname_file is not None and observed.hostname_file is None:
        missing.append("hostname file")
    if observed.tunnel is None:
        missing.append("tunnel")
    return tuple(missing)


def not_observed_line(missing: tuple[str, ...] | list[str]) -> str:
    """`Not observed yet: WAN, IPv4 probe (run `reconciler diff --observe`).`"""
    return f"Not observed yet: {', '.join(missing)} {OBSERVE_HINT}."


def summary_line(plan: Plan) -> str:
    """`Plan: 3 actions (restart-tunnel, reload-pf), 1 held back.` or the no-changes line."""
    if plan.empty:
        return NO_CHANGES
    n = len(plan.actions)
    kinds = ", ".join(a.KIND for a in plan.actions)
    text = f"Plan: {n} action{'s' if n != 1 else ''}"
    if kinds:
        text += f" ({kinds})"
    if plan.held:
        text += f", {len(plan.held)} held back"
    return text + "."


def _held_when(held: Held, now: float) -> str:
    if held.until is None:
        return (
            "until the WAN changes" if held.why in WAN_WAITS else "until the configuration changes"
        )
    if held.until <= now:
        return f"due since {iso(held.until)}"
    return f"until {iso(held.until)} (in {duration(held.until - now)})"


def _causes_text(action: Action, index: dict[int, tuple[str, float]]) -> str:
    parts = []
    for seq in action.causes:
        kind, at = index.get(seq, ("fact", 0.0))
        parts.append(f"#{seq} {kind}" + (f" at {iso(at)}" if at else ""))
    return ", ".join(parts) if parts else "(no recorded facts)"


def diff_text(
    plan: Plan,
    observed: ObservedState,
    desired: DesiredState,
    missing: tuple[str, ...] = (),
) -> str:
    """The plan as text, ending with the summary line and a newline; `missing` (see
    `unobserved`) replaces the no-changes line with what is not observed yet."""
    index = cause_index(observed)
    lines = [f"reconciler plan at {iso(plan.now)} (event log up to #{observed.seq})", ""]
    for action in plan.actions:
        before, after = before_after(action, observed, desired)
        lines.append(f"  {symbol(action):>3} {action.KIND}: {before} -> {after}")
        lines.append(f"        reason:   {action.reason}")
        lines.append(f"        rests on: {_causes_text(action, index)}")
    if plan.held:
        if plan.actions:
            lines.append("")
        lines.append("Held back:")
        for held in plan.held:
            before, after = before_after(held.action, observed, desired)
            lines.append(f"    ! {held.action.KIND}: {before} -> {after}")
            lines.append(f"        held:     {held.why} {_held_when(held, plan.now)}")
            lines.append(f"        why:      {held.detail}")
            lines.append(f"        reason:   {held.action.reason}")
    if plan.actions or plan.held:
        lines.append("")
    if not (plan.empty and missing):  # an empty plan over an unobserved world is no match
        lines.append(summary_line(plan))
    if missing:
        lines.append(not_observed_line(missing))
    return "\n".join(lines) + "\n"


def _action_json(
    action: Action, observed: ObservedState, desired: DesiredState, index: dict[int, Any]
) -> dict[str, Any]:
    before, after = before_after(action, observed, desired)
    return {
        "kind": action.KIND,
        "key": action.key,
        "symbol": symbol(action),
        "before": before,
        "after": after,
        "reason": action.reason,
        "causes": [
            {
                "seq": seq,
                "type": index.get(seq, ("fact", 0.0))[0],
                "at": iso(index.get(seq, ("fact", 0.0))[1] or None),
            }
            for seq in action.causes
        ],
    }


def diff_json(
    plan: Plan,
    observed: ObservedState,
    desired: DesiredState,
    missing: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The plan as a JSON-ready mapping (schema `reconciler.diff/1`); `unobserved` lists what
    is not observed yet, and then an empty plan's summary says so instead of "No changes"."""
    index = cause_index(observed)
    return {
        "schema": DIFF_SCHEMA,
        "now": iso(plan.now),
        "seq": observed.seq,
        "changes": not plan.empty,
        "actions": [_action_json(a, observed, desired, index) for a in plan.actions],
        "held": [
            {
                **_action_json(h.action, observed, desired, index),
                "why": h.why,
                "detail": h.detail,
                "until": iso(h.until),
            }
            for h in plan.held
        ],
        "unobserved": list(missing),
        "summary": not_observed_line(missing) if plan.empty and missing else summary_line(plan),
    }
