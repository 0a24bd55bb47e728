"""Observers: look at one part of the world and record what was seen as one fact.

Each function observes once and records exactly one fact (the log is the history, so an
unchanged observation is recorded too: it says "still so, at this time"). The source names
the observer ("observer:wan", "observer:probe:ipv6", ...). The daemon calls these from its
scheduler jobs through the Recorder; `observe_all` runs every one of them once against an
open event log, for `reconciler apply` and `reconciler diff --observe`.

HE's tunnelInfo.php is asked no more often than `min_update_interval` per tunnel, whatever
asks: the daemon's "he" job, an observe-everything after start-up, a reload or a desync (a
dead `route -n monitor` reports one every few seconds). The time of the last call is kept
here, in one place, so no caller can forget the limit.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.model.addresses import is_carrier_nat
from reconciler.model.facts import (
    EndpointObserved,
    Envelope,
    Fact,
    HostnameFileObserved,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
    WanProbed,
    to_record,
)

if TYPE_CHECKING:
    from reconciler.model.config import Config
    from reconciler.world.platform import Platform
    from reconciler.world.runner import CommandRunner
    from reconciler.world.tunnelbroker import TunnelbrokerClient

__all__ = [
    "FactSink",
    "LogSink",
    "make_client",
    "make_platform",
    "observe_all",
    "observe_endpoint",
    "observe_hostname_file",
    "observe_probe",
    "observe_tunnel",
    "observe_wan",
    "observe_wan_probe",
    "observe_wan_probes",
]


_log = logging.getLogger(__name__)


class FactSink(Protocol):
    """Where observations go: the daemon's Recorder, or a LogSink over an open EventLog."""

    def record(self, fact: Fact, source: str) -> Envelope: ...


class _Appender(Protocol):
    def append(self, record: Mapping[str, Any]) -> int: ...


class LogSink:
    """Records facts straight into an open, writable event log (no folding)."""

    def __init__(self, log: _Appender, clock: Callable[[], float] = time.time) -> None:
        self._log = log
        self._clock = clock

    def record(self, fact: Fact, source: str) -> Envelope:
        at = self._clock()
        seq = self._log.append(to_record(fact, at=at, source=source))
        return Envelope(seq=seq, at=at, source=source, fact=fact)


def make_platform(config: Config, *, netns: str | None = None) -> Platform:
    """The platform the configuration names, acting on this host (or on `netns`, Linux)."""
    if config.daemon.platform == "openbsd":
        from reconciler.world.openbsd import OpenBSDPlatform
        from reconciler.world.runner import SubprocessRunner

        return OpenBSDPlatform(config, SubprocessRunner())
    from reconciler.world.linux import LinuxPlatform

    return LinuxPlatform(config, netns=netns)


def make_client(config: Config) -> TunnelbrokerClient:
    """The HE client for `config`: with several WANs on Linux every call leaves through the
    active one (its interface bound), so that HE sees the address the tunnel will use."""
    from reconciler.world.tunnelbroker import TunnelbrokerClient

    several = config.failover is not None
    # OpenBSD has no SO_BINDTODEVICE: there myip names the active WAN's address (behind NAT
    # several WANs are refused there, reconciler.configwans).
    device = config.wan.interface if several and config.daemon.platform == "linux" else None
    return TunnelbrokerClient(config.tunnelbroker, device=device)


def observe_wan(platform: Platform, sink: FactSink) -> Envelope:
    """The WAN interface: does it exist, is its link up, which IPv4 addresses it holds."""
    wan = platform.observe_wan()
    if wan.address is not None:
        _warn_once_about_carrier_nat(wan.interface, wan.address)
    fact = WanAddressObserved(
        interface=wan.interface,
        address=wan.address,
        link_up=wan.link_up,
        exists=wan.exists,
        addresses=wan.addresses,
        autoconf=wan.autoconf,
        default_route=wan.default_route,
        owner=wan.owner,
    )
    return sink.record(fact, "observer:wan")


_carrier_nat_warned: set[str] = set()
_carrier_nat_lock = threading.Lock()


