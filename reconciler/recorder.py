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

News, not repetition: with `quiet_summary_interval` > 0 (the daemon's), an observation that
changes nothing in the folded state (reconciler.model.news: the same address and link, the
same tunnel, a probe success while its family is up) is not appended on its own. It is
counted per source, and the counts go into one ObservationsCounted fact per source at most
once per interval, before the next fact that changes something, and at `record_final`
(counts not yet recorded when the process dies are lost; the facts they counted changed
nothing). Whatever can change a decision is appended at once, as is the first observation
of each source after start-up and any observation whose fields differ from the last one
recorded from its source (a measurement such as a ping's round-trip time aside). A counted
observation's envelope has seq 0: it is in no log, wakes nobody and reaches no listener
(listeners hear ObservationsCounted instead).

Checkpoints (reconciler.checkpoints), when given a store: a day or 10,000 facts after the
last one, the state is written as a checkpoint with where its next record lies, outside the
lock like a snapshot (and, like one, not while facts are unwritten); `build_checkpoints`
fills in what an older log lacks.

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

import attrs

from reconciler.errors import ReconcilerError
from reconciler.history import Loaded, load_from, log_fold_error, newest_first
from reconciler.model.facts import (
    EndpointObserved,
    Envelope,
    Fact,
    HostnameFileObserved,
    ObservationsCounted,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
    WanProbed,
    to_record,
)
from reconciler.model.news import changes_nothing
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

# The facts that may be counted instead of recorded: observations of the world.
_OBSERVATIONS = (
    WanAddressObserved,
    TunnelObserved,
    ProbeObserved,
    HostnameFileObserved,
    EndpointObserved,
    WanProbed,
)
# Fields that measure rather than observe: they differ every time and decide nothing.
_MEASUREMENTS: dict[type[Any], dict[str, Any]] = {
    ProbeObserved: {"rtt_ms": None, "detail": ""},
    WanProbed: {"rtt_ms": None, "detail": ""},
}

_Item = tuple[Fact, Mapping[str, Any], str, float]  # a fact, its record, source and time


def _observed(fact: Fact) -> Fact:
    """`fact` without its measurements: what an observation says about the world."""
    blank = _MEASUREMENTS.get(type(fact))
    return attrs.evolve(fact, **blank) if blank else fact


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

    def write(
        self, seq: int, state: Mapping[str, Any], schema: int, *, log_id: bytes | None
    ) -> Any: ...

    def candidates(
        self, schema: int, log_id: bytes | None = None
    ) -> Iterator[tuple[int, Mapping[str, Any]]]: ...

    def oldest_seq(self, schema: int, log_id: bytes | None = None) -> int | None: ...


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
        quiet_summary_interval: float = 0.0,
        checkpoints: Any = None,
    ) -> None:
        """`quiet_summary_interval` > 0 records news only, 0 every fact as it comes;
        `checkpoints` (a CheckpointStore) turns checkpoints on (see the module docstring)."""
        self._log = log
        self._quiet_interval = max(0.0, quiet_summary_interval)
        # Per source: the last fact appended, and [fact type, count, first at, last at] of
        # the observations counted since; `_window` is when the oldest count began.
        self._last_recorded: dict[str, Fact] = {}
        self._tallies: dict[str, list[Any]] = {}
        self._window: float | None = None
        self._clock = clock
        self._snapshots = snapshots
        self._after_snapshot = after_snapshot
        self._snapshot_every = max(1, snapshot_every)
        self._changed = threading.Condition(threading.Lock())
        # Held while a snapshot is written and retention runs; never while _changed is.
        self._housekeeping = threading.Lock()
        # Snapshots and checkpoints are used only with the log they were folded from; those
        # past its end are of a future a restored log does not have: the writer drops them.
        self._log_id: bytes | None = getattr(log, "log_id", None)
        if not getattr(log, "readonly", True):
            if snapshots is not None and hasattr(snapshots, "discard_after"):
                snapshots.discard_after(log.last_seq)
            if checkpoints is not None:
                checkpoints.discard_after(log.last_seq, self._log_id)
        found: Any = snapshots.candidates(SCHEMA_VERSION, self._log_id) if snapshots else ()
        if checkpoints is not None:  # start from whichever is newer
            found = newest_first(found, checkpoints.candidates(SCHEMA_VERSION, self._log_id))
        snapshots_found = found
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
        # The checkpoints this run writes chain on from the seq it started at.
        from reconciler.checkpoints import ChunkTracker

        self._checkpoints = checkpoints
        self._chunk = ChunkTracker(self._last_seq)
        self._checkpoint_from: tuple[Any, ObservedState] | None = None

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
            quiet = self._quiet_interval and isinstance(fact, _OBSERVATIONS)
            if quiet and self._count_if_quiet(fact, source, at):
                return Envelope(seq=0, at=at, source=source, fact=fact)
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
        # Called with the lock held: the append, the fold and last_seq move together. The
        # counts so far go first, in the same group commit: they end where the news begins.
        if self._closed:
            raise RecorderClosedError(f"{fact.TYPE} from {source} not recorded: stopped")
        envelopes = self._append_all([*self._summaries(at), (fact, record, source, at)])
        if isinstance(fact, _OBSERVATIONS):
            self._last_recorded[source] = fact
        return envelopes[-1]

    def _append_all(self, items: list[_Item]) -> list[Envelope]:
        """Write, fold and announce `items` in order. Called with the lock held. Several go
        in one group commit (one fdatasync) when the log takes them; a log that does not
        keeps them as `_write` does."""
        grouped: list[int] | None = None
        if len(items) > 1 and not self._unwritten:
            try:
                grouped = list(self._log.append_many([record for _, record, _, _ in items]))
            except OSError:
                grouped = None  # one by one below: _write keeps what the log refuses
        envelopes = []
        for n, (fact, record, source, at) in enumerate(items):
            seq = grouped[n] if grouped is not None else self._write(record, at)
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
            envelopes.append(envelope)
            self._chunk.note(at)
        if self._checkpoints is not None and not self._unwritten and self._chunk.due(items[-1][3]):
            # Taken here, under the lock; written by _housekeep outside it.
            position = getattr(self._log, "position", None)  # where the next record goes
            self._checkpoint_from = (self._chunk.take(self._last_seq, position), self._state)
        self._tallies.clear()  # in the log, or kept to be written with the facts around them
        self._window = None
        self._changed.notify_all()
        return envelopes

    def _count_if_quiet(self, fact: Fact, source: str, at: float) -> bool:
        """Count `fact` (True) when it changes nothing; False when it must be appended.
        Called with the lock held; appends the counts when the interval is over."""
        if self._closed:
            raise RecorderClosedError(f"{fact.TYPE} from {source} not recorded: stopped")
        if self._unwritten:
            # Facts kept while the disk was full go in at the next observation, counted or
            # not, as they did when every observation was a record.
            self._write_unwritten()
        last = self._last_recorded.get(source)
        if last is None or _observed(last) != _observed(fact):
            return False  # the first of its source since start-up, or different fields
        folded_badly: list[Exception] = []
        candidate = fold(
            self._state,
            Envelope(seq=self._last_seq + 1, at=at, source=source, fact=fact),
            lambda _envelope, exc: folded_badly.append(exc),
        )
        if folded_badly or not changes_nothing(self._state, candidate):
            return False
        tally = self._tallies.get(source)
        if tally is None:
            self._tallies[source] = [fact.TYPE, 1, at, at]
        else:
            tally[1] += 1
            tally[3] = at
        if self._window is None:
            self._window = at
        elif not 0.0 <= at - self._window < self._quiet_interval:  # over, or the clock stepped
            self._append_all(self._summaries(at))
        return True

    def _summaries(self, at: float) -> list[_Item]:
        """One ObservationsCounted per source counted since the last append, ready to go."""
        items: list[_Item] = []
        for source, (observed, count, first_at, last_at) in sorted(self._tallies.items()):
            fact = ObservationsCounted(observed, count, first_at, last_at)
            items.append((fact, to_record(fact, at=at, source=source), source, at))
        return items

    def flush_counts(self) -> None:
        """Append the counts of quiet observations now (the daemon's stop does it through
        `record_final`; this is for a caller that wants them in the log at once)."""
        with self._changed:
            if self._tallies and not self._closed:
                self._append_all(self._summaries(self._clock()))

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
        """Whether a snapshot (or a checkpoint) waits to be written."""
        return self._checkpoint_from is not None or self._snapshot_wanted()

    def _snapshot_wanted(self) -> bool:
        return (
            self._snapshots is not None
            and self._since_snapshot >= self._snapshot_every
            and not self._unwritten
        )

    def build_checkpoints(self, should_stop: Callable[[], bool]) -> None:
        """Write the checkpoints the log lacks up to the seq this recorder started at (the
        daemon runs this on a thread of its own after start-up)."""
        if self._checkpoints is None:
            return
        from reconciler.checkpoints import build_missing

        try:
            build_missing(self._log, self._checkpoints, self._loaded.last_seq, should_stop)
        except Exception as exc:  # an optimisation: never fatal
            _log.warning("building checkpoints failed: %s", exc)

    def _write_checkpoint(self) -> None:
        # Called with _housekeeping held and _changed free.
        with self._changed:
            due, self._checkpoint_from = self._checkpoint_from, None
        if due is None or self._checkpoints is None:
            return
        from reconciler.checkpoints import write_checkpoint

        chunk, state = due
        try:
            write_checkpoint(self._checkpoints, chunk, state, self._log)
        except Exception as exc:  # an optimisation: never fail a record over it
            _log.warning("could not write a checkpoint at seq %d: %s", state.seq, exc)

    def _take_snapshot_turn(self) -> tuple[ObservedState, int]:
        # Called with _changed held: the state and seq to write, read together.
        self._since_snapshot = 0  # a failed write is tried again after snapshot_every facts
        return self._state, self._last_seq

    def _housekeep(self) -> None:
        """Write the due snapshot, then run retention; outside the recorder's lock."""
        if not self._housekeeping.acquire(blocking=False):
            return  # another thread is at it; the next record finds the snapshot due again
        try:
            self._write_checkpoint()
            with self._changed:
                if self._closed or not self._snapshot_wanted():
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
            self._snapshots.write(seq, state_to_mapping(state), SCHEMA_VERSION, log_id=self._log_id)
        except Exception as exc:  # a snapshot is an optimisation: never fail a record over it
            _log.warning("could not write a snapshot at seq %d: %s", seq, exc)
            return
        if self._after_snapshot is None:
            return
        try:
            # Only what the oldest kept snapshot covers may be removed (see the docstring).
            covered = self._snapshots.oldest_seq(SCHEMA_VERSION, self._log_id)
            if covered is not None:
                self._after_snapshot(covered)
                segments = getattr(self._log, "segments", None)
                if self._checkpoints is not None and segments is not None and segments():
                    # Checkpoints whose following records retention removed go with them.
                    self._checkpoints.prune(segments()[0][0], self._log_id)
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
