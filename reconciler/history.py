"""Reading the past: typed envelopes from a state directory, and the observed state they fold to.

There is one start-up loader, `load_from`, used by the daemon's Recorder and by `load_state`
(status, diff): it starts from the newest usable snapshot and folds only the tail of the log
after it. A snapshot that is damaged, of another schema, newer than the log, or whose state
does not carry its own sequence number is skipped for the next older one (the log is the
truth). When the log no longer holds the records the fold needs, because retention removed
segments no usable snapshot covers, the loader says so loudly and the result carries the gap:
the state then lacks whatever those records held (update attempts, permanent-failure holds,
in-flight intents). Everything here only reads; `load_state` and `iter_envelopes` open the log
read-only, without a lock, so they work while the daemon runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from attrs import frozen

from reconciler.model.facts import Envelope, from_record
from reconciler.model.state import (
    SCHEMA_VERSION,
    ObservedState,
    fold,
    state_from_mapping,
)
from reconciler.statedir import events_dir, snapshots_dir

__all__ = [
    "Loaded",
    "LogReader",
    "first_seq",
    "fold_records",
    "iter_envelopes",
    "load",
    "load_from",
    "load_state",
    "log_fold_error",
    "newest_first",
    "state_from_snapshot",
]

_log = logging.getLogger(__name__)

Snapshot = tuple[int, Mapping[str, Any]]


class LogReader(Protocol):
    """What the loader needs of reconciler.eventlog.EventLog."""

    @property
    def last_seq(self) -> int: ...

    def read(self, start: int = 1) -> Iterator[tuple[int, Mapping[str, Any]]]: ...


@frozen
class Loaded:
    """The state start-up folded, and how it got there."""

    state: ObservedState
    last_seq: int  # the seq the state is folded up to
    snapshot_seq: int  # the snapshot it started from; 0 when it folded from the log's start
    gap: tuple[int, int] | None = None  # (first, last) seq needed but no longer in the log

    @property
    def complete(self) -> bool:
        """True when nothing the fold needed was missing."""
        return self.gap is None


def iter_envelopes(
    state_dir: Path, start: int = 1, near: tuple[int, int] | None = None
) -> Iterator[Envelope]:
    """Every fact in the state directory's log from `start`, typed (unknown ones kept raw);
    `near` is where record `start` was written, when known (EventLog.read).

    After retention the log may begin later than `start`: `first_seq` says where."""
    events = events_dir(state_dir)
    if not events.is_dir():
        return
    from reconciler.eventlog import EventLog

    log = EventLog.open(events, readonly=True)
    try:
        for seq, record in log.read(start, near=near):
            yield from_record(seq, record)
    finally:
        log.close()


def first_seq(state_dir: Path) -> int | None:
    """The first sequence number the state directory's log still holds; None when it holds
    none. Above 1, retention removed the history before it (`replay` says so)."""
    events = events_dir(state_dir)
    if not events.is_dir():
        return None
    from reconciler.eventlog import EventLog

    with EventLog.open(events, readonly=True) as log:
        segments = log.segments()
        if not segments:
            return None
        # Its first record, read from the start of the first segment: asking last_seq
        # would walk the whole last segment, which a window into a long log must not pay.
        first = next(iter(log.read(segments[0][0])), None)
        return segments[0][0] if first is not None else None


def log_fold_error(envelope: Envelope, exc: Exception) -> None:
    """The fold's `on_error`: a fact it could not take is skipped, and said so."""
    _log.warning(
        "#%d %s: not folded, counted as unknown: %s",
        envelope.seq,
        getattr(envelope.fact, "TYPE", type(envelope.fact).__name__),
        exc,
    )


def fold_records(
    state: ObservedState, records: Iterable[tuple[int, Mapping[str, Any]]]
) -> tuple[ObservedState, int]:
    """Fold raw (seq, record) pairs onto `state`; the state and the last seq folded."""
    last = state.seq
    for seq, record in records:
        state = fold(state, from_record(seq, record), log_fold_error)
        last = seq
    return state, last


def state_from_snapshot(snapshot: Snapshot | None, last_seq: int) -> tuple[ObservedState, int]:
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
        _log.warning("snapshot at seq %d is unusable (%s): ignored", seq, exc)
        return ObservedState(), 0
    if state.seq != seq:
        _log.warning("snapshot file says seq %d, its state %d: ignored", seq, state.seq)
        return ObservedState(), 0
    return state, seq


def load_from(log: LogReader, snapshots: Iterable[Snapshot] = ()) -> Loaded:
    """The state from the newest usable of `snapshots` (newest first) plus the log's tail.

    Logs a warning, and returns the gap, when the log no longer holds the records right
    after the starting point (retention removed them)."""
    last_seq = log.last_seq
    state, start_seq = ObservedState(), 0
    for snapshot in snapshots:
        state, start_seq = state_from_snapshot(snapshot, last_seq)
        if start_seq:
            break
    gap: tuple[int, int] | None = None
    records = log.read(start_seq + 1)
    head = next(records, None)
    if head is not None and head[0] > start_seq + 1:
        gap = (start_seq + 1, head[0] - 1)
        where = f"the snapshot at #{start_seq}" if start_seq else "no usable snapshot"
        _log.warning(
            "the log no longer holds #%d..#%d (removed by retention) and %s covers them: "
            "the state lacks what they held (update attempts, permanent-failure holds, "
            "actions in flight)",
            gap[0],
            gap[1],
            where,
        )
    if head is not None:
        state = fold(state, from_record(*head), log_fold_error)
    state, last = fold_records(state, records)
    return Loaded(state, max(last, start_seq), start_seq, gap)


def newest_first(*sources: Iterable[Snapshot]) -> Iterator[Snapshot]:
    """Snapshots and checkpoints merged, newest first (each source is newest first)."""
    import heapq

    return heapq.merge(*sources, key=lambda found: -found[0])


def load_state(state_dir: Path) -> tuple[ObservedState, int]:
    """The observed state from the newest valid snapshot plus the log's tail, and its seq."""
    loaded = load(state_dir)
    return loaded.state, loaded.last_seq


def load(state_dir: Path) -> Loaded:
    """`load_from` over a state directory: its log (read-only) and its snapshots."""
    events = events_dir(state_dir)
    if not events.is_dir():
        return Loaded(ObservedState(), 0, 0)
    from reconciler.eventlog import EventLog, SnapshotStore
    from reconciler.eventlog.checkpoints import CheckpointStore

    with EventLog.open(events, readonly=True) as log:
        store = SnapshotStore(snapshots_dir(state_dir))
        checkpoints = CheckpointStore(state_dir / "checkpoints")
        found = newest_first(
            store.candidates(SCHEMA_VERSION, log.log_id),
            checkpoints.candidates(SCHEMA_VERSION, log.log_id),
        )
        return load_from(log, found)
