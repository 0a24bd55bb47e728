"""Tests for reconciler.daemon: in-process against the scripted OpenBSD host and the fake HE,
and as a real process in a network namespace for signals and the one-instance lock."""

from __future__ import annotations

import functools
import io
import itertools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from reconciler.configfile import load_config
from reconciler.daemon import STOP_GRACE, Daemon
from reconciler.errors import ConfigError
from reconciler.eventlog import EventLog, SnapshotStore, verify
from reconciler.history import load_state
from reconciler.logsetup import configure_logging
from reconciler.model.config import Config
from reconciler.model.desired import desired
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    ConfigLoaded,
    DaemonStarted,
    DaemonStopped,
    ObservationsCounted,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
    from_record,
    to_record,
)
from reconciler.model.plan import plan
from reconciler.model.state import SCHEMA_VERSION
from reconciler.testing.fake_he import FakeTunnelbroker, Reply
from reconciler.testing.openbsd_host import OpenBSDHost
from reconciler.world.openbsd import OpenBSDPlatform
from reconciler.world.tunnelbroker import TunnelbrokerClient
from tests.daemon_helpers import (
    HE_SERVER,
    TEST_KEY,
    fake_he_control,
    fake_he_in,
    linux_config_text,
    openbsd_config,
    restored_loggers,
    router_netns,
    syslog_listener,
)
from tests.smallfs import fill_up, small_filesystem

REPO = Path(__file__).resolve().parents[1]


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _facts(events: Path) -> list:  # type: ignore[type-arg]
    with EventLog.open(events, readonly=True) as log:
        return [from_record(seq, record).fact for seq, record in log.read(1)]


