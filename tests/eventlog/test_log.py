"""EventLog: appends, reads, locking, rotation, recovery of torn tails, refusal of corruption."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import CorruptLogError, LogLockedError
from reconciler.eventlog import EventLog
from reconciler.eventlog.files import list_segments
from reconciler.eventlog.format import (
    FRAME_HEADER,
    SEGMENT_HEADER,
    encode_segment_header,
    segment_name,
)

from .helpers import fill, flip_byte, frames_of, last_segment, record_for


def test_appends_get_contiguous_numbers_and_read_back(tmp_path: Path) -> None:
    """append returns 1, 2, 3 …; append_many continues; read yields them in order."""
    with EventLog.open(tmp_path / "log") as log:
        assert [log.append(record_for(i)) for i in (1, 2, 3)] == [1, 2, 3]
        assert log.append_many([record_for(4), record_for(5)]) == [4, 5]
        assert log.append_many([]) == []
        assert log.last_seq == 5
        assert list(log.read()) == [(i, record_for(i)) for i in range(1, 6)]
        assert [seq for seq, _ in log.read(4)] == [4, 5]


def test_directory_is_created_private(tmp_path: Path) -> None:
    """A missing log directory is created with mode 0700."""
    path = tmp_path / "a" / "events"
    EventLog.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_reopen_continues_the_sequence(tmp_path: Path) -> None:
    """A writer reopening the log appends after the last record."""
    fill(tmp_path, 10)
    with EventLog.open(tmp_path) as log:
        assert log.last_seq == 10
        assert log.append(record_for(11)) == 11
    with EventLog.open(tmp_path, readonly=True) as reader:
        assert [r for _, r in reader.read()] == [record_for(i) for i in range(1, 12)]


def test_non_mapping_records_are_refused(tmp_path: Path) -> None:
    """Only mappings go into the log; a refused record writes nothing."""
    with EventLog.open(tmp_path) as log:
        with pytest.raises(TypeError):
            log.append([1, 2])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            log.append_many([record_for(1), {"x": object()}])
        assert log.last_seq == 0
        assert log.append(record_for(1)) == 1


def test_second_writer_in_same_process_is_refused_with_pid(tmp_path: Path) -> None:
    """While a writer holds the log, another open for writing fails at once naming its pid."""
    with EventLog.open(tmp_path), pytest.raises(LogLockedError) as caught:
        EventLog.open(tmp_path)
    assert caught.value.pid == os.getpid()
    assert str(os.getpid()) in str(caught.value)
    EventLog.open(tmp_path).close()  # released on close


def test_second_writer_in_another_process_is_refused_with_pid(tmp_path: Path) -> None:
    """A writer in another process gets LogLockedError naming this process's pid."""
    code = (
        "import sys\n"
        "from reconciler.eventlog import EventLog\n"
        "from reconciler.errors import LogLockedError\n"
        "try:\n"
        "    EventLog.open(sys.argv[1])\n"
        "except LogLockedError as exc:\n"
        "    print(exc.pid)\n"
        "    sys.exit(3)\n"
    )
    with EventLog.open(tmp_path):
        done = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=30
        )
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip() == str(os.getpid())


def test_reader_needs_no_lock_and_sees_new_records(tmp_path: Path) -> None:
    """A read-only log opens beside a writer and reads what the writer made durable."""
    with EventLog.open(tmp_path) as writer:
        writer.append(record_for(1))
        with EventLog.open(tmp_path, readonly=True) as reader:
            assert reader.last_seq == 1
            writer.append(record_for(2))
            assert [seq for seq, _ in reader.read()] == [1, 2]
            with pytest.raises(PermissionError):
                reader.append(record_for(3))


