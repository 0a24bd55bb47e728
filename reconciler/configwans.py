"""The WAN part of the configuration: one `[wan]` table, or several `[[wan]]` tables in
priority order with a `[failover]` table.

One WAN (either spelling) reads exactly as `[wan]` always did and makes no FailoverConfig.
Several make `Config.failover`: each WAN has its own interface, restart, grace, address
choice, public address and IPv4 probe target (sent out of that WAN); `[failover]` has
`failback_after` and `budget_per_hour`. Every key that could only matter with several WANs
is refused with one alone, so nothing is accepted that would do nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reconciler.model.config import DaemonConfig, FailoverConfig, WanConfig

if TYPE_CHECKING:
    from reconciler.configfile import _Reader

__all__ = ["FAILOVER_KEYS", "MAX_WANS", "WAN_KEYS", "read_failover", "read_wans"]

WAN_KEYS = {"interface", "restart_command", "public_address", "dhcp_grace", "address_in"}
FAILOVER_KEYS = {"failback_after", "budget_per_hour"}
MAX_WANS = 8
_DAY = 86400.0


def read_wans(reader: _Reader, daemon: DaemonConfig | None) -> tuple[WanConfig, ...] | None:
    """The WANs in priority order; None when any is invalid (the problems are recorded)."""
    document = reader.document
    tables = document.get("wan")
    if not isinstance(tables, list):
        wan = reader.wan(daemon)  # [wan], or its absence, reported as ever
        return None if wan is None else (wan,)
    several = len(tables) > 1
    if not tables:
        reader.problem("wan", "needs at least one [[wan]] table")
        return None
    if len(tables) > MAX_WANS:
        reader.problem("wan", f"has {len(tables)} [[wan]] tables, at most {MAX_WANS}")
        return None
    wans: list[WanConfig | None] = []
    for index, table in enumerate(tables):
        name = f"wan[{index}]" if several else "wan"
        if not isinstance(table, Mapping):
            reader.problem(name, "must be a table ([[wan]])")
            wans.append(None)
            continue
        wans.append(_read_one(reader, name, table, daemon, several=several))
    seen: dict[str, int] = {}
    for index, wan in enumerate(wans):
        if wan is None:
            continue
        if wan.interface in seen:
            first = seen[wan.interface]
            reader.problem(
                f"wan[{index}].interface",
                f'"{wan.interface}" is wan[{first}]\'s already: each WAN is its own interface',
            )
        seen.setdefault(wan.interface, index)
    if any(wan is None for wan in wans) or len(seen) < len(wans):
        return None
    return tuple(wan for wan in wans if wan is not None)


def _read_one(
    reader: _Reader,
    name: str,
    table: Mapping[str, Any],
    daemon: DaemonConfig | None,
    *,
    several: bool,
) -> WanConfig | None:
    allowed = WAN_KEYS | ({"probe_target"} if several else set())
    for key in sorted(set(table) - allowed):
        if key == "probe_target":
            reader.problem(
                f"{name}.{key}", "is for two WANs or more (one WAN is probed by [probe.ipv4])"
            )
        else:
            reader.problem(f"{name}.{key}", "unknown key")
    interface = reader.interface_name(table, f"{name}.interface", daemon)
    command = reader.argv(table, f"{name}.restart_command", allow_empty=False)
    public = reader.choice(
        table, f"{name}.public_address", ("interface", "tunnelbroker"), default="interface"
    )
    grace = reader.number(table, f"{name}.dhcp_grace", default=30.0, minimum=0.0, maximum=_DAY)
    address_in = reader.ipv4_network(table, f"{name}.address_in")
    target = reader.address(table, f"{name}.probe_target", 4, required=False, host=True)
    if interface is None or public is None or grace is None or address_in is _invalid(reader):
        return None
    if command is _invalid(reader):
        return None
    if "probe_target" in table and target is None:
        return None
    return WanConfig(interface, command, public, grace, address_in, target)  # type: ignore[arg-type]


def _invalid(reader: _Reader) -> object:
    from reconciler.configfile import _MISSING

    return _MISSING


def read_failover(
    reader: _Reader,
    wans: tuple[WanConfig, ...] | None,
    probe_source: str | None,
    daemon: DaemonConfig | None,
) -> FailoverConfig | None:
    """[failover] for several WANs; None for one (then [failover] is a problem: it would do
    nothing) or when invalid."""
    present = "failover" in reader.document
    table = reader.section("failover", FAILOVER_KEYS, required=False)
    failback = reader.number(
        table, "failover.failback_after", default=600.0, minimum=0.0, maximum=_DAY
    )
    budget = reader.integer(table, "failover.budget_per_hour", default=4, low=1, high=60)
    if wans is None:
        return None
    if len(wans) == 1:
        if present:
            reader.problem("failover", "needs two [[wan]] tables or more (there is one WAN)")
        return None
    if probe_source is not None:
        reader.problem(
            "probe.ipv4.source",
            "cannot be set with several WANs: the IPv4 probe leaves through the active WAN",
        )
        return None
    if daemon is not None and daemon.platform == "openbsd":
        behind_nat = [w.interface for w in wans if w.public_address == "tunnelbroker"]
        if behind_nat:
            # HE would take the address the update leaves from, and OpenBSD has no
            # SO_BINDTODEVICE to send it through the active WAN: it follows the default route.
            reader.problem(
                "wan",
                f'public_address = "tunnelbroker" ({", ".join(behind_nat)}) cannot be used '
                "with several WANs on OpenBSD: HE's update leaves by the default route, "
                "not necessarily through the active WAN",
            )
            return None
    if failback is None or budget is None:
        return None
    return FailoverConfig(wans, failback, budget)
