"""The desired state: what the network should look like, given the config and the WAN address.

Only the WAN address comes from the observed state (the tunnel must follow it, and so must
HE's endpoint and the hostname file); everything else is the configuration. Pure.
"""

from __future__ import annotations

from attrs import frozen

from reconciler.model.addresses import is_public_ipv4
from reconciler.model.config import Config, ReconcileConfig
from reconciler.model.hostname import digest_of, render_hostname_file
from reconciler.model.state import ObservedState

__all__ = ["DesiredHostnameFile", "DesiredState", "desired"]


@frozen
class DesiredHostnameFile:
    path: str
    content: str
    digest: str


@frozen
class DesiredState:
    """What should be true. `local` is None while the WAN has no address."""

    config_digest: str
    wan_interface: str
    public_address: str  # "interface" | "tunnelbroker"
    local: str | None  # the WAN address: the tunnel's local end
    myip: str | None  # what to send HE as myip (None: HE takes the request's source)
    tunnel_interface: str
    tunnel_remote: str  # HE's end
    hostname_file: DesiredHostnameFile | None
    reload_firewall: bool
    min_update_interval: float
    reconcile: ReconcileConfig
    tunnel_ttl: int = 255  # of the encapsulating IPv4 packets
    tunnel_local: str = "wan"  # "any": the link's local end is left alone (tunnel.local)
    dhcp_grace: float = 0.0  # restart-wan waits this long for a DHCP WAN's own client


def desired(config: Config, observed: ObservedState) -> DesiredState:
    """The desired state for `config` with the WAN address `observed` last saw."""
    wan = observed.wan
    local = wan.address if wan is not None and wan.exists else None
    myip = None
    if local is not None and config.wan.public_address == "interface" and is_public_ipv4(local):
        myip = local
    hostname = None
    if config.tunnel.hostname_file is not None and local is not None:
        content = render_hostname_file(config.tunnel, local)
        hostname = DesiredHostnameFile(
            path=str(config.tunnel.hostname_file),
            content=content,
            digest=digest_of(content.encode()),
        )
    return DesiredState(
        config_digest=config.digest,
        wan_interface=config.wan.interface,
        public_address=config.wan.public_address,
        local=local,
        myip=myip,
        tunnel_interface=config.tunnel.interface,
        tunnel_remote=config.tunnel.server_ipv4,
        hostname_file=hostname,
        reload_firewall=bool(config.firewall.reload_command),
        min_update_interval=config.tunnelbroker.min_update_interval,
        reconcile=config.reconcile,
        tunnel_ttl=config.tunnel.ttl,
        tunnel_local=config.tunnel.local,
        dhcp_grace=config.wan.dhcp_grace,
    )