def test_reader_reads_while_writer_appends_across_rotations(tmp_path: Path) -> None:
    """A reader in another thread sees a contiguous, intact prefix while appends rotate segments."""
    total = 600
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def keep_reading() -> None:
        try:
            with EventLog.open(tmp_path, readonly=True) as reader:
                while not stop.is_set():
                    got = [(s, r) for s, r in reader.read()]
                    assert [s for s, _ in got] == list(range(1, len(got) + 1))
                    assert all(r == record_for(s) for s, r in got)
                    seen.append(len(got))
        except BaseException as exc:
            errors.append(exc)

    with EventLog.open(tmp_path, segment_size=2048) as writer:
        writer.append(record_for(1))
        thread = threading.Thread(target=keep_reading)
        thread.start()
        try:
            for seq in range(2, total + 1):
                writer.append(record_for(seq))
        finally:
            stop.set()
            thread.join()
    assert not errors, errors
    assert len(seen) > 1
    assert len(list_segments(tmp_path)) > 5


def test_appends_from_many_threads_are_all_kept(tmp_path: Path) -> None:
    """Concurrent append and append_many calls lose nothing and never share a number."""
    got: list[int] = []
    guard = threading.Lock()

    def work(worker: int) -> None:
        for i in range(25):
            if i % 5 == 0:
                seqs = log.append_many([{"w": worker, "i": i, "b": j} for j in range(3)])
            else:
                seqs = [log.append({"w": worker, "i": i})]
            with guard:
                got.extend(seqs)

    with EventLog.open(tmp_path, segment_size=4096) as log:
        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got) == list(range(1, len(got) + 1))
        assert [s for s, _ in log.read()] == sorted(got)


def test_segments_rotate_at_size_limit_and_are_named_by_first_seq(tmp_path: Path) -> None:
    """With a small limit the log spans several segments, each at most the limit, named by seq."""
    fill(tmp_path, 200, segment_size=1024)
    segments = list_segments(tmp_path)
    assert len(segments) > 5
    for first, path in segments:
        assert path.name == f"{first:020d}.log"
        assert path.stat().st_size <= 1024
        assert frames_of(path)[0].seq == first
    with EventLog.open(tmp_path, readonly=True) as reader:
        assert [r for _, r in reader.read()] == [record_for(i) for i in range(1, 201)]
        assert [s for s, _ in reader.read(150)] == list(range(150, 201))
    with EventLog.open(tmp_path, segment_size=1024) as writer:
        assert writer.append(record_for(201)) == 201


def test_big_group_commit_spans_segments(tmp_path: Path) -> None:
    """One append_many larger than a segment is split across rotations and reads back whole."""
    with EventLog.open(tmp_path, segment_size=1024) as log:
        seqs = log.append_many([record_for(i) for i in range(1, 101)])
        assert seqs == list(range(1, 101))
    assert len(list_segments(tmp_path)) > 3
    with EventLog.open(tmp_path, readonly=True) as reader:
        assert [r for _, r in reader.read()] == [record_for(i) for i in range(1, 101)]


def test_read_from_the_middle_of_a_large_active_segment(tmp_path: Path) -> None:
    """read(start) past the sparse index of the active segment yields exactly from start."""
    with EventLog.open(tmp_path) as log:
        log.append_many([{"i": i} for i in range(1, 10_001)])
        assert [s for s, _ in log.read(9_000)][:2] == [9_000, 9_001]
        assert next(iter(log.read(4097))) == (4097, {"i": 4097})
    with EventLog.open(tmp_path) as again:  # the index rebuilt on open
        assert next(iter(again.read(8193))) == (8193, {"i": 8193})
        assert again.append({"i": 10_001}) == 10_001
        assert next(iter(again.read(10_001))) == (10_001, {"i": 10_001})


def test_torn_last_frame_is_cut_at_every_byte_offset(tmp_path: Path) -> None:
    """Cutting the last frame anywhere loses only that frame; its bytes land in a .broken file."""
    source = tmp_path / "source"
    fill(source, 5)
    segment = last_segment(source)
    last = frames_of(segment)[-1]
    whole = segment.read_bytes()
    assert last.end == len(whole)
    for cut in range(last.offset, last.end):
        work = tmp_path / f"cut{cut}"
        shutil.copytree(source, work)
        seg = work / segment.name
        seg.write_bytes(whole[:cut])
        with EventLog.open(work) as log:
            assert log.last_seq == 4
            assert [r for _, r in log.read()] == [record_for(i) for i in range(1, 5)]
            assert seg.stat().st_size == last.offset
            broken = sorted(work.glob("*.broken"))
            if cut > last.offset:
                assert [b.read_bytes() for b in broken] == [whole[last.offset : cut]]
            assert log.append(record_for(5)) == 5
        with EventLog.open(work, readonly=True) as reader:
            assert [r for _, r in reader.read()] == [record_for(i) for i in range(1, 6)]
        shutil.rmtree(work)


