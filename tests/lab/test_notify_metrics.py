"""[notify] hooks and [metrics] end to end: the real daemon in the lab's router namespace,
a real hook program, node_exporter's textfile read back with prometheus_client's parser, and
a scrape of /metrics over the router's loopback."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.lab.topology import FIRST_WAN_ADDRESS, Lab, wait_until
from reconciler.model.facts import (
    ActionFailed,
    ActionSucceeded,
    ConfigLoaded,
    DaemonStarted,
    HookRan,
    ProbeObserved,
    WanAddressObserved,
)

NEW_ADDRESS = "203.0.113.11"
LISTEN_PORT = 9469

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def recording_hook(lab: Lab, body: str = "") -> tuple[Path, Path]:
    """A hook that saves its whole environment per run, in order; (program, runs dir)."""
    runs = lab.workdir / "hook-runs"
    runs.mkdir()
    program = lab.workdir / "hook.sh"
    program.write_text(
        f'#!/bin/sh\nn=$(ls "{runs}" | wc -l)\nenv > "{runs}/$(printf %04d "$n").env"\n' + body
    )
    program.chmod(0o755)
    return program, runs


def hook_runs(runs: Path) -> list[dict[str, str]]:
    found = []
    for path in sorted(runs.glob("*.env")):
        lines = path.read_text().splitlines()
        found.append(dict(line.split("=", 1) for line in lines if "=" in line))
    return found


def events(runs: Path) -> list[str]:
    return [run.get("RECONCILER_EVENT", "") for run in hook_runs(runs)]


def facts(lab: Lab, cls: type) -> list[Any]:
    return [e for e in lab.envelopes() if isinstance(e.fact, cls)]


def ipv6_ok(lab: Lab) -> bool:
    return any(e.fact.family == "ipv6" and e.fact.ok for e in facts(lab, ProbeObserved))


def since_last_start(lab: Lab) -> list[Any]:
    envelopes = lab.envelopes()
    start = max(i for i, e in enumerate(envelopes) if isinstance(e.fact, DaemonStarted))
    return envelopes[start:]


def scrape(lab: Lab) -> str:
    """GET /metrics over loopback inside the router namespace."""
    code = (
        "import sys, urllib.request\n"
        "with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n"
        "    sys.stdout.write(r.read().decode())\n"
    )
    import subprocess

    done = subprocess.run(
        ["ip", "netns", "exec", lab.router_ns, sys.executable, "-c", code,
         f"http://127.0.0.1:{LISTEN_PORT}/metrics"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def address_change(lab_available: None) -> Iterator[SimpleNamespace]:
    """One run: hooks on, textfile and /metrics on; the ISP changes the WAN address."""
    with Lab() as lab:
        program, runs = recording_hook(lab)
        textfile_dir = lab.workdir / "textfile"
        textfile_dir.mkdir()
        textfile = textfile_dir / "reconciler.prom"
        lab.start_daemon(
            notify__command=[str(program)],
            metrics__textfile=str(textfile),
            metrics__listen=f"127.0.0.1:{LISTEN_PORT}",
        )
        wait_until(lambda: ipv6_ok(lab), timeout=30, what="a good IPv6 probe")
        lab.set_wan_address(NEW_ADDRESS)
        wait_until(lambda: "repaired" in events(runs), timeout=40, what="the repaired hook")
        wait_until(lambda: textfile.exists(), timeout=10, what="the textfile")
        story = SimpleNamespace(lab=lab, runs=runs, textfile=textfile)
        story.scraped = scrape(lab)
        story.replay = lab.reconciler("replay")
        story.stopped = lab.stop_daemon()
        story.final_textfile = textfile.read_text()
        story.command = lab.reconciler("metrics")
        yield story
        no_key_anywhere(lab)


def test_address_change_tells_the_hook_then_repaired_with_addresses_and_outage(
    address_change: SimpleNamespace,
) -> None:
    lab, runs = address_change.lab, address_change.runs
    told = hook_runs(runs)
    names = [run["RECONCILER_EVENT"] for run in told]
    assert names[0] == "daemon-started"
    assert names.index("address-changed") < names.index("repaired"), names
    changed = told[names.index("address-changed")]
    assert changed["RECONCILER_WAN_ADDRESS"] == NEW_ADDRESS
    assert changed["RECONCILER_PREVIOUS_ADDRESS"] == FIRST_WAN_ADDRESS
    cause = next(e for e in lab.envelopes() if e.seq == int(changed["RECONCILER_SEQ"]))
    assert isinstance(cause.fact, WanAddressObserved) and cause.fact.address == NEW_ADDRESS
    repaired = told[names.index("repaired")]
    assert repaired["RECONCILER_WAN_ADDRESS"] == NEW_ADDRESS
    assert 0 < float(repaired["RECONCILER_OUTAGE_SECONDS"]) < 30
    assert "IPv6 works" in repaired["RECONCILER_MESSAGE"]
    # only a small fixed environment: nothing of the daemon's own
    assert set(changed) - {
        "PATH",
        "PWD",
        "SHLVL",
        "_",
        "LANG",
        "LC_ALL",
        "HOME",
        "TZ",
        "TMPDIR",
    } <= {name for name in changed if name.startswith("RECONCILER_")}


def test_each_hook_run_is_a_fact_that_replay_shows(address_change: SimpleNamespace) -> None:
    lab = address_change.lab
    ran = [e.fact for e in facts(lab, HookRan)]
    assert [r.event for r in ran][:1] == ["daemon-started"]
    assert {"address-changed", "repaired"} <= {r.event for r in ran}
    assert all(r.outcome == "ok" and r.status == 0 for r in ran)
    replay = address_change.replay
    assert replay.returncode == 0, replay.stderr
    assert "notify hook for address-changed" in replay.stdout
    assert "notify hook for repaired" in replay.stdout
    assert address_change.stopped == 0


def test_the_textfile_parses_and_its_counters_match_the_log(
    address_change: SimpleNamespace,
) -> None:
    lab = address_change.lab
    got = samples(address_change.final_textfile)
    run = since_last_start(lab)
    outcomes: Counter[tuple[str, str]] = Counter()
    for envelope in run:
        fact = envelope.fact
        if isinstance(fact, ActionSucceeded):
            outcomes[(fact.action, "ok")] += 1
        elif isinstance(fact, ActionFailed):
            outcomes[(fact.action, fact.kind)] += 1
    assert outcomes[("update-he-endpoint", "ok")] == 1
    shown = {
        (dict(labels)["action"], dict(labels)["result"]): value
        for (name, labels), value in got.items()
        if name == "reconciler_actions_total"
    }
    assert shown == outcomes
    assert got[("reconciler_he_answers_total", (("answer", "good"),))] == 1
    hooks = Counter(e.fact.outcome for e in run if isinstance(e.fact, HookRan))
    assert got[("reconciler_hook_runs_total", (("outcome", "ok"),))] == hooks["ok"]
    assert got[("reconciler_repair_seconds_count", ())] == 1
    assert got[("reconciler_log_last_seq", ())] == lab.envelopes()[-1].seq
    assert got[("reconciler_up", (("family", "ipv6"),))] == 1
    assert got[("reconciler_down_reason", (("reason", "none"),))] == 1
    info = (("address", NEW_ADDRESS), ("interface", "wan0"))
    assert got[("reconciler_wan_address_info", info)] == 1
    ipv6_probes = sum(
        1
        for e in run
        if isinstance(e.fact, ProbeObserved) and e.fact.family == "ipv6" and e.fact.ok
    )
    assert got[("reconciler_probe_rtt_seconds_count", (("family", "ipv6"),))] == ipv6_probes


def test_the_metrics_command_computes_the_same_from_the_log(
    address_change: SimpleNamespace,
) -> None:
    command = address_change.command
    assert command.returncode == 0, command.stderr
    from_log, written = samples(command.stdout), samples(address_change.final_textfile)
    counters = {
        key: value
        for key, value in written.items()
        if key[0].endswith(("_total", "_count", "_bucket")) and "dropped" not in key[0]
    }
    assert counters and {key: from_log.get(key) for key in counters} == counters


def test_metrics_are_scraped_over_loopback_in_the_router(address_change: SimpleNamespace) -> None:
    got = samples(address_change.scraped)
    assert got[("reconciler_he_endpoint_matches", ())] == 1
    assert got[("reconciler_log_last_seq", ())] > 0
    assert ("reconciler_build_info", (("version", got_version(got)),)) in got


def got_version(got: Samples) -> str:
    return next(dict(labels)["version"] for name, labels in got if name == "reconciler_build_info")


def no_key_anywhere(lab: Lab) -> None:
    """The update key is in no file the run produced: the hooks' saved environments, the
    textfile, the log, the daemon's output."""
    for path in lab.produced_files():
        data = path.read_bytes()
        for key in lab.keys_used:
            assert key.encode() not in data, f"the update key leaked into {path}"


