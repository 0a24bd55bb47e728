"""The recorder: the one door through which facts enter the event log while the daemon runs.

`record` appends a fact durably, folds it into the in-memory observed state and wakes whoever
waits for news (the reconcile loop), all under one lock, so the state the loop plans on is
always exactly the fold of the log up to `last_seq`. At start-up the state comes from
reconciler.history.load_from (the one loader: newest usable snapshot plus the tail, a loud
warning when retention removed records it needed). Every `snapshot_every` facts a new
snapshot is written so the next start-up stays fast however long the log grows, and
`after_snapshot` (the daemon's retention) is then told the seq of the OLDEST snapshot kept:
only records that every kept snapshot covers may go, so start-up can still fall back to an
older snapshot if a newer one is damaged later. Snapshot and retention run after the lock
is released (they write and delete files): other threads' records never wait for them.

When the log cannot take a fact (the disk is full), the fact is still folded and acted on:
repairs never wait for disk space. It is kept in memory, numbered as the log will number it,
and written, before anything newer, by the first record after the log takes writes again
(the log puts its segment back as it was first). Past MAX_UNWRITTEN facts kept, the oldest are
kept only as their time, and written as lost-record markers, so numbers stay contiguous and
the gap is plain in the log. No snapshot is written while facts are unwritten (it would
cover records the log does not hold).

`record_final` records the daemon's last fact and closes the door: a thread the daemon
abandoned at its stop (an action that outlived its grace period) gets RecorderClosedError
instead of writing after DaemonStopped, so nothing lands in the log once the daemon said it
stopped, and no append is ever in progress when the log is closed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from reconciler.errors import ReconcilerError
from reconciler.history import Loaded, load_from, log_fold_error
from reconciler.model.facts import Envelope, Fact, to_record
from reconciler.model.state import SCHEMA_VERSION, ObservedState, fold, state_to_mapping

__all__ = [
    "MAX_UNWRITTEN",
    "Listener",
    "LogWriter",
    "Recorder",
    "RecorderClosedError",
    "SnapshotWriter",
]

_log = logging.getLogger(__name__)

# Facts kept whole in memory while the log cannot take them (a few hundred bytes each).
MAX_UNWRITTEN = 10_000
# The record written for a fact dropped from memory (the type `log repair` writes too).
_LOST_RECORD_TYPE = "log-record-lost"


Listener = Callable[[ObservedState, Envelope, ObservedState], None]


class RecorderClosedError(ReconcilerError):
    """A fact arrived after the recorder took its final one; it was not recorded."""


class LogWriter(Protocol):
    """What the recorder needs of reconciler.eventlog.EventLog."""

    @property
    def last_seq(self) -> int: ...

    def append(self, record: Mapping[str, Any]) -> int: ...

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> list[int]: ...

    def read(self, start: int = 1) -> Iterator[tuple[int, Mapping[str, Any]]]: ...


class SnapshotWriter(Protocol):
    """What the recorder needs of reconciler.eventlog.SnapshotStore."""

    def write(self, seq: int, state: Mapping[str, Any], schema: int) -> Any: ...

    def candidates(self, schema: int) -> Iterator[tuple[int, Mapping[str, Any]]]: ...

    def oldest_seq(self, schema: int) -> int | None: ...


class Recorder:
    """Appends facts durably, keeps the folded state current, and wakes waiters."""

    def __init__(
        self,
        log: LogWriter,
        clock: Callable[[], float] = time.time,
        *,
        snapshots: SnapshotWriter | None = None,
        snapshot_every: int = 1000,
        after_snapshot: Callable[[int], None] | None = None,
    ) -> None:
        self._log = log
        self._clock = clock
        self._snapshots = snapshots
        self._after_snapshot = after_snapshot
        self._snapshot_every = max(1, snapshot_every)
        self._changed = threading.Condition(threading.Lock())
        # Held while a snapshot is written and retention runs; never while _changed is.
        self._housekeeping = threading.Lock()
        snapshots_found = snapshots.candidates(SCHEMA_VERSION) if snapshots else ()
        self._loaded = load_from(log, snapshots_found)
        self._state, self._last_seq = self._loaded.state, self._loaded.last_seq
        self._since_snapshot = 0
        self._closed = False
        # Facts folded but not yet in the log, oldest first: the record, or only its time
        # once MAX_UNWRITTEN newer ones are kept. They hold seqs last_seq - len + 1 .. last_seq.
        self._unwritten: list[Mapping[str, Any] | float] = []
        self._dropped = 0  # how many of them are kept only as their time
        self._write_error: str | None = None  # why the log did not take the first of them
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Call `listener(before, envelope, after)` for every fact from now on, in log order,
        under the recorder's lock: it must be quick and never wait (the daemon's telemetry
        counts and queues notifications there)."""
        with self._changed:
            self._listeners.append(listener)

    @property
    def closed(self) -> bool:
        """True once `record_final` has run: every later `record` raises."""
        with self._changed:
            return self._closed

    @property
    def loaded(self) -> Loaded:
        """How start-up got its state: the snapshot used and any gap retention left."""
        return self._loaded

    @property
    def state(self) -> ObservedState:
        """The fold of every fact up to `last_seq` (an immutable value: safe to keep)."""
        with self._changed:
            return self._state

    @property
    def last_seq(self) -> int:
        with self._changed:
            return self._last_seq

    @property
    def unwritten(self) -> int:
        """How many folded facts the log does not hold yet (it could not take them)."""
        with self._changed:
            return len(self._unwritten)

    @property
    def write_error(self) -> str | None:
        """Why the log did not take the facts kept in memory (None when there are none)."""
        with self._changed:
            return self._write_error if self._unwritten else None

    def view(self) -> tuple[ObservedState, int]:
        """The state and the sequence number it is folded up to, read together."""
        with self._changed:
            return self._state, self._last_seq

    def record(self, fact: Fact, source: str) -> Envelope:
        """Append `fact` durably, fold it in, wake waiters; the envelope carries its seq.
        Raises RecorderClosedError after `record_final`."""
        at = self._clock()
        record = to_record(fact, at=at, source=source)  # encoded outside the lock
        with self._changed:
            envelope = self._append(fact, record, source, at)
            due = self._snapshot_due()
        if due:
            self._housekeep()
        _log.debug("fact %d %s from %s: %s", envelope.seq, fact.TYPE, source, fact)
        return envelope

    def record_final(self, final: Callable[[ObservedState], Fact], source: str) -> Envelope:
        """Record the last fact this recorder takes (the daemon's DaemonStopped). It is made
        by `final` from the state under the recorder's lock, so it cannot contradict a fact
        another thread records at the same moment (an action's outcome, say)."""
        at = self._clock()
        with self._changed:
            fact = final(self._state)
            try:
                return self._append(fact, to_record(fact, at=at, source=source), source, at)
            finally:
                self._closed = True  # closed even when the final append failed

    def _append(self, fact: Fact, record: Mapping[str, Any], source: str, at: float) -> Envelope:
        # Called with the lock held: the append, the fold and last_seq move together.
        if self._closed:
            raise RecorderClosedError(f"{fact.TYPE} from {source} not recorded: stopped")
        seq = self._write(record, at)
        envelope = Envelope(seq=seq, at=at, source=source, fact=fact)
        before = self._state
        self._state = fold(before, envelope, log_fold_error)
        for listener in self._listeners:
            try:
                listener(before, envelope, self._state)
            except Exception:  # telemetry must never cost a fact its recording
                _log.exception("a listener failed on fact %d", seq)
        self._last_seq = seq
        self._since_snapshot += 1
        self._changed.notify_all()
        return envelope

    def _write(self, record: Mapping[str, Any], at: float) -> int:
        """Append `record` (after any kept before it); its seq. Called with the lock held.
        When the log cannot take it, it is kept and the seq the log will give it returned."""
        if self._unwritten:
            self._write_unwritten()
        if not self._unwritten:
            try:
                return self._log.append(record)
            except OSError as exc:
                self._write_error = exc.strerror or str(exc)
                _log.warning(
                    "cannot write the event log (%s): facts are acted on and kept in memory "
                    "until it takes writes again",
                    self._write_error,
                )
        self._unwritten.append(record)
        if len(self._unwritten) - self._dropped > MAX_UNWRITTEN:
            oldest = self._unwritten[self._dropped]
            assert not isinstance(oldest, float)
            self._unwritten[self._dropped] = float(oldest.get("at", at))
            self._dropped += 1
        return self._last_seq + 1

    def _write_unwritten(self) -> None:
        """Write the facts kept in memory, if the log takes them now. Called with the lock."""
        first = self._last_seq - len(self._unwritten) + 1
        if self._log.last_seq + 1 != first:  # another writer cannot exist (the lock): a bug
            raise RuntimeError(f"log at #{self._log.last_seq}, kept facts from #{first}")
        try:
            self._log.append_many(
                _gap_marker(item) if isinstance(item, float) else item for item in self._unwritten
            )
        except OSError:
            return  # still full: kept, and tried again with the next fact
        _log.warning(
            "the event log takes writes again: wrote the %d facts kept in memory (#%d..#%d%s)",
            len(self._unwritten),
            first,
            self._last_seq,
            f"; {self._dropped} of them only as lost-record markers" if self._dropped else "",
        )
        self._unwritten.clear()
        self._dropped = 0

    def flush(self) -> int:
        """Write the facts kept in memory if the log takes them now; how many are still not
        written (the daemon tries once more at its stop, `apply` before it exits)."""
        with self._changed:
            if self._unwritten:
                self._write_unwritten()
            return len(self._unwritten)

    def wait_for_news(self, after_seq: int, timeout: float | None) -> bool:
        """Block until a fact newer than `after_seq` exists (True), or the timeout (False),
        or `wake()` is called."""
        with self._changed:
            if self._last_seq > after_seq:
                return True
            self._changed.wait(timeout)
            return self._last_seq > after_seq

    def wake(self) -> None:
        """Wake every waiter without a new fact (the daemon is stopping or reloading)."""
        with self._changed:
            self._changed.notify_all()

    def snapshot(self) -> None:
        """Write a snapshot of the state now (the daemon does this when it stops, after
        `record_final`): waits for a snapshot another thread is writing."""
        with self._housekeeping:
            with self._changed:
                if not self._since_snapshot or self._unwritten:
                    return  # a snapshot must not cover facts the log does not hold
                state, seq = self._take_snapshot_turn()
            self._write_snapshot(state, seq)

    def _snapshot_due(self) -> bool:
        return (
            self._snapshots is not None
            and self._since_snapshot >= self._snapshot_every
            and not self._unwritten
        )

    def _take_snapshot_turn(self) -> tuple[ObservedState, int]:
        # Called with _changed held: the state and seq to write, read together.
        self._since_snapshot = 0  # a failed write is tried again after snapshot_every facts
        return self._state, self._last_seq

    def _housekeep(self) -> None:
        """Write the due snapshot, then run retention; outside the recorder's lock."""
        if not self._housekeeping.acquire(blocking=False):
            return  # another thread is at it; the next record finds the snapshot due again
        try:
            with self._changed:
                if self._closed or not self._snapshot_due():
                    return  # after the stop only snapshot() writes, before the log closes
                state, seq = self._take_snapshot_turn()
            self._write_snapshot(state, seq)
        finally:
            self._housekeeping.release()

    def _write_snapshot(self, state: ObservedState, seq: int) -> None:
        # Called with _housekeeping held and _changed free.
        if self._snapshots is None or seq == 0:
            return
        try:
            self._snapshots.write(seq, state_to_mapping(state), SCHEMA_VERSION)
        except Exception as exc:  # a snapshot is an optimisation: never fail a record over it
            _log.warning("could not write a snapshot at seq %d: %s", seq, exc)
            return
        if self._after_snapshot is None:
            return
        try:
            # Only what the oldest kept snapshot covers may be removed (see the docstring).
            covered = self._snapshots.oldest_seq(SCHEMA_VERSION)
            if covered is not None:
                self._after_snapshot(covered)
        except Exception as exc:  # housekeeping must not stop the recording either
            _log.warning("after the snapshot at seq %d: %s", seq, exc)


def _gap_marker(at: float) -> Mapping[str, Any]:
    """What stands in the log for a fact that was acted on but dropped from memory while
    the disk was full: a lost-record marker, as `log repair` writes for what it cannot read."""
    return {
        "t": _LOST_RECORD_TYPE,
        "v": 1,
        "at": at,
        "src": "recorder",
        "d": {"reason": "not written: the event log could not take writes (disk full?)"},
    }
