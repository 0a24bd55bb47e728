"""Metrics: the exposition (read back with prometheus_client's own parser), the textfile
written atomically, /metrics over loopback, and `reconciler metrics` from a log."""

from __future__ import annotations

import io
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.cli import Environment, main
from reconciler.eventlog import EventLog
from reconciler.metrics import ListenError, Publisher, Reading, exposition, listen
from reconciler.model.config import MetricsConfig, ReconcileConfig
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    DaemonStarted,
    EndpointObserved,
    Envelope,
    Fact,
    ProbeObserved,
    WanAddressObserved,
)
from reconciler.model.state import ObservedState, fold
from reconciler.model.telemetry import Telemetry
from reconciler.recorder import Recorder
from reconciler.statedir import events_dir
from tests.config.test_configfile import VALID, write_config

GOOD = "HE endpoint good: 203.0.113.11"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, by name and sorted labels, as prometheus_client parses the text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def story() -> list[Fact]:
    return [
        DaemonStarted(pid=1, version="9.9"),
        WanAddressObserved("wan0", "203.0.113.10", True),
        ProbeObserved("ipv6", "t", True, 20.0),
        WanAddressObserved("wan0", "203.0.113.11", True),
        ActionStarted("update-he-endpoint:203.0.113.11", "update-he-endpoint", "r"),
        ActionSucceeded("update-he-endpoint:203.0.113.11", "update-he-endpoint", GOOD),
        EndpointObserved("203.0.113.11", "update", for_local="203.0.113.11"),
        ActionStarted("restart-tunnel:x", "restart-tunnel", "r"),
        ActionFailed("restart-tunnel:x", "restart-tunnel", "temporary", "boom"),
        ProbeObserved("ipv6", "t", True, 4.0),
    ]


def reading_of(facts: list[Fact]) -> Reading:
    state = ObservedState()
    telemetry = Telemetry.starting_on(state, ReconcileConfig())
    for seq, fact in enumerate(facts, 1):
        envelope = Envelope(seq, 1000.0 + seq, "test", fact)
        after = fold(state, envelope)
        telemetry.observe(state, envelope, after)
        state = after
    return Reading(telemetry, state, (), len(facts), 4096, 1000.0 + len(facts))


def test_the_exposition_parses_and_shows_what_happened() -> None:
    got = samples(exposition(reading_of(story())).decode())
    assert (
        got[("reconciler_actions_total", (("action", "update-he-endpoint"), ("result", "ok")))] == 1
    )
    assert (
        got[("reconciler_actions_total", (("action", "restart-tunnel"), ("result", "temporary")))]
        == 1
    )
    assert got[("reconciler_he_answers_total", (("answer", "good"),))] == 1
    assert got[("reconciler_notifications_total", (("event", "address-changed"),))] == 1
    assert got[("reconciler_notifications_total", (("event", "repaired"),))] == 1
    assert got[("reconciler_repair_seconds_count", ())] == 1
    assert got[("reconciler_repair_seconds_sum", ())] == pytest.approx(6.0)
    assert got[("reconciler_outage_seconds_total", ())] == pytest.approx(6.0)
    assert got[("reconciler_up", (("family", "ipv6"),))] == 1
    assert got[("reconciler_up", (("family", "ipv4"),))] == 0
    assert got[("reconciler_probe_rtt_last_seconds", (("family", "ipv6"),))] == 0.004
    assert got[("reconciler_probe_rtt_seconds_count", (("family", "ipv6"),))] == 2
    info = (("address", "203.0.113.11"), ("interface", "wan0"))
    assert got[("reconciler_wan_address_info", info)] == 1
    assert got[("reconciler_he_endpoint_matches", ())] == 1
    assert got[("reconciler_he_last_update_success_timestamp_seconds", ())] == 1006.0
    assert got[("reconciler_holds", (("reason", "permanent-failure"),))] == 0
    assert got[("reconciler_log_last_seq", ())] == 10
    assert got[("reconciler_log_size_bytes", ())] == 4096
    assert got[("reconciler_start_time_seconds", ())] == 1001.0
    assert got[("reconciler_build_info", (("version", "9.9"),))] == 1
    assert got[("reconciler_down_reason", (("reason", "none"),))] == 1
    assert got[("reconciler_down_reason", (("reason", "he-endpoint"),))] == 0


