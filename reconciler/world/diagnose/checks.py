"""`reconciler doctor`'s eleven checks against the live system: read and probe, change nothing.

Each check gathers its evidence (netlink, ping, HE's tunnelInfo, the firewall's rules, the
event log) and hands it to the pure judges of reconciler.model.verdict. They run in order,
bottom up, and stop at the first that fails: what comes after it rests on it. Every probe has
a bound (the configured probe timeout), so a run takes about a second when all is well.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reconciler.model.config import Config
from reconciler.model.verdict import (
    CHECKS,
    CheckResult,
    Diagnosis,
    RouteEvidence,
    TunnelEvidence,
    WanEvidence,
    address_class,
    judge_he_view,
    judge_mtu,
    judge_tunnel,
    judge_wan,
)
from reconciler.world.diagnose.firewall import (
    FirewallVerdict,
    Packet,
    Ruleset,
    evaluate,
    parse_nft_json,
    parse_pf_rules,
)
from reconciler.world.platform import Platform
from reconciler.world.probe import ping
from reconciler.world.runner import CommandRunner, SubprocessRunner

__all__ = ["HE_PING_SOURCE", "MTU_CANDIDATES", "Doctor"]

# HE pings a new endpoint from here before it accepts it (../shared/TUNNELBROKER.md).
HE_PING_SOURCE = "66.220.2.74"
# MTUs tried below the tunnel's when a full-size packet does not get through: the common
# ones (PPPoE, PPPoE in 6in4, DS-Lite, VPNs), down to IPv6's minimum.
MTU_CANDIDATES = (1480, 1472, 1460, 1452, 1440, 1430, 1420, 1400, 1380, 1360, 1340, 1300, 1280)
_ICMP6_OVERHEAD = 48  # IPv6 header and ICMPv6 echo header: ping's -s is the MTU less these
_TUNNEL_PROTOCOL = {"sit": 41, "gif": 41, "vxlan": 17}


class Doctor:
    """The checks for `config` on this machine. `he_ping_source` is where HE's pings come
    from (a lab sets its own); `state_dir` holds the daemon's log (the holds of check 4)."""

    def __init__(
        self,
        config: Config,
        *,
        he_ping_source: str = HE_PING_SOURCE,
        runner: CommandRunner | None = None,
        platform: Platform | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._platform = platform
        self.he_ping_source = he_ping_source
        self.runner = runner or SubprocessRunner()
        self.clock = clock
        self.wan_address: str | None = None
        self._rules: Ruleset | FirewallVerdict | None = None
        self.timings: list[float] = []  # seconds per check run, in order
        self._refused: str | None = None  # HE's permanent refusal of tunnelInfo
        self._state: Any = None  # the daemon's state, from its log
        self._state_read = False

    def run(self, first: CheckResult) -> Diagnosis:
        """`first` is check 1's verdict (the configuration, judged by whoever loaded it)."""
        steps: list[Callable[[], CheckResult]] = [
            self.check_wan,
            self.check_ipv4_path,
            self.check_he_view,
            self.check_he_ping,
            self.check_tunnel_packets,
            self.check_tunnel,
            self.check_far_end,
            self.check_ipv6_route,
            self.check_path_mtu,
            self.check_ipv6_path,
        ]
        results = [first]
        self.timings = [0.0]
        for step in steps:
            if results[-1].status == "fail":
                break
            began = time.monotonic()
            results.append(step())
            self.timings.append(time.monotonic() - began)
        for spec in CHECKS[len(results) :]:
            results.append(CheckResult.of(spec.name, "not-run", "after the failure above"))
        return Diagnosis(tuple(results))

    # -- 2: the WAN -----------------------------------------------------------------------

    def check_wan(self) -> CheckResult:
        evidence = self._wan_evidence()
        result = judge_wan(evidence)
        if evidence.addresses:
            self.wan_address = evidence.addresses[0]
        return result

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            from reconciler.world.observers import make_platform

            self._platform = make_platform(self.config)
        return self._platform

    def _default_routes(self, family: int) -> tuple[RouteEvidence, ...]:
        if self.config.daemon.platform == "linux":
            return _linux_default_routes(family)
        return self._openbsd_default_route(family)

    def _wan_evidence(self) -> WanEvidence:
        wan = self.platform.observe_wan()
        routes = self._default_routes(socket.AF_INET)
        return WanEvidence(
            interface=wan.interface,
            exists=wan.exists,
            carrier=wan.link_up,
            addresses=wan.addresses,
            default_routes=routes,
            public_address=self.config.wan.public_address,
        )

    def _openbsd_default_route(self, family: int) -> tuple[RouteEvidence, ...]:
        """`route -n get` of the default route, as route(8) prints it ("gateway: A",
        "interface: em0"); none when it says "not in table"."""
        which = "-inet6" if family == socket.AF_INET6 else "-inet"
        done = self.runner.run(["route", "-n", "get", which, "default"], timeout=5)
        if not done.ok:
            return ()
        fields = {}
        for line in done.stdout.splitlines():
            key, sep, value = line.strip().partition(": ")
            if sep:
                fields[key] = value.strip()
        if "interface" not in fields:
            return ()
        return (RouteEvidence(fields.get("gateway"), fields["interface"]),)

    # -- 3: the IPv4 path -------------------------------------------------------------------

    def check_ipv4_path(self) -> CheckResult:
        probe = self.config.probes.get("ipv4")
        if probe is None:
            return CheckResult.of("ipv4-path", "skipped", "no [probe.ipv4] configured")
        result = self._ping("ipv4", probe.target, probe.timeout)
        if result.ok:
            return CheckResult.of("ipv4-path", "pass", result.detail)
        return CheckResult.of(
            "ipv4-path",
            "fail",
            result.detail,
            f"the WAN has an address and a route, but {probe.target} does not answer: "
            "check the ISP's network, or probe.ipv4.target",
        )

    # -- 4: HE's view ------------------------------------------------------------------------

    def check_he_view(self) -> CheckResult:
        assert self.wan_address is not None
        behind_nat = address_class(self.wan_address) == "private"
        he_has, source = self._he_endpoint()
        if self._refused is not None:
            return CheckResult.of(
                "he-endpoint",
                "fail",
                f"HE refuses to say: {self._refused}",
                "check tunnelbroker.username, tunnel_id and the update key (the daemon's "
                "updates are refused alike)",
            )
        hold = self._update_hold() if he_has != self.wan_address else None
        return judge_he_view(
            he_has=he_has,
            source=source,
            wan_address=self.wan_address,
            behind_nat=behind_nat,
            update_hold=hold,
        )

    def _he_endpoint(self) -> tuple[str | None, str]:
        """HE's endpoint from tunnelInfo when configured, else what the daemon's log knows."""
        broker = self.config.tunnelbroker
        if broker.info_url is not None:
            from reconciler.world.tunnelbroker import TunnelbrokerClient

            client = TunnelbrokerClient(broker)
            try:
                info = client.read_tunnel_info()
            finally:
                client.close()
            if info is not None and info.outcome.succeeded:
                return info.client_ipv4, "tunnelInfo"
            if info is not None and info.outcome.status == "permanent":
                self._refused = info.outcome.message  # badauth, no such tunnel
            why = info.outcome.message if info is not None else "no answer"
            return None, f"tunnelInfo: {why}"
        state = self._log_state()
        if state is None or state.endpoint is None:
            return None, "no info_url configured and the daemon's log does not know it"
        endpoint = state.endpoint
        return endpoint.address, f"the daemon's log, from {endpoint.source}"

    def _log_state(self) -> Any:
        """The daemon's state from its log (read-only, read once); None without one."""
        if self._state_read:
            return self._state
        self._state_read = True
        from reconciler.history import load_state

        state_dir: Path = self.config.daemon.state_dir
        if state_dir.is_dir():
            try:
                self._state = load_state(state_dir)[0]
            except Exception:  # a log it cannot read: no holds known, said as such
                self._state = None
        return self._state

    def _update_hold(self) -> str | None:
        """Why the daemon's update waits, from the plan over its log (None: it does not)."""
        from reconciler.model.actions import UpdateHeEndpoint
        from reconciler.model.desired import desired
        from reconciler.model.plan import plan
        from reconciler.model.verdict import hold_text

        state = self._log_state()
        if state is None:
            return None
        current = plan(desired(self.config, state), state, self.clock())
        held = next((h for h in current.held if isinstance(h.action, UpdateHeEndpoint)), None)
        if held is None:
            return None
        return f"{hold_text(held)} ({held.detail})"

    # -- 5 and 6: the firewall ----------------------------------------------------------------

    def check_he_ping(self) -> CheckResult:
        assert self.wan_address is not None
        packet = Packet(
            protocol=1,
            saddr=self.he_ping_source,
            daddr=self.wan_address,
            iif=self.config.wan.interface,
            icmp_type=8,
        )
        return self._firewall_check(
            "he-ping",
            packet,
            f"ICMP echo from {self.he_ping_source} (HE's ping source)",
            f"let ICMP echo requests from {self.he_ping_source} in on "
            f"{self.config.wan.interface}: HE refuses an endpoint it cannot ping",
        )

    def check_tunnel_packets(self) -> CheckResult:
        assert self.wan_address is not None
        mode = self.config.tunnel.mode
        server = self.config.tunnel.server_ipv4
        protocol = _TUNNEL_PROTOCOL[mode]
        port = None
        what = f"protocol 41 from {server} (HE's server)"
        if mode == "vxlan":
            port = self.config.tunnel.vxlan_port or 4789
            what = f"UDP port {port} (vxlan) from {server}"
        packet = Packet(
            protocol=protocol,
            saddr=server,
            daddr=self.wan_address,
            iif=self.config.wan.interface,
            dport=port,
        )
        return self._firewall_check(
            "tunnel-packets",
            packet,
            what,
            f"let {what} in on {self.config.wan.interface}",
        )

    def _firewall_check(self, name: str, packet: Packet, what: str, advice: str) -> CheckResult:
        rules = self._firewall_rules()
        if isinstance(rules, FirewallVerdict):
            return CheckResult.of(name, "unknown", f"{what}: {rules.reason}")
        verdict = evaluate(rules, packet)
        legacy = _legacy_iptables() if rules.kind == "nft" else []
        if verdict.answer == "pass" and legacy:
            return CheckResult.of(
                name,
                "unknown",
                f"{what}: nftables passes it, but iptables-legacy tables are loaded "
                f"({', '.join(legacy)}), which it does not read",
            )
        if rules.empty:
            return CheckResult.of(name, "pass", f"{what}: no firewall rules ({rules.source})")
        if verdict.answer == "pass":
            reason = f": {verdict.reason}" if verdict.reason else ""
            return CheckResult.of(name, "pass", f"{what} passes ({rules.source}){reason}")
        if verdict.answer == "drop":
            return CheckResult.of(name, "fail", f"{what} is {verdict.reason}", advice)
        return CheckResult.of(name, "unknown", f"{what}: {verdict.reason}")

    def _firewall_rules(self) -> Ruleset | FirewallVerdict:
        if self._rules is None:
            self._rules = self._read_rules()
        return self._rules

    def _read_rules(self) -> Ruleset | FirewallVerdict:
        if self.config.daemon.platform == "openbsd":
            done = self.runner.run(["pfctl", "-sr"], timeout=5)
            if not done.ok:
                return FirewallVerdict("unknown", f"cannot read pf's rules: {_line(done.stderr)}")
            return parse_pf_rules(done.stdout, self.config.wan.interface)
        if shutil.which("nft") is None:
            return FirewallVerdict("unknown", "cannot tell: nft is not installed")
        done = self.runner.run(["nft", "-j", "list", "ruleset"], timeout=5)
        if not done.ok:
            return FirewallVerdict("unknown", f"cannot read nftables: {_line(done.stderr)}")
        try:
            return parse_nft_json(done.stdout)
        except ValueError as exc:
            return FirewallVerdict("unknown", f"cannot read nftables' JSON: {exc}")

    # -- 7: the tunnel -------------------------------------------------------------------------

    def check_tunnel(self) -> CheckResult:
        tunnel = self.config.tunnel
        evidence = self._tunnel_evidence()
        local = self.wan_address
        return judge_tunnel(
            evidence,
            mode=tunnel.mode,
            local=local,
            remote=tunnel.server_ipv4,
            ttl=tunnel.ttl,
            mtu=tunnel.mtu,
            client_ipv6=tunnel.client_ipv6,
        )

    def _tunnel_evidence(self) -> TunnelEvidence:
        state = self.platform.observe_tunnel()
        mtu, ttl = None, state.ttl
        addresses: tuple[str, ...] | None = None
        if self.config.daemon.platform == "linux" and state.exists:
            mtu, ttl, addresses = _linux_tunnel_details(self.config.tunnel.interface)
        return TunnelEvidence(
            interface=state.interface,
            exists=state.exists,
            up=state.up,
            mode=state.mode,
            local=state.local,
            remote=state.remote,
            ttl=ttl,
            mtu=mtu,
            ipv6_addresses=addresses,
        )

    # -- 8 to 11: IPv6 ------------------------------------------------------------------------

    def check_far_end(self) -> CheckResult:
        tunnel = self.config.tunnel
        result = self._ping("ipv6", tunnel.server_ipv6, self._timeout6(), source=tunnel.interface)
        if result.ok:
            return CheckResult.of("far-end", "pass", f"{result.detail} through {tunnel.interface}")
        return CheckResult.of(
            "far-end",
            "fail",
            f"{tunnel.server_ipv6} (HE's end) does not answer through {tunnel.interface}: "
            f"{result.detail}",
            "the tunnel looks right from here: HE's end does not point at us (check HE's "
            "endpoint), or protocol 41 is dropped before it reaches us (the ISP, a NAT)",
        )

    def check_ipv6_route(self) -> CheckResult:
        name = self.config.tunnel.interface
        routes = self._default_routes(socket.AF_INET6)
        via = [r for r in routes if r.interface == name]
        if via:
            gateway = via[0].gateway or "on-link"
            return CheckResult.of("ipv6-route", "pass", f"::/0 via {gateway} dev {name}")
        others = ", ".join(sorted({r.interface or "?" for r in routes}))
        return CheckResult.of(
            "ipv6-route",
            "fail",
            f"no IPv6 default route through {name}"
            + (f" (it goes through {others})" if others else ""),
            f"add it: ip -6 route add ::/0 dev {name} (the daemon adds it when it builds "
            "the tunnel)",
        )

    def check_path_mtu(self) -> CheckResult:
        tunnel = self.config.tunnel
        timeout = self._timeout6()
        if self._ping_size(tunnel.server_ipv6, tunnel.mtu, timeout):
            return judge_mtu(tunnel.mtu, {tunnel.mtu: True}, tunnel.server_ipv6)
        sizes = [m for m in MTU_CANDIDATES if m < tunnel.mtu]
        with ThreadPoolExecutor(max_workers=len(sizes) or 1) as pool:
            # All at once: a black hole costs one timeout, not one per size.
            target = tunnel.server_ipv6
            answers = pool.map(lambda size: self._ping_size(target, size, timeout), sizes)
            outcomes = {tunnel.mtu: False, **dict(zip(sizes, answers, strict=True))}
        return judge_mtu(tunnel.mtu, outcomes, tunnel.server_ipv6)

    def check_ipv6_path(self) -> CheckResult:
        probe = self.config.probes.get("ipv6")
        if probe is None:
            return CheckResult.of("ipv6-path", "skipped", "no [probe.ipv6] configured")
        result = self._ping("ipv6", probe.target, probe.timeout, source=probe.source)
        if result.ok:
            return CheckResult.of("ipv6-path", "pass", result.detail)
        return CheckResult.of(
            "ipv6-path",
            "fail",
            result.detail,
            f"the tunnel works to HE's end, but not to {probe.target}: beyond HE, or the "
            "target itself (try another probe.ipv6.target)",
        )

    # -- probing -------------------------------------------------------------------------------

    def _timeout6(self) -> float:
        probe = self.config.probes.get("ipv6")
        return probe.timeout if probe is not None else 1.0

    def _ping(self, family: Any, target: str, timeout: float, source: str | None = None) -> Any:
        return ping(
            family,
            target,
            timeout=timeout,
            source=source,
            platform=self.config.daemon.platform,
            runner=self.runner,
        )

    def _ping_size(self, target: str, mtu: int, timeout: float) -> bool:
        size = str(mtu - _ICMP6_OVERHEAD)
        interface = self.config.tunnel.interface
        if self.config.daemon.platform == "linux":
            argv = ["ping", "-6", "-n", "-c", "1", "-W", f"{timeout:g}", "-M", "do", "-s", size]
            argv += ["-I", interface, target]
        else:
            wait = str(max(1, round(timeout)))
            argv = ["ping6", "-n", "-c", "1", "-w", wait, "-D", "-s", size, target]
        return self.runner.run(argv, timeout=timeout + 2).returncode == 0


def _legacy_iptables() -> list[str]:
    """The iptables-legacy tables loaded in this network namespace (nft does not show them)."""
    try:
        return Path("/proc/net/ip_tables_names").read_text().split()
    except OSError:  # no legacy iptables here
        return []


def _line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


@contextmanager
def _netlink() -> Iterator[Any]:
    from pyroute2 import IPRoute

    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _linux_default_routes(family: int) -> tuple[RouteEvidence, ...]:
    """The main table's default routes of `family`, with their gateway and interface."""
    with _netlink() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        routes = []
        for route in ipr.get_routes(family=family, table=254):
            if route["dst_len"] != 0 or route["type"] != 1:  # 1: RTN_UNICAST
                continue
            gateway = route.get_attr("RTA_GATEWAY")
            oif = route.get_attr("RTA_OIF")
            if oif is None:  # a multipath route: its first hop
                hops = route.get_attr("RTA_MULTIPATH") or []
                oif = hops[0]["oif"] if hops else None
            routes.append(RouteEvidence(gateway, names.get(oif)))
    return tuple(routes)


def _linux_tunnel_details(name: str) -> tuple[int | None, int | None, tuple[str, ...]]:
    """The tunnel link's MTU, its encapsulation's TTL and its global IPv6 addresses."""
    with _netlink() as ipr:
        indexes = ipr.link_lookup(ifname=name)
        if not indexes:
            return None, None, ()
        link = ipr.get_links(indexes[0])[0]
        mtu = link.get_attr("IFLA_MTU")
        ttl = None
        info = link.get_attr("IFLA_LINKINFO")
        data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
        if data is not None:
            ttl = data.get_attr("IFLA_SIT_TTL") or data.get_attr("IFLA_VXLAN_TTL") or None
        addresses = tuple(
            str(message.get_attr("IFA_ADDRESS"))
            for message in ipr.get_addr(family=socket.AF_INET6, index=indexes[0])
            if not ipaddress.IPv6Address(message.get_attr("IFA_ADDRESS")).is_link_local
        )
    return mtu, ttl, addresses
