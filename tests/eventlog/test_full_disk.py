"""A full disk, for real: the state directory on a small tmpfs filled with a ballast file.

The log refuses appends cleanly while it is full and takes them again, with no torn frame
and no gap, once space returns; the recorder folds (and so acts on) what it could not write
and writes it when it can; `log repair` says in one line that it could not write.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from reconciler import recorder as recorder_module
from reconciler.eventlog import EventLog, verify
from reconciler.eventlog.files import list_segments
from reconciler.model.facts import ProbeObserved, from_record
from reconciler.recorder import Recorder
from tests.commands.test_diff import run_cli
from tests.smallfs import fill_up, small_filesystem

from .helpers import fill, flip_byte, frames_of, record_for


def _append_until_full(log: EventLog, limit: int = 2000) -> int:
    """Append until the log refuses (ENOSPC); how many it took before."""
    for taken in range(limit):
        try:
            log.append(record_for(log.last_seq + 1))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            return taken
    raise AssertionError("the file system never filled up")


@pytest.mark.parametrize("segment_size", [4096, 64 * 2**20], ids=["rotating", "one-segment"])
def test_the_log_refuses_cleanly_while_full_and_takes_appends_again(segment_size: int) -> None:
    """While full every append raises ENOSPC and nothing half-written stays; with space
    back the next append gets the next number, and verify finds every record whole."""
    with small_filesystem() as fs:
        events = fs / "events"
        with EventLog.open(events, segment_size=segment_size) as log:
            fill_up(fs)
            _append_until_full(log)
            last = log.last_seq
            for _ in range(20):  # again and again, rotation included: no orphan, no gap
                with pytest.raises(OSError) as raised:
                    log.append(record_for(last + 1))
                assert raised.value.errno == errno.ENOSPC
                assert log.last_seq == last
            (fs / "ballast").unlink()
            assert log.append(record_for(last + 1)) == last + 1
            for _ in range(100):
                log.append(record_for(log.last_seq + 1))
        report = verify(events)
        assert report.ok and report.torn_tail is None and report.records == last + 101
        with EventLog.open(events, readonly=True) as log:
            assert all(record == record_for(seq) for seq, record in log.read())


def test_the_recorder_folds_what_it_cannot_write_and_writes_it_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Facts recorded while the disk is full are in the state at once (numbered as the log
    will number them) and reach the log, in order, with the first record after space
    returns; the error is logged once, not per fact."""
    caplog.set_level(logging.WARNING, logger="reconciler")
    with small_filesystem() as fs:
        events = fs / "events"
        with EventLog.open(events) as log:
            recorder = Recorder(log, lambda: 1_700_000_000.0)
            fill_up(fs)
            _append_until_full(log)
            written = log.last_seq
            for n in range(1, 31):
                envelope = recorder.record(ProbeObserved("ipv4", "x", ok=False), "probe")
                assert envelope.seq == written + n
            assert recorder.state.probe("ipv4").consecutive_failed == 30
            assert recorder.unwritten == 30 and log.last_seq == written
            assert caplog.text.count("cannot write the event log") == 1
            assert recorder.flush() == 30  # still full

            (fs / "ballast").unlink()
            envelope = recorder.record(ProbeObserved("ipv4", "x", ok=True), "probe")
            assert envelope.seq == written + 31 == log.last_seq
            assert recorder.unwritten == 0
        assert verify(events).ok
        with EventLog.open(events, readonly=True) as log:
            facts = [from_record(seq, rec).fact for seq, rec in log.read(written + 1)]
        assert [f.ok for f in facts] == [False] * 30 + [True]  # type: ignore[attr-defined]
        assert "the event log takes writes again" in caplog.text


def test_facts_beyond_what_memory_keeps_become_lost_markers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past MAX_UNWRITTEN kept facts the oldest are written as lost-record markers: the
    numbers stay contiguous and the gap is plain in the log."""
    monkeypatch.setattr(recorder_module, "MAX_UNWRITTEN", 5)
    with small_filesystem() as fs:
        events = fs / "events"
        with EventLog.open(events) as log:
            recorder = Recorder(log)
            fill_up(fs)
            _append_until_full(log)
            written = log.last_seq
            for _ in range(8):
                recorder.record(ProbeObserved("ipv4", "x", ok=False), "probe")
            (fs / "ballast").unlink()
            assert recorder.flush() == 0
        with EventLog.open(events, readonly=True) as log:
            kinds = [record["t"] for _, record in log.read(written + 1)]
        assert kinds == ["log-record-lost"] * 3 + ["probe-observed"] * 5
        assert verify(events).ok


def test_log_repair_on_a_full_disk_is_one_line() -> None:
    """repair needs space to rewrite a segment: one line, exit 1, nothing deleted."""
    with small_filesystem() as fs:
        events = fs / "events"
        fill(events, 40, segment_size=1024)
        _, segment = list_segments(events)[0]
        flip_byte(segment, frames_of(segment)[2].end - 1)
        before = sorted(p.name for p in events.iterdir())
        fill_up(fs)
        code, _, err = run_cli(["log", "repair", "--state-dir", str(fs)], fs)
        assert code == 1 and "internal error" not in err
        assert len(err.splitlines()) == 1
        assert err.startswith(f"reconciler: cannot repair {events}: No space left on device")
        assert set(before) <= {p.name for p in events.iterdir()}
        (fs / "ballast").unlink()
        code, _, _ = run_cli(["log", "repair", "--state-dir", str(fs)], fs)
        assert code == 0 and verify(events).ok


def test_a_full_disk_does_not_stop_a_writer_from_opening(tmp_path: Path) -> None:
    """The pid in the lock file is a courtesy: a daemon starting on a full disk still opens
    its log (and acts; the recorder keeps what it cannot write)."""
    with small_filesystem() as fs:
        events = fs / "events"
        fill(events, 3)
        (events / "LOCK").write_bytes(b"")
        fill_up(fs)
        with EventLog.open(events) as log:
            assert log.last_seq == 3
