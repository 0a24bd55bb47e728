"""Windows into the past that cost what they hold: checkpoints written, built and used.

The recorder writes a checkpoint (reconciler.eventlog.checkpoints) when a day has passed, or
CHECKPOINT_EVERY_FACTS facts, since the last one (`ChunkTracker`). On a log written before
checkpoints existed, or after a crash, the daemon's first start builds the missing ones in
the background (`build_missing`); until then readers fold from the start, as before.

Readers (`replay --since`, `--until`, `--at`) follow the log's order, not raw times (a clock
step leaves times that do not rise): a window starts at the first record stamped at or
after T and ends at the last one stamped at or before T. The index's per-chunk smallest and
largest times find both without reading the chunks that cannot hold them: `start_before`
gives the newest checkpoint every record up to which is stamped before T, `last_seq_until`
scans only the tail after the newest checkpoint and the newest chunk that holds a time at
or before T. Only an index whose chunks chain without a hole from the log's first record
is used; anything else folds from the start.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from reconciler.eventlog.checkpoints import CheckpointStore, Chunk
from reconciler.history import log_fold_error
from reconciler.model.facts import from_record
from reconciler.model.state import (
    SCHEMA_VERSION,
    ObservedState,
    fold,
    state_from_mapping,
    state_to_mapping,
)
from reconciler.statedir import events_dir

__all__ = [
    "CHECKPOINT_EVERY_FACTS",
    "CHECKPOINT_EVERY_SECONDS",
    "ChunkTracker",
    "build_missing",
    "checkpoints_dir",
    "first_seq_of",
    "last_seq_until",
    "start_at_or_before",
    "start_before",
    "write_checkpoint",
]

CHECKPOINT_EVERY_SECONDS = 86400.0
CHECKPOINT_EVERY_FACTS = 10_000

_log = logging.getLogger(__name__)
_WRITES = threading.Lock()  # the recorder and the builder both rewrite the index


def checkpoints_dir(state_dir: Path) -> Path:
    return state_dir / "checkpoints"


class ChunkTracker:
    """The records since the last checkpoint: their count and time span, and whether the
    next checkpoint is due."""

    def __init__(self, since: int) -> None:
        self.since = since
        self.count = 0
        self.first_at = self.min_at = self.max_at = 0.0

    def note(self, at: float) -> None:
        if not self.count:
            self.first_at = self.min_at = self.max_at = at
        self.min_at = min(self.min_at, at)
        self.max_at = max(self.max_at, at)
        self.count += 1

    def due(self, at: float) -> bool:
        if not self.count:
            return False
        return self.count >= CHECKPOINT_EVERY_FACTS or abs(at - self.first_at) >= (
            CHECKPOINT_EVERY_SECONDS
        )

    def take(self, seq: int, position: tuple[int, int] | None = None) -> Chunk:
        """The chunk that ends at `seq` (the last noted record), `position` where the next
        record goes (unknown when None); the tracker starts anew."""
        segment, offset = position or (0, 0)
        chunk = Chunk(seq, self.since, self.min_at, self.max_at, self.count, segment, offset)
        self.since, self.count = seq, 0
        return chunk


def write_checkpoint(store: CheckpointStore, chunk: Chunk, state: ObservedState, log: Any) -> None:
    """Write the checkpoint of `state` (folded up to chunk.seq from `log`) and index it, with
    the log's id and, where the chunk says where record seq ended, that frame's CRC."""
    trailer = getattr(log, "trailer_at", None)
    if chunk.near is not None and trailer is not None:
        chunk = attrs.evolve(chunk, crc=trailer(chunk.near) or 0)
    with _WRITES:
        log_id = getattr(log, "log_id", None)
        store.write(chunk, state_to_mapping(state), SCHEMA_VERSION, log_id=log_id)


def _chain(store: CheckpointStore, first_seq: int, log_id: bytes | None) -> list[Chunk]:
    """The indexed chunks of log `log_id` from the one holding the log's first record on,
    when they chain without a hole; [] otherwise (the reader then folds from the start)."""
    chunks = [c for c in store.index(log_id) if c.seq + 1 >= first_seq]
    if not chunks or chunks[0].since >= first_seq:
        return []  # a hole between the log's start and the first chunk
    for before, after in itertools.pairwise(chunks):
        if after.since != before.seq:
            return []
    return chunks


def _open_log(state_dir: Path) -> Any:
    from reconciler.eventlog import EventLog

    return EventLog.open(events_dir(state_dir), readonly=True)


def _first_seq(log: Any) -> int:
    segments = log.segments()
    return segments[0][0] if segments else 1


def _state_at(store: CheckpointStore, seq: int, log_id: bytes | None) -> ObservedState | None:
    if seq == 0:
        return ObservedState()
    mapping = store.load(seq, SCHEMA_VERSION, log_id)
    if mapping is None:
        return None
    try:
        state = state_from_mapping(mapping)
    except ValueError as exc:
        _log.warning("checkpoint at #%d unusable: %s", seq, exc)
        return None
    return state if state.seq == seq else None


Start = tuple[ObservedState, int, tuple[int, int] | None]


def start_before(state_dir: Path, since: float) -> Start:
    """A state to fold from for a window starting at the first record stamped >= `since`:
    (state, seq, where seq+1 is) with every record up to seq stamped before `since`.
    (empty, 0, None) when no checkpoint helps."""
    store, log_id = CheckpointStore(checkpoints_dir(state_dir)), log_id_of(state_dir)
    chunks = _chain(store, first_seq_of(state_dir), log_id)
    start: Chunk | None = None
    for chunk in chunks:
        if chunk.max_at >= since:
            break  # the window starts in this chunk: fold from the checkpoint before it
        start = chunk
    return _usable(state_dir, store, start, log_id)


def start_at_or_before(state_dir: Path, seq: int) -> Start:
    """The newest checkpointed state at or before `seq` (empty, 0, None when none helps)."""
    store, log_id = CheckpointStore(checkpoints_dir(state_dir)), log_id_of(state_dir)
    chunks = [c for c in _chain(store, first_seq_of(state_dir), log_id) if c.seq <= seq]
    return _usable(state_dir, store, chunks[-1] if chunks else None, log_id)


def _usable(
    state_dir: Path, store: CheckpointStore, chunk: Chunk | None, log_id: bytes | None
) -> Start:
    if chunk is None or not _holds_its_frame(state_dir, chunk):
        return ObservedState(), 0, None
    state = _state_at(store, chunk.seq, log_id)
    if state is None:
        return ObservedState(), 0, None
    return state, chunk.seq, chunk.near


def _holds_its_frame(state_dir: Path, chunk: Chunk) -> bool:
    """Whether the log holds, where the chunk says record seq ended, a frame with the CRC
    the checkpoint was written with (always, for a chunk written without one)."""
    if not chunk.crc or chunk.near is None:
        return True
    with _open_log(state_dir) as log:
        found = log.trailer_at(chunk.near)
    if found != chunk.crc:
        _log.warning("checkpoint at #%d skipped: the log holds another record there", chunk.seq)
        return False
    return True


def log_id_of(state_dir: Path) -> bytes | None:
    """The id of the state directory's log (its newest segment's), without walking it."""
    from reconciler.eventlog.log import read_log_id

    return read_log_id(events_dir(state_dir))


def first_seq_of(state_dir: Path) -> int:
    """The first sequence number of the log's first segment (1 when there is none),
    without walking any segment."""
    from reconciler.eventlog.files import list_segments

    segments = list_segments(events_dir(state_dir))
    return segments[0][0] if segments else 1


def last_seq_until(state_dir: Path, until: float) -> int:
    """The last sequence number (in log order) stamped at or before `until`; 0 when none.

    Reads the log after the newest checkpoint, then only the newest chunk whose smallest
    time is at or before `until`; the whole log when there is no usable index."""
    store, log_id = CheckpointStore(checkpoints_dir(state_dir)), log_id_of(state_dir)
    chunks = _chain(store, first_seq_of(state_dir), log_id)
    chunks = chunks if chunks and _holds_its_frame(state_dir, chunks[-1]) else []
    near = {c.seq: c.near for c in chunks}  # where the record after each checkpoint is
    tail = chunks[-1].seq if chunks else 0
    ranges: list[tuple[int, int | None]] = [(tail, None)]
    ranges += [(c.since, c.seq) for c in reversed(chunks) if c.min_at <= until]
    with _open_log(state_dir) as log:
        for after, stop in ranges:
            last = _last_stamped(log.read(after + 1, near=near.get(after)), stop, until)
            if last:
                return last
    return 0


def _last_stamped(
    records: Iterator[tuple[int, Mapping[str, Any]]], stop: int | None, until: float
) -> int:
    last = 0
    for seq, record in records:
        if stop is not None and seq > stop:
            break
        stamp = record.get("at")
        if isinstance(stamp, int | float) and stamp <= until:
            last = seq
    return last


def build_missing(
    log: Any, store: CheckpointStore, upto: int, should_stop: Callable[[], bool]
) -> int:
    """Write the checkpoints a log lacks up to `upto` (the daemon's seq at start-up), the
    last one exactly at `upto`, so the recorder's own checkpoints chain on from there.
    Reads through `log` (read-only is enough); returns how many it wrote."""
    if upto <= 0:
        return 0
    chunks = _chain(store, _first_seq(log), log.log_id)
    if chunks and chunks[-1].seq >= upto:
        return 0
    start = chunks[-1].seq if chunks else 0
    state = _state_at(store, start, log.log_id) if start else ObservedState()
    if state is None:
        start, state = 0, ObservedState()  # the newest checkpoint is damaged: from the start
    tracker, written = ChunkTracker(start), 0
    for seq, record in log.read(start + 1):
        if seq > upto or should_stop():
            break
        envelope = from_record(seq, record)
        state = fold(state, envelope, log_fold_error)
        tracker.note(envelope.at)
        if seq == upto or tracker.due(envelope.at):
            write_checkpoint(store, tracker.take(seq), state, log)
            written += 1
    if written:
        _log.info("checkpoints: built %d for #%d..#%d", written, start + 1, upto)
    return written
