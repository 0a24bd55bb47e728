"""history: the observed state from the newest valid snapshot plus the log's tail."""

from __future__ import annotations

from pathlib import Path

from reconciler.eventlog import EventLog, SnapshotStore
from reconciler.history import iter_envelopes, load_state
from reconciler.model import facts as f
from reconciler.model.state import SCHEMA_VERSION, fold_all, state_to_mapping
from reconciler.statedir import events_dir, snapshots_dir


def write_facts(state_dir: Path, count: int) -> None:
    with EventLog.open(events_dir(state_dir)) as log:
        start = log.last_seq
        for i in range(count):
            fact = f.ProbeObserved("ipv6", "2001:db8::53", (start + i) % 4 != 0)
            log.append(f.to_record(fact, at=1000.0 + start + i, source="test"))


def test_empty_state_dir(tmp_path: Path) -> None:
    """A state directory without a log gives the empty state at seq 0."""
    state, seq = load_state(tmp_path)
    assert seq == 0 and state.wan is None
    assert list(iter_envelopes(tmp_path)) == []


def test_snapshot_plus_tail_equals_full_fold(tmp_path: Path) -> None:
    """Loading from a snapshot and the tail gives the same state as folding everything."""
    write_facts(tmp_path, 30)
    middle = fold_all(list(iter_envelopes(tmp_path))[:20])
    SnapshotStore(snapshots_dir(tmp_path)).write(20, state_to_mapping(middle), SCHEMA_VERSION)
    write_facts(tmp_path, 5)
    state, seq = load_state(tmp_path)
    assert seq == 35
    assert state_to_mapping(state) == state_to_mapping(fold_all(iter_envelopes(tmp_path)))


def test_unusable_snapshot_is_ignored(tmp_path: Path) -> None:
    """A snapshot whose mapping does not fit the state is ignored: the log is folded instead."""
    write_facts(tmp_path, 10)
    SnapshotStore(snapshots_dir(tmp_path)).write(
        8, {"schema": SCHEMA_VERSION, "bogus": 1}, SCHEMA_VERSION
    )
    state, seq = load_state(tmp_path)
    assert seq == 10
    assert state_to_mapping(state) == state_to_mapping(fold_all(iter_envelopes(tmp_path)))