class _ClientSeen(TunnelbrokerClient):
    """The real HE client, remembering whether the daemon closed it."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


class InProcess:
    """A daemon on its own thread, over the scripted OpenBSD host and a fake HE."""

    def __init__(
        self,
        tmp_path: Path,
        fake: FakeTunnelbroker,
        host: OpenBSDHost,
        read_timeout: float = 2.0,
        configure_log: Callable[[str], object] | None = None,
        clock: Callable[[], float] = time.time,
        state_dir: Path | None = None,
        **config_options: Any,
    ) -> None:
        self.config = openbsd_config(
            tmp_path, update_url=fake.update_url, read_timeout=read_timeout, **config_options
        )
        self.host = host
        self.loads: list[Config | Exception] = []
        self.clients: list[_ClientSeen] = []
        self.log = EventLog.open((state_dir or tmp_path) / "events")
        self.snapshots = SnapshotStore((state_dir or tmp_path) / "snapshots")
        self.daemon = Daemon(
            self.config,
            self.log,
            snapshots=self.snapshots,
            platform_factory=lambda c: OpenBSDPlatform(c, host, root=host.root),
            config_loader=self._load,
            client_factory=self._client,
            configure_log=configure_log,
            clock=clock,
        )
        self.status: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.status.append(self.daemon.run(install_signals=False))
        )

    def _load(self, path: object) -> Config:
        answer = self.loads.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _client(self, config: Config) -> _ClientSeen:
        self.clients.append(_ClientSeen(config.tunnelbroker))
        return self.clients[-1]

    def facts(self) -> list:  # type: ignore[type-arg]
        return [from_record(seq, record).fact for seq, record in self.log.read(1)]

    def converged_on(self, local: str) -> bool:
        tunnel = self.daemon.recorder.state.tunnel
        return (
            tunnel is not None
            and tunnel.local == local
            and tunnel.up
            and self.host.pf_loads > 0
            and not any(r.in_flight for r in self.daemon.recorder.state.actions.values())
        )


def _openbsd_host(tmp_path: Path) -> OpenBSDHost:
    (tmp_path / "root" / "etc").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "pf.conf").write_text("pass\n")
    return OpenBSDHost(tmp_path / "root", wan_address="203.0.113.7")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[InProcess, FakeTunnelbroker]]:
    host = _openbsd_host(tmp_path)
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        world = InProcess(tmp_path, fake, host)
        world.thread.start()
        try:
            yield world, fake
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()


def test_start_up_converges_then_a_kernel_notice_repairs_an_address_change(
    running: tuple[InProcess, FakeTunnelbroker],
) -> None:
    """From nothing the daemon updates HE, writes gif0 and restarts it; a new WAN address
    (announced by the routing socket, no polling) is repaired with exactly one update."""
    world, fake = running
    _wait_for(lambda: world.converged_on("203.0.113.7") and fake.endpoint == "203.0.113.7")
    assert ("route", "-n", "monitor") in world.host.calls
    facts = world.facts()
    assert isinstance(facts[0], DaemonStarted) and isinstance(facts[1], ConfigLoaded)
    updates_before = fake.stats()["counts"]["update"]
    assert updates_before == 1  # the start-up's update, and nothing else
    # pf was loaded once already: wait for this repair's own reload too, not only the tunnel.
    pf_reloaded = world.host.pf_loads + 1
    world.host.set_address("em0", "203.0.113.8")
    _wait_for(
        lambda: (
            world.converged_on("203.0.113.8")
            and fake.endpoint == "203.0.113.8"
            and world.host.pf_loads >= pf_reloaded
        )
    )
    started = [f.key for f in world.facts() if isinstance(f, ActionStarted)]
    assert started.count("update-he-endpoint:203.0.113.8") == 1
    assert started.count("update-he-endpoint:203.0.113.7") == 1
    assert f"restart-tunnel:203.0.113.8->{HE_SERVER}" in started
    assert "reload-pf:203.0.113.8" in started
    assert fake.stats()["counts"]["update"] == updates_before + 1


def _link_observations(world: InProcess) -> int:
    """WAN and tunnel observations made so far: recorded ones and counted (quiet) ones."""
    world.daemon.recorder.flush_counts()
    facts = world.facts()
    counted = (WanAddressObserved.TYPE, TunnelObserved.TYPE)
    return sum(isinstance(f, WanAddressObserved | TunnelObserved) for f in facts) + sum(
        f.count for f in facts if isinstance(f, ObservationsCounted) and f.observed in counted
    )


def test_kernel_notices_about_other_interfaces_are_ignored(
    running: tuple[InProcess, FakeTunnelbroker],
) -> None:
    """A LAN interface appearing, going up and getting an address makes no observation (no
    facts); a notice about the WAN interface still does, at once."""
    world, _ = running
    _wait_for(lambda: world.converged_on("203.0.113.7"))
    time.sleep(0.3)  # the repair's own notices (gif0 rebuilt) are observed by now
    before = _link_observations(world)
    world.host.run(("ifconfig", "vlan5", "create"), timeout=1.0)
    world.host.run(("ifconfig", "vlan5", "up"), timeout=1.0)
    world.host.set_address("vlan5", "192.0.2.1")
    time.sleep(0.5)  # an observation of the scripted host takes milliseconds
    assert _link_observations(world) == before
    world.host.set_address("em0", "203.0.113.7")  # the same address, announced again
    _wait_for(lambda: _link_observations(world) > before, timeout=2.0)


def test_watch_kernel_false_starts_no_monitor_and_repairs_by_polling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With [daemon] watch_kernel = false no `route -n monitor` ever runs, not after a reload
    either; an address change is found by the WAN observer's polling and repaired."""
    caplog.set_level(logging.INFO, logger="reconciler")
    host = _openbsd_host(tmp_path)
    monitor = ("route", "-n", "monitor")
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        world = InProcess(tmp_path, fake, host, watch_kernel=False, observe_interval=1.0)
        world.thread.start()
        try:
            _wait_for(lambda: world.converged_on("203.0.113.7"))
            world.loads.append(attrs.evolve(world.config, digest="b" * 64))
            world.daemon.request_reload()
            _wait_for(lambda: sum(isinstance(f, ConfigLoaded) for f in world.facts()) == 2)
            host.set_address("em0", "203.0.113.8")
            _wait_for(lambda: world.converged_on("203.0.113.8"))
            assert monitor not in host.calls and not host.streams
            assert caplog.text.count("kernel notifications off: polling only") == 2
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()


def test_stop_finishes_records_daemon_stopped_and_returns_zero(
    running: tuple[InProcess, FakeTunnelbroker],
) -> None:
    """request_stop (what SIGTERM does) ends run() with 0 and DaemonStopped as the last fact;
    the snapshot written at the stop holds that state and the next start-up begins from it."""
    world, _ = running
    _wait_for(lambda: world.converged_on("203.0.113.7"))
    world.daemon.request_stop("SIGTERM")
    world.thread.join(5)
    assert world.status == [0]
    assert world.facts()[-1] == DaemonStopped(reason="SIGTERM")
    latest = world.snapshots.latest(SCHEMA_VERSION, world.log.log_id)
    assert latest is not None and latest[0] == world.log.last_seq
    stopped_state = world.daemon.recorder.state
    again = Daemon(
        world.config,
        world.log,
        snapshots=world.snapshots,
        platform_factory=lambda c: OpenBSDPlatform(c, world.host, root=world.host.root),
    )
    assert again.recorder.state == stopped_state
    assert again.recorder.last_seq == world.log.last_seq


