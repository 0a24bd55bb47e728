"""Several WANs in `status` and `diff`: the active WAN and why, each WAN's health, and the
switch the policy would make now (reconciler.model.failover), as JSON and as lines."""

from __future__ import annotations

from typing import Any

from reconciler.model.config import Config
from reconciler.model.failover import BUDGET_WINDOW, active_interface, decide, policy_of
from reconciler.model.state import ObservedState
from reconciler.render.timefmt import iso

__all__ = ["failover_json", "failover_lines"]


def failover_json(config: Config, state: ObservedState, now: float) -> dict[str, Any] | None:
    """The failover part of a report; None with one WAN."""
    policy = policy_of(config)
    if policy is None:
        return None
    view = state.failover
    due = decide(policy, view, now)
    switches = sum(1 for t in view.switches if now - BUDGET_WINDOW < t <= now) if view else 0
    return {
        "active": active_interface(policy, view),
        "why": view.reason if view is not None and view.reason else None,
        "wans": [
            {
                "interface": interface,
                "status": health.status if health is not None else "unknown",
                "since": _since(health),
            }
            for interface in policy.order
            for health in [view.of(interface) if view is not None else None]
        ],
        "switches_last_hour": switches,
        "budget_per_hour": policy.budget_per_hour,
        "due": None
        if due is None
        else {"kind": due.kind, "from": due.previous, "to": due.interface, "why": due.reason},
    }


def failover_lines(report: dict[str, Any] | None) -> list[str]:
    """`failover_json`'s report as lines for a terminal (none with one WAN)."""
    if report is None:
        return []
    lines = [f"active:   {report['active']}" + (f" ({report['why']})" if report["why"] else "")]
    for wan in report["wans"]:
        since = f" since {wan['since']}" if wan["since"] else ""
        lines.append(f"  {wan['interface']}: {wan['status']}{since}")
    lines.append(
        f"  switches this hour: {report['switches_last_hour']} of {report['budget_per_hour']}"
    )
    due = report["due"]
    if due is not None:
        if due["kind"] == "held":
            lines.append(f"failover held: {due['why']}")
        else:
            lines.append(f"{due['kind']} due: {due['from']} -> {due['to']}: {due['why']}")
    return lines


def _since(health: Any) -> str | None:
    if health is None:
        return None
    at = health.up_since if health.status == "up" else health.down_since
    return iso(at) if at is not None else None
