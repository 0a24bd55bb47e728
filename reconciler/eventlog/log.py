"""EventLog: an append-only, crash-safe log of msgpack mappings under sequence numbers.

One writer at a time (an flock on `LOCK`, which holds the writer's pid); any number of
readers without a lock. Every append is durable (fdatasync) before it returns. The format
and the recovery rules are described in docs/log-format.md.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import itertools
import logging
import os
import secrets
import threading
import zlib
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import msgpack
from attrs import frozen

from reconciler.atomicfile import open_existing, write_new
from reconciler.errors import CorruptLogError, LogLockedError
from reconciler.eventlog.files import (
    fsync_dir,
    list_segments,
    make_private_dir,
    stray_segment_names,
    unused_name,
)
from reconciler.eventlog.format import (
    CRC32_RESIDUE,
    FRAME_HEAD_STRUCT,
    FRAME_HEADER,
    FRAME_OVERHEAD,
    FRAME_TRAILER,
    LOG_ID_SIZE,
    MAX_PAYLOAD,
    SEGMENT_HEADER,
    SEGMENT_HEADER_V1,
    U32_STRUCT,
    Damage,
    SegmentHeader,
    decode_segment_header,
    encode_segment_header,
    inspect_frame,
    is_torn_tail,
    scan_frames,
    segment_name,
)

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "LOCK_NAME",
    "EventLog",
    "read_holder_pid",
    "read_log_id",
    "writer_lock",
]

DEFAULT_SEGMENT_SIZE = 64 * 2**20
LOCK_NAME = "LOCK"
_READ_CHUNK = 1 << 20
_INDEX_EVERY = 4096  # a sparse (seq, offset) index of the active segment: fast seeks on start-up

log = logging.getLogger(__name__)
_strays_told: set[Path] = set()

Record = Mapping[str, Any]
_ReadGen = Generator[tuple[int, Record], None, tuple[int, int, Damage | None]]


@frozen
class _Good:
    """Where the log stood after the last append that returned (what recovery goes back to)."""

    active_first: int  # 0: no segment yet
    active_size: int
    active_header: int
    next_seq: int
    index: tuple[tuple[int, int], ...]


def read_holder_pid(lock_path: Path) -> int | None:
    """The pid the current writer wrote into the lock file, if readable."""
    try:
        text = lock_path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def read_log_id(directory: Path) -> bytes | None:
    """The id in the newest segment's header (what a reader's `log_id` is); None for a log of
    format-1 segments, an empty log or a header that does not read."""
    segments = list_segments(directory)
    if not segments:
        return None
    try:
        with open(segments[-1][1], "rb") as f:
            header = decode_segment_header(f.read(SEGMENT_HEADER))
    except OSError:
        return None
    return None if isinstance(header, str) else header.log_id


class EventLog:
    """A directory of segments. Use `EventLog.open(...)`, not the constructor."""

    def __init__(self, path: Path, *, readonly: bool, segment_size: int) -> None:
        self.path = path
        self.readonly = readonly
        self.segment_size = segment_size
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._fd: int | None = None  # the active segment, opened for appending
        self._active_first = 0
        self._active_size = 0
        self._active_header = SEGMENT_HEADER  # the active segment's header size (format 1: 24)
        # The log's identity, in every segment header this release writes: a reader's is the
        # newest segment's (None for a format-1 log); a writer's is made for a new log or one
        # whose newest segment is format 1 (its next append starts a segment carrying it).
        self._log_id: bytes | None = None
        self._next_seq = 1
        self._index: list[tuple[int, int]] = []  # (seq, offset) in the active segment
        self._failed: BaseException | None = None
        self._good: _Good | None = None  # the state after the last append that returned
        self._failed_since: BaseException | None = None  # the first of failed appends in a row
        # For a reader: damage the walk found in the last segment (read() raises there).
        self._damage: CorruptLogError | None = None
        # Whether the last segment's frames have been walked. A reader checks every segment
        # header when it opens but walks the last segment's frames only when last_seq,
        # damage or a seek needs them: a replay from the start reads (and checks) every
        # frame anyway, and walking them at opening as well cost it a twentieth of its time.
        self._walked = False
        self._closed = False

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        readonly: bool = False,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> EventLog:
        """Open (a writer creates) the log in directory `path`.

        A writer takes the lock (LogLockedError naming the holder's pid when taken), cuts a
        torn tail (keeping the cut bytes in a `.broken` file) and raises CorruptLogError,
        touching nothing, when the last segment is damaged elsewhere. A reader takes no lock
        and changes nothing.
        """
        if segment_size < SEGMENT_HEADER + FRAME_OVERHEAD:
            raise ValueError(f"segment_size {segment_size} is too small")
        self = cls(Path(path), readonly=readonly, segment_size=segment_size)
        for stray, what in stray_segment_names(self.path):
            if stray not in _strays_told:  # once per process: commands open the log twice
                _strays_told.add(stray)
                log.warning("%s: %s named like a log segment: ignored and left alone", stray, what)
        if readonly:
            self._check_headers(list_segments(self.path))
            return self
        make_private_dir(self.path)
        self._take_lock()
        try:
            self._scan(repair=True)
        except BaseException:
            self._release_lock()
            raise
        return self

    def _take_lock(self) -> None:
        lock_path = self.path / LOCK_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LogLockedError(self.path, read_holder_pid(lock_path)) from None
            raise
        # The pid is informational (for the error above); the flock is what excludes. On a
        # full disk it may not fit: the log still opens (reading and acting need no space).
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            log.warning("%s: cannot write the pid: %s", lock_path, exc.strerror or exc)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _check_headers(self, segments: list[tuple[int, Path]]) -> None:
        for first, seg in segments:
            with open(seg, "rb") as f:
                self._log_id = self._check_header(seg, first, f.read(SEGMENT_HEADER)).log_id

    def _walk_once(self) -> None:
        """For a reader: walk the last segment (as it is now) if that has not happened yet."""
        if not self._walked:
            self._scan(repair=False)

    def _scan(self, *, repair: bool) -> None:
        """Check every segment header; walk the last segment to find where appends go."""
        self._walked = True
        segments = list_segments(self.path)
        self._check_headers(segments[:-1])
        if not segments:
            return
        first, seg = segments[-1]
        data = seg.read_bytes()
        header = self._check_header(seg, first, data)
        self._log_id = header.log_id
        index: list[tuple[int, int]] = []
        pos, seq = header.size, first
        while True:  # in steps, building the sparse index on the way
            end, nxt, damage = scan_frames(data, pos, seq, _INDEX_EVERY)
            progressed = end > pos
            pos, seq = end, nxt
            if damage is not None or not progressed or pos >= len(data):
                break
            index.append((seq, pos))
        if damage is not None:
            torn = is_torn_tail(data, damage)
            if repair and not torn:
                raise CorruptLogError(seg, damage.offset, damage.reason)
            if repair:
                self._cut_torn_tail(seg, damage, data)
            elif not torn:
                self._damage = CorruptLogError(seg, damage.offset, damage.reason)
            # A reader opens anyway: read() hands out what precedes the damage, then raises.
        self._next_seq = seq
        self._active_first = first
        self._active_size = pos
        self._active_header = header.size
        self._index = index
        if repair:
            self._fd = open_existing(seg, os.O_WRONLY | os.O_APPEND)

    @staticmethod
    def _check_header(seg: Path, first: int, data: bytes) -> SegmentHeader:
        found = decode_segment_header(data[:SEGMENT_HEADER])
        if isinstance(found, str):
            raise CorruptLogError(seg, 0, found)
        if found.first_seq != first:
            raise CorruptLogError(
                seg, 0, f"header says first sequence {found.first_seq}, name says {first}"
            )
        return found

    def _cut_torn_tail(self, seg: Path, damage: Damage, data: bytes) -> None:
        broken = unused_name(seg, f".{damage.offset}.broken")
        write_new(broken, data[damage.offset :])
        fd = open_existing(seg, os.O_WRONLY)
        try:
            os.ftruncate(fd, damage.offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path)
        log.warning(
            "%s: cut a torn tail of %d bytes at byte %d (%s); kept in %s",
            seg,
            len(data) - damage.offset,
            damage.offset,
            damage.reason,
            broken.name,
        )

    # -- writing -------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The newest sequence number (0 when empty); for a reader, as of its first use."""
        self._walk_once()
        return self._next_seq - 1

    @property
    def damage(self) -> CorruptLogError | None:
        """For a reader: damage in the last segment that is not a torn tail (read() raises it).

        Found by the walk of the last segment, done once at the first use of this, of
        last_seq or of a seek into the last segment. Always None for a writer, which refuses
        to open a damaged log.
        """
        self._walk_once()
        return self._damage

    def append(self, record: Record) -> int:
        """Append one record; durable when this returns. Returns its sequence number."""
        return self.append_many((record,))[0]

    def append_many(self, records: Iterable[Record]) -> list[int]:
        """Append records in one group commit (one fdatasync); their sequence numbers."""
        payloads = []
        pack = msgpack.Packer(use_bin_type=True).pack  # one packer per call: cheaper than packb
        for record in records:
            if not isinstance(record, Mapping):
                raise TypeError(f"a log record must be a mapping, not {type(record).__name__}")
            payload = pack(record)
            if len(payload) > MAX_PAYLOAD:
                raise ValueError(f"record of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
            payloads.append(payload)
        if not payloads:
            return []
        with self._lock:
            self._check_writable()
            good = _Good(
                self._active_first,
                self._active_size,
                self._active_header,
                self._next_seq,
                tuple(self._index),
            )
            try:
                seqs = self._write(payloads)
            except BaseException as exc:
                # After a failed write or fsync (a full disk, say) the file's state is
                # unknown: nothing of this append counts, and the next append first puts
                # the segment back as it was after the last append that returned.
                self._failed = exc
                self._good = good
                self._next_seq, self._index = good.next_seq, list(good.index)
                self._drop_fd()
                if self._failed_since is None:
                    self._failed_since = exc
                raise
            if self._failed_since is not None:  # said once, when it is over
                log.warning(
                    "%s: writable again after failed writes (%s)", self.path, self._failed_since
                )
                self._failed_since = None
            return seqs

    def _check_writable(self) -> None:
        if self.readonly:
            raise PermissionError("event log opened read-only")
        if self._closed:
            raise ValueError("event log is closed")
        if self._failed is not None:
            try:
                self._recover()
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"event log {self.path} cannot recover from a failed write yet"
                    f" ({self._failed}): {exc.strerror or exc}",
                ) from None

    def _recover(self) -> None:
        """Put the log back as it was after the last append that returned: cut what the
        failed one wrote, reopen the segment. Cutting frees space, so this works on a disk
        that is still full (the next write then fails again, cleanly)."""
        good = self._good
        assert good is not None
        for first, seg in list_segments(self.path):
            if first >= good.next_seq:  # made by the failed append's rotation: nothing kept
                seg.unlink()
        if good.active_first:
            seg = self.path / segment_name(good.active_first)
            fd = open_existing(seg, os.O_WRONLY)
            try:
                if os.fstat(fd).st_size > good.active_size:
                    os.ftruncate(fd, good.active_size)  # frames no append returned for
                os.fsync(fd)
            finally:
                os.close(fd)
            self._fd = open_existing(seg, os.O_WRONLY | os.O_APPEND)
        fsync_dir(self.path)
        self._active_first, self._active_size = good.active_first, good.active_size
        self._active_header = good.active_header
        self._next_seq, self._index = good.next_seq, list(good.index)
        self._failed, self._good = None, None

    def _drop_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _write(self, payloads: list[bytes]) -> list[int]:
        first_seq = self._next_seq
        pending: list[bytes] = []
        pending_size = 0
        head_of, u32, crc32 = FRAME_HEAD_STRUCT.pack, U32_STRUCT.pack, zlib.crc32
        for seq, payload in enumerate(payloads, first_seq):
            # encode_frame, inlined: group commits spend most of their time here
            head = head_of(len(payload), seq)
            head += u32(crc32(head))
            frame_size = FRAME_OVERHEAD + len(payload)
            has_frames = self._active_size + pending_size > self._active_header
            full = self._active_size + pending_size + frame_size > self.segment_size
            # A format-1 segment with records: the next starts now, carrying the log's id.
            unnamed = self._active_header != SEGMENT_HEADER and has_frames
            if self._fd is None or ((full or unnamed) and has_frames):
                self._flush(pending, sync=self._fd is not None)
                pending, pending_size = [], 0
                self._start_segment(seq)
            if (seq - self._active_first) % _INDEX_EVERY == 0 and seq != self._active_first:
                self._index.append((seq, self._active_size + pending_size))
            pending += (head, payload, u32(crc32(payload, crc32(head))))
            pending_size += frame_size
            self._next_seq = seq + 1
        self._flush(pending, sync=True)
        return list(range(first_seq, self._next_seq))

    def _flush(self, frames: list[bytes], *, sync: bool) -> None:
        if self._fd is None:
            return
        if frames:
            view = memoryview(b"".join(frames))
            while view:
                written = os.write(self._fd, view)
                self._active_size += written
                view = view[written:]
        if sync:
            os.fdatasync(self._fd)

    def _start_segment(self, first_seq: int) -> None:
        """Seal the active segment (already synced) and make a new one durably."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        seg = self.path / segment_name(first_seq)
        header = encode_segment_header(first_seq, self.log_id)
        write_new(seg, header)  # never over a file or a link
        self._fd = open_existing(seg, os.O_WRONLY | os.O_APPEND)
        self._active_first = first_seq
        self._active_size = self._active_header = SEGMENT_HEADER
        self._index = []

    # -- reading -------------------------------------------------------------------------

    def read(
        self, start: int = 1, *, near: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, Record]]:
        """(seq, record) from `start` on, in order, streamed.

        Checks every checksum on the way and raises CorruptLogError before handing out
        anything past damage; stops cleanly at a torn tail. A start below the first
        segment (after retention) begins at the first record there is. `near` is where
        record `start` was written, (first seq of its segment, byte offset), as `position`
        gave it: the read begins there without walking the segment, when the frame found
        there is record `start` (else as without it).
        """
        return self._read(max(start, 1), near)

    @property
    def log_id(self) -> bytes | None:
        """The log's identity (16 random bytes in every segment header; checkpoints and
        snapshots carry it). A writer's is always set; a reader's is the newest segment's,
        None for a log of format-1 segments only."""
        if self._log_id is None and not self.readonly:
            self._log_id = secrets.token_bytes(LOG_ID_SIZE)
        return self._log_id

    def trailer_at(self, position: tuple[int, int]) -> int | None:
        """The CRC trailer of the frame that ends at `position` (a segment's first seq, an
        offset: `position` as it was right after that frame was appended); None when there
        is no such place. A checkpoint keeps it to prove it was folded from this very log."""
        first, offset = position
        seg = self.path / segment_name(first)
        if offset < SEGMENT_HEADER_V1 + FRAME_OVERHEAD:
            return None
        try:
            with open(seg, "rb") as f:
                f.seek(offset - FRAME_TRAILER)
                data = f.read(FRAME_TRAILER)
        except OSError:
            return None
        return U32_STRUCT.unpack(data)[0] if len(data) == FRAME_TRAILER else None

    @property
    def position(self) -> tuple[int, int]:
        """For a writer: where the next record goes, (first seq of the active segment, byte
        offset), for `read(near=...)` later. A rotation moves it to the next segment."""
        with self._lock:
            return self._active_first, self._active_size

    def _placed(
        self, segments: list[tuple[int, Path]], start: int, near: tuple[int, int]
    ) -> tuple[int, int] | None:
        """(segment index, offset) of record `start` at `near`, checked; None if not there."""
        first, offset = near
        for i, (found, seg) in enumerate(segments):
            if found != first or offset < SEGMENT_HEADER_V1:
                continue
            try:
                with open(seg, "rb") as f:
                    f.seek(offset)
                    head = f.read(FRAME_HEADER)
                    if not head and i + 1 < len(segments) and segments[i + 1][0] == start:
                        return i + 1, 0  # written at a segment's end: the next one begins
                    if len(head) < FRAME_HEADER:
                        return None
                    length = FRAME_HEAD_STRUCT.unpack_from(head)[0]
                    if length > MAX_PAYLOAD:
                        return None
                    frame = head + f.read(length + FRAME_OVERHEAD - FRAME_HEADER)
            except OSError:
                return None
            found_end = inspect_frame(frame, 0, start)
            return (i, offset) if not isinstance(found_end, Damage) else None
        return None

    def _read(
        self, start: int, near: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, Record]]:
        segments = list_segments(self.path)
        if not segments:
            return
        placed = self._placed(segments, start, near) if near is not None else None
        if placed is not None:
            i, offset = placed
            first, seg = segments[i]
            seq = start if offset else first
        else:
            firsts = [first for first, _ in segments]
            i = max(bisect.bisect_right(firsts, start) - 1, 0)
            first, seg = segments[i]
            offset, seq = 0, first
            if start > first and i == len(segments) - 1:
                self._walk_once()  # the walk builds the index that lets the read seek
            if first == self._active_first and self._index:
                k = bisect.bisect_right(self._index, (start, 2**64)) - 1
                if k >= 0:
                    seq, offset = self._index[k]
        while True:
            end, seq, damage = yield from _read_segment(seg, first, offset, seq, start)
            later = [s for s in list_segments(self.path) if s[0] > first]
            if later and damage is not None and damage.kind == "incomplete":
                # The writer may have finished this frame and rotated since: read on.
                end, seq, damage = yield from _read_segment(seg, first, end, seq, start)
            if damage is not None:
                data = seg.read_bytes()
                if not later:
                    # Judge the damage on this one snapshot of the file: a write in progress
                    # may have finished the frame since, and frames behind it must not then
                    # make it look like corruption.
                    again = inspect_frame(data, damage.offset, seq)
                    if not isinstance(again, Damage):
                        return  # the frame was being written when we read: stop before it
                    damage = again
                if later or not is_torn_tail(data, damage):
                    raise CorruptLogError(seg, damage.offset, damage.reason)
                return  # a torn tail, or a write in progress
            if not later:
                return
            first, seg = later[0]
            if first != seq:
                raise CorruptLogError(
                    seg, 0, f"segment starts at sequence {first}, expected {seq} (a gap)"
                )
            offset = 0

    # -- retention -----------------------------------------------------------------------

    def segments(self) -> list[tuple[int, Path]]:
        """(first seq, path) of every segment, oldest first."""
        return list_segments(self.path)

    def remove_segments_before(self, seq: int) -> list[Path]:
        """Delete sealed segments whose every record has a sequence number <= seq.

        Meant for records covered by a snapshot at `seq`. The active segment always stays.
        """
        if self.readonly:
            raise PermissionError("event log opened read-only")
        with self._lock:
            segments = list_segments(self.path)
            removed = []
            for (_, seg), (next_first, _) in itertools.pairwise(segments):
                if next_first - 1 > seq:
                    break
                seg.unlink()
                removed.append(seg)
            if removed:
                fsync_dir(self.path)
                log.info("removed %d segments covered by the snapshot at %d", len(removed), seq)
            return removed

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._release_lock()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold the writer's lock on an existing log directory (LogLockedError when taken)."""
    holder = EventLog(path, readonly=False, segment_size=DEFAULT_SEGMENT_SIZE)
    holder._take_lock()
    try:
        yield
    finally:
        holder._release_lock()