def test_reload_keeps_the_old_config_when_the_new_one_is_invalid(
    running: tuple[InProcess, FakeTunnelbroker],
) -> None:
    """A bad config on reload is refused whole; a good one is recorded as ConfigLoaded."""
    world, _ = running
    _wait_for(lambda: world.converged_on("203.0.113.7"))
    world.loads.append(ConfigError("x.conf", ["x.conf: tunnel.mtu: must be a number"]))
    world.daemon.request_reload()
    _wait_for(lambda: not world.loads)
    time.sleep(0.2)
    assert sum(isinstance(f, ConfigLoaded) for f in world.facts()) == 1
    assert world.daemon.config is world.config
    changed = attrs.evolve(world.config, digest="f" * 64)
    world.loads.append(changed)
    world.daemon.request_reload()
    _wait_for(lambda: sum(isinstance(f, ConfigLoaded) for f in world.facts()) == 2)
    _wait_for(lambda: world.daemon.config is changed)  # recorded first, then swapped in
    assert [f for f in world.facts() if isinstance(f, ConfigLoaded)][-1].digest == "f" * 64


def test_a_loader_bug_on_reload_keeps_the_old_config_and_the_daemon_running(
    running: tuple[InProcess, FakeTunnelbroker], caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception from the config loader is one log line; the old config stays,
    the daemon keeps serving (a later reload works) and still stops with DaemonStopped."""
    world, _ = running
    _wait_for(lambda: world.converged_on("203.0.113.7"))
    world.loads.append(ValueError("tomllib choked\non line 3"))
    world.daemon.request_reload()
    _wait_for(lambda: not world.loads)
    _wait_for(lambda: "reload refused" in caplog.text)
    refused = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
    assert refused == [
        "reload refused: ValueError: tomllib choked on line 3; keeping the old configuration"
    ]
    assert world.daemon.config is world.config and world.thread.is_alive()
    changed = attrs.evolve(world.config, digest="d" * 64)
    world.loads.append(changed)
    world.daemon.request_reload()
    _wait_for(lambda: world.daemon.config is changed)
    _wait_for(
        lambda: world.clients[0].closed
    )  # the replaced config's client (closed after the swap)
    world.daemon.request_stop("SIGTERM")
    world.thread.join(5)
    assert world.status == [0]
    assert world.facts()[-1] == DaemonStopped(reason="SIGTERM")
    assert all(client.closed for client in world.clients)


def test_a_reload_applies_the_new_log_target(tmp_path: Path) -> None:
    """[daemon] log changed from stderr to syslog takes effect with the reload that records
    its ConfigLoaded: the "reloaded" line reaches syslog and no longer stderr."""
    stderr = io.StringIO()
    host = _openbsd_host(tmp_path)
    with (
        restored_loggers("reconciler", "apscheduler"),
        tempfile.TemporaryDirectory(prefix="rcd") as short,
        syslog_listener(Path(short)) as (socket_path, listener),
        FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake,
    ):
        configure = functools.partial(configure_logging, stream=stderr, syslog_socket=socket_path)
        configure("stderr")
        world = InProcess(tmp_path, fake, host, configure_log=configure)
        world.thread.start()
        try:
            _wait_for(lambda: world.converged_on("203.0.113.7"))
            assert "INFO started" in stderr.getvalue()
            to_syslog = attrs.evolve(
                world.config,
                digest="c" * 64,
                daemon=attrs.evolve(world.config.daemon, log="syslog"),
            )
            world.loads.append(to_syslog)
            world.daemon.request_reload()
            reloaded = f"<30>reconciler[{os.getpid()}]: reloaded {to_syslog.path} (cccccccccccc)"
            received = [listener.recv(4096).decode()]
            while received[-1] != reloaded + "\0":  # lines logged during the swap come first
                received.append(listener.recv(4096).decode())
            assert "INFO reloaded" not in stderr.getvalue()
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()


def test_a_stop_abandons_a_slow_update_and_a_waiting_reload_within_the_grace(
    tmp_path: Path,
) -> None:
    """With HE slower than STOP_GRACE, a reload waiting for the update is given up and a stop
    returns 0 within 5 s; the update's late answer is not recorded after DaemonStopped."""
    host = _openbsd_host(tmp_path)
    key = "update-he-endpoint:203.0.113.7"
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        fake.delay = STOP_GRACE + 2.0
        world = InProcess(tmp_path, fake, host, read_timeout=15.0)
        world.thread.start()
        try:
            _wait_for(lambda: any(getattr(f, "key", None) == key for f in world.facts()))
            world.loads.append(attrs.evolve(world.config, digest="e" * 64))
            world.daemon.request_reload()
            time.sleep(0.3)  # the reload is now waiting for the running update
            sent = time.monotonic()
            world.daemon.request_stop("SIGTERM")
            world.thread.join(5.0)
            elapsed = time.monotonic() - sent
            assert world.status == [0] and elapsed < 5.0
            reason = f"SIGTERM: stopped while {key} was running; its outcome is unknown"
            assert world.facts()[-1] == DaemonStopped(reason=reason)
            assert sum(isinstance(f, ConfigLoaded) for f in world.facts()) == 1
            _wait_for(lambda: fake.stats()["counts"].get("update") == 1)
            time.sleep(0.3)  # the abandoned thread has its answer now, and nowhere to put it
            assert world.facts()[-1] == DaemonStopped(reason=reason)
            # The abandoned reload had built a client for the new config: closed, not leaked.
            assert len(world.clients) == 2 and world.clients[1].closed
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()


def test_a_reload_behind_a_dripping_he_answer_waits_no_longer_than_the_call_deadline(
    tmp_path: Path,
) -> None:
    """HE dripping its answer a byte every 0.5 s: the update ends by its deadline
    (connect_timeout + read_timeout = 2 s), so a reload waiting for it takes effect within
    that (plus slack), where it used to wait for the whole drip (100 s here)."""
    host = _openbsd_host(tmp_path)
    key = "update-he-endpoint:203.0.113.7"
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        fake.script(Reply(200, "good {address}" + " " * 200, body_drip=0.5))
        world = InProcess(tmp_path, fake, host, read_timeout=1.0)
        assert world.config.tunnelbroker.connect_timeout == 1.0
        world.thread.start()
        try:
            _wait_for(lambda: any(getattr(f, "key", None) == key for f in world.facts()))
            sent = time.monotonic()
            world.loads.append(attrs.evolve(world.config, digest="e" * 64))
            world.daemon.request_reload()
            _wait_for(
                lambda: sum(isinstance(f, ConfigLoaded) for f in world.facts()) == 2, timeout=30
            )
            elapsed = time.monotonic() - sent
            assert elapsed < 2.0 + 4.0, f"the reload waited {elapsed:.1f} s"
            failed = [f for f in world.facts() if isinstance(f, ActionFailed) and f.key == key]
            assert failed and "no complete answer within 2 s" in failed[0].message
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()


def test_an_update_answered_after_the_deadline_rebuilds_the_tunnel_at_once(
    tmp_path: Path,
) -> None:
    """HE applies the update but answers after the read timeout: the failure is recorded as
    unconfirmed and the tunnel is rebuilt for the new address at once (it used to wait out
    the 600 s pause after server trouble), without a second update."""
    host = _openbsd_host(tmp_path)
    key = "update-he-endpoint:203.0.113.7"
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        fake.script(Reply(200, "{answer}", delay=3.0))
        world = InProcess(tmp_path, fake, host, read_timeout=1.0)
        world.thread.start()
        try:

            def failure() -> ActionFailed | None:
                found = [f for f in world.facts() if isinstance(f, ActionFailed) and f.key == key]
                return found[0] if found else None

            _wait_for(lambda: failure() is not None)
            failed = failure()
            assert failed is not None and failed.unconfirmed and failed.kind == "temporary"
            assert fake.endpoint == "203.0.113.7"  # HE had taken it
            _wait_for(lambda: world.converged_on("203.0.113.7"), timeout=10)
            rebuilt = [
                f
                for f in world.facts()
                if isinstance(f, ActionSucceeded) and f.key.startswith("restart-tunnel:203.0.113.7")
            ]
            assert rebuilt
            time.sleep(1.0)
            assert fake.updates_received == 1
            held = plan(
                desired(world.config, world.daemon.recorder.state),
                world.daemon.recorder.state,
                time.time(),
            ).held
            assert [h.why for h in held if h.action.key == key] == ["unconfirmed"]
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()


# -- a real process in a network namespace -----------------------------------------------


@pytest.fixture
def netns(lab_available: None) -> Iterator[str]:
    with router_netns(f"rcd{os.getpid()}") as name:
        yield name


def _start(netns: str, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "reconciler",
            "run",
            "-c",
            str(config),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_process_signals_and_one_instance_per_state_dir(netns: str, tmp_path: Path) -> None:
    """SIGHUP with a bad file keeps the old config, with a good one records ConfigLoaded; a
    second daemon exits 1 naming the first's pid; SIGTERM exits 0 within 5 s."""
    config = tmp_path / "reconciler.conf"
    good = linux_config_text(tmp_path, wan="wan0", update_url="http://127.0.0.1:9/nic/update")
    config.write_text(good)
    events = tmp_path / "state" / "events"
    daemon = _start(netns, config)
    try:
        _wait_for(
            lambda: events.is_dir() and any(isinstance(f, DaemonStarted) for f in _facts(events))
        )
        started = next(f for f in _facts(events) if isinstance(f, DaemonStarted))

        second = _start(netns, config)
        _, err = second.communicate(timeout=20)
        assert second.returncode == 1
        assert f"process {started.pid}" in err and len(err.strip().splitlines()) == 1

        def loaded() -> int:
            return sum(isinstance(f, ConfigLoaded) for f in _facts(events))

        assert loaded() == 1
        # The main thread serves signals once the threads run: their first facts say so.
        _wait_for(lambda: any(isinstance(f, WanAddressObserved) for f in _facts(events)))
        config.write_text(good + "\n[bogus]\nkey = 1\n")
        daemon.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert loaded() == 1 and daemon.poll() is None
        config.write_text(good.replace("mtu = 1450", "mtu = 1400"))
        daemon.send_signal(signal.SIGHUP)
        _wait_for(lambda: loaded() == 2)

        sent = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=10)
        assert daemon.returncode == 0, err
        assert time.monotonic() - sent < 5.0
        assert _facts(events)[-1] == DaemonStopped(reason="SIGTERM")
        assert "bogus" in err  # the refused reload was logged
        assert TEST_KEY not in err
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_sigterm_during_a_slow_he_update_exits_in_time_and_the_update_is_not_repeated(
    netns: str, tmp_path: Path
) -> None:
    """HE answering slower than the stop grace: SIGTERM still exits 0 within 5 s, records
    DaemonStopped naming the abandoned update, leaves a clean log whose open ActionStarted
    counts as an attempt, so a restarted daemon sends no second update within
    min_update_interval."""
    assert STOP_GRACE < 5.0
    key = "update-he-endpoint:203.0.113.7"
    config = tmp_path / "reconciler.conf"
    events = tmp_path / "state" / "events"

    def started_updates() -> int:
        facts = _facts(events) if events.is_dir() else []
        return sum(isinstance(f, ActionStarted) and f.key == key for f in facts)

    with fake_he_in(netns, tmp_path) as update_url:
        fake_he_control(netns, update_url, "delay?seconds=8")
        config.write_text(
            linux_config_text(
                tmp_path,
                wan="wan0",
                update_url=update_url,
                read_timeout=15,
                min_update_interval=600,
            )
        )
        daemon = _start(netns, config)
        try:
            _wait_for(lambda: started_updates() == 1, timeout=20)
            sent = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=10)
            elapsed = time.monotonic() - sent
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        assert daemon.returncode == 0, err
        assert elapsed < 5.0, f"stopped after {elapsed:.2f} s"
        assert TEST_KEY not in err

        facts = _facts(events)  # the log opens and reads cleanly to its end
        reason = f"SIGTERM: stopped while {key} was running; its outcome is unknown"
        assert facts[-1] == DaemonStopped(reason=reason)
        outcomes = [f for f in facts if isinstance(f, ActionSucceeded | ActionFailed)]
        assert key not in [f.key for f in outcomes]
        state, _ = load_state(tmp_path / "state")
        assert state.actions[key].in_flight
        loaded = load_config(config)
        held = plan(desired(loaded, state), state, time.time()).held
        # Held as unconfirmed: HE may have it; the rebuilt tunnel will tell.
        assert [h.why for h in held if h.action.key == key] == ["unconfirmed"]

        # Restart with HE answering at once: it must not ask HE again for this address.
        fake_he_control(netns, update_url, "delay?seconds=0")
        daemon = _start(netns, config)
        try:
            _wait_for(lambda: sum(isinstance(f, DaemonStarted) for f in _facts(events)) == 2)
            # The abandoned request reaches the fake only once its 8 s delay is over.
            _wait_for(
                lambda: fake_he_control(netns, update_url, "stats")["counts"].get("update") == 1,
                timeout=15,
            )
            time.sleep(1.0)  # several reconcile passes on fresh observations
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=10)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        assert daemon.returncode == 0, err
        assert started_updates() == 1
        assert fake_he_control(netns, update_url, "stats")["counts"].get("update") == 1


