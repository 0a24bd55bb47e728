"""Tests for reconciler.world.observers against the scripted OpenBSD host and real ping."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import attrs
import pytest

from reconciler.eventlog import EventLog
from reconciler.model.config import ProbeConfig
from reconciler.model.facts import (
    EndpointObserved,
    HostnameFileObserved,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
    from_record,
)
from reconciler.recorder import Recorder
from reconciler.testing.fake_he import FakeTunnelbroker
from reconciler.testing.openbsd_host import OpenBSDHost
from reconciler.world import observers
from reconciler.world.openbsd import OpenBSDPlatform
from reconciler.world.tunnelbroker import TunnelbrokerClient
from tests.daemon_helpers import TEST_KEY, openbsd_config


@pytest.fixture
def host(tmp_path: Path) -> OpenBSDHost:
    (tmp_path / "root" / "etc").mkdir(parents=True)
    return OpenBSDHost(tmp_path / "root", wan_address="203.0.113.7")


def test_observe_wan_records_one_fact_with_its_source(tmp_path: Path, host: OpenBSDHost) -> None:
    """The WAN observer records the interface's address and link state as one fact."""
    config = openbsd_config(tmp_path, update_url="http://127.0.0.1:9/nic/update")
    platform = OpenBSDPlatform(config, host, root=host.root)
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log)
        envelope = observers.observe_wan(platform, recorder)
        assert envelope.source == "observer:wan"
        assert envelope.fact == WanAddressObserved(
            interface="em0", address="203.0.113.7", link_up=True, addresses=("203.0.113.7",)
        )
        host.remove_addresses("em0")
        second = observers.observe_wan(platform, recorder)
        assert isinstance(second.fact, WanAddressObserved)
        assert second.fact.address is None
        assert recorder.last_seq == 2  # an observation is recorded every time


def test_observe_tunnel_and_hostname_file(tmp_path: Path, host: OpenBSDHost) -> None:
    """A missing tunnel and hostname file are facts too; a written file's digest is sha256."""
    config = openbsd_config(tmp_path, update_url="http://127.0.0.1:9/nic/update")
    platform = OpenBSDPlatform(config, host, root=host.root)
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log)
        tunnel = observers.observe_tunnel(platform, recorder)
        assert isinstance(tunnel.fact, TunnelObserved) and not tunnel.fact.exists
        missing = observers.observe_hostname_file(config, platform, recorder)
        assert missing is not None
        assert missing.fact == HostnameFileObserved(path="/etc/hostname.gif0", digest=None)
        host.hostname_path("gif0").write_text("tunnel 203.0.113.7 198.51.100.1\nup\n")
        present = observers.observe_hostname_file(config, platform, recorder)
        assert present is not None and isinstance(present.fact, HostnameFileObserved)
        expected = hashlib.sha256(b"tunnel 203.0.113.7 198.51.100.1\nup\n").hexdigest()
        assert present.fact.digest == expected


def test_probe_records_success_and_failure_with_rtt(tmp_path: Path) -> None:
    """An IPv4 probe of loopback succeeds with an rtt; an IPv6 probe from an absent source
    address fails and says why."""
    probes = {
        "ipv4": ProbeConfig(family="ipv4", target="127.0.0.1", interval=5, timeout=1),
        "ipv6": ProbeConfig(family="ipv6", target="::1", interval=5, timeout=1),
    }
    config = openbsd_config(tmp_path, update_url="http://127.0.0.1:9/nic/update", probes=probes)
    linux = _as_linux(config)
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log)
        ok = observers.observe_probe(linux, "ipv4", recorder)
        assert ok is not None and ok.source == "observer:probe:ipv4"
        assert isinstance(ok.fact, ProbeObserved)
        assert ok.fact.ok and ok.fact.rtt_ms is not None and ok.fact.target == "127.0.0.1"
        failed = observers.observe_probe(linux, "ipv6", recorder)  # source: the tunnel address
        assert failed is not None and isinstance(failed.fact, ProbeObserved)
        assert not failed.fact.ok and failed.fact.rtt_ms is None and failed.fact.detail


def test_observe_endpoint_reads_tunnel_info_from_he(tmp_path: Path) -> None:
    """With info_url set, HE's client endpoint (tunnelInfo.php) becomes an EndpointObserved."""
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        config = openbsd_config(tmp_path, update_url=fake.update_url, info_url=fake.info_url)
        client = TunnelbrokerClient(config.tunnelbroker)
        with EventLog.open(tmp_path / "events") as log:
            recorder = Recorder(log)
            envelope = observers.observe_endpoint(config, client, recorder)
            assert envelope is not None
            assert envelope.fact == EndpointObserved(address="203.0.113.5", source="tunnel-info")
            assert envelope.source == "observer:he"
        client.close()


