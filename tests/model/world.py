"""Plain-value builders for model tests: a Config, envelopes, and a state folded from facts."""

from __future__ import annotations

from pathlib import Path

from reconciler.model.config import (
    Config,
    DaemonConfig,
    FirewallConfig,
    ProbeConfig,
    ReconcileConfig,
    TunnelbrokerConfig,
    TunnelConfig,
    WanConfig,
)
from reconciler.model.desired import DesiredState, desired
from reconciler.model.facts import ConfigLoaded, Envelope, Fact
from reconciler.model.plan import Plan, plan
from reconciler.model.state import ObservedState, fold

__all__ = ["HE_SERVER", "T0", "History", "make_config"]

HE_SERVER = "198.51.100.1"
T0 = 1_700_000_000.0


def make_config(
    *,
    digest: str = "d1" * 32,
    public_address: str = "interface",
    hostname_file: str | None = "/etc/hostname.gif0",
    reload_command: tuple[str, ...] = ("pfctl", "-f", "/etc/pf.conf"),
    min_update_interval: float = 600.0,
    reconcile: ReconcileConfig | None = None,
) -> Config:
    """The original OpenBSD setup as a Config value, with lab addresses."""
    return Config(
        path=Path("/etc/reconciler.conf"),
        digest=digest,
        daemon=DaemonConfig("openbsd", Path("/var/db/reconciler"), "stderr"),
        wan=WanConfig("em0", None, public_address),  # type: ignore[arg-type]
        probes={
            "ipv4": ProbeConfig("ipv4", "198.51.100.53"),
            "ipv6": ProbeConfig("ipv6", "2001:db8::53"),
        },
        tunnel=TunnelConfig(
            "gif0",
            "gif",
            HE_SERVER,
            "2001:db8:1f06:abc::2",
            "2001:db8:1f06:abc::1",
            hostname_file=Path(hostname_file) if hostname_file else None,
        ),
        tunnelbroker=TunnelbrokerConfig(
            "123456", "example", Path("/etc/key"), min_update_interval=min_update_interval
        ),
        firewall=FirewallConfig(reload_command),
        reconcile=reconcile or ReconcileConfig(),
    )


def config_loaded(config: Config) -> ConfigLoaded:
    return ConfigLoaded(
        digest=config.digest,
        path=str(config.path),
        fail_after={f: p.fail_after for f, p in config.probes.items()},
        recover_after={f: p.recover_after for f, p in config.probes.items()},
    )


class History:
    """A growing log in memory: record facts at times, fold them, and plan."""

    def __init__(self, config: Config | None = None, *, loaded: bool = True) -> None:
        self.config = config or make_config()
        self.state = ObservedState()
        self.envelopes: list[Envelope] = []
        self.now = T0
        if loaded:
            self.record(config_loaded(self.config))

    def record(self, fact: Fact, *, after: float = 1.0) -> int:
        self.now += after
        envelope = Envelope(seq=len(self.envelopes) + 1, at=self.now, source="test", fact=fact)
        self.envelopes.append(envelope)
        self.state = fold(self.state, envelope)
        return envelope.seq

    def desired(self) -> DesiredState:
        return desired(self.config, self.state)

    def plan(self, *, later: float = 0.0) -> Plan:
        return plan(self.desired(), self.state, self.now + later)

    def kinds(self, *, later: float = 0.0) -> list[str]:
        return [a.KIND for a in self.plan(later=later).actions]
