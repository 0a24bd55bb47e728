"""`reconciler replay` on the committed story log: timeline structure, --at, JSON, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.commands.replay import parse_time
from reconciler.errors import ReconcilerError
from reconciler.history import iter_envelopes, load_state
from reconciler.model.facts import ActionFailed, UnknownFact
from tests.commands.test_diff import FIXTURE, run_cli
from tests.fixtures.make_story_log import STORY


def test_fixture_log_reads_back_typed() -> None:
    """The committed log written by this version reads back fact for fact, plus one unknown."""
    envelopes = list(iter_envelopes(FIXTURE))
    assert [e.fact for e in envelopes[:-1]] == [fact for _, _, fact in STORY]
    assert isinstance(envelopes[-1].fact, UnknownFact)
    state, seq = load_state(FIXTURE)
    assert seq == len(STORY) + 1
    assert state.wan is not None and state.wan.address == "203.0.113.9"
    failed = state.actions["restart-tunnel:203.0.113.9->198.51.100.1"]
    assert failed.last_outcome == "temporary" and isinstance(envelopes[19].fact, ActionFailed)


def test_replay_tells_the_story(tmp_path: Path) -> None:
    """The timeline shows state changes, decisions with reasons and causes, and outcomes."""
    code, out, err = run_cli(["replay", "--state-dir", str(FIXTURE)], tmp_path)
    assert (code, err) == (0, "")
    assert "changed: IPv4 probe: up -> down" in out
    assert "changed: WAN em0 address: 203.0.113.7 -> none" in out
    assert "decided restart-wan:em0: WAN em0 has no IPv4 address (because of #10, #11)" in out
    assert "failed restart-tunnel:203.0.113.9->198.51.100.1 (temporary" in out
    assert "changed: HE endpoint: 203.0.113.7 -> 203.0.113.9" in out
    assert "not understood (unknown fact type)" in out
    heads = [line for line in out.splitlines() if line.startswith("2024-05-01T")]
    assert heads and all("#" in h for h in heads)
    assert [h.split()[0] for h in heads] == sorted(h.split()[0] for h in heads)


def test_replay_window(tmp_path: Path) -> None:
    """--since/--until keep only entries inside the window."""
    args = ["replay", "--state-dir", str(FIXTURE), "--since", "2024-05-01T12:03:00",
            "--until", "2024-05-01T12:04:03Z"]  # fmt: skip
    code, out, _ = run_cli(args, tmp_path)
    heads = [line.split()[0] for line in out.splitlines() if line.startswith("2024")]
    assert code == 0 and heads
    assert all("2024-05-01T12:03:00Z" <= h <= "2024-05-01T12:04:03Z" for h in heads)


def test_replay_at_prints_state_then(tmp_path: Path) -> None:
    """--at prints the state as it was: the WAN without an address at 12:02:30."""
    code, out, _ = run_cli(
        ["replay", "--state-dir", str(FIXTURE), "--at", "2024-05-01T12:02:30Z"], tmp_path
    )
    assert code == 0
    assert "WAN em0: up, address none" in out and "ipv4 probe: unknown" not in out


def test_replay_json_is_versioned(tmp_path: Path) -> None:
    """--json prints one document with a schema and an entry per fact."""
    code, out, _ = run_cli(["replay", "--json", "--state-dir", str(FIXTURE)], tmp_path)
    document = json.loads(out)
    assert code == 0 and document["schema"] == "reconciler.replay/1"
    assert document["count"] == len(document["entries"]) == len(STORY) + 1
    assert document["entries"][-1]["type"] == "route-observed"
    code, out, _ = run_cli(
        ["replay", "--json", "--state-dir", str(FIXTURE), "--at", "2024-05-01T12:10:00Z"],
        tmp_path,
    )
    assert json.loads(out)["schema"] == "reconciler.replay-state/1"


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", ""])
def test_bad_time_is_one_line_error(tmp_path: Path, value: str) -> None:
    """A time that does not parse is one line on stderr and exit 1, never a traceback."""
    code, _out, err = run_cli(["replay", "--state-dir", str(FIXTURE), "--since", value], tmp_path)
    if value == "":
        assert code == 0  # an empty option means "from the start"
        return
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--since" in err


def test_parse_time_forms() -> None:
    """ISO 8601 with and without a zone (UTC) and epoch seconds are accepted."""
    assert parse_time("--at", "2024-05-01T12:00:00Z") == 1_714_564_800.0
    assert parse_time("--at", "2024-05-01T12:00:00") == 1_714_564_800.0
    assert parse_time("--at", "2024-05-01T14:00:00+02:00") == 1_714_564_800.0
    assert parse_time("--at", "1714564800") == 1_714_564_800.0
    with pytest.raises(ReconcilerError):
        parse_time("--at", "noon")


@pytest.mark.parametrize("option", ["--since", "--until", "--at"])
@pytest.mark.parametrize(
    "value", ["nan", "inf", "-inf", "1e20", "-1e20", "0001-01-01T00:00:00+01:00"]
)
def test_times_a_date_cannot_show_are_one_line_errors(
    tmp_path: Path, option: str, value: str
) -> None:
    """Non-finite or out-of-range times are refused up front, not crashed on while printing."""
    for extra in ([], ["--json"]):
        code, out, err = run_cli(
            ["replay", "--state-dir", str(FIXTURE), f"{option}={value}", *extra], tmp_path
        )
        assert (code, out) == (1, "")
        assert err.count("\n") == 1 and option in err and "not a time" in err
        assert "internal error" not in err


def test_parse_time_accepts_the_ends_of_the_range() -> None:
    """Epoch 0 and the last second of year 9999 are times; one second more is not."""
    assert parse_time("--at", "0") == 0.0
    assert parse_time("--at", "253402300799") == 253_402_300_799.0
    with pytest.raises(ReconcilerError):
        parse_time("--at", "253402300800")


def test_replay_says_when_retention_removed_the_start(tmp_path: Path) -> None:
    """After retention removed the first segments, the timeline and --at say from which
    record the fold starts, in text and JSON; a whole log says history_from 1."""
    from reconciler.eventlog import EventLog
    from reconciler.model.facts import ProbeObserved, to_record

    state_dir = tmp_path / "state"
    probe = ProbeObserved("ipv4", "192.0.2.1", True, 1.0)
    with EventLog.open(state_dir / "events", segment_size=4096) as log:
        log.append_many([to_record(probe, at=1.7e9 + i, source="t") for i in range(300)])
        first_kept = log.segments()[2][0]
        log.remove_segments_before(first_kept - 1)
    code, out, _ = run_cli(["replay", "--state-dir", str(state_dir)], tmp_path)
    assert code == 0
    assert out.splitlines()[0] == (
        f"note: history before #{first_kept} was removed by retention; "
        f"states are folded from #{first_kept}"
    )
    code, out, _ = run_cli(["replay", "--json", "--state-dir", str(state_dir)], tmp_path)
    assert json.loads(out)["history_from"] == first_kept
    at = ["replay", "--json", "--state-dir", str(state_dir), "--at", "2030-01-01T00:00:00Z"]
    assert json.loads(run_cli(at, tmp_path)[1])["history_from"] == first_kept
    code, out, _ = run_cli(["replay", "--json", "--state-dir", str(FIXTURE)], tmp_path)
    assert json.loads(out)["history_from"] == 1


def _stepped_log(tmp_path: Path) -> Path:
    """Four WAN facts; the third is stamped before the first: the clock stepped back
    between the second and the third (as on a router without a real-time clock)."""
    from reconciler.eventlog import EventLog
    from reconciler.model.facts import WanAddressObserved, to_record

    state_dir = tmp_path / "stepped"
    stamps = [1_000.0, 2_000.0, 500.0, 1_500.0]
    with EventLog.open(state_dir / "events") as log:
        for i, at in enumerate(stamps, 1):
            fact = WanAddressObserved("wan0", f"192.0.2.{i}", True)
            log.append(to_record(fact, at=at, source="t"))
    return state_dir


def _shown(tmp_path: Path, state_dir: Path, *options: str) -> list[int]:
    args = ["replay", "--json", "--state-dir", str(state_dir), *options]
    code, out, err = run_cli(args, tmp_path)
    assert (code, err) == (0, "")
    return [entry["seq"] for entry in json.loads(out)["entries"]]


def test_replay_ranges_follow_the_log_order_across_a_clock_step(tmp_path: Path) -> None:
    """--since starts at the first fact (in log order) stamped at or after it, --until ends
    at the last one stamped at or before it: a backward step hides nothing in range."""
    state_dir = _stepped_log(tmp_path)
    assert _shown(tmp_path, state_dir) == [1, 2, 3, 4]
    assert _shown(tmp_path, state_dir, "--until", "1200") == [1, 2, 3]
    assert _shown(tmp_path, state_dir, "--since", "1200") == [2, 3, 4]
    assert _shown(tmp_path, state_dir, "--since", "2500") == []
    assert _shown(tmp_path, state_dir, "--until", "400") == []
    assert _shown(tmp_path, state_dir, "--since", "1200", "--until", "1600") == [2, 3, 4]


def test_replay_at_takes_the_last_fact_stamped_before_it_in_log_order(tmp_path: Path) -> None:
    """--at T shows the state after the last fact (in log order) stamped at or before T."""
    state_dir = _stepped_log(tmp_path)
    args = ["replay", "--json", "--state-dir", str(state_dir), "--at", "1200"]
    code, out, _ = run_cli(args, tmp_path)
    state = json.loads(out)["state"]
    assert code == 0 and state["seq"] == 3 and state["wan"]["address"] == "192.0.2.3"


def test_replay_at_before_the_first_fact_is_one_clear_line(tmp_path: Path) -> None:
    """No state before the first fact: one line saying so, exit 1, no 1970 dates."""
    state_dir = _stepped_log(tmp_path)
    for extra in ([], ["--json"]):
        args = ["replay", "--state-dir", str(state_dir), "--at", "400", *extra]
        code, out, err = run_cli(args, tmp_path)
        assert (code, out) == (1, "")
        assert err == f"reconciler: no facts at or before 1970-01-01T00:06:40Z in {state_dir}\n"


def test_replay_without_a_log_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A state directory without events/ is an error, as for status and log."""
    for command in (["replay"], ["log", "verify"]):
        code, out, err = run_cli([*command, "--state-dir", str(tmp_path)], tmp_path)
        assert (code, out) == (1, ""), command
        assert len(err.splitlines()) == 1 and "no event log in" in err