def test_retention_drops_old_segments_once_a_snapshot_covers_them(tmp_path: Path) -> None:
    """With [daemon] retain_mb set, the snapshot at the stop lets the oldest segments go, and
    the state read back from snapshot + what is left equals the daemon's."""
    events = tmp_path / "events"
    probe = ProbeObserved("ipv4", "192.0.2.1", True, 1.0)
    with EventLog.open(events, segment_size=4096) as old:
        old.append_many([to_record(probe, at=1.0 + i, source="test") for i in range(300)])
    host = _openbsd_host(tmp_path)
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        config = openbsd_config(tmp_path, update_url=fake.update_url, read_timeout=2.0)
        config = attrs.evolve(config, daemon=attrs.evolve(config.daemon, retain_mb=0.01))
        log = EventLog.open(events, segment_size=4096)
        segments_before = len(log.segments())
        daemon = Daemon(
            config,
            log,
            snapshots=SnapshotStore(tmp_path / "snapshots"),
            platform_factory=lambda c: OpenBSDPlatform(c, host, root=host.root),
        )
        status: list[int] = []
        thread = threading.Thread(target=lambda: status.append(daemon.run(install_signals=False)))
        thread.start()
        try:
            _wait_for(lambda: daemon.recorder.state.tunnel is not None)
        finally:
            daemon.request_stop("test over")
            thread.join(10)
        log.close()
    assert status == [0]
    with EventLog.open(events, readonly=True) as kept:
        remaining = kept.segments()
    assert 0 < len(remaining) < segments_before
    state, _ = load_state(tmp_path)
    assert state == daemon.recorder.state


