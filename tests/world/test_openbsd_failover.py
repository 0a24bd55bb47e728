"""Several WANs on OpenBSD, on the scripted host: a switch moves the gif's tunnel source and
pins a host route to HE's server via the active WAN's gateway; failback moves both back;
a host route to the server that reconciler did not make is left alone and said once."""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import pytest

from reconciler.errors import TemporaryError
from reconciler.model.config import Config, FailoverConfig, ProbeConfig, WanConfig
from reconciler.model.facts import Envelope, Fact, WanProbed
from reconciler.model.failover import with_active_wan
from reconciler.model.hostname import render_hostname_file
from reconciler.testing import OpenBSDHost
from reconciler.testing.openbsd_host import HostRoute
from reconciler.world.observers import make_client, observe_wan_probe
from reconciler.world.openbsd import ROUTE_LABEL, OpenBSDPlatform
from tests.world.test_openbsd import HE_SERVER, TUNNEL, make_config, make_root

WAN0, GATEWAY0 = "198.51.100.7", "198.51.100.1"
WAN1, GATEWAY1 = "192.0.2.10", "192.0.2.1"


@pytest.fixture
def host(tmp_path: Path) -> OpenBSDHost:
    host = OpenBSDHost(make_root(tmp_path), wan_address=WAN0)
    host.default_routes["em0"] = GATEWAY0
    host.add_wan("em1", WAN1, gateway=GATEWAY1)
    return host


def _config(tmp_path: Path) -> Config:
    config = make_config(tmp_path)
    wans = (
        WanConfig(interface="em0", restart_command=None),
        WanConfig(interface="em1", restart_command=None, probe_target="192.0.2.53"),
    )
    return attrs.evolve(config, wan=wans[0], failover=FailoverConfig(wans=wans))


def _switch(tmp_path: Path, host: OpenBSDHost, interface: str, local: str) -> OpenBSDPlatform:
    """What the daemon does on a switch: a platform for the active WAN, the hostname file
    for its address, and the tunnel's restart."""
    platform = OpenBSDPlatform(with_active_wan(_config(tmp_path), interface), host, root=host.root)
    platform.write_hostname_file(render_hostname_file(TUNNEL, local))
    platform.restart_tunnel(local, HE_SERVER)
    return platform


class _ListSink:
    def __init__(self) -> None:
        self.facts: list[Fact] = []

    def record(self, fact: Fact, source: str) -> Envelope:
        self.facts.append(fact)
        return Envelope(seq=len(self.facts), at=0.0, source=source, fact=fact)


