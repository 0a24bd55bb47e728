"""Tests for `reconciler status`: read-only, while the log is held, text and JSON."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from reconciler.cli import Environment, main
from reconciler.eventlog import EventLog
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    DaemonStarted,
    EndpointObserved,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
)
from reconciler.recorder import Recorder
from tests.daemon_helpers import linux_config_text

REPO = Path(__file__).resolve().parents[2]


def _status(config: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["status", "-c", str(config), *extra], Environment(stdout=out, stderr=err))
    return code, out.getvalue(), err.getvalue()


def _world(tmp_path: Path) -> Path:
    config = tmp_path / "reconciler.conf"
    config.write_text(
        linux_config_text(tmp_path, wan="wan0", update_url="http://127.0.0.1:9/nic/update")
    )
    return config


def test_status_reads_while_the_writer_holds_the_log(tmp_path: Path) -> None:
    """With a writer holding the lock, status shows state, last actions and the backoff hold."""
    config = _world(tmp_path)
    from reconciler.configfile import load_config

    loaded = load_config(config)
    now = time.time()
    with EventLog.open(tmp_path / "state" / "events") as log:
        recorder = Recorder(log, lambda: now)
        recorder.record(DaemonStarted(pid=os.getpid(), version="t"), "daemon")
        from reconciler.reconcile import config_loaded_fact

        recorder.record(config_loaded_fact(loaded), "daemon")
        recorder.record(
            WanAddressObserved("wan0", "203.0.113.7", True, addresses=("203.0.113.7",)),
            "observer:wan",
        )
        recorder.record(
            TunnelObserved("rctun0", True, True, "203.0.113.7", "198.51.100.1", "vxlan"), "t"
        )
        recorder.record(ProbeObserved("ipv4", "127.0.0.1", True, 0.1), "observer:probe:ipv4")
        recorder.record(EndpointObserved("203.0.113.5", "tunnel-info"), "observer:he")
        key = "update-he-endpoint:203.0.113.7"
        recorder.record(ActionStarted(key, "update-he-endpoint", "HE has 203.0.113.5"), "x")
        recorder.record(
            ActionFailed(key, "update-he-endpoint", "temporary", "connection refused", 600.0), "x"
        )

        code, out, err = _status(config, "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["schema"] == "reconciler.status/1"
        assert report["observed"]["wan"]["address"] == "203.0.113.7"
        assert report["observed"]["probes"]["ipv4"]["consecutive_ok"] == 1
        assert report["last_actions"][-1]["key"] == key
        assert report["last_actions"][-1]["outcome"] == "temporary"
        held = {entry["key"]: entry for entry in report["held"]}
        assert held[key]["until"] is not None
        assert report["daemon"]["running"] is True
        assert report["daemon"]["pid"] == os.getpid()
        code, text, _ = _status(config)
        assert code == 0
        assert "wan:      wan0 link up, 203.0.113.7" in text
        assert f"held      {key}" in text and "until" in text
        assert "connection refused" in text


def test_status_without_a_log_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """No event log yet: one clear line, exit 1, no traceback."""
    code, out, err = _status(_world(tmp_path))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no event log" in err


_WRITER = """
import os, sys, time
from reconciler.eventlog import EventLog
from reconciler.model.facts import ActionStarted, DaemonStarted, to_record
key = "restart-tunnel:203.0.113.7->198.51.100.1"
with EventLog.open(sys.argv[1]) as log:
    if sys.argv[2] == "daemon":
        log.append(to_record(DaemonStarted(os.getpid(), "t"), at=time.time(), source="d"))
    started = ActionStarted(key, "restart-tunnel", "tunnel down")
    log.append(to_record(started, at=time.time(), source="d"))
    print("ready", flush=True)
    sys.stdin.read()
"""
_RUNNING_KEY = "restart-tunnel:203.0.113.7->198.51.100.1"


def _start_writer(tmp_path: Path, kind: str) -> subprocess.Popen[str]:
    """A real process holding the event log's lock with an action started and no outcome."""
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path / "state" / "events"), kind],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def _stop(child: subprocess.Popen[str]) -> None:
    child.kill()
    child.wait(timeout=10)