@pytest.mark.parametrize("zeros", [1, FRAME_HEADER - 1, FRAME_HEADER, 100, 4096])
def test_zero_filled_tail_is_cut(tmp_path: Path, zeros: int) -> None:
    """Zeros after the last good frame (a file extended but never written) are a torn tail."""
    fill(tmp_path, 5)
    segment = last_segment(tmp_path)
    good = segment.read_bytes()
    segment.write_bytes(good + b"\0" * zeros)
    with EventLog.open(tmp_path, readonly=True) as reader:
        assert [s for s, _ in reader.read()] == [1, 2, 3, 4, 5]
    with EventLog.open(tmp_path) as log:
        assert log.last_seq == 5
    assert segment.read_bytes() == good


def test_cut_frame_followed_by_zeros_is_torn(tmp_path: Path) -> None:
    """A half-written last frame padded with zeros to past its length is cut, not corruption."""
    fill(tmp_path, 5)
    segment = last_segment(tmp_path)
    last = frames_of(segment)[-1]
    data = segment.read_bytes()
    for cut in range(last.offset + 1, last.end, 7):
        segment.write_bytes(data[:cut] + b"\0" * 600)
        with EventLog.open(tmp_path) as log:
            assert log.last_seq == 4
        segment.write_bytes(data)


def _files(path: Path) -> dict[str, bytes]:
    """Every file in a log directory, by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("at", [0, 1, 3, 6, 12, 15])
def test_damaged_first_frame_header_with_data_behind_is_refused_untouched(
    tmp_path: Path, at: int
) -> None:
    """A damaged header of the only frame, kilobytes behind it, is corruption: nothing is cut."""
    with EventLog.open(tmp_path) as log:
        log.append({"at": 1.0, "blob": "x" * 4096})
    segment = last_segment(tmp_path)
    flip_byte(segment, SEGMENT_HEADER + at)
    before = _files(tmp_path)
    with pytest.raises(CorruptLogError) as caught:
        EventLog.open(tmp_path)
    assert (caught.value.segment, caught.value.offset) == (segment, SEGMENT_HEADER)
    assert _files(tmp_path) == before  # byte-identical, and no .broken file
    seen: list[int] = []
    with pytest.raises(CorruptLogError), EventLog.open(tmp_path, readonly=True) as reader:
        seen.extend(s for s, _ in reader.read())
    assert seen == []
    assert _files(tmp_path) == before


def test_damaged_first_frame_header_before_non_frame_bytes_is_refused(tmp_path: Path) -> None:
    """Garbage of kilobytes behind a bad first header (no frame to be found) is not cut."""
    segment = tmp_path / segment_name(1)
    segment.write_bytes(encode_segment_header(1, b"L" * 16))
    garbage = bytes((i * 7 + 3) % 255 + 1 for i in range(8192))  # no zero byte, no frame
    segment.write_bytes(segment.read_bytes() + garbage)
    (tmp_path / "LOCK").write_text(f"{os.getpid()}\n")  # as a writer of this process left it
    before = _files(tmp_path)
    with pytest.raises(CorruptLogError) as caught:
        EventLog.open(tmp_path)
    assert caught.value.offset == SEGMENT_HEADER
    assert _files(tmp_path) == before


def test_bit_flip_in_last_frame_header_with_payload_behind_is_corruption(tmp_path: Path) -> None:
    """Any flipped bit in the last frame's header, its payload behind it: refused, not cut."""
    fill(tmp_path, 5)
    segment = last_segment(tmp_path)
    last = frames_of(segment)[-1]
    good = segment.read_bytes()
    for at in range(FRAME_HEADER):
        for bit in (0x01, 0x80):
            data = bytearray(good)
            data[last.offset + at] ^= bit
            segment.write_bytes(bytes(data))
            before = _files(tmp_path)
            with pytest.raises(CorruptLogError) as caught:
                EventLog.open(tmp_path)
            assert caught.value.offset == last.offset
            assert "header" in caught.value.reason
            assert _files(tmp_path) == before
            seen: list[int] = []
            with pytest.raises(CorruptLogError), EventLog.open(tmp_path, readonly=True) as r:
                seen.extend(s for s, _ in r.read())
            assert seen == [1, 2, 3, 4]
    segment.write_bytes(good)


