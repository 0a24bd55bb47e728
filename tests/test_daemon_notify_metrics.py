"""The daemon's [notify] and [metrics] wiring, in process over the scripted OpenBSD host and
the fake HE: a taken /metrics address stops `run` before anything is recorded and makes a
reload refuse (the old endpoint keeps answering), a reload moves the endpoint and the hook,
and every fact the daemon records is counted in what it serves."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.daemon import Daemon
from reconciler.errors import ConfigError
from reconciler.eventlog import EventLog, SnapshotStore
from reconciler.model.config import Config, MetricsConfig, NotifyConfig
from reconciler.model.facts import ConfigLoaded, HookRan, from_record
from reconciler.testing.fake_he import FakeTunnelbroker
from reconciler.testing.openbsd_host import OpenBSDHost
from reconciler.world.openbsd import OpenBSDPlatform
from reconciler.world.tunnelbroker import TunnelbrokerClient
from tests.daemon_helpers import TEST_KEY, openbsd_config
from tests.test_daemon import _openbsd_host, _wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def answers(port: int) -> bool:
    try:
        scrape(port)
    except (urllib.error.URLError, ConnectionError):
        return False
    return True


class World:
    def __init__(
        self,
        tmp_path: Path,
        fake: FakeTunnelbroker,
        host: OpenBSDHost,
        textfile: Path | None = None,
    ) -> None:
        base = openbsd_config(tmp_path, update_url=fake.update_url)
        self.port = free_port()
        self.config = attrs.evolve(
            base, metrics=MetricsConfig(textfile, listen=("127.0.0.1", self.port))
        )
        self.loads: list[Config] = []
        self.log = EventLog.open(tmp_path / "events")
        self.daemon = Daemon(
            self.config,
            self.log,
            snapshots=SnapshotStore(tmp_path / "snapshots"),
            platform_factory=lambda c: OpenBSDPlatform(c, host, root=host.root),
            config_loader=lambda path: self.loads.pop(0),
            client_factory=lambda c: TunnelbrokerClient(c.tunnelbroker),
        )
        self.status: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.status.append(self.daemon.run(install_signals=False))
        )

    def facts(self) -> list:  # type: ignore[type-arg]
        return [from_record(seq, record).fact for seq, record in self.log.read(1)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    host = _openbsd_host(tmp_path)
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        built = World(tmp_path, fake, host)
        try:
            yield built
        finally:
            if built.thread.is_alive():
                built.daemon.request_stop("test over")
                built.thread.join(10)
            built.log.close()


def test_a_taken_listen_address_stops_run_before_anything_is_recorded(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", world.port))
        taken.listen()
        with pytest.raises(ConfigError) as raised:
            world.daemon.run(install_signals=False)
    (problem,) = raised.value.problems
    assert f"metrics.listen: 127.0.0.1:{world.port}" in problem and "in use" in problem
    assert world.facts() == []


def test_served_metrics_count_what_the_daemon_records_and_a_reload_moves_them(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world.thread.start()
    _wait_for(lambda: world.daemon.recorder.state.tunnel is not None)
    got = scrape(world.port)
    assert got["reconciler_log_last_seq[]"] >= 3
    assert got["reconciler_notifications_total[('event', 'daemon-started')]"] == 1
    # a reload to a taken address is refused whole; the old endpoint keeps answering
    other = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", other))
        taken.listen()
        world.loads.append(
            attrs.evolve(
                world.config,
                digest="e" * 64,
                metrics=MetricsConfig(listen=("127.0.0.1", other)),
            )
        )
        with caplog.at_level(logging.ERROR, logger="reconciler.daemon"):
            world.daemon.request_reload()
            _wait_for(lambda: "metrics.listen" in caplog.text)
    assert f"metrics.listen: 127.0.0.1:{other}" in caplog.text
    assert world.daemon.config is world.config
    assert sum(isinstance(f, ConfigLoaded) for f in world.facts()) == 1
    assert scrape(world.port)["reconciler_log_last_seq[]"] > 0
    # a good reload: the endpoint moves, and a hook added now runs for the next notification
    ran = tmp_path / "ran"
    hook = tmp_path / "hook"
    hook.write_text(f'#!/bin/sh\necho "$RECONCILER_EVENT" >> "{ran}"\n')
    hook.chmod(0o755)
    moved = attrs.evolve(
        world.config,
        digest="f" * 64,
        metrics=MetricsConfig(listen=("127.0.0.1", other)),
        notify=NotifyConfig((str(hook),)),
    )
    world.loads.append(moved)
    world.daemon.request_reload()
    _wait_for(lambda: world.daemon.config is moved)
    assert scrape(other)["reconciler_log_last_seq[]"] > 0
    _wait_for(lambda: not answers(world.port))  # the old endpoint is closed
    world.daemon.request_stop("SIGTERM")
    world.thread.join(10)
    assert world.status == [0]
    assert ran.read_text().split() == ["daemon-stopped"]
    assert not [f for f in world.facts() if isinstance(f, HookRan)]  # after the log closed
    assert not answers(other)


def test_a_reload_that_moves_the_textfile_removes_the_old_one(tmp_path: Path) -> None:
    host = _openbsd_host(tmp_path)
    first, second = tmp_path / "a.prom", tmp_path / "b.prom"
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        world = World(tmp_path, fake, host, textfile=first)
        world.thread.start()
        try:
            _wait_for(first.exists)
            assert "reconciler_log_last_seq" in first.read_text()
            moved = attrs.evolve(
                world.config,
                digest="f" * 64,
                metrics=attrs.evolve(world.config.metrics, textfile=second),
            )
            world.loads.append(moved)
            world.daemon.request_reload()
            _wait_for(second.exists)
            _wait_for(lambda: not first.exists())
            assert scrape(world.port)["reconciler_log_last_seq[]"] > 0  # the same endpoint
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()
