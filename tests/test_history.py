"""history: the observed state from the newest usable snapshot plus the log's tail."""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import pytest

from reconciler.checkpoints import log_id_of
from reconciler.eventlog import EventLog, SnapshotStore
from reconciler.history import first_seq, iter_envelopes, load, load_state
from reconciler.model import facts as f
from reconciler.model.state import SCHEMA_VERSION, ObservedState, fold_all, state_to_mapping
from reconciler.statedir import events_dir, snapshots_dir

SEGMENT = 512  # bytes: small segments, so retention has whole segments to remove


def write_facts(state_dir: Path, count: int) -> None:
    with EventLog.open(events_dir(state_dir), segment_size=SEGMENT) as log:
        start = log.last_seq
        for i in range(count):
            fact = f.ProbeObserved("ipv6", "2001:db8::53", (start + i) % 4 != 0)
            log.append(f.to_record(fact, at=1000.0 + start + i, source="test"))


def state_at(state_dir: Path, seq: int) -> ObservedState:
    return fold_all(e for e in iter_envelopes(state_dir) if e.seq <= seq)


def marked(state: ObservedState) -> ObservedState:
    """The state with a value no fact in these tests produces: seen only via the snapshot."""
    return attrs.evolve(state, config_digest="from-the-snapshot")


def remove_segments_before(state_dir: Path, seq: int) -> list[int]:
    with EventLog.open(events_dir(state_dir), segment_size=SEGMENT) as log:
        log.remove_segments_before(seq)
        return [first for first, _ in log.segments()]


def test_empty_state_dir(tmp_path: Path) -> None:
    """A state directory without a log gives the empty state at seq 0."""
    state, seq = load_state(tmp_path)
    assert seq == 0 and state.wan is None
    assert list(iter_envelopes(tmp_path)) == []
    assert first_seq(tmp_path) is None


def test_start_up_uses_the_snapshot_and_folds_the_tail(tmp_path: Path) -> None:
    """The loaded state carries what only the snapshot held, plus every fact after it."""
    write_facts(tmp_path, 30)
    middle = marked(state_at(tmp_path, 20))
    SnapshotStore(snapshots_dir(tmp_path)).write(
        20, state_to_mapping(middle), SCHEMA_VERSION, log_id=log_id_of(tmp_path)
    )
    write_facts(tmp_path, 5)
    loaded = load(tmp_path)
    assert (loaded.snapshot_seq, loaded.last_seq, loaded.gap) == (20, 35, None)
    assert loaded.state.config_digest == "from-the-snapshot"
    full = fold_all(iter_envelopes(tmp_path))
    assert state_to_mapping(loaded.state) == state_to_mapping(marked(full))
    assert load_state(tmp_path) == (loaded.state, 35)


def test_snapshot_covers_segments_retention_removed(tmp_path: Path) -> None:
    """With the covered segments gone, snapshot + tail still equals the fold of everything."""
    write_facts(tmp_path, 60)
    full = fold_all(iter_envelopes(tmp_path))
    SnapshotStore(snapshots_dir(tmp_path)).write(
        40, state_to_mapping(state_at(tmp_path, 40)), SCHEMA_VERSION, log_id=log_id_of(tmp_path)
    )
    firsts = remove_segments_before(tmp_path, 40)
    assert firsts[0] > 1  # something was really removed
    loaded = load(tmp_path)
    assert (loaded.snapshot_seq, loaded.gap) == (40, None)
    assert state_to_mapping(loaded.state) == state_to_mapping(full)
    assert first_seq(tmp_path) == firsts[0]


def test_unusable_snapshot_is_ignored(tmp_path: Path) -> None:
    """A snapshot whose mapping does not fit the state is ignored: the log is folded instead."""
    write_facts(tmp_path, 10)
    SnapshotStore(snapshots_dir(tmp_path)).write(
        8, {"schema": SCHEMA_VERSION, "bogus": 1}, SCHEMA_VERSION, log_id=log_id_of(tmp_path)
    )
    loaded = load(tmp_path)
    assert (loaded.snapshot_seq, loaded.last_seq) == (0, 10)
    assert state_to_mapping(loaded.state) == state_to_mapping(fold_all(iter_envelopes(tmp_path)))


def test_snapshot_whose_state_has_another_seq_falls_back_to_an_older_one(
    tmp_path: Path,
) -> None:
    """A snapshot file named #20 holding the state at #10 is skipped for the next older one."""
    write_facts(tmp_path, 30)
    store = SnapshotStore(snapshots_dir(tmp_path))
    store.write(
        5,
        state_to_mapping(marked(state_at(tmp_path, 5))),
        SCHEMA_VERSION,
        log_id=log_id_of(tmp_path),
    )
    store.write(
        20, state_to_mapping(state_at(tmp_path, 10)), SCHEMA_VERSION, log_id=log_id_of(tmp_path)
    )
    loaded = load(tmp_path)
    assert loaded.snapshot_seq == 5
    full = fold_all(iter_envelopes(tmp_path))
    assert state_to_mapping(loaded.state) == state_to_mapping(marked(full))


def test_a_gap_left_by_retention_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With no usable snapshot and early segments removed, the loader warns and names the gap."""
    write_facts(tmp_path, 60)
    firsts = remove_segments_before(tmp_path, 40)
    SnapshotStore(snapshots_dir(tmp_path)).write(
        40, {"damaged": True}, SCHEMA_VERSION, log_id=log_id_of(tmp_path)
    )
    with caplog.at_level(logging.WARNING, logger="reconciler.history"):
        loaded = load(tmp_path)
    assert loaded.gap == (1, firsts[0] - 1) and not loaded.complete
    assert loaded.last_seq == 60
    assert f"#1..#{firsts[0] - 1}" in caplog.text and "retention" in caplog.text
    assert first_seq(tmp_path) == firsts[0]


def test_a_complete_log_has_no_gap_and_starts_at_one(tmp_path: Path) -> None:
    """An untouched log loads without a gap and its first seq is 1."""
    write_facts(tmp_path, 12)
    loaded = load(tmp_path)
    assert loaded.gap is None and loaded.complete and loaded.snapshot_seq == 0
    assert first_seq(tmp_path) == 1


def test_a_fact_the_fold_cannot_take_is_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """fold_records keeps going past a fact whose fold raises, and says which one it was."""
    from reconciler.history import fold_records
    from reconciler.model import state as state_module
    from reconciler.model.facts import DaemonStopped, to_record

    def broken(*args: object) -> None:
        raise ValueError("boom")

    records = [(1, to_record(DaemonStopped("x"), at=1.0, source="t"))]
    records.append((2, to_record(DaemonStopped("y"), at=2.0, source="t")))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(state_module._FOLDERS, DaemonStopped, broken)
        with caplog.at_level("WARNING"):
            folded, last = fold_records(state_module.ObservedState(), records)
    assert (folded.seq, last) == (2, 2)
    assert "#1 daemon-stopped: not folded, counted as unknown: boom" in caplog.text