def test_half_written_header_then_zeros_is_torn(tmp_path: Path) -> None:
    """Garbage no longer than a frame header, then zero fill, is a torn header and is cut."""
    fill(tmp_path, 5)
    segment = last_segment(tmp_path)
    good = segment.read_bytes()
    for junk in range(1, FRAME_HEADER + 1):
        segment.write_bytes(good + b"\xa7" * junk + b"\0" * 500)
        with EventLog.open(tmp_path) as log:
            assert log.last_seq == 5
        assert segment.read_bytes() == good
    assert len(list(tmp_path.glob("*.broken*"))) == FRAME_HEADER


def test_last_frame_with_damaged_payload_then_data_is_corruption(tmp_path: Path) -> None:
    """A sound last header whose payload fails its CRC is torn before zeros, corrupt before data."""
    fill(tmp_path, 5)
    segment = last_segment(tmp_path)
    last = frames_of(segment)[-1]
    data = bytearray(segment.read_bytes())
    data[last.offset + FRAME_HEADER + 1] ^= 0x22
    segment.write_bytes(bytes(data) + b"\0" * 40 + b"\x01")
    with pytest.raises(CorruptLogError) as caught:
        EventLog.open(tmp_path)
    assert (caught.value.offset, caught.value.reason) == (last.offset, "frame checksum mismatch")
    segment.write_bytes(bytes(data) + b"\0" * 40)
    with EventLog.open(tmp_path) as log:
        assert log.last_seq == 4
    assert segment.stat().st_size == last.offset


def test_damage_in_an_earlier_frame_raises_naming_file_and_offset(tmp_path: Path) -> None:
    """A flipped byte anywhere in an earlier frame (header or payload) is CorruptLogError."""
    fill(tmp_path, 6)
    segment = last_segment(tmp_path)
    victim = frames_of(segment)[3]  # record 4 of 6
    good = segment.read_bytes()
    for offset in range(victim.offset, victim.end):
        flip_byte(segment, offset)
        damaged = segment.read_bytes()
        with pytest.raises(CorruptLogError) as caught:
            EventLog.open(tmp_path)
        assert caught.value.segment == segment
        assert caught.value.offset == victim.offset
        assert segment.read_bytes() == damaged  # the writer touched nothing
        assert not list(tmp_path.glob("*.broken"))
        seen: list[int] = []
        with pytest.raises(CorruptLogError), EventLog.open(tmp_path, readonly=True) as reader:
            seen.extend(s for s, _ in reader.read())
        assert seen == [1, 2, 3]  # nothing past the damage was handed out
        segment.write_bytes(good)


def test_damaged_length_pointing_past_the_end_is_not_a_torn_tail(tmp_path: Path) -> None:
    """An earlier frame whose length now reaches past EOF is corruption, not a tail to cut."""
    fill(tmp_path, 6)
    segment = last_segment(tmp_path)
    victim = frames_of(segment)[1]
    data = bytearray(segment.read_bytes())
    data[victim.offset + 2] = 0x7F  # length grows by megabytes
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError) as caught:
        EventLog.open(tmp_path)
    assert caught.value.offset == victim.offset
    assert "header" in caught.value.reason


def test_damage_in_a_sealed_segment_stops_readers(tmp_path: Path) -> None:
    """Corruption in an older segment raises when read, after the records before it only."""
    fill(tmp_path, 100, segment_size=1024)
    first_seq, segment = list_segments(tmp_path)[1]
    victim = frames_of(segment)[2]
    flip_byte(segment, victim.end - 1)
    seen: list[int] = []
    with pytest.raises(CorruptLogError) as caught, EventLog.open(tmp_path) as log:
        seen.extend(s for s, _ in log.read())
    assert caught.value.segment == segment
    assert caught.value.offset == victim.offset
    assert seen == list(range(1, first_seq + 2))