def _read_segment(seg: Path, first: int, offset: int, seq: int, start: int) -> _ReadGen:
    """Yield records of one segment from `offset`; return (end offset, next seq, damage).

    The hot loop of every replay, so it is written for CPython: everything it calls is a
    local, a frame costs one struct unpack and one CRC (the frame CRC over the whole frame
    including its trailer must leave CRC-32's fixed residue, which holds exactly when the
    trailer is right), and only what fails that check is looked at again by inspect_frame.
    """
    unpack = FRAME_HEAD_STRUCT.unpack_from
    crc32 = zlib.crc32
    unpackb = msgpack.unpackb
    residue = CRC32_RESIDUE
    header, overhead = FRAME_HEADER, FRAME_OVERHEAD
    with open(seg, "rb", buffering=0) as f:
        if offset == 0:
            offset = EventLog._check_header(seg, first, f.read(SEGMENT_HEADER)).size
        f.seek(offset)
        buf = b""
        base = offset  # the file offset of buf[0]
        pos = 0
        want = _READ_CHUNK
        while True:
            chunk = f.read(want)
            if not chunk:
                if pos < len(buf):
                    damage = inspect_frame(buf, pos, seq)
                    assert isinstance(damage, Damage)
                    return base + pos, seq, _shifted(damage, base)
                return base + pos, seq, None
            buf = buf[pos:] + chunk
            base += pos
            pos = 0
            size = len(buf)
            want = _READ_CHUNK
            while pos + header <= size:
                length, frame_seq = unpack(buf, pos)
                end = pos + overhead + length
                if end > size:
                    found = inspect_frame(buf, pos, seq)
                    if isinstance(found, Damage) and found.kind != "incomplete":
                        return base + pos, seq, _shifted(found, base)
                    want = max(_READ_CHUNK, end - size)  # a frame larger than the chunk
                    break
                if crc32(buf[pos:end]) != residue or frame_seq != seq:
                    found = inspect_frame(buf, pos, seq)
                    assert isinstance(found, Damage)
                    return base + pos, seq, _shifted(found, base)
                if seq >= start:
                    payload = buf[pos + header : end - 4]
                    try:
                        record = unpackb(payload)
                    except ValueError:
                        # Keys other than str are allowed in records, but asking for them on
                        # every call costs a tenth of the read: only the rare record pays.
                        record = _unpack_odd(seg, base + pos, payload)
                    if type(record) is not dict:  # intact checksums around what no writer wrote
                        record = _unpack_odd(seg, base + pos, payload)
                    yield seq, record
                seq += 1
                pos = end


def _unpack_odd(seg: Path, offset: int, payload: bytes) -> Record:
    """A payload the fast path did not take: a mapping with keys other than str, or
    damage (not msgpack, or not a mapping) that a checksum cannot see because whoever
    wrote it computed the checksums too. `log verify` names the same offset."""
    try:
        record = msgpack.unpackb(payload, strict_map_key=False)
    except ValueError:
        record = None
    if not isinstance(record, Mapping):
        raise CorruptLogError(seg, offset, "payload is not a msgpack mapping")
    return record


def _shifted(damage: Damage, base: int) -> Damage:
    """The damage with its offset in the file rather than in the read buffer."""
    return Damage(base + damage.offset, damage.kind, damage.reason)
