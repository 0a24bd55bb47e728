"""Tests for reconciler.recorder: durable appends, the folded state, snapshots, waking."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler.eventlog import EventLog, SnapshotStore, apply_retention
from reconciler.history import load_state
from reconciler.model.facts import (
    ActionStarted,
    DaemonStopped,
    ProbeObserved,
    WanAddressObserved,
    from_record,
)
from reconciler.model.state import SCHEMA_VERSION, ObservedState, fold, state_to_mapping
from reconciler.recorder import Recorder, RecorderClosedError
from reconciler.statedir import events_dir, snapshots_dir


def _wan(address: str | None) -> WanAddressObserved:
    return WanAddressObserved(
        interface="em0", address=address, link_up=True, addresses=(address,) if address else ()
    )


def test_record_appends_durably_and_folds(tmp_path: Path) -> None:
    """A recorded fact is in the log under its seq and already folded into the state."""
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, lambda: 1000.0)
        envelope = recorder.record(_wan("203.0.113.7"), "observer:wan")
        assert envelope.seq == 1 == recorder.last_seq
        assert envelope.at == 1000.0
        assert recorder.state.wan is not None
        assert recorder.state.wan.address == "203.0.113.7"
        seq, record = next(iter(log.read(1)))
        assert from_record(seq, record) == envelope


def test_start_up_state_is_the_fold_of_the_log(tmp_path: Path) -> None:
    """A new recorder over an existing log starts from exactly the fold of what is there."""
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, lambda: 5.0)
        for address in ("203.0.113.7", None, "203.0.113.8"):
            recorder.record(_wan(address), "observer:wan")
        recorder.record(ProbeObserved(family="ipv4", target="x", ok=False), "observer:probe")
        expected = recorder.state
    with EventLog.open(tmp_path / "events") as log:
        again = Recorder(log)
        assert again.last_seq == 4
        assert again.state == expected


def test_snapshot_every_n_and_start_from_snapshot_plus_tail(tmp_path: Path) -> None:
    """Every N facts a snapshot is written; start-up from snapshot + tail equals a full fold."""
    store = SnapshotStore(tmp_path / "snapshots")
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, lambda: 7.0, snapshots=store, snapshot_every=3)
        for index in range(7):
            recorder.record(_wan(f"203.0.113.{index + 1}"), "observer:wan")
        latest = store.latest(SCHEMA_VERSION, log.log_id)
        assert latest is not None and latest[0] == 6
        full = ObservedState()
        for seq, record in log.read(1):
            full = fold(full, from_record(seq, record))
    with EventLog.open(tmp_path / "events") as log:
        again = Recorder(log, snapshots=store, snapshot_every=3)
        assert again.last_seq == 7
        assert again.state == full


def test_waiters_wake_on_a_new_fact_and_time_out_without(tmp_path: Path) -> None:
    """wait_for_news returns True as soon as another thread records, False on time-out."""
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log)
        assert recorder.wait_for_news(0, timeout=0.05) is False
        timer = threading.Timer(0.1, lambda: recorder.record(_wan("203.0.113.9"), "t"))
        timer.start()
        try:
            assert recorder.wait_for_news(0, timeout=5.0) is True
        finally:
            timer.join()
        assert recorder.wait_for_news(0, timeout=0) is True  # already newer: no wait


def test_concurrent_records_get_distinct_seqs_and_all_fold(tmp_path: Path) -> None:
    """Facts recorded from several threads all land, in one order, with the state current."""
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log)
        threads = [
            threading.Thread(
                target=lambda: [
                    recorder.record(ProbeObserved(family="ipv4", target="t", ok=True), "t")
                    for _ in range(20)
                ]
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert recorder.last_seq == 80 == log.last_seq
        assert recorder.state.probe("ipv4").consecutive_ok == 80


class _ReadsNoted:
    """The real event log, noting where each read starts (to see what start-up folds)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.starts: list[int] = []

    @property
    def last_seq(self) -> int:
        return self.log.last_seq

    @property
    def log_id(self) -> bytes | None:
        return self.log.log_id

    def append(self, record: Mapping[str, Any]) -> int:
        return self.log.append(record)

    def read(self, start: int = 1) -> Iterator[tuple[int, Mapping[str, Any]]]:
        self.starts.append(start)
        return self.log.read(start)