def test_missing_segment_is_a_gap_not_silence(tmp_path: Path) -> None:
    """A segment that vanished from the middle makes reading raise at the next one."""
    fill(tmp_path, 100, segment_size=1024)
    segments = list_segments(tmp_path)
    segments[2][1].unlink()
    with pytest.raises(CorruptLogError) as caught, EventLog.open(tmp_path, readonly=True) as r:
        for _ in r.read():
            pass
    assert caught.value.segment == segments[3][1]
    assert "gap" in caught.value.reason


def test_remove_segments_before_keeps_everything_newer(tmp_path: Path) -> None:
    """Only segments entirely at or below the given seq go; reads from 1 start at what is left."""
    fill(tmp_path, 100, segment_size=1024)
    segments = list_segments(tmp_path)
    keep_from = segments[3][0]
    with EventLog.open(tmp_path, segment_size=1024) as log:
        removed = log.remove_segments_before(keep_from)  # segment 3 holds keep_from: it stays
        assert removed == [p for _, p in segments[:3]]
        assert next(iter(log.read(1)))[0] == keep_from
        assert [s for s, _ in log.read()] == list(range(keep_from, 101))
        assert log.remove_segments_before(10**9) == [p for _, p in segments[3:-1]]
        assert list_segments(tmp_path) == segments[-1:]
        assert log.append(record_for(101)) == 101


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(st.dictionaries(st.text(), json_values, max_size=5), max_size=8))
def test_any_msgpack_mapping_round_trips(tmp_path_factory: pytest.TempPathFactory, records) -> None:  # type: ignore[no-untyped-def]
    """Whatever msgpack can hold in a mapping reads back equal, through a reopen too."""
    path = tmp_path_factory.mktemp("rt")
    with EventLog.open(path, segment_size=512) as log:
        seqs = log.append_many(records)
        assert [r for _, r in log.read()] == records
    with EventLog.open(path, readonly=True) as reader:
        assert [(s, r) for s, r in reader.read()] == list(zip(seqs, records, strict=True))


def test_records_with_non_string_keys_read_back(tmp_path: Path) -> None:
    """Integer map keys (at any depth) survive a round trip among ordinary records."""
    odd = {1: "one", "nested": {2: [3, {4: b"\x00"}]}}
    with EventLog.open(tmp_path) as log:
        log.append_many([record_for(1), odd, record_for(3)])
    with EventLog.open(tmp_path, readonly=True) as reader:
        assert [r for _, r in reader.read()] == [record_for(1), odd, record_for(3)]


def test_a_flipped_trailer_bit_is_corruption_at_its_frame(tmp_path: Path) -> None:
    """A frame whose trailing CRC is wrong, with frames behind it, stops the read there."""
    fill(tmp_path, 5)
    seg = last_segment(tmp_path)
    frames = frames_of(seg)
    data = bytearray(seg.read_bytes())
    data[frames[2].end - 1] ^= 0x80
    seg.write_bytes(bytes(data))
    seen = []
    with pytest.raises(CorruptLogError) as caught, EventLog.open(tmp_path, readonly=True) as r:
        seen.extend(seq for seq, _ in r.read())
    assert seen == [1, 2]
    assert caught.value.offset == frames[2].offset


def test_reader_seeks_into_the_last_segment_and_counts_on_first_use(tmp_path: Path) -> None:
    """A reader walks the last segment when first asked: seeks land right, last_seq is current."""
    fill(tmp_path, 9000)
    with EventLog.open(tmp_path, readonly=True) as reader:
        got = list(reader.read(8190))
        assert [seq for seq, _ in got] == list(range(8190, 9001))
        assert all(record == record_for(seq) for seq, record in got)
        assert reader.last_seq == 9000
        assert reader.damage is None
    with EventLog.open(tmp_path, readonly=True) as reader:
        with EventLog.open(tmp_path) as writer:
            writer.append(record_for(9001))
        assert reader.last_seq == 9001
        assert [seq for seq, _ in reader.read(9001)] == [9001]
