"""verify, repair, stats and retention over real log directories."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgpack
import pytest

from reconciler.errors import LogLockedError
from reconciler.eventlog import EventLog, apply_retention, repair, stats, verify
from reconciler.eventlog.files import list_segments
from reconciler.eventlog.maintenance import LOST_RECORD_TYPE

from .helpers import fill, flip_byte, frames_of, last_segment, record_for


def test_verify_clean_log(tmp_path: Path) -> None:
    """A healthy log verifies with no problems and counts every record."""
    fill(tmp_path, 50, segment_size=1024)
    report = verify(tmp_path)
    assert report.ok
    assert report.records == 50
    assert report.segments == len(list_segments(tmp_path))
    assert report.torn_tail is None


def test_verify_names_file_and_offset_of_damage(tmp_path: Path) -> None:
    """A flipped payload byte is reported with its segment and the frame's byte offset."""
    fill(tmp_path, 50, segment_size=1024)
    _, segment = list_segments(tmp_path)[1]
    victim = frames_of(segment)[1]
    flip_byte(segment, victim.end - 2)
    report = verify(tmp_path)
    assert not report.ok
    assert [(p.segment, p.offset) for p in report.problems] == [(segment, victim.offset)]
    assert report.records == 49


def test_verify_reports_torn_tail_as_recoverable(tmp_path: Path) -> None:
    """A torn tail is reported but is not damage (a writer cuts it)."""
    fill(tmp_path, 5)
    segment = last_segment(tmp_path)
    segment.write_bytes(segment.read_bytes()[:-3])
    report = verify(tmp_path)
    assert report.ok
    assert report.torn_tail is not None
    assert report.torn_tail.offset == frames_of(segment)[-1].end


def test_repair_salvages_every_intact_record_and_keeps_numbers(tmp_path: Path) -> None:
    """Repair keeps all intact records under their numbers, marks the lost one, deletes nothing."""
    fill(tmp_path, 60, segment_size=1024)
    _, segment = list_segments(tmp_path)[1]
    victim = frames_of(segment)[2]
    flip_byte(segment, victim.offset + 1)  # the length field: the header check catches it
    damaged = segment.read_bytes()
    report = repair(tmp_path)
    assert report.lost == [victim.seq]
    assert [m[0] for m in report.moved_aside] == [segment]
    aside = report.moved_aside[0][1]
    assert aside.read_bytes() == damaged
    assert verify(tmp_path).ok
    with EventLog.open(tmp_path, readonly=True) as log:
        got = list(log.read())
    assert [s for s, _ in got] == list(range(1, 61))
    for seq, record in got:
        if seq == victim.seq:
            assert record["t"] == LOST_RECORD_TYPE
            assert record["d"]["offset"] == victim.offset
            assert record["at"] == record_for(seq - 1)["at"]
        else:
            assert record == record_for(seq)
    with EventLog.open(tmp_path, segment_size=1024) as log:
        assert log.append(record_for(61)) == 61


def test_repair_fills_a_lost_segment_tail_up_to_the_next_segment(tmp_path: Path) -> None:
    """Damage at the end of a sealed segment: its lost records up to the next segment are marked."""
    fill(tmp_path, 60, segment_size=1024)
    (_, segment), (next_first, _) = list_segments(tmp_path)[1:3]
    frames = frames_of(segment)
    data = segment.read_bytes()
    segment.write_bytes(data[: frames[-2].offset] + b"\xff" * (len(data) - frames[-2].offset))
    report = repair(tmp_path)
    assert report.lost == [frames[-2].seq, frames[-1].seq]
    assert frames[-1].seq == next_first - 1
    assert verify(tmp_path).ok


def test_repair_cuts_torn_tail_into_broken_file(tmp_path: Path) -> None:
    """With only a torn tail, repair cuts it like a writer does and keeps the bytes."""
    fill(tmp_path, 5)
    segment = last_segment(tmp_path)
    segment.write_bytes(segment.read_bytes() + b"\x01\x02")
    report = repair(tmp_path)
    assert report.torn_tail is not None
    assert report.moved_aside == []
    assert [p.read_bytes() for p in tmp_path.glob("*.broken")] == [b"\x01\x02"]
    assert verify(tmp_path).torn_tail is None


