"""The [notify] hook runner with real programs: the variables a hook gets (and nothing of the
daemon's), one run at a time, the timeout, the bounded queue, a failing hook logged once per
streak, and a hook-ran fact for every run."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from reconciler.model.config import NotifyConfig
from reconciler.model.facts import HookRan
from reconciler.model.notices import Notice
from reconciler.world.hooks import QUEUE_SIZE, HookRunner


def script(tmp_path: Path, body: str, name: str = "hook") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def notice(event: str = "address-changed", seq: int = 7) -> Notice:
    return Notice(event, "the WAN address changed", seq, 1.0, "203.0.113.11", "203.0.113.10")


class Ran(list[HookRan]):
    def __call__(self, fact: HookRan) -> None:
        self.append(fact)

    def wait(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self) < count:
            assert time.monotonic() < deadline, f"{len(self)} of {count} runs"
            time.sleep(0.02)


def runner(config: NotifyConfig, ran: Ran) -> HookRunner:
    hooks = HookRunner(config, ran)
    hooks.start()
    return hooks


def test_the_hook_gets_the_notice_in_variables_and_nothing_of_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_SECRET_PROBE", "must-not-pass")
    out = tmp_path / "env"
    hook = script(tmp_path, f'env > "{out}"\necho "$@" >> "{out}"\n')
    ran = Ran()
    hooks = runner(NotifyConfig((str(hook), "--quiet")), ran)
    assert hooks.submit(notice())
    ran.wait(1)
    hooks.stop(time.monotonic() + 5)
    lines = out.read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    assert env["RECONCILER_EVENT"] == "address-changed"
    assert env["RECONCILER_WAN_ADDRESS"] == "203.0.113.11"
    assert env["RECONCILER_PREVIOUS_ADDRESS"] == "203.0.113.10"
    assert env["RECONCILER_SEQ"] == "7"
    assert env["RECONCILER_MESSAGE"] == "the WAN address changed"
    assert "RECONCILER_SECRET_PROBE" not in env and "PATH" in env
    assert lines[-1] == "--quiet"
    assert ran == [HookRan("address-changed", 7, "ok", 0, ran[0].seconds, "", 0)]


def test_events_filter_keeps_only_the_chosen(tmp_path: Path) -> None:
    ran = Ran()
    hooks = runner(NotifyConfig((str(script(tmp_path, "exit 0\n")),), frozenset({"repaired"})), ran)
    assert not hooks.submit(notice("address-changed"))
    assert hooks.submit(notice("repaired"))
    ran.wait(1)
    hooks.stop(time.monotonic() + 5)
    assert [r.event for r in ran] == ["repaired"]


def test_a_hook_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hook = script(tmp_path, f'sleep 60 &\necho $! > "{pidfile}"\nwait\n')
    ran = Ran()
    hooks = runner(NotifyConfig((str(hook),), timeout=0.5), ran)
    hooks.submit(notice())
    ran.wait(1)
    hooks.stop(time.monotonic() + 5)
    assert ran[0].outcome == "timeout" and ran[0].status is None
    assert "killed after 0.5 s" in ran[0].detail and ran[0].seconds < 10
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _running(child), "the hook's child outlived it"


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan may wait for a reaper that never comes)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_failing_hook_is_logged_once_per_streak(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    hook = script(tmp_path, f'if [ -e "{flag}" ]; then echo "no mail" >&2; exit 3; fi\n')
    ran = Ran()
    hooks = runner(NotifyConfig((str(hook),)), ran)
    with caplog.at_level(logging.INFO, logger="reconciler.world.hooks"):
        for seq in range(3):
            hooks.submit(notice(seq=seq))
        ran.wait(3)
        flag.unlink()
        hooks.submit(notice(seq=9))
        ran.wait(4)
        flag.touch()
        hooks.submit(notice(seq=10))
        ran.wait(5)
    hooks.stop(time.monotonic() + 5)
    assert [r.outcome for r in ran] == ["failed", "failed", "failed", "ok", "failed"]
    assert ran[0].status == 3 and ran[0].detail == "exit status 3: no mail"
    failures = [r for r in caplog.records if "the hook failed" in r.getMessage()]
    assert len(failures) == 2  # one per streak
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_a_program_that_cannot_start_is_a_fact_not_a_crash(tmp_path: Path) -> None:
    ran = Ran()
    hooks = runner(NotifyConfig((str(tmp_path / "gone"),)), ran)
    hooks.submit(notice())
    ran.wait(1)
    hooks.stop(time.monotonic() + 5)
    assert ran[0].outcome == "not-started" and "cannot run" in ran[0].detail


def test_a_full_queue_drops_counts_and_reports_in_the_next_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = tmp_path / "gate"
    hook = script(tmp_path, f'while [ ! -e "{gate}" ]; do sleep 0.05; done\n')
    ran = Ran()
    hooks = runner(NotifyConfig((str(hook),)), ran)
    try:
        with caplog.at_level(logging.WARNING, logger="reconciler.world.hooks"):
            accepted = [hooks.submit(notice(seq=seq)) for seq in range(QUEUE_SIZE + 10)]
        # one is running (or about to), QUEUE_SIZE wait: the rest are dropped, and counted
        dropped = accepted.count(False)
        assert 9 <= dropped <= 10
        # not yet reported (the run under way may have taken the count when it began)
        assert hooks.dropped <= dropped
        assert len([r for r in caplog.records if "queue is full" in r.getMessage()]) == 1
        gate.touch()
        ran.wait(accepted.count(True))
    finally:  # a failed assertion above must not leave the gated hook looping for ever
        gate.touch()
        hooks.stop(time.monotonic() + 5)
    assert sum(r.dropped for r in ran) == dropped and hooks.dropped == 0
    assert [r.cause for r in ran] == [seq for seq, ok in enumerate(accepted) if ok]  # in order


def test_one_hook_at_a_time(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hook = script(tmp_path, f'echo start >> "{log}"\nsleep 0.2\necho end >> "{log}"\n')
    ran = Ran()
    hooks = runner(NotifyConfig((str(hook),)), ran)
    for seq in range(3):
        hooks.submit(notice(seq=seq))
    ran.wait(3)
    hooks.stop(time.monotonic() + 5)
    assert log.read_text().split() == ["start", "end"] * 3


def test_stop_kills_a_hook_still_running_and_starts_no_other(tmp_path: Path) -> None:
    started = tmp_path / "started"
    hook = script(tmp_path, f'echo "$RECONCILER_SEQ" >> "{started}"\nexec sleep 60\n')
    ran = Ran()
    hooks = runner(NotifyConfig((str(hook),)), ran)
    hooks.submit(notice(seq=1))
    hooks.submit(notice(seq=2))  # still waiting when the stop comes
    while not started.exists():
        time.sleep(0.02)
    begun = time.monotonic()
    hooks.stop(time.monotonic() + 0.3)
    assert time.monotonic() - begun < 3
    ran.wait(1)
    assert ran[0].outcome == "failed" and ran[0].status == -9
    time.sleep(0.5)
    assert started.read_text().split() == ["1"]  # the waiting one never started


def _kill_pid_in(pidfile: Path) -> None:
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_a_setsid_child_holding_stderr_does_not_stop_later_notifications(
    tmp_path: Path,
) -> None:
    """The first run starts a daemonising helper (setsid: it leaves the hook's group, so the
    timeout's kill cannot reach it) that keeps the hook's stderr open for 30 s; the hook
    itself exits 0 at once. That run is ok, and the needs-attention after it is run and
    recorded within seconds."""
    pidfile = tmp_path / "helper.pid"
    hook = script(
        tmp_path,
        f'if [ "$RECONCILER_EVENT" = address-changed ]; then\n'
        f'  setsid sleep 30 &\n  echo $! > "{pidfile}"\nfi\nexit 0\n',
    )
    ran = Ran()
    hooks = runner(NotifyConfig((str(hook),), timeout=1.0), ran)
    try:
        started = time.monotonic()
        assert hooks.submit(notice("address-changed", 7))
        assert hooks.submit(notice("needs-attention", 8))
        ran.wait(2, timeout=8)
        assert time.monotonic() - started < 3
        assert [(r.event, r.outcome, r.status) for r in ran] == [
            ("address-changed", "ok", 0),
            ("needs-attention", "ok", 0),
        ]
        assert _running(int(pidfile.read_text())), "the helper is not ours to kill"
    finally:
        hooks.stop(time.monotonic() + 5)
        _kill_pid_in(pidfile)


def test_a_background_child_of_a_hook_that_exits_at_once_is_an_ok_quick_run(
    tmp_path: Path,
) -> None:
    """`sleep 30 &` (as `curl ... &` would) keeps the hook's stderr open; the hook exits 0
    at once: the run is ok, quick, and the child is left to finish its work."""
    pidfile = tmp_path / "child.pid"
    hook = script(tmp_path, f'sleep 30 &\necho $! > "{pidfile}"\nexit 0\n')
    ran = Ran()
    hooks = runner(NotifyConfig((str(hook),), timeout=5.0), ran)
    try:
        hooks.submit(notice())
        ran.wait(1, timeout=8)
        assert (ran[0].outcome, ran[0].status, ran[0].detail) == ("ok", 0, "")
        assert ran[0].seconds < 1.0
        assert _running(int(pidfile.read_text()))
    finally:
        hooks.stop(time.monotonic() + 5)
        _kill_pid_in(pidfile)
