"""`reconciler log verify|repair|stats`, run in-process through reconciler.cli.main."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from reconciler.cli import Environment, main
from reconciler.eventlog.files import list_segments
from reconciler.statedir import events_dir

from .helpers import fill, flip_byte, frames_of


def _run(*argv: str, cwd: Path) -> tuple[int, str, str]:
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={}, cwd=cwd)
    status = main(list(argv), env)
    return status, env.stdout.getvalue(), env.stderr.getvalue()  # type: ignore[attr-defined]


def test_verify_clean_exits_zero(tmp_path: Path) -> None:
    """verify on a healthy log exits 0 and says ok."""
    fill(events_dir(tmp_path), 30, segment_size=1024)
    status, out, _ = _run("log", "verify", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert status == 0
    assert "30 records: ok" in out


def test_verify_then_repair_a_damaged_log(tmp_path: Path) -> None:
    """verify exits 1 naming file and offset; repair exits 0 saying what moved; verify is then 0."""
    log_dir = events_dir(tmp_path)
    fill(log_dir, 30, segment_size=1024)
    _, segment = list_segments(log_dir)[0]
    victim = frames_of(segment)[3]
    flip_byte(segment, victim.end - 1)

    status, out, _ = _run("log", "verify", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert status == 1
    assert f"{segment}: byte {victim.offset}: frame checksum mismatch" in out

    status, out, _ = _run("log", "repair", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert status == 0
    assert f"moved {segment.name} aside to {segment.name}.damaged" in out
    assert f"sequence {victim.seq})" in out
    assert (log_dir / f"{segment.name}.damaged").exists()

    status, out, _ = _run("log", "verify", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert status == 0, out


def test_verify_exits_one_for_a_damaged_last_frame_header(tmp_path: Path) -> None:
    """A bad header on the last frame with its payload behind is damage, not a torn tail."""
    log_dir = events_dir(tmp_path)
    fill(log_dir, 5)
    _, segment = list_segments(log_dir)[0]
    last = frames_of(segment)[-1]
    flip_byte(segment, last.offset + 5)
    status, out, _ = _run("log", "verify", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert status == 1
    assert f"{segment}: byte {last.offset}: frame header checksum mismatch" in out
    assert "torn tail" not in out


def test_stats_json_has_a_versioned_schema(tmp_path: Path) -> None:
    """stats --json prints one document with schema reconciler.log-stats/1 and the figures."""
    fill(events_dir(tmp_path), 12)
    status, out, _ = _run("log", "stats", "--json", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert status == 0
    doc = json.loads(out)
    assert doc["schema"] == "reconciler.log-stats/1"
    assert (doc["segments"], doc["events"], doc["first_seq"], doc["last_seq"]) == (1, 12, 1, 12)
    assert doc["bytes"] > 0


def test_stats_human_output(tmp_path: Path) -> None:
    """stats prints events and UTC times of the first and last records, with "Z" as elsewhere."""
    fill(events_dir(tmp_path), 3)
    status, out, _ = _run("log", "stats", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert status == 0
    assert "events:     3" in out
    assert "2023-11-14T22:13:21Z" in out


def test_corrupt_log_stats_is_one_line_error(tmp_path: Path) -> None:
    """A command that meets corruption prints one line naming file and offset, no traceback."""
    log_dir = events_dir(tmp_path)
    fill(log_dir, 5)
    _, segment = list_segments(log_dir)[0]
    flip_byte(segment, frames_of(segment)[-1].offset + 1)
    flip_byte(segment, frames_of(segment)[0].end - 1)
    status, _, err = _run("log", "stats", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert status == 1
    assert err.count("\n") == 1
    assert str(segment) in err and "Traceback" not in err


@pytest.mark.parametrize("action", ["verify", "repair", "stats"])
def test_a_missing_state_dir_is_one_line_and_exit_1(tmp_path: Path, action: str) -> None:
    """verify, repair and stats on a state dir that does not exist: one line, exit 1."""
    missing = tmp_path / "nonexistent"
    status, out, err = _run("log", action, "--state-dir", str(missing), cwd=tmp_path)
    assert (status, out) == (1, "")
    assert err.count("\n") == 1 and "does not exist" in err and "internal error" not in err
    assert not missing.exists()


@pytest.mark.parametrize("action", ["verify", "repair", "stats"])
def test_a_state_dir_without_a_log_is_one_line_and_exit_1(tmp_path: Path, action: str) -> None:
    """A state dir that holds no events directory is not a clean, empty log."""
    status, out, err = _run("log", action, "--state-dir", str(tmp_path), cwd=tmp_path)
    assert (status, out) == (1, "")
    assert err.count("\n") == 1 and "no event log" in err
    assert not events_dir(tmp_path).exists()