GOLDEN = Path(__file__).resolve().parent.parent / "golden"


@pytest.mark.parametrize(
    ("args", "golden"),
    [([], "replay_story.txt"), (["--json"], "replay_story.json"),
     (["--at", "2024-05-01T12:02:30Z"], "replay_story_at.txt")],
)  # fmt: skip
def test_an_old_log_replays_exactly_as_before(tmp_path: Path, args: list[str], golden: str) -> None:
    """The committed log, every observation a fact, replays byte for byte as the version that
    wrote it did (the golden files are that version's output)."""
    code, out, err = run_cli(["replay", "--state-dir", str(FIXTURE), *args], tmp_path)
    assert (code, err) == (0, "")
    assert out == (GOLDEN / golden).read_text()


def test_counted_observations_read_as_one_line(tmp_path: Path) -> None:
    """A quiet hour recorded as counts reads as one line: the span, what was counted."""
    from reconciler.eventlog import EventLog
    from reconciler.model.facts import ProbeObserved, WanAddressObserved
    from reconciler.recorder import Recorder

    t0, now = 1_714_564_800.0, [1_714_564_800.0]  # 2024-05-01T12:00:00Z
    wan = WanAddressObserved("em0", "203.0.113.7", True, addresses=("203.0.113.7",))
    probe = ProbeObserved("ipv6", "2001:db8::53", True, 4.0)
    with EventLog.open(tmp_path / "state" / "events") as log:
        recorder = Recorder(log, lambda: now[0], quiet_summary_interval=3600.0)
        for tick in range(122):
            now[0] = t0 + 30.0 * tick
            recorder.record(wan, "observer:wan")
            if tick % 2 == 0:
                recorder.record(probe, "observer:probe:ipv6")
    code, out, _ = run_cli(["replay", "--state-dir", str(tmp_path / "state")], tmp_path)
    assert code == 0
    assert (
        "    2024-05-01T12:00:30Z-2024-05-01T13:00:30Z: 60 IPv6 probes ok, "
        "121 WAN observations, nothing changed"
    ) in out.splitlines()