def _warn_once_about_carrier_nat(interface: str, address: str) -> None:
    """A WAN address behind a carrier's NAT (100.64/10) is told once per address: the
    daemon will keep trying, and the operator should know why it cannot work."""
    if not is_carrier_nat(address):
        return
    with _carrier_nat_lock:
        if address in _carrier_nat_warned:
            return
        _carrier_nat_warned.add(address)
    _log.warning(
        "WAN %s has %s, an address behind the ISP's carrier-grade NAT (RFC 6598): 6in4 "
        "(IP protocol 41) does not cross a carrier's NAT, so the tunnel cannot work from "
        "here; ask the ISP for a public IPv4 address",
        interface,
        address,
    )


def observe_tunnel(platform: Platform, sink: FactSink) -> Envelope:
    """The tunnel interface as the kernel has it: exists, up, local and remote ends."""
    tunnel = platform.observe_tunnel()
    fact = TunnelObserved(
        interface=tunnel.interface,
        exists=tunnel.exists,
        up=tunnel.up,
        local=tunnel.local,
        remote=tunnel.remote,
        mode=tunnel.mode,
        ttl=tunnel.ttl,
        default_route=tunnel.default_route,
    )
    return sink.record(fact, "observer:tunnel")


def observe_probe(
    config: Config,
    family: str,
    sink: FactSink,
    *,
    netns: str | None = None,
    runner: CommandRunner | None = None,
) -> Envelope | None:
    """One ping of the family's probe target; None when no probe is configured for it.
    `ping` runs through `runner` (a SubprocessRunner when None)."""
    from reconciler.world.probe import ping

    probe = config.probes.get(family)
    if probe is None:
        return None
    source = probe.source
    if source is None and family == "ipv6":
        # The IPv6 probe must cross the tunnel: send it from the tunnel's client address.
        source = config.tunnel.client_ipv6
    if config.failover is not None and family == "ipv4" and config.daemon.platform == "openbsd":
        # with_active_wan names the active WAN's interface: OpenBSD's ping wants its address.
        source = _openbsd_wan_source(config, config.wan.interface, runner)
        if source is None:
            detail = f"{config.wan.interface} has no IPv4 address"
            fact = ProbeObserved(family="ipv4", target=probe.target, ok=False, detail=detail)
            return sink.record(fact, f"observer:probe:{family}")
    result = ping(
        probe.family,
        probe.target,
        timeout=probe.timeout,
        source=source,
        netns=netns,
        platform=config.daemon.platform,
        runner=runner,
    )
    fact = ProbeObserved(
        family=probe.family,
        target=probe.target,
        ok=result.ok,
        rtt_ms=result.rtt_ms,
        detail=result.detail,
    )
    return sink.record(fact, f"observer:probe:{family}")


def observe_wan_probes(
    config: Config,
    sink: FactSink,
    *,
    netns: str | None = None,
    runner: CommandRunner | None = None,
) -> list[Envelope]:
    """With several WANs: one IPv4 probe out of each (ping -I interface) to its own target,
    [probe.ipv4]'s timeout; nothing with one WAN."""
    return [
        observe_wan_probe(config, wan.interface, sink, netns=netns, runner=runner)
        for wan in (config.failover.wans if config.failover is not None else ())
    ]


def observe_wan_probe(
    config: Config,
    interface: str,
    sink: FactSink,
    *,
    netns: str | None = None,
    runner: CommandRunner | None = None,
) -> Envelope:
    """One IPv4 probe sent out of the WAN `interface` (several WANs only)."""
    from reconciler.world.probe import ping

    assert config.failover is not None
    wan = next(w for w in config.failover.wans if w.interface == interface)
    ipv4 = config.probes["ipv4"]
    target = wan.probe_target or ipv4.target
    source: str | None = interface
    if config.daemon.platform == "openbsd":
        source = _openbsd_wan_source(config, interface, runner)
    if source is None:
        fact = WanProbed(interface, target, False, None, f"{interface} has no IPv4 address")
        return sink.record(fact, f"observer:wan-probe:{interface}")
    result = ping(
        "ipv4",
        target,
        timeout=ipv4.timeout,
        source=source,
        netns=netns,
        platform=config.daemon.platform,
        runner=runner,
    )
    fact = WanProbed(interface, target, result.ok, result.rtt_ms, result.detail)
    return sink.record(fact, f"observer:wan-probe:{interface}")


