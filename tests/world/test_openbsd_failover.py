"""Several WANs on OpenBSD, on the scripted host: a switch moves the gif's tunnel source and
pins a host route to HE's server via the active WAN's gateway; failback moves both back;
a host route to the server that reconciler did not make is left alone and said once."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import attrs
import pytest

from reconciler.daemon import Daemon
from reconciler.errors import TemporaryError
from reconciler.eventlog import EventLog
from reconciler.model.config import Config, FailoverConfig, ProbeConfig, WanConfig
from reconciler.model.facts import Envelope, Fact, ProbeObserved, WanChosen, WanProbed, from_record
from reconciler.model.failover import with_active_wan
from reconciler.model.hostname import render_hostname_file
from reconciler.testing import OpenBSDHost
from reconciler.testing.fake_he import FakeTunnelbroker
from reconciler.testing.openbsd_host import HostRoute
from reconciler.world.observers import make_client, observe_probe, observe_wan_probe
from reconciler.world.openbsd import ROUTE_LABEL, OpenBSDPlatform
from tests.daemon_helpers import HE_SERVER as HE_SERVER_STORY
from tests.daemon_helpers import TEST_KEY, openbsd_config
from tests.test_daemon import _wait_for
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
    # The active WAN's IPv4 probe too (with_active_wan names its interface as the source).
    active = with_active_wan(config, "em1")
    observe_probe(active, "ipv4", sink, runner=host)
    assert [c for c in host.calls if c[0] == "ping"][-1][-3:] == ("-I", WAN1, "192.0.2.53")
    assert isinstance(sink.facts[-1], ProbeObserved) and sink.facts[-1].ok
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


def test_story_em0s_upstream_breaks_then_heals(tmp_path: Path) -> None:
    """The daemon on the scripted host with two WANs: em0's ISP drops everything (link and
    address stay) -> one HE update to em1's address, the gif moved to it, the host route to
    HE's server via em1's gateway; em0 healthy again -> after failback_after, one update
    back, the gif on em0 and our host route gone."""
    wan0, gateway0 = "203.0.113.7", "203.0.113.1"
    host = OpenBSDHost(make_root(tmp_path), wan_address=wan0)
    host.default_routes["em0"] = gateway0
    host.add_wan("em1", WAN1, gateway=GATEWAY1)
    probe = ProbeConfig("ipv4", "9.9.9.9", interval=1, timeout=1, fail_after=2)
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        config = openbsd_config(tmp_path, update_url=fake.update_url, probes={"ipv4": probe})
        wans = (
            WanConfig(interface="em0", restart_command=None),
            WanConfig(interface="em1", restart_command=None),
        )
        failover = FailoverConfig(wans=wans, failback_after=2.0)
        config = attrs.evolve(config, wan=wans[0], failover=failover)
        log = EventLog.open(tmp_path / "events")
        daemon = Daemon(
            config,
            log,
            platform_factory=lambda c: OpenBSDPlatform(c, host, root=host.root),
            probe_runner=host,
        )
        thread = threading.Thread(target=lambda: daemon.run(install_signals=False))
        thread.start()

        def on(local: str) -> bool:
            tunnel = daemon.recorder.state.tunnel
            in_flight = any(r.in_flight for r in daemon.recorder.state.actions.values())
            return (
                tunnel is not None and tunnel.local == local and tunnel.up and not in_flight
            ) and fake.endpoint == local

        try:
            _wait_for(lambda: on(wan0), timeout=15)
            assert host.host_routes == {}
            updates = fake.stats()["counts"]["update"]
            host.upstream_broken.add("em0")
            _wait_for(lambda: on(WAN1), timeout=15)
            assert _tunnel(host) == (WAN1, HE_SERVER_STORY)
            assert host.host_routes == {HE_SERVER_STORY: HostRoute(GATEWAY1, ROUTE_LABEL)}
            assert fake.stats()["counts"]["update"] == updates + 1
            host.upstream_broken.clear()
            _wait_for(lambda: on(wan0), timeout=15)
            assert _tunnel(host) == (wan0, HE_SERVER_STORY)
            assert host.host_routes == {}
            assert fake.stats()["counts"]["update"] == updates + 2
        finally:
            daemon.request_stop("test over")
            thread.join(10)
            log.close()
    with EventLog.open(tmp_path / "events") as reread:
        facts = [from_record(seq, record).fact for seq, record in reread.read(1)]
    chosen = [(f.kind, f.interface) for f in facts if isinstance(f, WanChosen)]
    assert chosen == [("failover", "em1"), ("failback", "em0")]
