"""Why there is no IPv6: the layers a network engineer checks, bottom up, and their verdicts.

Two readers share the layers and their names:

- `reconciler doctor` gathers evidence (world/diagnose) and asks the judges below for one
  verdict per check, in order; the first that fails is the answer, with what to do about it;
- the daemon's last verdict, `down_reason(state, ...)`, from facts alone (no probing): the
  first layer the folded state shows broken while IPv6 is down, for `status`, the
  needs-attention hook, the `reconciler_down_reason` metric and each incident of `report`.

Pure: evidence comes in as values, time as an argument.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from attrs import frozen

from reconciler.model.actions import UpdateHeEndpoint
from reconciler.model.addresses import is_public_ipv4

if TYPE_CHECKING:  # types only: the hooks' and the report's readers need no planner
    from reconciler.model.plan import Held, Plan
    from reconciler.model.state import ObservedState

__all__ = [
    "CHECKS",
    "CheckResult",
    "CheckSpec",
    "Diagnosis",
    "DownReason",
    "RouteEvidence",
    "TunnelEvidence",
    "WanEvidence",
    "address_class",
    "down_reason",
    "hold_text",
    "judge_he_view",
    "judge_mtu",
    "judge_tunnel",
    "judge_wan",
]

Status = Literal["pass", "fail", "warn", "unknown", "skipped", "not-run"]


@frozen
class CheckSpec:
    number: int
    name: str  # stable: --json, the metric label
    title: str


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(1, "config", "configuration and update key"),
    CheckSpec(2, "wan", "WAN"),
    CheckSpec(3, "ipv4-path", "IPv4 path"),
    CheckSpec(4, "he-endpoint", "HE's view of our endpoint"),
    CheckSpec(5, "he-ping", "HE can ping us"),
    CheckSpec(6, "tunnel-packets", "the tunnel's packets from HE pass the firewall"),
    CheckSpec(7, "tunnel", "the tunnel"),
    CheckSpec(8, "far-end", "the tunnel's far end"),
    CheckSpec(9, "ipv6-route", "IPv6 default route"),
    CheckSpec(10, "path-mtu", "path MTU"),
    CheckSpec(11, "ipv6-path", "IPv6 probe target"),
)
_SPEC = {spec.name: spec for spec in CHECKS}


@frozen
class CheckResult:
    """One check's verdict: `evidence` says what was seen, `advice` what to do (on failure)."""

    number: int
    name: str
    title: str
    status: Status
    evidence: str
    advice: str = ""

    @classmethod
    def of(cls, name: str, status: Status, evidence: str, advice: str = "") -> CheckResult:
        spec = _SPEC[name]
        return cls(spec.number, spec.name, spec.title, status, evidence, advice)