def test_damaged_last_frame_header_is_damage_for_verify_and_repair(tmp_path: Path) -> None:
    """A bad last header with payload behind: verify reports damage, repair moves it aside."""
    fill(tmp_path, 5)
    segment = last_segment(tmp_path)
    last = frames_of(segment)[-1]
    flip_byte(segment, last.offset + 2)
    damaged = segment.read_bytes()
    report = verify(tmp_path)
    assert not report.ok
    assert report.torn_tail is None
    assert [(p.segment, p.offset) for p in report.problems] == [(segment, last.offset)]
    assert report.records == 4

    names_before = {p.name for p in tmp_path.iterdir()}
    fixed = repair(tmp_path)
    assert [m[0] for m in fixed.moved_aside] == [segment]
    assert fixed.moved_aside[0][1].read_bytes() == damaged  # nothing deleted
    assert fixed.salvaged == 4
    assert names_before <= {p.name for p in tmp_path.iterdir()}
    assert verify(tmp_path).ok
    with EventLog.open(tmp_path) as log:
        assert [r for _, r in log.read()] == [record_for(i) for i in range(1, 5)]


def test_repair_keeps_a_damaged_only_frame_aside(tmp_path: Path) -> None:
    """A damaged length in the only frame, data behind it: repair empties the segment, keeps it."""
    with EventLog.open(tmp_path) as log:
        log.append({"at": 1.0, "blob": "x" * 4096})
    segment = last_segment(tmp_path)
    flip_byte(segment, frames_of(segment)[0].offset)
    damaged = segment.read_bytes()
    assert not verify(tmp_path).ok
    fixed = repair(tmp_path)
    assert fixed.moved_aside[0][1].read_bytes() == damaged
    assert fixed.salvaged == 0
    assert verify(tmp_path).ok
    with EventLog.open(tmp_path) as log:
        assert log.last_seq == 0


def test_repair_refuses_while_a_writer_runs(tmp_path: Path) -> None:
    """Repair needs the writer's lock; a running writer makes it fail naming the pid."""
    fill(tmp_path, 3)
    with EventLog.open(tmp_path), pytest.raises(LogLockedError) as caught:
        repair(tmp_path)
    assert caught.value.pid == os.getpid()


def test_stats_counts_segments_events_bytes_and_times(tmp_path: Path) -> None:
    """stats reports segments, events, bytes and the first and last record times."""
    fill(tmp_path, 40, segment_size=1024)
    figures = stats(tmp_path)
    segments = list_segments(tmp_path)
    assert figures.segments == len(segments)
    assert figures.events == 40
    assert figures.bytes == sum(p.stat().st_size for _, p in segments)
    assert figures.first_time == record_for(1)["at"]
    assert figures.last_time == record_for(40)["at"]
    assert stats(tmp_path / "missing").events == 0


def test_stats_without_times(tmp_path: Path) -> None:
    """Records without an "at" key give no times rather than an error."""
    with EventLog.open(tmp_path) as log:
        log.append({"x": 1})
    figures = stats(tmp_path)
    assert (figures.events, figures.first_time, figures.last_time) == (1, None, None)


def test_retention_removes_only_segments_covered_by_the_snapshot(tmp_path: Path) -> None:
    """By size, old segments go only while every record in them is <= the snapshot seq."""
    fill(tmp_path, 100, segment_size=1024)
    segments = list_segments(tmp_path)
    snapshot_seq = segments[4][0]  # segments 0..3 are covered entirely
    with EventLog.open(tmp_path, segment_size=1024) as log:
        removed = apply_retention(log, snapshot_seq, now=time.time(), max_bytes=1)
        assert removed == [p for _, p in segments[:4]]
        assert next(iter(log.read()))[0] == segments[4][0]


def test_retention_by_age(tmp_path: Path) -> None:
    """By age, only segments older than max_age (and covered) go."""
    fill(tmp_path, 100, segment_size=1024)
    segments = list_segments(tmp_path)
    now = time.time()
    for _, path in segments[:2]:
        os.utime(path, (now - 1000, now - 1000))
    with EventLog.open(tmp_path, segment_size=1024) as log:
        assert apply_retention(log, 10**6, now=now, max_age=500) == [p for _, p in segments[:2]]
        assert apply_retention(log, 10**6, now=now, max_age=500) == []


def test_lost_marker_is_plain_msgpack() -> None:
    """The marker type name is a plain string readers can show raw."""
    assert msgpack.unpackb(msgpack.packb({"t": LOST_RECORD_TYPE}))["t"] == "log-record-lost"