def test_the_down_reason_label_names_the_broken_layer() -> None:
    """During the outage (the WAN moved, HE's update failed), the metric names HE's view;
    one series per layer, exactly one of them 1."""
    failed = ActionFailed("update-he-endpoint:203.0.113.11", "update-he-endpoint", "temporary", "x")
    facts = [*story()[:5], failed]
    got = samples(exposition(reading_of(facts)).decode())
    reasons = {
        labels[0][1]: v for (name, labels), v in got.items() if name == "reconciler_down_reason"
    }
    assert reasons["he-endpoint"] == 1
    assert sum(reasons.values()) == 1
    assert {"none", "wan", "tunnel", "ipv6-path"} <= set(reasons)


def test_the_publisher_writes_the_textfile_atomically_and_again_on_change(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reconciler.prom"
    facts = story()
    shown = {"count": 3}

    def read() -> Reading:
        return reading_of(facts[: shown["count"]])

    publisher = Publisher(MetricsConfig(textfile=path), read, interval=60.0)
    publisher.start()
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert samples(path.read_text())[("reconciler_log_last_seq", ())] == 3
        assert (path.stat().st_mode & 0o777) == 0o644
        shown["count"] = 10
        publisher.changed()
        while samples(path.read_text())[("reconciler_log_last_seq", ())] != 10:
            assert time.monotonic() < deadline, "not rewritten on change"
            time.sleep(0.02)
    finally:
        publisher.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reconciler.prom"]  # no temp left


def test_the_textfile_is_rewritten_every_interval_without_a_change(tmp_path: Path) -> None:
    path = tmp_path / "r.prom"
    publisher = Publisher(MetricsConfig(textfile=path), lambda: reading_of(story()), 0.3)
    publisher.start()
    time.sleep(1.5)
    publisher.stop()
    assert publisher.writes >= 3


def test_metrics_over_http_on_loopback_and_a_taken_address() -> None:
    server = listen(("127.0.0.1", 0), lambda: reading_of(story()))
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert samples(text)[("reconciler_log_last_seq", ())] == 10
        with pytest.raises(ListenError, match="in use"):
            listen(("127.0.0.1", port), lambda: reading_of(story()))
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_over_http_on_ipv6_loopback_without_a_line_per_scrape(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """`[::1]:PORT` is served over IPv6; a scrape writes nothing to stderr."""
    server = listen(("::1", 0), lambda: reading_of(story()))
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=5) as answer:
            assert answer.status == 200
            assert "reconciler_log_last_seq 10.0" in answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert capfd.readouterr().err == ""


def test_metrics_command_computes_from_the_log(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    state_dir = tmp_path / "state"
    with EventLog.open(events_dir(state_dir)) as log:
        recorder = Recorder(log)
        old_run = [DaemonStarted(pid=1, version="0.1"), ActionSucceeded("reload-pf:x", "reload-pf")]
        for fact in old_run + story():
            recorder.record(fact, "test")
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["metrics", "-c", str(path)], Environment(stdout=out, stderr=err, environ={}, cwd=tmp_path)
    )
    assert code == 0, err.getvalue()
    got = samples(out.getvalue())
    # counters count from the last daemon-started, as that daemon's own do
    assert ("reconciler_actions_total", (("action", "reload-pf"), ("result", "ok"))) not in got
    assert (
        got[("reconciler_actions_total", (("action", "update-he-endpoint"), ("result", "ok")))] == 1
    )
    assert got[("reconciler_log_last_seq", ())] == 12
    assert got[("reconciler_log_size_bytes", ())] == sum(
        p.stat().st_size for p in events_dir(state_dir).iterdir() if p.is_file()
    )


def test_metrics_command_with_a_bad_config_is_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, VALID + '[metrics]\nlisten = "nope"\n')
    err = io.StringIO()
    code = main(
        ["metrics", "-c", str(path)],
        Environment(stdout=io.StringIO(), stderr=err, environ={}, cwd=tmp_path),
    )
    assert code == 1 and len(err.getvalue().splitlines()) == 1
