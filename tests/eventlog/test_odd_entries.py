"""Event-log directories with things the log did not make in them: entries named like
segments that are not files, segments renamed or swapped, a stray empty segment, and an
intact frame around a payload that is not a map. Each is named in one line, and repair
keeps every record there is without inventing lost ones."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import pytest

from reconciler.errors import CorruptLogError
from reconciler.eventlog import EventLog, repair, verify
from reconciler.eventlog.files import list_segments
from reconciler.eventlog.format import encode_frame, segment_name
from reconciler.eventlog.maintenance import LOST_RECORD_TYPE
from reconciler.statedir import events_dir
from tests.commands.test_diff import run_cli, story_copy
from tests.config.test_configfile import write_config

from .helpers import fill, record_for


def _records(log_dir: Path) -> list[tuple[int, dict[str, object]]]:
    with EventLog.open(log_dir, readonly=True) as log:
        return [(seq, dict(record)) for seq, record in log.read()]


def _odd_entry(log_dir: Path, kind: str) -> Path:
    path = log_dir / segment_name(1000)
    if kind == "directory":
        path.mkdir()
        (path / "keep").write_text("not ours\n")
    else:  # a symlink that points at itself: every stat of it fails with ELOOP
        os.symlink(path.name, path)
    return path


@pytest.mark.parametrize("kind", ["directory", "looping symlink"])
def test_entry_named_like_a_segment_is_ignored_and_left_alone(tmp_path: Path, kind: str) -> None:
    """verify, repair, replay, status and the writer work past it; it is named once and kept."""
    log_dir = events_dir(tmp_path)
    fill(log_dir, 30)
    odd = _odd_entry(log_dir, kind)

    for argv in (["log", "verify"], ["log", "repair"], ["replay"], ["status"]):
        code, out, err = run_cli([*argv, "--state-dir", str(tmp_path)], tmp_path)
        assert code == 0, (argv, out, err)
        assert "internal error" not in err
    code, out, _ = run_cli(["log", "verify", "--state-dir", str(tmp_path)], tmp_path)
    assert f"ignored: {odd}" in out and "30 records: ok" in out

    with EventLog.open(log_dir) as log:  # the daemon's writer opens and appends as usual
        assert log.append(record_for(31)) == 31
    assert [seq for seq, _ in _records(log_dir)] == list(range(1, 32))
    assert os.path.islink(odd) if kind != "directory" else (odd / "keep").is_file()


def test_swapped_segments_are_repaired_without_loss(tmp_path: Path) -> None:
    """Two intact segments whose files were swapped: repair puts every record back under its
    own number and marks none lost."""
    log_dir = events_dir(tmp_path)
    fill(log_dir, 120, segment_size=2000)
    segments = [path for _, path in list_segments(log_dir)]
    assert len(segments) >= 4
    a, b = segments[1], segments[2]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    assert not verify(log_dir).ok

    report = repair(log_dir)

    assert report.lost == []
    assert verify(log_dir).ok
    records = _records(log_dir)
    assert records == [(seq, record_for(seq)) for seq in range(1, 121)]


def test_stray_empty_segment_is_moved_aside_not_filled(tmp_path: Path) -> None:
    """An empty file named like a later segment holds no records: repair moves it aside
    (kept) instead of writing hundreds of lost-record markers, and appends go on at 31."""
    log_dir = events_dir(tmp_path)
    fill(log_dir, 30)
    stray = log_dir / segment_name(1000)
    stray.write_bytes(b"")
    report = verify(log_dir)
    assert not report.ok and report.problems[0].segment == stray

    fixed = repair(log_dir)

    assert fixed.lost == []
    assert [(s, a.name) for s, a in fixed.set_aside] == [(stray, stray.name + ".damaged")]
    assert (log_dir / (stray.name + ".damaged")).read_bytes() == b""
    assert verify(log_dir).ok
    with EventLog.open(log_dir) as log:
        assert log.append(record_for(31)) == 31
    assert not any(r.get("t") == LOST_RECORD_TYPE for _, r in _records(log_dir))


def _append_frame_around(log_dir: Path, payload: bytes) -> None:
    """A frame with both checksums right around `payload`, as no writer of ours makes."""
    with EventLog.open(log_dir) as log:
        seq = log.last_seq + 1
    _, last = list_segments(log_dir)[-1]
    with open(last, "ab") as f:
        f.write(encode_frame(seq, payload))


@pytest.mark.parametrize(
    "payload",
    [msgpack.packb([1, 2, 3]), msgpack.packb("text"), b"\xc1"],
    ids=["array", "string", "not-msgpack"],
)
def test_intact_frame_without_a_map_is_damage_everywhere(tmp_path: Path, payload: bytes) -> None:
    """verify calls it damage (not a torn tail), readers raise CorruptLogError naming it,
    and repair really takes it out."""
    log_dir = events_dir(tmp_path)
    fill(log_dir, 30)
    _append_frame_around(log_dir, payload)

    report = verify(log_dir)
    assert report.torn_tail is None
    assert [p.reason for p in report.problems] == ["payload is not a msgpack mapping"]
    with pytest.raises(CorruptLogError, match="not a msgpack mapping"):
        _records(log_dir)

    repair(log_dir)

    assert verify(log_dir).ok and verify(log_dir).torn_tail is None
    assert _records(log_dir) == [(seq, record_for(seq)) for seq in range(1, 31)]


def test_commands_name_a_frame_without_a_map_in_one_line(tmp_path: Path) -> None:
    """replay, status and diff end with one line naming the segment and byte, exit 1."""
    config = write_config(tmp_path)
    state = story_copy(tmp_path)
    _append_frame_around(events_dir(state), msgpack.packb([1, 2, 3]))
    for argv in (["replay"], ["status"], ["diff", "-c", str(config)], ["log", "verify"]):
        code, out, err = run_cli([*argv, "--state-dir", str(state)], tmp_path)
        assert code == 1, (argv, out, err)
        assert "internal error" not in err
        assert "not a msgpack mapping" in (err + out)