@frozen
class Diagnosis:
    """The checks in order; the ones after a failure are "not-run"."""

    checks: tuple[CheckResult, ...]

    @property
    def failed(self) -> CheckResult | None:
        return next((c for c in self.checks if c.status == "fail"), None)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 2 when a check did (the CLI's documented codes)."""
        return 2 if self.failed is not None else 0


# --- the judges of `doctor` ------------------------------------------------------------------

AddressClass = Literal["public", "private", "cgnat", "unusable"]
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_RFC1918 = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


def address_class(address: str) -> AddressClass:
    """public, private (RFC 1918: behind NAT), cgnat (RFC 6598: the ISP's NAT), or unusable."""
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        return "unusable"
    if parsed in _CGNAT:
        return "cgnat"
    if any(parsed in net for net in _RFC1918):
        return "private"
    return "public" if is_public_ipv4(address) else "unusable"


@frozen
class RouteEvidence:
    """The IPv4 default route: its gateway (None: on-link) and interface."""

    gateway: str | None
    interface: str | None


@frozen
class WanEvidence:
    interface: str
    exists: bool
    carrier: bool
    addresses: tuple[str, ...]
    default_routes: tuple[RouteEvidence, ...]
    public_address: str = "interface"  # the configuration's wan.public_address


def judge_wan(wan: WanEvidence) -> CheckResult:
    name = wan.interface
    if not wan.exists:
        return CheckResult.of(
            "wan",
            "fail",
            f"interface {name} does not exist",
            f"check wan.interface, or bring {name} up (its owner: DHCP client, pppd, ...)",
        )
    if not wan.carrier:
        return CheckResult.of(
            "wan",
            "fail",
            f"{name} has no carrier (link down)",
            "check the cable, the modem or the ISP's line",
        )
    if not wan.addresses:
        return CheckResult.of(
            "wan",
            "fail",
            f"{name} has no IPv4 address",
            f"the DHCP client or PPP session on {name} has no lease: check its log",
        )
    address = wan.addresses[0]
    routes = [r for r in wan.default_routes if r.interface == name]
    if not routes:
        elsewhere = ", ".join(sorted({r.interface or "?" for r in wan.default_routes}))
        evidence = f"{name} has {address}, but no IPv4 default route through it" + (
            f" (the default route goes through {elsewhere})" if elsewhere else ""
        )
        return CheckResult.of(
            "wan", "fail", evidence, f"add the default route through {name} (its DHCP/PPP owner)"
        )
    via = routes[0].gateway or "on-link"
    seen = f"{name} up, {address}, default route via {via}"
    kind = address_class(address)
    if kind == "cgnat":
        return CheckResult.of(
            "wan",
            "fail",
            f"{seen}; {address} is carrier-grade NAT (100.64.0.0/10)",
            "6in4 cannot work behind the ISP's NAT: ask the ISP for a public IPv4 address",
        )
    if kind == "unusable":
        return CheckResult.of(
            "wan", "fail", f"{seen}; {address} cannot be a tunnel endpoint", "check the WAN"
        )
    if kind == "private":
        nat = "the NAT device must forward protocol 41 to this router (or make it the DMZ host)"
        if wan.public_address != "tunnelbroker":
            return CheckResult.of(
                "wan",
                "fail",
                f"{seen}; {address} is private (RFC 1918): behind NAT",
                f'set wan.public_address = "tunnelbroker" (HE takes the NAT\'s address); {nat}',
            )
        return CheckResult.of("wan", "warn", f"{seen}; private, behind NAT: {nat}")
    return CheckResult.of("wan", "pass", f"{seen}; public")


def judge_he_view(
    *,
    he_has: str | None,
    source: str,
    wan_address: str,
    behind_nat: bool,
    update_hold: str | None,
) -> CheckResult:
    """HE's endpoint against ours; `update_hold` is why the daemon's update waits, if it does
    (from the plan over the log), `source` where `he_has` comes from."""
    if he_has is None:
        return CheckResult.of("he-endpoint", "unknown", f"HE's endpoint is not known ({source})")
    if behind_nat:
        return CheckResult.of(
            "he-endpoint",
            "pass",
            f"HE has {he_has} ({source}); behind NAT it is the NAT's address, which only HE sees",
        )
    if he_has == wan_address:
        return CheckResult.of("he-endpoint", "pass", f"HE has {he_has}, the WAN's address")
    evidence = f"HE has {he_has} ({source}), the WAN has {wan_address}"
    if update_hold:
        held = f"{evidence}; update held: {update_hold}"
        return CheckResult.of("he-endpoint", "fail", held, _hold_advice(update_hold))
    return CheckResult.of(
        "he-endpoint",
        "fail",
        evidence,
        "the daemon updates HE when it runs (`reconciler diff` shows the update)",
    )


def _hold_advice(hold: str) -> str:
    if "badauth" in hold or "key" in hold:
        return "fix the username or the update key file, then SIGHUP the daemon"
    if "abuse" in hold:
        return "HE blocks updates for a while after too many: wait until the hold ends"
    if "nohost" in hold or "yours" in hold:
        return "check tunnelbroker.tunnel_id"
    return "the update goes out when the hold ends (`reconciler status` says when)"


@frozen
class TunnelEvidence:
    interface: str
    exists: bool
    up: bool
    mode: str | None
    local: str | None
    remote: str | None
    ttl: int | None
    mtu: int | None  # None: not read on this platform
    ipv6_addresses: tuple[str, ...] | None  # None: not read on this platform


def judge_tunnel(
    tunnel: TunnelEvidence,
    *,
    mode: str,
    local: str | None,
    remote: str,
    ttl: int,
    mtu: int,
    client_ipv6: str,
) -> CheckResult:
    name = tunnel.interface
    restart = "the daemon rebuilds it (`reconciler apply`), or fix the tunnel's owner"
    if not tunnel.exists:
        return CheckResult.of("tunnel", "fail", f"{name} does not exist", restart)
    problems = []
    if tunnel.mode is not None and tunnel.mode != mode:
        problems.append(f"is {tunnel.mode}, not {mode}")
    if not tunnel.up:
        problems.append("is down")
    if local is not None and tunnel.local != local:
        problems.append(f"local end {tunnel.local or 'none'}, the WAN has {local}")
    if tunnel.remote != remote:
        problems.append(f"remote end {tunnel.remote or 'none'}, HE's server is {remote}")
    if mode != "vxlan" and tunnel.ttl is not None and tunnel.ttl != ttl:
        problems.append(f"TTL {tunnel.ttl}, configured {ttl}")
    if tunnel.mtu is not None and tunnel.mtu != mtu:
        problems.append(f"MTU {tunnel.mtu}, configured {mtu}")
    addresses = tunnel.ipv6_addresses
    if addresses is not None and _normal6(client_ipv6) not in {_normal6(a) for a in addresses}:
        problems.append(f"lacks {client_ipv6}")
    if problems:
        return CheckResult.of("tunnel", "fail", f"{name} " + "; ".join(problems), restart)
    ttl_text = f", TTL {tunnel.ttl}" if tunnel.ttl is not None else ""
    mtu_text = f", MTU {tunnel.mtu}" if tunnel.mtu is not None else ""
    address = f", {client_ipv6}" if addresses is not None else ""
    ends = f"{tunnel.local} -> {tunnel.remote}"
    return CheckResult.of("tunnel", "pass", f"{name} up, {ends}{ttl_text}{mtu_text}{address}")


def _normal6(address: str) -> str:
    try:
        return str(ipaddress.IPv6Address(address.split("/")[0]))
    except ValueError:
        return address


def judge_mtu(mtu: int, sizes: Mapping[int, bool], target: str) -> CheckResult:
    """`sizes`: MTU tried -> whether a ping6 of that size with no fragmentation got through."""
    if sizes.get(mtu):
        return CheckResult.of(
            "path-mtu", "pass", f"a {mtu}-byte packet reaches {target} unfragmented"
        )
    working = sorted((size for size, ok in sizes.items() if ok), reverse=True)
    if not working:
        return CheckResult.of(
            "path-mtu",
            "fail",
            f"no packet of {min(sizes, default=mtu)} to {mtu} bytes reaches {target} "
            "unfragmented, though small pings do",
            "something on the path drops large packets: check the WAN's MTU (PPPoE: 1492)",
        )
    best = working[0]
    return CheckResult.of(
        "path-mtu",
        "fail",
        f"black hole: {mtu}-byte packets to {target} vanish (no ICMP too-big comes back), "
        f"{best}-byte ones get through",
        f"set tunnel.mtu = {best} (and the MTU at HE, Advanced tab), or let ICMP too-big through",
    )


# --- the daemon's last verdict, from facts alone -----------------------------------------------


@frozen
class DownReason:
    """Why IPv6 is down, as the folded state shows it: `check` is the layer's name (the
    metric's label), `since` when IPv6 went down, `detail` the evidence and the hold."""

    check: str
    since: float | None
    detail: str

    @property
    def title(self) -> str:
        return _SPEC[self.check].title

    def sentence(self) -> str:
        since = f" since {clock(self.since)}" if self.since is not None else ""
        return f"IPv6 down{since}: {self.detail}"


def clock(at: float) -> str:
    """HH:MM UTC (the day too when it is not `at`'s own: callers show recent times)."""
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M")


def _when(at: float | None) -> str:
    return f"until {datetime.fromtimestamp(at, UTC).strftime('%H:%M')}" if at is not None else ""


def down_reason(
    state: ObservedState,
    *,
    plan: Plan | None = None,
    held: Sequence[Held] | None = None,
    server_ipv4: str | None = None,
    public_address: str = "interface",
) -> DownReason | None:
    """The first layer the facts show broken while IPv6 is down (None: IPv6 is not down).

    `plan` (or only what it holds, `held`: the metrics have no more) says why an update or a
    restart waits; without either (no configuration at hand: `report`, the hooks) HE's last
    answer stands in for the hold. Without `server_ipv4` the tunnel's remote end is not judged.
    """
    if plan is not None:
        held = plan.held
    ipv6 = state.probe("ipv6")
    if ipv6.status != "down" and ipv6.outage_since is None:
        return None
    since = ipv6.outage_since if ipv6.outage_since is not None else ipv6.since or None
    wan = state.wan
    if wan is not None:
        problem = None
        if not wan.exists:
            problem = f"the WAN {wan.interface} is missing"
        elif not wan.link_up:
            problem = f"the WAN {wan.interface} has no link"
        elif wan.address is None:
            problem = f"the WAN {wan.interface} has no IPv4 address"
        elif address_class(wan.address) == "cgnat":
            problem = f"the WAN has {wan.address}, carrier-grade NAT: 6in4 cannot work"
        elif address_class(wan.address) == "private" and public_address != "tunnelbroker":
            problem = f"the WAN has {wan.address}, private (behind NAT)"
        if problem is not None:
            return DownReason("wan", since, problem)
    ipv4 = state.probe("ipv4")
    if ipv4.status == "down":
        return DownReason(
            "ipv4-path",
            since,
            f"IPv4 probe to {ipv4.target} failed {ipv4.consecutive_failed} times in a row",
        )
    endpoint = _endpoint_reason(state, plan, held)
    if endpoint is not None:
        return DownReason("he-endpoint", since, endpoint)
    tunnel = state.tunnel
    if tunnel is not None and wan is not None:
        problems = []
        if not tunnel.exists:
            problems.append(f"the tunnel {tunnel.interface} is missing")
        else:
            if not tunnel.up:
                problems.append(f"the tunnel {tunnel.interface} is down")
            if wan.address is not None and tunnel.local != wan.address:
                problems.append(f"its local end is {tunnel.local}, the WAN has {wan.address}")
            if server_ipv4 is not None and tunnel.remote != server_ipv4:
                problems.append(f"its remote end is {tunnel.remote}, HE's is {server_ipv4}")
        if problems:
            return DownReason("tunnel", since, ", ".join(problems) + _tunnel_hold(held))
    if ipv6.consecutive_failed == 0:
        # The outage began with the WAN's change and all looks mended: a probe will tell.
        return DownReason(
            "ipv6-path", since, "everything looks right again; waiting for an IPv6 probe to tell"
        )
    return DownReason(
        "ipv6-path",
        since,
        f"IPv6 probe to {ipv6.target or 'its target'} failed "
        f"{ipv6.consecutive_failed} times in a row across a tunnel that looks right",
    )


def _endpoint_reason(
    state: ObservedState, plan: Plan | None, holds: Sequence[Held] | None
) -> str | None:
    """HE's endpoint is not ours: what HE has, what the WAN has, and why the update waits."""
    wan, endpoint = state.wan, state.endpoint
    if wan is None or wan.address is None:
        return None
    local = wan.address
    he_has = endpoint.address if endpoint is not None else None
    wrong = endpoint is not None and (
        (endpoint.for_local is not None and endpoint.for_local != local)
        or (endpoint.for_local is None and he_has is not None and he_has != local)
    )
    if holds is not None:
        held = next((h for h in holds if isinstance(h.action, UpdateHeEndpoint)), None)
        if held is not None:
            return f"{_has(he_has)}, the WAN has {local}, update held: {hold_text(held)}"
    if plan is not None and wrong and any(isinstance(a, UpdateHeEndpoint) for a in plan.actions):
        return f"{_has(he_has)}, the WAN has {local}, update pending"
    failed = _last_update_failure(state, local)
    if not wrong and not failed:
        return None
    if failed:
        return f"{_has(he_has)}, the WAN has {local}, last update: {failed}"
    return f"{_has(he_has)}, the WAN has {local}"


def _has(address: str | None) -> str:
    return f"HE has {address}" if address else "HE's endpoint is not ours"


def hold_text(held: Held) -> str:
    detail = held.detail
    if held.why == "retry-after":
        what = "abuse back-off" if "abuse" in detail else "HE's retry-after"
    elif held.why == "permanent-failure":
        what = f"permanent failure ({detail.split('(')[-1].split(')')[0]})"
    else:
        what = held.why
    until = _when(held.until)
    if held.why == "permanent-failure":
        until = "until the configuration changes"
    return f"{what} {until}".strip()


def _tunnel_hold(holds: Sequence[Held] | None) -> str:
    held = next((h for h in holds or () if h.action.KIND == "restart-tunnel"), None)
    return f", restart held: {hold_text(held)}" if held is not None else ""


def _last_update_failure(state: ObservedState, local: str) -> str:
    """The message of the last update for the WAN address `local`, when it failed."""
    records = [
        r
        for r in state.records_of(UpdateHeEndpoint.KIND)
        if r.last_outcome and UpdateHeEndpoint.local_of(r.key) == local
    ]
    if not records:
        return ""
    latest = max(records, key=lambda r: r.last_outcome_seq)
    if latest.last_outcome == "ok":
        return ""
    return latest.last_message
