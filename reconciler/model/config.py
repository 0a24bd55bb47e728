"""The configuration: typed, validated all-or-nothing from `etc/reconciler.conf` (TOML).

The classes below are the contract the rest of the program reads. The update key itself is
never part of a Config: only the path of the file that holds it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from attrs import field, frozen

__all__ = [
    "Config",
    "DaemonConfig",
    "FailoverConfig",
    "FirewallConfig",
    "MetricsConfig",
    "NotifyConfig",
    "ProbeConfig",
    "ReconcileConfig",
    "TunnelConfig",
    "TunnelbrokerConfig",
    "WanConfig",
    "interface_name_problem",
]

PlatformName = Literal["openbsd", "linux"]
LogTarget = Literal["syslog", "stderr"]
PublicAddress = Literal["interface", "tunnelbroker"]
TunnelMode = Literal["gif", "sit", "vxlan"]
TunnelOwner = Literal["reconciler", "networkd", "networkmanager", "ifupdown"]
TunnelLocal = Literal["wan", "any"]
NETWORKD_DIR = Path("/etc/systemd/network")
IFUPDOWN_FILE = Path("/etc/network/interfaces")


@frozen
class DaemonConfig:
    platform: PlatformName
    state_dir: Path
    log: LogTarget
    watch_kernel: bool = True  # kernel change notifications; False means polling only
    retain_days: float = 0.0  # drop log segments older than this, once a snapshot covers them
    retain_mb: float = 0.0  # ... or while the log is larger than this (0: keep everything)
    # Observations that change nothing are counted and the counts recorded at most this
    # often (seconds); 0 records every observation (reconciler.recorder).
    quiet_summary_interval: float = 3600.0


@frozen
class WanConfig:
    interface: str
    restart_command: tuple[str, ...] | None  # None: the platform's own way
    public_address: PublicAddress = "interface"
    # A DHCP WAN (OpenBSD `inet autoconf`) may lack its address or link for a DHCP exchange:
    # restart-wan waits this many seconds first.
    dhcp_grace: float = 30.0
    # With several IPv4 addresses on the WAN: the tunnel's is the one in this network (CIDR);
    # None: the DHCP lease, else the first the kernel lists.
    address_in: str | None = None
    # With several WANs ([[wan]]): the IPv4 probe's target sent out of this WAN (ping -I);
    # None: probe.ipv4.target.
    probe_target: str | None = None


@frozen
class FailoverConfig:
    """Several WANs ([[wan]] tables, in priority order) and the failover policy's bounds
    (reconciler.model.failover). The probe interval, timeout, fail_after and recover_after
    of each WAN's probe are [probe.ipv4]'s."""

    wans: tuple[WanConfig, ...]
    failback_after: float = 600.0  # the preferred WAN healthy this long before failing back
    budget_per_hour: int = 4  # switches of the tunnel (each an HE update) within an hour


@frozen
class ProbeConfig:
    family: Literal["ipv4", "ipv6"]
    target: str
    interval: float = 60.0
    timeout: float = 1.0
    fail_after: int = 3
    recover_after: int = 1
    source: str | None = None  # ipv6: the tunnel's client address by default


@frozen
class TunnelConfig:
    interface: str
    mode: TunnelMode
    server_ipv4: str
    client_ipv6: str
    server_ipv6: str
    prefixlen: int = 128
    mtu: int = 1480
    ttl: int = 255
    hostname_file: Path | None = None  # openbsd
    vxlan_id: int | None = None  # vxlan only
    vxlan_port: int | None = None  # vxlan only
    observe_interval: float = 30.0
    # Linux: who keeps the tunnel's persistent config, told the new local end
    # (reconciler.world.tunnel_owner); "reconciler": nobody, the link is ours.
    owner: TunnelOwner = "reconciler"
    # "wan": the link's local end is the WAN address; "any": 0.0.0.0, left alone (the
    # kernel picks the source), HE still updated and the tunnel watched.
    local: TunnelLocal = "wan"
    networkd_dir: Path = NETWORKD_DIR
    ifupdown_file: Path = IFUPDOWN_FILE
    nm_connection: str | None = None  # None: the tunnel's interface name


@frozen
class TunnelbrokerConfig:
    tunnel_id: str
    username: str
    update_key_file: Path
    update_url: str = "https://ipv4.tunnelbroker.net/nic/update"
    info_url: str | None = None  # tunnelInfo.php, optional
    min_update_interval: float = 600.0
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    ca_file: Path | None = None  # a private CA (tests); the system's store otherwise


@frozen
class FirewallConfig:
    reload_command: tuple[str, ...] = ()  # () for no firewall step


@frozen
class ReconcileConfig:
    """Backoff and give-up bounds (monit's "N restarts within M cycles")."""

    backoff_min: float = 5.0
    backoff_max: float = 3600.0
    restart_limit: int = 5  # restarts of one kind that did not help ...
    restart_window: float = 900.0  # ... within this many seconds: stop and report
    # The ceiling of the back-off after trouble at HE's server (5xx, 911, time-outs): from
    # backoff_min, doubling with each update in a row that met trouble, up to this.
    he_backoff_max: float = 600.0


@frozen
class NotifyConfig:
    """[notify]: the hook run for each notification (reconciler.model.notices)."""

    command: tuple[str, ...] = ()  # an argv with an absolute program path; () for no hook
    events: frozenset[str] = frozenset()  # the events to run it for; empty: all of them
    timeout: float = 30.0  # then the hook is killed


@frozen
class MetricsConfig:
    """[metrics]: Prometheus exposition, as a node_exporter textfile and/or over HTTP."""

    textfile: Path | None = None
    listen: tuple[str, int] | None = None  # (address, port)
    listen_public: bool = False  # a listen address other than loopback needs this


@frozen
class Config:
    path: Path
    digest: str  # changes when the file or the key file changes; no secret in it
    daemon: DaemonConfig
    wan: WanConfig
    probes: dict[str, ProbeConfig] = field(hash=False)  # "ipv4", "ipv6"
    tunnel: TunnelConfig
    tunnelbroker: TunnelbrokerConfig
    firewall: FirewallConfig
    reconcile: ReconcileConfig = ReconcileConfig()
    notify: NotifyConfig = NotifyConfig()
    metrics: MetricsConfig = MetricsConfig()
    # Two WANs or more; None for one. `wan` is then the WAN the tunnel uses: the first in the
    # file, and in the daemon the active one (reconciler.model.failover.with_active_wan).
    failover: FailoverConfig | None = None

    def summary(self) -> dict[str, Any]:
        """A flat, secret-free description for ConfigLoaded facts and `status`."""
        several = {}
        if self.failover is not None:
            several = {"wan.interfaces": ",".join(w.interface for w in self.failover.wans)}
        return {
            "platform": self.daemon.platform,
            "wan.interface": self.wan.interface,
            "wan.public_address": self.wan.public_address,
            "tunnel.interface": self.tunnel.interface,
            "tunnel.mode": self.tunnel.mode,
            "tunnel.server_ipv4": self.tunnel.server_ipv4,
            "tunnel.client_ipv6": self.tunnel.client_ipv6,
            "tunnelbroker.tunnel_id": self.tunnelbroker.tunnel_id,
            "tunnelbroker.username": self.tunnelbroker.username,
            "tunnelbroker.min_update_interval": self.tunnelbroker.min_update_interval,
            **{f"probe.{f}.target": p.target for f, p in sorted(self.probes.items())},
            **several,
        }


# IFNAMSIZ is 16 on Linux and OpenBSD, the terminating NUL included: 15 bytes of name.
IFNAMSIZ = 16
# What both kernels accept and no tool mistakes for something else: ASCII letters, digits,
# "-", "_" and "."; the first a letter or a digit (so never ".", "..", or "-x", which
# ip(8) and ifconfig(8) would read as an option). Linux refuses "/", ":" and whitespace.
_PORTABLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# OpenBSD names an interface after its driver and a unit number (em0, gif0, vlan100); the
# ifconfig parser (reconciler.world.openbsd_text) reads exactly this shape.
_OPENBSD_NAME = re.compile(r"[a-z]+[0-9]+")
OPENBSD_TUNNEL_NAME = re.compile(r"gif[0-9]+")


def interface_name_problem(name: str, platform: str | None) -> str | None:
    """Why the kernel of `platform` (None: either) would refuse `name`, or None."""
    if not name.isascii():
        return "is not ASCII (interface names are ASCII letters, digits, '-', '_', '.')"
    if len(name) > IFNAMSIZ - 1:
        return f"is {len(name)} bytes long, at most {IFNAMSIZ - 1} fit (IFNAMSIZ)"
    if _PORTABLE_NAME.fullmatch(name) is None:
        return "must be ASCII letters, digits, '-', '_' or '.', starting with a letter or digit"
    if platform == "openbsd" and _OPENBSD_NAME.fullmatch(name) is None:
        return "is not an OpenBSD interface name (a driver and a unit number: em0, gif0)"
    return None


# load_config(path) -> Config and find_config_path(cli_value, environ, cwd) live in
# reconciler/configfile.py (this module does no I/O).