@pytest.fixture
def lab(lab_available: None) -> Iterator[Lab]:
    with Lab() as built:
        yield built
        no_key_anywhere(built)


def test_badauth_needs_attention_exactly_once_however_long_it_waits(lab: Lab) -> None:
    program, runs = recording_hook(lab)
    lab.start_daemon(notify__command=[str(program)])
    wait_until(lambda: ipv6_ok(lab), timeout=30, what="a good IPv6 probe")
    wrong = lab.workdir / "he-accepts-other.key"
    lab.write_secret(wrong, f"lab-key-other-{time.time_ns()}")
    lab.he("credentials", key_file=str(wrong))  # HE now wants a key the daemon lacks
    lab.set_wan_address(NEW_ADDRESS)
    wait_until(lambda: "needs-attention" in events(runs), timeout=30, what="needs-attention")
    seen = len(lab.envelopes())
    # probes every second, observations, passes: a dozen cycles of everything
    wait_until(lambda: len(lab.envelopes()) > seen + 30, timeout=60, what="thirty more facts")
    time.sleep(2)
    told = [run for run in hook_runs(runs) if run["RECONCILER_EVENT"] == "needs-attention"]
    assert len(told) == 1, events(runs)
    assert told[0]["RECONCILER_RESULT"] == "badauth"
    assert told[0]["RECONCILER_ACTION"] == f"update-he-endpoint:{NEW_ADDRESS}"
    # the daemon's verdict, from the facts: the layer, what HE has, what the WAN has
    reason = told[0]["RECONCILER_DOWN_REASON"]
    assert reason.startswith("IPv6 down since ")
    assert f"the WAN has {NEW_ADDRESS}, last update: " in reason and "badauth" in reason
    assert told[0]["RECONCILER_MESSAGE"].endswith(reason)
    assert events(runs).count("action-failed") == 1
    assert lab.he_update_calls() == 1
    # SIGHUP with a hook given by a relative path: one line naming the key, nothing changes
    loaded = len(facts(lab, ConfigLoaded))
    lab.write_config(notify__command=["hooks/notify-me"])
    lab.reload_daemon()
    wait_until(lambda: "notify.command" in lab.daemon_stderr(), timeout=15, what="the refusal")
    refused = [line for line in lab.daemon_stderr().splitlines() if "notify.command" in line]
    assert len(refused) == 1 and "must be an absolute path" in refused[0], refused
    time.sleep(1)
    assert len(facts(lab, ConfigLoaded)) == loaded and lab.daemon_running()
    assert lab.stop_daemon() == 0
    assert events(runs)[-1] == "daemon-stopped"  # the old hook still ran


def test_a_hook_that_sleeps_a_minute_does_not_delay_the_repair(lab: Lab) -> None:
    program, runs = recording_hook(lab, body="sleep 60\n")
    lab.start_daemon(notify__command=[str(program)], notify__timeout=120)
    wait_until(lambda: ipv6_ok(lab), timeout=30, what="a good IPv6 probe")
    wait_until(lambda: events(runs) == ["daemon-started"], timeout=10, what="the hook running")
    repair_seconds = lab.move_wan_and_time_repair(NEW_ADDRESS, timeout=40)
    # the first hook is still asleep: everything since waits in its queue
    assert events(runs) == ["daemon-started"]
    assert not facts(lab, HookRan)
    assert repair_seconds < 15, f"the repair took {repair_seconds:.1f} s behind a sleeping hook"
    began = time.monotonic()
    assert lab.stop_daemon() == 0
    assert time.monotonic() - began < 6  # the sleeping hook is killed, not waited for