def _openbsd_wan_source(config: Config, interface: str, runner: CommandRunner | None) -> str | None:
    """OpenBSD's `ping -I` takes a source address, not an interface: the WAN's tunnel
    address (the one it would carry the tunnel from); None when it has none. Leaving through
    that WAN is the routing's part (pf route-to from the address, docs/configuration.md)."""
    from reconciler.model.failover import with_active_wan
    from reconciler.world.openbsd import OpenBSDPlatform
    from reconciler.world.runner import SubprocessRunner

    platform = OpenBSDPlatform(with_active_wan(config, interface), runner or SubprocessRunner())
    addresses = platform.observe_wan().addresses
    return addresses[0] if addresses else None


def observe_hostname_file(config: Config, platform: Platform, sink: FactSink) -> Envelope | None:
    """The digest of the tunnel's hostname file; None when the config names no such file."""
    path = config.tunnel.hostname_file
    if path is None:
        return None
    content = platform.read_hostname_file()
    digest = hashlib.sha256(content).hexdigest() if content is not None else None
    return sink.record(HostnameFileObserved(path=str(path), digest=digest), "observer:hostname")


class _CallPacer:
    """When each key was last called, so a call comes no sooner than an interval after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, ...], float] = {}

    def take_turn(self, key: tuple[str, ...], interval: float, now: float) -> bool:
        """True (and `now` noted as the last call) when `interval` has passed since the
        last call for `key`, or there was none; False otherwise."""
        with self._lock:
            last = self._last.get(key)
            if last is not None and 0.0 <= now - last < interval:
                return False
            self._last[key] = now
            return True


# One per process: the daemon makes a new client on every reload, so the client cannot
# hold the time of the last tunnelInfo call.
_TUNNEL_INFO_CALLS = _CallPacer()


def observe_endpoint(
    config: Config,
    client: TunnelbrokerClient | None,
    sink: FactSink,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Envelope | None:
    """The client endpoint HE has (tunnelInfo.php), when configured and HE told us.

    HE is asked at most once per `min_update_interval` for a tunnel (see the module's
    docstring); a call within it is skipped and records nothing."""
    info_url = config.tunnelbroker.info_url
    if client is None or info_url is None:
        return None
    key = (info_url, config.tunnelbroker.tunnel_id)
    if not _TUNNEL_INFO_CALLS.take_turn(key, config.tunnelbroker.min_update_interval, clock()):
        _log.debug("tunnelInfo asked less than min_update_interval ago: not asked again")
        return None
    address = client.tunnel_info()
    if address is None:  # not known (HE unreachable or said nothing usable): record nothing
        return None
    return sink.record(EndpointObserved(address=address, source="tunnel-info"), "observer:he")


def observe_all(
    config: Config,
    log: Any,
    *,
    platform: Platform | None = None,
    client: TunnelbrokerClient | None = None,
    clock: Callable[[], float] = time.time,
    netns: str | None = None,
) -> list[Envelope]:
    """Run every observer once. `log` is an open writable EventLog or any FactSink (such as
    the daemon's Recorder); returns the recorded envelopes in order."""
    sink: FactSink = log if hasattr(log, "record") else LogSink(log, clock)
    platform = platform if platform is not None else make_platform(config, netns=netns)
    if client is None and config.tunnelbroker.info_url is not None:
        client = make_client(config)
    recorded: list[Envelope | None] = [
        observe_wan(platform, sink),
        observe_tunnel(platform, sink),
        observe_hostname_file(config, platform, sink),
        *(observe_probe(config, family, sink, netns=netns) for family in sorted(config.probes)),
        *observe_wan_probes(config, sink, netns=netns),
        observe_endpoint(config, client, sink),
    ]
    return [envelope for envelope in recorded if envelope is not None]
