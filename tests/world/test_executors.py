"""Tests for reconciler.world.executors: intent first, outcomes as facts, never a raise."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.eventlog import EventLog
from reconciler.model.actions import (
    ReloadPf,
    RestartTunnel,
    RestartWan,
    RewriteHostname,
    UpdateHeEndpoint,
)
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    EndpointObserved,
    from_record,
)
from reconciler.model.hostname import digest_of, render_hostname_file
from reconciler.recorder import Recorder
from reconciler.testing.fake_he import FakeTunnelbroker
from reconciler.testing.openbsd_host import OpenBSDHost
from reconciler.world.executors import Executor
from reconciler.world.openbsd import OpenBSDPlatform
from reconciler.world.tunnelbroker import TunnelbrokerClient
from tests.daemon_helpers import HE_SERVER, TEST_KEY, openbsd_config

LOCAL = "203.0.113.7"


@pytest.fixture
def fake() -> FakeTunnelbroker:
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as server:
        yield server


@pytest.fixture
def host(tmp_path: Path) -> OpenBSDHost:
    (tmp_path / "root" / "etc").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "pf.conf").write_text("pass\n")
    return OpenBSDHost(tmp_path / "root", wan_address=LOCAL)


def _facts(log: EventLog) -> list:  # type: ignore[type-arg]
    return [from_record(seq, record).fact for seq, record in log.read(1)]


def _executor(tmp_path: Path, host: OpenBSDHost, fake: FakeTunnelbroker, log: EventLog):  # type: ignore[no-untyped-def]
    config = openbsd_config(tmp_path, update_url=fake.update_url)
    platform = OpenBSDPlatform(config, host, root=host.root)
    return config, Executor(platform, TunnelbrokerClient(config.tunnelbroker), Recorder(log))


def test_intent_is_recorded_before_the_action_runs(
    tmp_path: Path, host: OpenBSDHost, fake: FakeTunnelbroker
) -> None:
    """ActionStarted is in the log before the platform is touched, the success after."""
    with EventLog.open(tmp_path / "events") as log:
        _, executor = _executor(tmp_path, host, fake, log)
        seen_at_run: list[int] = []
        original = executor.platform.reload_firewall

        def reload_and_look() -> None:
            seen_at_run.append(log.last_seq)
            original()

        executor.platform.reload_firewall = reload_and_look  # type: ignore[method-assign]
        outcome = executor.execute(ReloadPf(LOCAL, reason="tunnel restarted", causes=(3,)))
        assert outcome.succeeded
        assert seen_at_run == [1]
        started, succeeded = _facts(log)
        assert started == ActionStarted(
            key=f"reload-pf:{LOCAL}", action="reload-pf", reason="tunnel restarted", causes=(3,)
        )
        assert isinstance(succeeded, ActionSucceeded) and succeeded.causes == (3,)
        assert host.pf_loads == 1


def test_a_failure_becomes_an_outcome_and_a_fact_never_an_exception(
    tmp_path: Path, host: OpenBSDHost, fake: FakeTunnelbroker
) -> None:
    """pfctl failing gives a temporary outcome with a one-line message, recorded as a fact."""
    host.pf_error = "pfctl: Syntax error in config file: pf rules not loaded"
    with EventLog.open(tmp_path / "events") as log:
        _, executor = _executor(tmp_path, host, fake, log)
        outcome = executor.execute(ReloadPf(LOCAL))
        assert outcome.status == "temporary"
        assert "\n" not in outcome.message and outcome.message
        failed = _facts(log)[-1]
        assert isinstance(failed, ActionFailed)
        assert failed.kind == "temporary" and failed.message == outcome.message


def test_an_unexpected_exception_is_a_temporary_outcome(
    tmp_path: Path, host: OpenBSDHost, fake: FakeTunnelbroker
) -> None:
    """Even a bug in a platform call turns into ActionFailed, not a crash of the loop."""
    with EventLog.open(tmp_path / "events") as log:
        _, executor = _executor(tmp_path, host, fake, log)

        def broken() -> None:
            raise RuntimeError("boom\nsecond line")

        executor.platform.restart_wan = broken  # type: ignore[method-assign]
        outcome = executor.execute(RestartWan("em0"))
        assert outcome.status == "temporary"
        assert outcome.message == "RuntimeError: boom second line"
        assert isinstance(_facts(log)[-1], ActionFailed)


def test_update_success_records_the_endpoint_he_now_has(
    tmp_path: Path, host: OpenBSDHost, fake: FakeTunnelbroker
) -> None:
    """A good answer from HE records EndpointObserved(source=update, for_local=the WAN)."""
    with EventLog.open(tmp_path / "events") as log:
        _, executor = _executor(tmp_path, host, fake, log)
        outcome = executor.execute(UpdateHeEndpoint(LOCAL, LOCAL))
        assert outcome.succeeded
        assert fake.endpoint == LOCAL
        facts = _facts(log)
        assert [type(f).__name__ for f in facts] == [
            "ActionStarted",
            "ActionSucceeded",
            "EndpointObserved",
        ]
        assert facts[-1] == EndpointObserved(address=LOCAL, source="update", for_local=LOCAL)


def test_badauth_is_permanent_and_the_key_is_nowhere(
    tmp_path: Path, host: OpenBSDHost, fake: FakeTunnelbroker
) -> None:
    """badauth is a permanent failure; the update key reaches neither outcome nor log."""
    fake.script("badauth")
    with EventLog.open(tmp_path / "events") as log:
        _, executor = _executor(tmp_path, host, fake, log)
        outcome = executor.execute(UpdateHeEndpoint(LOCAL, LOCAL))
        assert outcome.status == "permanent"
        assert TEST_KEY not in outcome.message
    for segment in (tmp_path / "events").iterdir():
        assert TEST_KEY.encode() not in segment.read_bytes()


def test_actions_whose_effect_is_present_succeed_and_change_nothing(
    tmp_path: Path, host: OpenBSDHost, fake: FakeTunnelbroker
) -> None:
    """A second rewrite of the same content and a second update both succeed quietly."""
    with EventLog.open(tmp_path / "events") as log:
        config, executor = _executor(tmp_path, host, fake, log)
        content = render_hostname_file(config.tunnel, LOCAL)
        rewrite = RewriteHostname(
            str(config.tunnel.hostname_file), content, digest_of(content.encode())
        )
        assert executor.execute(rewrite).message.startswith("wrote")
        assert executor.execute(rewrite).message.endswith("already up to date")
        assert executor.execute(UpdateHeEndpoint(LOCAL, LOCAL)).succeeded
        assert executor.execute(UpdateHeEndpoint(LOCAL, LOCAL)).succeeded  # HE: nochg
        assert fake.endpoint == LOCAL


def test_restart_tunnel_brings_the_tunnel_up_with_its_ends(
    tmp_path: Path, host: OpenBSDHost, fake: FakeTunnelbroker
) -> None:
    """restart-tunnel after the hostname file is written: the host's gif0 has both ends."""
    with EventLog.open(tmp_path / "events") as log:
        config, executor = _executor(tmp_path, host, fake, log)
        content = render_hostname_file(config.tunnel, LOCAL)
        executor.execute(
            RewriteHostname(str(config.tunnel.hostname_file), content, digest_of(content.encode()))
        )
        outcome = executor.execute(RestartTunnel("gif0", LOCAL, HE_SERVER))
        assert outcome.succeeded, outcome.message
        tunnel = executor.platform.observe_tunnel()
        assert (tunnel.local, tunnel.remote, tunnel.up) == (LOCAL, HE_SERVER, True)