def test_tunnel_info_is_asked_at_most_once_per_min_update_interval(
    tmp_path: Path, host: OpenBSDHost
) -> None:
    """However often everything is observed (start-up, reloads, desyncs) and the "he" job
    runs, HE's tunnelInfo is asked once per min_update_interval: the fake HE counts it."""
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        config = openbsd_config(tmp_path, update_url=fake.update_url, info_url=fake.info_url)
        config = attrs.evolve(
            config,
            tunnelbroker=attrs.evolve(config.tunnelbroker, min_update_interval=600.0),
        )
        platform = OpenBSDPlatform(config, host, root=host.root)
        client = TunnelbrokerClient(config.tunnelbroker)
        now = time.monotonic()
        try:
            with EventLog.open(tmp_path / "events") as log:
                recorder = Recorder(log)
                first = observers.observe_endpoint(config, client, recorder, clock=lambda: now)
                assert first is not None and fake.counts["info"] == 1
                for _ in range(5):  # a dead route monitor: a desync every 5 s
                    observers.observe_all(config, recorder, platform=platform, client=client)
                later = observers.observe_endpoint(
                    config, client, recorder, clock=lambda: now + 599.0
                )
                assert later is None and fake.counts["info"] == 1
                due = observers.observe_endpoint(
                    config, client, recorder, clock=lambda: now + 601.0
                )
                assert due is not None and fake.counts["info"] == 2
                kinds = [type(from_record(*item).fact).__name__ for item in log.read(1)]
                assert kinds.count("EndpointObserved") == 2
        finally:
            client.close()


def test_observe_endpoint_without_info_url_records_nothing(tmp_path: Path) -> None:
    """No info_url: HE is not asked and no fact is recorded."""
    config = openbsd_config(tmp_path, update_url="http://127.0.0.1:9/nic/update")
    with EventLog.open(tmp_path / "events") as log:
        assert observers.observe_endpoint(config, None, Recorder(log)) is None
        assert log.last_seq == 0


def test_observe_all_appends_every_observation_to_an_open_log(
    tmp_path: Path, host: OpenBSDHost
) -> None:
    """observe_all(config, log) runs each observer once and appends its facts to the log."""
    config = openbsd_config(tmp_path, update_url="http://127.0.0.1:9/nic/update")
    platform = OpenBSDPlatform(config, host, root=host.root)
    with EventLog.open(tmp_path / "events") as log:
        envelopes = observers.observe_all(config, log, platform=platform, clock=lambda: 42.0)
        kinds = [type(e.fact).__name__ for e in envelopes]
        assert kinds == ["WanAddressObserved", "TunnelObserved", "HostnameFileObserved"]
        stored = [from_record(seq, record) for seq, record in log.read(1)]
        assert stored == envelopes
        assert all(e.at == 42.0 for e in stored)


def _as_linux(config):  # type: ignore[no-untyped-def]
    """The same config on the Linux platform, so probes use this host's ping argv."""
    import attrs

    return attrs.evolve(config, daemon=attrs.evolve(config.daemon, platform="linux"))


def test_a_carrier_nat_address_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A WAN address in 100.64/10 (a carrier's NAT) gets one warning saying why 6in4 cannot
    work, however often it is observed; a private RFC 1918 address gets none."""
    config = openbsd_config(tmp_path, update_url="http://127.0.0.1:9/nic/update")
    (tmp_path / "root" / "etc").mkdir(parents=True)
    host = OpenBSDHost(tmp_path / "root", wan_address="100.64.12.34")
    platform = OpenBSDPlatform(config, host, root=host.root)
    with EventLog.open(tmp_path / "events") as log, caplog.at_level("WARNING"):
        recorder = Recorder(log)
        for _ in range(3):
            observers.observe_wan(platform, recorder)
        host.set_address("em0", "192.168.1.20")
        observers.observe_wan(platform, recorder)
    warnings = [r.getMessage() for r in caplog.records if "carrier-grade NAT" in r.getMessage()]
    assert len(warnings) == 1
    assert "100.64.12.34" in warnings[0] and "protocol 41" in warnings[0]
