"""Tests for `reconciler status`: read-only, while the log is held, text and JSON."""

from __future__ import annotations

import io
import json
import os
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