def test_snapshot_reads_back_with_load_state_and_start_up_folds_only_the_tail(
    tmp_path: Path,
) -> None:
    """A snapshot written through the recorder (an in-flight action included) is what
    history.load_state starts from, and a new recorder reads only the facts after it."""
    store = SnapshotStore(snapshots_dir(tmp_path))
    key = "update-he-endpoint:203.0.113.7"
    with EventLog.open(events_dir(tmp_path)) as log:
        recorder = Recorder(log, lambda: 9.0, snapshots=store)
        recorder.record(_wan("203.0.113.7"), "observer:wan")
        recorder.record(ActionStarted(key, "update-he-endpoint", "x", causes=(1,)), "executor")
        recorder.snapshot()
        recorder.record(ProbeObserved(family="ipv4", target="x", ok=True), "observer:probe")
        expected = recorder.state
    latest = store.latest(SCHEMA_VERSION, log.log_id)
    assert latest is not None and latest[0] == 2
    state, seq = load_state(tmp_path)
    assert (state, seq) == (expected, 3)
    assert state.actions[key].in_flight
    with EventLog.open(events_dir(tmp_path)) as log:
        noted = _ReadsNoted(log)
        again = Recorder(noted, snapshots=store)
        assert noted.starts == [3]
        assert again.state == expected and again.last_seq == 3


def test_record_final_is_made_from_the_state_and_closes_the_recorder(tmp_path: Path) -> None:
    """record_final builds its fact from the current state; every later record raises
    RecorderClosedError and leaves the log as it was."""
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, lambda: 3.0)
        recorder.record(_wan("203.0.113.7"), "observer:wan")
        final = recorder.record_final(lambda state: DaemonStopped(reason=f"at {state.seq}"), "d")
        assert final.fact == DaemonStopped(reason="at 1") and final.seq == 2
        assert recorder.closed
        with pytest.raises(RecorderClosedError):
            recorder.record(_wan("203.0.113.8"), "observer:wan")
        with pytest.raises(RecorderClosedError):
            recorder.record_final(lambda state: DaemonStopped(reason="again"), "d")
        assert log.last_seq == 2 == recorder.last_seq


def test_start_up_skips_a_snapshot_whose_state_has_another_seq(tmp_path: Path) -> None:
    """A snapshot file named #6 that holds the state at #3 is not used: start-up folds the
    log (the one loader of reconciler.history checks the state's own seq)."""
    store = SnapshotStore(tmp_path / "snapshots")
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, lambda: 7.0)
        at_three = None
        for index in range(8):
            recorder.record(_wan(f"203.0.113.{index + 1}"), "observer:wan")
            if index == 2:
                at_three = recorder.state
        expected = recorder.state
    assert at_three is not None
    store.write(6, state_to_mapping(at_three), SCHEMA_VERSION, log_id=None)
    with EventLog.open(tmp_path / "events") as log:
        again = Recorder(log, snapshots=store)
        assert again.loaded.snapshot_seq == 0
        assert again.state == expected


def _filled_recorder(
    tmp_path: Path, log: EventLog, count: int, after: list[int]
) -> tuple[Recorder, SnapshotStore]:
    store = SnapshotStore(snapshots_dir(tmp_path))

    def retain(covered: int) -> None:
        after.append(covered)
        apply_retention(log, covered, now=0.0, max_bytes=1)

    recorder = Recorder(
        log, lambda: 11.0, snapshots=store, snapshot_every=10, after_snapshot=retain
    )
    for index in range(count):
        recorder.record(_wan(f"203.0.113.{index % 250 + 1}"), "observer:wan")
        if index % 7 == 0:
            key = f"update-he-endpoint:203.0.113.{index % 250 + 1}"
            recorder.record(ActionStarted(key, "update-he-endpoint", "x"), "executor")
    return recorder, store