def test_a_clock_step_back_does_not_hold_the_next_repair(tmp_path: Path) -> None:
    """The wall clock steps back two hours after the start-up's update (its facts now look
    two hours ahead): a new WAN address is still repaired within seconds, with one more
    update, and the stamps in the log do not step back."""
    host = _openbsd_host(tmp_path)
    step = [0.0]
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        world = InProcess(tmp_path, fake, host, clock=lambda: time.time() + step[0])
        world.thread.start()
        try:
            _wait_for(lambda: world.converged_on("203.0.113.7") and fake.endpoint == "203.0.113.7")
            step[0] = -7200.0
            host.set_address("em0", "203.0.113.8")
            _wait_for(lambda: world.converged_on("203.0.113.8") and fake.endpoint == "203.0.113.8")
            assert fake.stats()["counts"]["update"] == 2
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
        stamps = [record["at"] for _, record in world.log.read(1)]
        world.log.close()
    # Threads take their stamps just before the recorder's lock, so neighbours may swap by
    # a few milliseconds; the two-hour step back shows nowhere.
    assert all(later > earlier - 1.0 for earlier, later in itertools.pairwise(stamps))


def test_a_log_stamped_in_the_future_holds_a_restarted_daemon_at_most_twice_the_interval(
    tmp_path: Path,
) -> None:
    """The last run's update is stamped 2 h ahead (its clock was wrong, then corrected): the
    restarted daemon's clock (runclock) starts from that stamp and runs at half speed until
    the wall clock catches up, so the update for the new address waits at most twice
    min_update_interval (1 s here), not the two hours."""
    from reconciler.model.facts import to_record

    ahead = time.time() + 7200.0
    key = "update-he-endpoint:203.0.113.5"
    with EventLog.open(tmp_path / "events") as log:
        for fact in (
            ActionStarted(key, "update-he-endpoint", "WAN changed"),
            ActionSucceeded(key, "update-he-endpoint", "good 203.0.113.5"),
        ):
            log.append(to_record(fact, at=ahead, source="test"))
    host = _openbsd_host(tmp_path)
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        world = InProcess(tmp_path, fake, host)
        started = time.monotonic()
        world.thread.start()
        try:
            _wait_for(lambda: fake.endpoint == "203.0.113.7", timeout=6.0)
            took = time.monotonic() - started
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()
    assert took < 2.0 + 2.0, took  # twice the interval, and start-up


