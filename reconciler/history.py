"""Reading the past: typed envelopes from a state directory, and the observed state they fold to.

`load_state` starts from the newest valid snapshot and folds only the tail of the log after
it; a snapshot that is damaged, of another schema, or newer than the log is ignored (the
log is the truth). Everything here only reads: the log is opened read-only, without a lock,
so it works while the daemon runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from reconciler.model.facts import Envelope, from_record
from reconciler.model.state import (
    SCHEMA_VERSION,
    ObservedState,
    fold,
    state_from_mapping,
)
from reconciler.statedir import events_dir, snapshots_dir

__all__ = ["fold_records", "iter_envelopes", "load_state", "state_from_snapshot"]

_log = logging.getLogger(__name__)


def iter_envelopes(state_dir: Path, start: int = 1) -> Iterator[Envelope]:
    """Every fact in the state directory's log from `start`, typed (unknown ones kept raw)."""
    events = events_dir(state_dir)
    if not events.is_dir():
        return
    from reconciler.eventlog import EventLog

    log = EventLog.open(events, readonly=True)
    try:
        for seq, record in log.read(start):
            yield from_record(seq, record)
    finally:
        log.close()


def fold_records(
    state: ObservedState, records: Iterable[tuple[int, Mapping[str, Any]]]
) -> tuple[ObservedState, int]:
    """Fold raw (seq, record) pairs onto `state`; the state and the last seq folded."""
    last = state.seq
    for seq, record in records:
        state = fold(state, from_record(seq, record))
        last = seq
    return state, last


def state_from_snapshot(
    snapshot: tuple[int, Mapping[str, Any]] | None, last_seq: int
) -> tuple[ObservedState, int]:
    """The state a snapshot holds and its seq; an empty state (seq 0) when it is unusable."""
    if snapshot is None:
        return ObservedState(), 0
    seq, mapping = snapshot
    if seq > last_seq:
        _log.warning("snapshot at seq %d is newer than the log (%d): ignored", seq, last_seq)
        return ObservedState(), 0
    try:
        state = state_from_mapping(mapping)
    except ValueError as exc:
        _log.warning("snapshot at seq %d is unusable (%s): folding the whole log", seq, exc)
        return ObservedState(), 0
    if state.seq != seq:
        _log.warning("snapshot file says seq %d, its state %d: ignored", seq, state.seq)
        return ObservedState(), 0
    return state, seq


def load_state(state_dir: Path) -> tuple[ObservedState, int]:
    """The observed state from the newest valid snapshot plus the log's tail, and its seq."""
    events = events_dir(state_dir)
    if not events.is_dir():
        return ObservedState(), 0
    from reconciler.eventlog import EventLog, SnapshotStore

    log = EventLog.open(events, readonly=True)
    try:
        snapshot = None
        snapshots = snapshots_dir(state_dir)
        if snapshots.is_dir():
            snapshot = SnapshotStore(snapshots).latest(SCHEMA_VERSION)
        state, seq = state_from_snapshot(snapshot, log.last_seq)
        state, last = fold_records(state, log.read(seq + 1))
        return state, max(last, seq)
    finally:
        log.close()