def test_retention_is_told_the_oldest_kept_snapshot(tmp_path: Path) -> None:
    """after_snapshot gets the seq of the oldest snapshot kept (of three), not the newest."""
    after: list[int] = []
    with EventLog.open(events_dir(tmp_path), segment_size=512) as log:
        recorder, store = _filled_recorder(tmp_path, log, 60, after)
        kept = [seq for seq, _ in store.list()]
        assert len(kept) == 3
        assert after[-1] == min(kept) < max(kept)
        assert log.segments()[0][0] <= min(kept) + 1  # nothing past the oldest was removed
        assert recorder.last_seq == log.last_seq


def test_start_up_after_retention_and_a_damaged_newest_snapshot_loses_nothing(
    tmp_path: Path,
) -> None:
    """Retention removed old segments; the newest snapshot is damaged later: start-up falls
    back to an older snapshot and still finds every record after it (no gap, same state)."""
    after: list[int] = []
    with EventLog.open(events_dir(tmp_path), segment_size=512) as log:
        recorder, store = _filled_recorder(tmp_path, log, 80, after)
        expected = recorder.state
        assert log.segments()[0][0] > 1  # retention really removed segments
    newest = store.list()[0][1]
    newest.write_bytes(newest.read_bytes()[:-3])  # damaged: the CRC no longer matches
    with EventLog.open(events_dir(tmp_path)) as log:
        again = Recorder(log, snapshots=store)
        assert again.loaded.gap is None
        assert 0 < again.loaded.snapshot_seq < store.list()[0][0]
        assert again.state == expected


def test_start_up_warns_when_retention_removed_what_it_needs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every snapshot unusable (a new schema, say) after retention: start-up says loudly that
    history is missing, and the recorder exposes the gap."""
    after: list[int] = []
    with EventLog.open(events_dir(tmp_path), segment_size=512) as log:
        _filled_recorder(tmp_path, log, 80, after)
        first = log.segments()[0][0]
    for _, path in SnapshotStore(snapshots_dir(tmp_path)).list():
        path.unlink()
    with caplog.at_level(logging.WARNING), EventLog.open(events_dir(tmp_path)) as log:
        again = Recorder(log)
        assert again.loaded.gap == (1, first - 1)
    assert any(
        r.levelno == logging.WARNING and "retention" in r.getMessage() for r in caplog.records
    )


def test_snapshot_and_retention_run_outside_the_recorder_lock(tmp_path: Path) -> None:
    """While retention runs, another thread can record: it never waits for the housekeeping."""
    recorded_meanwhile: list[int] = []

    with EventLog.open(tmp_path / "events") as log:

        def retain(covered: int) -> None:
            other = threading.Thread(
                target=lambda: recorded_meanwhile.append(
                    recorder.record(_wan("203.0.113.99"), "other").seq
                )
            )
            other.start()
            other.join(timeout=5.0)
            assert not other.is_alive(), "a record waited for retention"

        store = SnapshotStore(tmp_path / "snapshots")
        recorder = Recorder(log, snapshots=store, snapshot_every=3, after_snapshot=retain)
        for index in range(3):
            recorder.record(_wan(f"203.0.113.{index + 1}"), "observer:wan")
        assert recorded_meanwhile == [4]
        assert recorder.last_seq == 4 and store.latest(SCHEMA_VERSION, log.log_id) is not None


def test_snapshot_at_the_stop_is_written_after_record_final(tmp_path: Path) -> None:
    """After record_final, snapshot() still writes the state with the final fact in it."""
    store = SnapshotStore(tmp_path / "snapshots")
    with EventLog.open(tmp_path / "events") as log:
        recorder = Recorder(log, snapshots=store, snapshot_every=100)
        recorder.record(_wan("203.0.113.7"), "observer:wan")
        recorder.record_final(lambda state: DaemonStopped(reason="test"), "daemon")
        recorder.snapshot()
    latest = store.latest(SCHEMA_VERSION, log.log_id)
    assert latest is not None and latest[0] == 2
