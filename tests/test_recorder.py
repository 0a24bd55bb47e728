"""Tests for reconciler.recorder: durable appends, the folded state, snapshots, waking."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler.eventlog import EventLog, SnapshotStore
from reconciler.history import load_state
from reconciler.model.facts import (
    ActionStarted,
    DaemonStopped,
    ProbeObserved,
    WanAddressObserved,
    from_record,
)
from reconciler.model.state import SCHEMA_VERSION, ObservedState, fold
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
        latest = store.latest(SCHEMA_VERSION)
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
    latest = store.latest(SCHEMA_VERSION)
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