def _route_edits(calls: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [
        c for c in calls if c[:1] == ("route",) and c[2:3] in (("add",), ("change",), ("delete",))
    ]


def _tunnel(host: OpenBSDHost) -> tuple[str, str] | None:
    return host.interfaces["gif0"].tunnel


def test_a_switch_moves_the_source_and_pins_the_route_and_failback_undoes_both(
    tmp_path: Path, host: OpenBSDHost
) -> None:
    _switch(tmp_path, host, "em0", WAN0)
    assert _tunnel(host) == (WAN0, HE_SERVER)
    assert host.host_routes == {}  # on the first WAN the ordinary table rules

    _switch(tmp_path, host, "em1", WAN1)
    assert _tunnel(host) == (WAN1, HE_SERVER)
    assert host.host_routes == {HE_SERVER: HostRoute(GATEWAY1, ROUTE_LABEL)}
    assert f"tunnel {WAN1} {HE_SERVER}" in host.hostname_path("gif0").read_text()

    _switch(tmp_path, host, "em0", WAN0)
    assert _tunnel(host) == (WAN0, HE_SERVER)
    assert host.host_routes == {}
    deletes = [c for c in host.calls if c[:3] == ("route", "-n", "delete")]
    assert deletes == [("route", "-n", "delete", "-inet", "-host", HE_SERVER)]


def test_our_route_to_another_gateway_is_changed(tmp_path: Path, host: OpenBSDHost) -> None:
    """Our route left pointing elsewhere (em1's gateway moved): `route change`, not add."""
    host.host_routes[HE_SERVER] = HostRoute("192.0.2.254", ROUTE_LABEL)
    _switch(tmp_path, host, "em1", WAN1)
    assert host.host_routes == {HE_SERVER: HostRoute(GATEWAY1, ROUTE_LABEL)}
    changes = [c for c in host.calls if c[:3] == ("route", "-n", "change")]
    assert len(changes) == 1
    # Nothing more once it is right.
    calls = len(host.calls)
    _switch(tmp_path, host, "em1", WAN1)
    assert _route_edits(host.calls[calls:]) == []


def test_a_dhcp_wans_gateway_comes_from_its_lease(tmp_path: Path, host: OpenBSDHost) -> None:
    """dhcpleased owns em1: the lease's default gateway, no default route needed."""
    del host.default_routes["em1"]
    host.interfaces["em1"].flags.add("AUTOCONF4")
    host.interfaces["em1"].lease = WAN1
    _switch(tmp_path, host, "em1", WAN1)
    assert host.host_routes == {HE_SERVER: HostRoute(GATEWAY1, ROUTE_LABEL)}


def test_a_wan_without_a_gateway_fails_the_restart_before_moving_the_gif(
    tmp_path: Path, host: OpenBSDHost
) -> None:
    _switch(tmp_path, host, "em0", WAN0)
    del host.default_routes["em1"]
    with pytest.raises(TemporaryError, match="no gateway for em1"):
        _switch(tmp_path, host, "em1", WAN1)
    assert _tunnel(host) == (WAN0, HE_SERVER)  # the next pass repeats the restart
    assert host.host_routes == {}


def test_a_host_route_we_did_not_make_is_left_alone_and_said_once(
    tmp_path: Path, host: OpenBSDHost, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = HostRoute("198.51.100.254")
    host.host_routes[HE_SERVER] = theirs
    caplog.set_level(logging.WARNING, logger="reconciler.world.openbsd")
    platform = _switch(tmp_path, host, "em1", WAN1)
    platform.restart_tunnel(WAN1, HE_SERVER)
    assert _tunnel(host) == (WAN1, HE_SERVER)
    _switch(tmp_path, host, "em0", WAN0)  # failback deletes nothing of theirs either
    assert host.host_routes == {HE_SERVER: theirs}
    assert _route_edits(host.calls) == []
    said = [r.getMessage() for r in caplog.records if "did not make" in r.getMessage()]
    # Once per platform (the daemon builds one per switch): em1's twice-restarted one once.
    assert len(said) == 2
    assert said[0].startswith(f"a host route to {HE_SERVER} via 198.51.100.254 exists")


def test_a_wan_probe_on_openbsd_is_sent_from_the_wans_address(
    tmp_path: Path, host: OpenBSDHost
) -> None:
    """OpenBSD's ping -I takes an address: the WAN's, not its name."""
    config = attrs.evolve(_config(tmp_path), probes={"ipv4": ProbeConfig("ipv4", "9.9.9.9")})
    sink = _ListSink()
    observe_wan_probe(config, "em1", sink, runner=host)
    pings = [c for c in host.calls if c[0] == "ping"]
    assert pings == [("ping", "-c", "1", "-w", "1", "-I", WAN1, "192.0.2.53")]
    host.remove_addresses("em1")
    fact = observe_wan_probe(config, "em1", sink, runner=host).fact
    assert isinstance(fact, WanProbed)
    assert (fact.ok, fact.detail) == (False, "em1 has no IPv4 address")


def test_the_he_client_is_not_bound_to_a_device_on_openbsd(tmp_path: Path) -> None:
    """OpenBSD has no SO_BINDTODEVICE (binding would fail every update there): myip names
    the active WAN's address instead; on Linux the client stays bound to the active WAN."""
    config = with_active_wan(_config(tmp_path), "em1")
    adapter = make_client(config)._session.get_adapter("https://tunnelbroker.net/")
    assert getattr(adapter, "_device", "missing") is None
    linux = attrs.evolve(config, daemon=attrs.evolve(config.daemon, platform="linux"))
    adapter = make_client(linux)._session.get_adapter("https://tunnelbroker.net/")
    assert getattr(adapter, "_device", "missing") == "em1"