def test_a_live_daemon_is_found_through_the_lock_and_its_action_is_running(
    tmp_path: Path,
) -> None:
    """While the daemon holds the lock its unfinished action is "running"; killed, "interrupted"."""
    config = _world(tmp_path)
    child = _start_writer(tmp_path, "daemon")
    try:
        code, out, err = _status(config, "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["daemon"]["running"] is True and report["daemon"]["pid"] == child.pid
        assert report["daemon"]["writer"] == "daemon"
        assert report["observed"]["running"] == [_RUNNING_KEY]
        assert report["observed"]["interrupted"] == []
        assert report["last_actions"][-1]["outcome"] == "running"
        code, text, _ = _status(config)
        assert f"daemon:   running, pid {child.pid}" in text
        assert f"running now: {_RUNNING_KEY}" in text and "interrupted" not in text
    finally:
        _stop(child)
    code, out, _ = _status(config, "--json")
    report = json.loads(out)
    assert report["daemon"]["running"] is False
    assert report["daemon"]["reason"] == "ended without DaemonStopped (killed or crashed)"
    assert report["observed"]["interrupted"] == [_RUNNING_KEY]
    assert report["last_actions"][-1]["outcome"] == "interrupted"


def test_the_lock_holder_counts_without_a_daemon_started_fact(tmp_path: Path) -> None:
    """Retention may have dropped DaemonStarted: the lock still shows the writer alive."""
    config = _world(tmp_path)
    child = _start_writer(tmp_path, "no-start-fact")
    try:
        code, out, err = _status(config, "--json")
        assert code == 0, err
        daemon = json.loads(out)["daemon"]
        assert (daemon["running"], daemon["pid"]) == (True, child.pid)
    finally:
        _stop(child)


def test_a_live_pid_in_a_released_lock_file_is_not_the_daemon(tmp_path: Path) -> None:
    """DaemonStarted names a live pid (this test) but nobody holds the lock: not running."""
    config = _world(tmp_path)
    with EventLog.open(tmp_path / "state" / "events") as log:
        Recorder(log, time.time).record(DaemonStarted(pid=os.getpid(), version="t"), "daemon")
    code, out, err = _status(config, "--json")
    assert code == 0, err
    assert json.loads(out)["daemon"]["running"] is False


def test_status_before_any_probe_says_not_probed_yet(tmp_path: Path) -> None:
    """Probes never run read as such, not as `probe : 0 ok ... since None`."""
    state_dir = tmp_path / "state"
    with EventLog.open(state_dir / "events") as log:
        Recorder(log).record(DaemonStarted(1, "t"), "daemon")
    out, err = io.StringIO(), io.StringIO()
    code = main(["status", "--state-dir", str(state_dir)], Environment(stdout=out, stderr=err))
    lines = out.getvalue().splitlines()
    assert code == 0
    assert "ipv4:     not probed yet" in lines and "ipv6:     not probed yet" in lines
    assert "None" not in out.getvalue()


def test_status_says_why_ipv6_is_down_from_the_facts(tmp_path: Path) -> None:
    """The daemon's last verdict heads the status: HE has the old address, the WAN the new,
    and HE's abuse back-off holds the update (from the plan), with the times."""
    from datetime import UTC, datetime

    from reconciler.configfile import load_config
    from reconciler.reconcile import config_loaded_fact

    config = _world(tmp_path)
    loaded = load_config(config)
    clock = [time.time() - 60]

    def hhmm(at: float) -> str:
        return datetime.fromtimestamp(at, UTC).strftime("%H:%M")

    with EventLog.open(tmp_path / "state" / "events") as log:
        recorder = Recorder(log, lambda: clock[0])
        recorder.record(config_loaded_fact(loaded), "daemon")
        old, new = "203.0.113.10", "203.0.113.11"
        recorder.record(WanAddressObserved("wan0", old, True, addresses=(old,)), "observer:wan")
        recorder.record(EndpointObserved(old, "update", for_local=old), "observer:he")
        recorder.record(ProbeObserved("ipv6", "2001:db8::1", True, 0.1), "observer:probe:ipv6")
        clock[0] += 10
        moved = clock[0]
        recorder.record(WanAddressObserved("wan0", new, True, addresses=(new,)), "observer:wan")
        key = f"update-he-endpoint:{new}"
        recorder.record(ActionStarted(key, "update-he-endpoint", "moved"), "x")
        recorder.record(
            ActionFailed(key, "update-he-endpoint", "temporary", "HE answered abuse", 10800.0),
            "x",
        )
    code, text, err = _status(config)
    assert code == 0, err
    assert (
        f"verdict:  IPv6 down since {hhmm(moved)}: HE has {old}, the WAN has {new}, "
        f"update held: abuse back-off until {hhmm(moved + 10800)}"
    ) in text
    report = json.loads(_status(config, "--json")[1])
    assert report["verdict"]["check"] == "he-endpoint"
