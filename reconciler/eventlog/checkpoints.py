"""CheckpointStore: sparse folded states through history, and an index from time to them.

Snapshots (snapshot.py) serve start-up: the newest few. Checkpoints serve windows into the
past (`replay --since`, `--at`): one every day or so through the whole retained log, so a
window folds from the checkpoint before it instead of from the beginning of history.

`checkpoints/INDEX` lists every checkpoint, oldest first; each entry describes the stretch
of log ("chunk") from the checkpoint before it (exclusive) to its own sequence number:

    {"seq": S, "since": P, "min_at": ..., "max_at": ..., "count": n,
     "segment": F, "offset": O, "crc": C}

`since` is the previous checkpoint's seq (0 for one that covers the log from its start);
`segment`/`offset` say where record S+1 went (the first seq of its segment and the byte
offset of its frame; 0 when not known), so a reader seeks there instead of walking frames;
`min_at`/`max_at` are the smallest and largest record times in the chunk (times need not
rise: a clock step), so a reader finds the chunk a time falls into without reading it;
`crc` (when not 0) is the CRC trailer of record S's frame, which ends at F/O: the
checkpoint is used only when the log holds that very frame there. The INDEX and every
checkpoint file carry the id of the log they were folded from (the snapshot format's): an
index or a checkpoint of another log (`events/` replaced, restored) is not used.
`checkpoints/<S, 20 digits>.checkpoint` holds the state folded up to S, in the snapshot
file format. The INDEX is rewritten atomically after the checkpoint file is durable: a
crash leaves at worst a checkpoint file the index does not name (ignored, and overwritten).
The log stays the truth: a reader that finds no usable index folds from the start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgpack
from attrs import frozen

from reconciler.eventlog.files import make_private_dir, write_durably
from reconciler.eventlog.snapshot import decode_snapshot, encode_snapshot, same_log

__all__ = ["CheckpointStore", "Chunk"]

_SUFFIX = ".checkpoint"
_INDEX = "INDEX"

log = logging.getLogger(__name__)


@frozen
class Chunk:
    """One index entry: the checkpoint at `seq`, and the records (since, seq] it ends."""

    seq: int
    since: int
    min_at: float
    max_at: float
    count: int
    segment: int = 0
    offset: int = 0
    crc: int = 0  # the CRC trailer of record seq's frame, which ends at segment/offset

    @property
    def near(self) -> tuple[int, int] | None:
        """Where record seq+1 went, for EventLog.read(near=...); None when not known."""
        return (self.segment, self.offset) if self.offset else None


class CheckpointStore:
    """Checkpoint files and their INDEX in one directory."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path_for(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    def index(self, log_id: bytes | None = None) -> list[Chunk]:
        """Every indexed checkpoint, oldest first; [] when there is no usable index (none,
        damaged, or made for another log than `log_id`)."""
        try:
            data = (self.directory / _INDEX).read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("checkpoint index unreadable: %s", exc.strerror)
            return []
        try:
            decoded = decode_snapshot(data)
        except (ValueError, msgpack.UnpackException):
            decoded = "does not decode"
        if isinstance(decoded, str):
            log.warning("checkpoint index skipped: %s", decoded)
            return []
        if not same_log(decoded[3], log_id):
            log.warning("checkpoint index skipped: made for another log")
            return []
        try:
            return [Chunk(**entry) for entry in decoded[2]["chunks"]]
        except (KeyError, TypeError) as exc:
            log.warning("checkpoint index skipped: %s", exc)
            return []

    def write(
        self, chunk: Chunk, state: Mapping[str, Any], schema: int, *, log_id: bytes | None
    ) -> None:
        """Write the checkpoint file, then the index naming it among the others (those of
        another log are dropped: the index serves one log)."""
        make_private_dir(self.directory)
        data = encode_snapshot(chunk.seq, state, schema, log_id)
        write_durably(self.path_for(chunk.seq), data)
        chunks = [c for c in self.index(log_id) if c.seq != chunk.seq] + [chunk]
        self._write_index(sorted(chunks, key=lambda c: c.seq), log_id)

    def prune(self, first_seq: int, log_id: bytes | None = None) -> None:
        """Forget checkpoints whose following records retention removed (seq + 1 < first)."""
        chunks = self.index(log_id)
        kept = [c for c in chunks if c.seq + 1 >= first_seq]
        if len(kept) == len(chunks):
            return
        self._write_index(kept, log_id)
        for chunk in chunks:
            if chunk.seq + 1 < first_seq:
                self.path_for(chunk.seq).unlink(missing_ok=True)

    def discard_after(self, last_seq: int, log_id: bytes | None) -> None:
        """Forget the checkpoints past the log's last record (a restored older copy of the
        log: see SnapshotStore.discard_after), files too."""
        chunks = self.index(log_id)
        kept = [c for c in chunks if c.seq <= last_seq]
        if len(kept) == len(chunks):
            return
        log.warning("checkpoints past the log's last record #%d removed", last_seq)
        self._write_index(kept, log_id)
        for chunk in chunks:
            if chunk.seq > last_seq:
                self.path_for(chunk.seq).unlink(missing_ok=True)

    def candidates(
        self, schema: int, log_id: bytes | None = None
    ) -> Iterator[tuple[int, Mapping[str, Any]]]:
        """(seq, state) of every indexed checkpoint of log `log_id` that reads, newest first
        (as SnapshotStore.candidates: start-up may begin from whichever is newer)."""
        for chunk in reversed(self.index(log_id)):
            state = self.load(chunk.seq, schema, log_id)
            if state is not None:
                yield chunk.seq, state

    def load(self, seq: int, schema: int, log_id: bytes | None = None) -> Mapping[str, Any] | None:
        """The state mapping of the checkpoint at `seq` folded from log `log_id`, or None
        (logged) when unusable."""
        path = self.path_for(seq)
        try:
            decoded = decode_snapshot(path.read_bytes())
        except OSError as exc:
            log.warning("checkpoint %s skipped: %s", path, exc.strerror)
            return None
        except (ValueError, msgpack.UnpackException):
            decoded = "does not decode"
        if isinstance(decoded, str):
            log.warning("checkpoint %s skipped: %s", path, decoded)
            return None
        found_schema, found_seq, state, found_log = decoded
        if not same_log(found_log, log_id):
            log.warning("checkpoint %s skipped: folded from another log", path)
            return None
        if found_schema != schema or found_seq != seq:
            log.info("checkpoint %s skipped: schema %d, seq %d", path, found_schema, found_seq)
            return None
        return state

    def _write_index(self, chunks: list[Chunk], log_id: bytes | None) -> None:
        entries = [
            {"seq": c.seq, "since": c.since, "min_at": c.min_at, "max_at": c.max_at,
             "count": c.count, "segment": c.segment, "offset": c.offset, "crc": c.crc}
            for c in chunks
        ]  # fmt: skip
        first = chunks[0].seq if chunks else 0
        last = chunks[-1].seq if chunks else 0
        index = encode_snapshot(last, {"chunks": entries}, 0, log_id)
        write_durably(self.directory / _INDEX, index)
        for name in os.listdir(self.directory):  # pruned files the index no longer names
            stem = name[: -len(_SUFFIX)]
            if name.endswith(_SUFFIX) and stem.isdigit() and int(stem) < first:
                (self.directory / name).unlink(missing_ok=True)