def test_he_refusing_a_private_address_does_not_hold_the_next_wan_address(
    tmp_path: Path,
) -> None:
    """The WAN has an address HE takes for private (198.18.0.0/15): the fake HE answers its
    legacy RFC 1918 refusal, and the daemon does not ask again for that address. The WAN
    then gets a public address: HE is told it, and the tunnel follows, with no change of the
    configuration (the refusal was about the address, not the account)."""
    (tmp_path / "root" / "etc").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "pf.conf").write_text("pass\n")
    host = OpenBSDHost(tmp_path / "root", wan_address="198.18.0.7")
    refused = "update-he-endpoint:198.18.0.7"
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        world = InProcess(tmp_path, fake, host)
        world.thread.start()
        try:
            _wait_for(
                lambda: any(
                    isinstance(f, ActionFailed) and f.key == refused and f.kind == "permanent"
                    for f in world.facts()
                )
            )
            state = world.daemon.recorder.state
            held = plan(desired(world.config, state), state, time.time()).held
            assert (held[0].action.key, held[0].why) == (refused, "permanent-failure")
            assert "another WAN address" in held[0].detail
            time.sleep(1.5)  # past min_update_interval (1 s): the refused address stays held
            assert fake.stats()["counts"]["update"] == 1
            host.set_address("em0", "203.0.113.8")
            _wait_for(lambda: world.converged_on("203.0.113.8") and fake.endpoint == "203.0.113.8")
            assert fake.stats()["counts"]["update"] == 2
            assert sum(isinstance(f, ConfigLoaded) for f in world.facts()) == 1
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()