def test_a_busy_minute_reads_as_one_story(tmp_path: Path) -> None:
    """Counts a news fact flushed seconds after they began fold into that news line's head
    (each source named once, summed); `-v` shows them as a line of their own."""
    from reconciler.eventlog import EventLog
    from reconciler.model.facts import ActionStarted, TunnelObserved, WanAddressObserved
    from reconciler.recorder import Recorder

    t0, now = 1_714_564_800.0, [1_714_564_800.0]
    wan = WanAddressObserved("em0", "203.0.113.7", True, addresses=("203.0.113.7",))
    tunnel = TunnelObserved("gif0", True, True, "203.0.113.7", "198.51.100.1", "gif")
    with EventLog.open(tmp_path / "state" / "events") as log:
        recorder = Recorder(log, lambda: now[0], quiet_summary_interval=3600.0)
        for offset, fact, source in [
            (0.0, wan, "observer:wan"),
            (0.1, tunnel, "observer:tunnel"),
            (0.2, tunnel, "observer:tunnel"),
            (0.3, wan, "observer:wan"),
            (0.4, tunnel, "observer:tunnel"),
        ]:
            now[0] = t0 + offset
            recorder.record(fact, source)
        now[0] = t0 + 0.5
        recorder.record(ActionStarted("restart-tunnel:x", "restart-tunnel", "r"), "executor")
    state = str(tmp_path / "state")
    code, out, _ = run_cli(["replay", "--state-dir", state], tmp_path)
    assert code == 0
    assert "nothing changed" not in out
    [head] = [line for line in out.splitlines() if "action-started" in line]
    assert head.endswith("(+2 tunnel observations, 1 WAN observation unchanged)")
    code, out, _ = run_cli(["replay", "-v", "--state-dir", state], tmp_path)
    assert code == 0
    [counts] = [line for line in out.splitlines() if "nothing changed" in line]
    assert counts.endswith(": 2 tunnel observations, 1 WAN observation, nothing changed")