def _wan_observations(world: InProcess) -> int:
    """WAN observations made so far: recorded ones and counted (quiet) ones."""
    world.daemon.recorder.flush_counts()
    facts = world.facts()
    return sum(isinstance(f, WanAddressObserved) for f in facts) + sum(
        f.count
        for f in facts
        if isinstance(f, ObservationsCounted) and f.observed == WanAddressObserved.TYPE
    )


def _kept_in_memory(world: InProcess) -> bool:
    """Whether the recorder holds a fact the full log did not take. Quiet observations are
    only counted: their counts are written (as every hour) so that there is one to hold."""
    world.daemon.recorder.flush_counts()
    return world.daemon.recorder.last_seq > world.log.last_seq


def test_a_full_disk_delays_only_the_record_never_the_repair(tmp_path: Path) -> None:
    """The state directory on a small file system, filled up: a new WAN address is repaired
    all the same (HE updated, gif0 rebuilt); once the ballast is gone the log grows again
    with what happened meanwhile, in order, verify is clean, and the stop exits 0."""
    host = _openbsd_host(tmp_path)
    with (
        small_filesystem() as state,
        FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake,
    ):
        world = InProcess(tmp_path, fake, host, state_dir=state, observe_interval=1.0)
        world.thread.start()
        try:
            _wait_for(lambda: world.converged_on("203.0.113.7") and fake.endpoint == "203.0.113.7")
            ballast = fill_up(state)
            _wait_for(lambda: _kept_in_memory(world))
            full_at = world.log.last_seq
            host.set_address("em0", "203.0.113.8")
            _wait_for(lambda: world.converged_on("203.0.113.8") and fake.endpoint == "203.0.113.8")
            assert world.log.last_seq == full_at  # repaired without a byte of log

            ballast.unlink()
            _wait_for(lambda: world.daemon.recorder.last_seq == world.log.last_seq)
            assert world.log.last_seq > full_at
        finally:
            world.daemon.request_stop("SIGTERM")
            world.thread.join(10)
            world.log.close()
        assert world.status == [0]
        assert verify(state / "events").ok
        facts = _facts(state / "events")
        assert facts[-1] == DaemonStopped(reason="SIGTERM")
        started = [f.key for f in facts if isinstance(f, ActionStarted)]
        assert started.count("update-he-endpoint:203.0.113.8") == 1
        assert f"restart-tunnel:203.0.113.8->{HE_SERVER}" in started


def test_a_stop_on_a_full_disk_exits_0(tmp_path: Path) -> None:
    """SIGTERM while the disk is still full: run() returns 0 (what could not be written is
    said in the log lines), and the log left behind verifies clean."""
    host = _openbsd_host(tmp_path)
    with (
        small_filesystem() as state,
        FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake,
    ):
        world = InProcess(tmp_path, fake, host, state_dir=state, observe_interval=1.0)
        world.thread.start()
        try:
            _wait_for(lambda: world.converged_on("203.0.113.7"))
            fill_up(state)
            _wait_for(lambda: _kept_in_memory(world))
        finally:
            world.daemon.request_stop("SIGTERM")
            world.thread.join(10)
            world.log.close()
        assert world.status == [0]
        assert verify(state / "events").ok


def test_a_clock_step_back_reschedules_the_observers_and_observes_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """APScheduler counts in wall-clock time, so two hours back would stall every observer
    for two hours: the daemon sees the step against the monotonic clock, reschedules them
    from the new time and observes everything at once."""
    caplog.set_level(logging.WARNING, logger="reconciler")
    host = _openbsd_host(tmp_path)
    step = [0.0]
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        world = InProcess(tmp_path, fake, host, clock=lambda: time.time() + step[0])
        world.thread.start()
        try:
            _wait_for(lambda: world.converged_on("203.0.113.7"))
            time.sleep(0.5)
            seen = _wan_observations(world)
            step[0] = -7200.0
            _wait_for(lambda: _wan_observations(world) > seen, timeout=8.0)
            assert "the system clock stepped back 7200 s" in caplog.text
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()


def test_observer_runs_reuse_kept_threads(tmp_path: Path) -> None:
    """A thread per observer run let glibc scatter allocations over its arenas and RSS
    creep: runs go to kept threads, at most one per job (here wan and tunnel)."""
    host = _openbsd_host(tmp_path)
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        world = InProcess(tmp_path, fake, host, observe_interval=0.05)
        world.thread.start()
        try:
            _wait_for(lambda: world.converged_on("203.0.113.7"))
            _more_wan_observations(world, 20)  # the jobs' first runs
            kept = _job_threads()
            _more_wan_observations(world, 20)
            assert kept, sorted(t.name for t in threading.enumerate())
            assert _job_threads() == kept
            assert len(kept) <= 2
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()


def _more_wan_observations(world: InProcess, count: int) -> None:
    seen = _wan_observations(world)
    _wait_for(lambda: _wan_observations(world) >= seen + count)


def _job_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("job-")}


def test_the_daemon_process_allocates_from_one_arena(netns: str, tmp_path: Path) -> None:
    """`reconciler run` tunes glibc's allocator before its threads start (reconciler.malloc):
    no thread arena (a 64 MiB reservation of its own) appears in its memory map."""
    if os.confstr("CS_GNU_LIBC_VERSION") is None:
        pytest.skip("glibc only")
    config = tmp_path / "reconciler.conf"
    config.write_text(
        linux_config_text(tmp_path, wan="wan0", update_url="http://127.0.0.1:9/nic/update")
    )
    events = tmp_path / "state" / "events"
    daemon = _start(netns, config)
    try:
        # Observers and the reconcile loop have run on their threads by then.
        _wait_for(
            lambda: (
                events.is_dir() and any(isinstance(f, WanAddressObserved) for f in _facts(events))
            )
        )
        time.sleep(1.0)
        assert _thread_arenas(daemon.pid) == 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=10)


def _thread_arenas(pid: int) -> int:
    """glibc's thread arenas in a process's map: an anonymous mapping at a 64 MiB boundary
    whose reservation (its used part and the inaccessible rest after it) is 64 MiB."""
    arena = 64 << 20
    maps = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        maps.append((start, end, fields[1], len(fields) > 5))
    return sum(
        1
        for (start, end, _, named), nxt in zip(maps, [*maps[1:], (0, 0, "", True)], strict=True)
        if not named
        and start % arena == 0
        and (
            end - start == arena or (nxt[0] == end and nxt[2] == "---p" and nxt[1] - start == arena)
        )
    )
