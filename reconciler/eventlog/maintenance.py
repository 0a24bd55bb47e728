"""Checking, mending and measuring a log directory: `reconciler log verify|repair|stats`.

verify reads every frame and says what is wrong and where. repair salvages every intact
frame and moves damaged segments aside (it deletes nothing). Retention removes only
segments whose every record a snapshot covers.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack
from attrs import field, frozen

from reconciler.eventlog.files import (
    fsync_dir,
    list_segments,
    stray_segment_names,
    unused_name,
    write_durably,
)
from reconciler.eventlog.format import (
    SEGMENT_HEADER,
    Damage,
    Frame,
    decode_segment_header,
    encode_frame,
    encode_segment_header,
    find_intact_frame,
    is_torn_tail,
    walk_frames,
)
from reconciler.eventlog.log import EventLog, writer_lock

__all__ = [
    "LOST_RECORD_TYPE",
    "LogStats",
    "Problem",
    "RepairReport",
    "VerifyReport",
    "apply_retention",
    "repair",
    "stats",
    "verify",
]

# The record repair writes in place of each one it could not salvage, so sequence numbers
# stay contiguous (facts name their causes by sequence number). Readers show it raw.
LOST_RECORD_TYPE = "log-record-lost"
_NOT_A_MAPPING = "payload is not a msgpack mapping"


@frozen
class Problem:
    """Damage in one segment, at a byte offset."""

    segment: Path
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"{self.segment}: byte {self.offset}: {self.reason}"


@frozen
class _SegmentScan:
    path: Path
    first_seq: int
    frames: list[tuple[int, bytes]]  # intact (seq, payload), in order
    problems: list[Problem]
    torn: Problem | None  # a torn tail (last segment only)
    size: int
    log_id: bytes | None = None  # from its header, when intact (None in format 1)


@frozen
class VerifyReport:
    segments: int
    records: int
    problems: list[Problem]
    torn_tail: Problem | None
    ignored: list[tuple[Path, str]] = field(factory=list)  # named like segments, not files

    @property
    def ok(self) -> bool:
        """No damage a writer would refuse to open (a torn tail it cuts by itself)."""
        return not self.problems


@frozen
class RepairReport:
    moved_aside: list[tuple[Path, Path]]  # (segment, where the damaged original now is)
    salvaged: int  # intact records kept in rewritten segments
    lost: list[int] = field(factory=list)  # sequence numbers replaced by a lost-record marker
    torn_tail: Problem | None = None
    problems: list[Problem] = field(factory=list)
    ignored: list[tuple[Path, str]] = field(factory=list)  # named like segments, not files
    set_aside: list[tuple[Path, Path]] = field(factory=list)  # held no records: moved whole


@frozen
class LogStats:
    segments: int
    events: int
    bytes: int
    first_seq: int | None
    last_seq: int | None
    first_time: float | None
    last_time: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "events": self.events,
            "bytes": self.bytes,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_time": self.first_time,
            "last_time": self.last_time,
        }


def _scan_segment(path: Path, first_seq: int, *, last: bool) -> _SegmentScan:
    """Every intact frame of one segment, resynchronising past damage to find the rest."""
    data = path.read_bytes()
    problems: list[Problem] = []
    header = decode_segment_header(data[:SEGMENT_HEADER])
    seq = first_seq
    pos = SEGMENT_HEADER
    log_id = None
    if isinstance(header, str):
        problems.append(Problem(path, 0, header))
    else:
        pos, log_id = header.size, header.log_id
        if header.first_seq != first_seq:
            problems.append(Problem(path, 0, f"header says first sequence {header.first_seq}"))
            seq = header.first_seq  # an intact header says what the file holds (renamed)
    frames: list[tuple[int, bytes]] = []
    torn: Problem | None = None
    while pos < len(data):
        damage: Damage | None = None
        for item in walk_frames(data, pos, seq):
            if isinstance(item, Frame):
                payload = data[item.start : item.payload_end]
                if _decodes_to_mapping(payload):
                    frames.append((item.seq, payload))
                    seq, pos = item.seq + 1, item.end
                    continue
                damage = Damage(item.offset, "payload", _NOT_A_MAPPING)
            else:
                damage = item
            break
        if damage is None:
            break
        # An intact frame around a payload that is not a map was written whole: not torn.
        intact = damage.kind == "payload" and damage.reason == _NOT_A_MAPPING
        if last and not intact and is_torn_tail(data, damage):
            torn = Problem(path, damage.offset, f"torn tail: {damage.reason}")
            break
        problems.append(Problem(path, damage.offset, damage.reason))
        found = find_intact_frame(data, damage.offset)
        while found is not None and found.seq < seq:  # stale or duplicated: not ours
            found = find_intact_frame(data, found.offset)
        if found is None:
            break
        pos, seq = found.offset, found.seq
    return _SegmentScan(path, first_seq, frames, problems, torn, len(data), log_id)


def _decodes_to_mapping(payload: bytes) -> bool:
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException):
        return False
    return isinstance(value, Mapping)


def _scan_all(path: Path) -> tuple[list[_SegmentScan], list[_SegmentScan]]:
    """The scans of the segments, and apart from them the trailing ones that hold nothing.

    A file named like a segment at the end of the log with neither a valid header nor an
    intact frame (empty, say) is not a segment the writer made (it makes each one whole,
    header first, by rename): it holds no records, so it says nothing about records
    missing before it, and repair moves it aside rather than filling its number range
    with lost-record markers.
    """
    segments = list_segments(path)
    empty: list[_SegmentScan] = []
    while segments and _holds_nothing(segments[-1][1]):
        first, seg = segments.pop()
        size = seg.stat().st_size
        reason = f"holds no records ({_header_problem(seg)}); not made by the log"
        empty.insert(0, _SegmentScan(seg, first, [], [Problem(seg, 0, reason)], None, size))
    scans: list[_SegmentScan] = []
    for i, (first, seg) in enumerate(segments):
        scan = _scan_segment(seg, first, last=i == len(segments) - 1)
        if scans and not scans[-1].problems:
            prev = scans[-1]
            expected = prev.frames[-1][0] + 1 if prev.frames else prev.first_seq
            if first != expected:
                # Blame the earlier segment: repair rewrites it up to where this one starts.
                reason = f"ends before sequence {expected}, but the next segment starts at {first}"
                prev.problems.append(Problem(prev.path, prev.size, reason))
        scans.append(scan)
    return scans, empty


def _holds_nothing(seg: Path) -> bool:
    data = seg.read_bytes()
    if not isinstance(decode_segment_header(data[:SEGMENT_HEADER]), str):
        return False
    return find_intact_frame(data, -1) is None


def _header_problem(seg: Path) -> str:
    with open(seg, "rb") as f:
        found = decode_segment_header(f.read(SEGMENT_HEADER))
    return found if isinstance(found, str) else "no frames"


def verify(path: Path | str) -> VerifyReport:
    """Read every frame of every segment (checksums, sequence, msgpack) and report damage.

    Entries named like segments that are not regular files are listed as ignored."""
    directory = Path(path)
    scans, empty = _scan_all(directory)
    problems = [p for s in (*scans, *empty) for p in s.problems]
    torn = scans[-1].torn if scans else None  # repair moves the empty ones aside first
    ignored = stray_segment_names(directory)
    records = sum(len(s.frames) for s in scans)
    return VerifyReport(len(scans) + len(empty), records, problems, torn, ignored)


def repair(path: Path | str) -> RepairReport:
    """Salvage every intact frame; move damaged segments aside (`.damaged`); delete nothing.

    Each rewritten segment keeps the intact records under their own sequence numbers, taken
    from whichever segment file holds them (segments renamed or swapped lose nothing), and a
    lost-record marker for each one no file holds, so numbers stay contiguous. Trailing files
    that hold no records are moved aside whole. Entries named like segments that are not
    regular files are left alone. Takes the writer's lock: a running daemon must be stopped
    first.
    """
    directory = Path(path)
    with writer_lock(directory):
        scans, empty = _scan_all(directory)
        moved: list[tuple[Path, Path]] = []
        lost: list[int] = []
        salvaged = 0
        problems = [p for s in (*scans, *empty) for p in s.problems]
        pool: dict[int, bytes] = {}
        for scan in scans:
            for seq, payload in scan.frames:
                pool.setdefault(seq, payload)
        set_aside: list[tuple[Path, Path]] = []
        for scan in empty:  # first, so that a torn tail before them is the last one's again
            aside = unused_name(scan.path, ".damaged")
            os.rename(scan.path, aside)
            set_aside.append((scan.path, aside))
        for i, scan in enumerate(scans):
            if not scan.problems:
                continue
            end_seq = scans[i + 1].first_seq - 1 if i + 1 < len(scans) else None
            known = next((s.log_id for s in reversed(scans) if s.log_id is not None), None)
            data, kept, gaps = _rebuild(scan, end_seq, pool, known)
            aside = unused_name(scan.path, ".damaged")
            os.link(scan.path, aside)  # the original stays reachable at every moment
            write_durably(scan.path, data)
            moved.append((scan.path, aside))
            lost.extend(gaps)
            salvaged += kept
        if moved or set_aside:
            fsync_dir(directory)
        torn = scans[-1].torn if scans else None
    if torn is not None and not scans[-1].problems:
        EventLog.open(directory).close()  # a writer cuts the torn tail, keeping it in .broken
    ignored = stray_segment_names(directory)
    return RepairReport(moved, salvaged, lost, torn, problems, ignored, set_aside)


def _rebuild(
    scan: _SegmentScan, end_seq: int | None, pool: Mapping[int, bytes], log_id: bytes | None
) -> tuple[bytes, int, list[int]]:
    """The segment for its name's number range: the intact frames (its own first, else from
    `pool`, every intact frame of the log by seq), a marker for each number none holds.
    Also how many records it kept, and the numbers it marked lost. The last segment ends
    with the last intact frame found for it (what lay behind its damage cannot be counted).
    """
    own: dict[int, bytes] = {}
    for seq, payload in scan.frames:
        own.setdefault(seq, payload)  # a duplicate is kept only in the damaged original
    if end_seq is None:
        end_seq = max((seq for seq in (*own, *pool) if seq >= scan.first_seq), default=0)
    # The segment's own identity, else the log's (from the others), else format 1 as it was.
    parts = [encode_segment_header(scan.first_seq, scan.log_id or log_id)]
    lost: list[int] = []
    kept = 0
    at: Any = None
    where = scan.problems[0]
    for seq in range(scan.first_seq, end_seq + 1):
        found = own.get(seq, pool.get(seq))
        if found is None:
            parts.append(encode_frame(seq, _lost_marker(where, at)))
            lost.append(seq)
            continue
        parts.append(encode_frame(seq, found))
        kept += 1
        record = msgpack.unpackb(found, raw=False, strict_map_key=False)
        at = record.get("at", at)
    return b"".join(parts), kept, lost


def _lost_marker(problem: Problem, at: Any) -> bytes:
    record = {
        "t": LOST_RECORD_TYPE,
        "v": 1,
        "at": at if isinstance(at, int | float) else 0.0,
        "src": "reconciler log repair",
        "d": {"segment": problem.segment.name, "offset": problem.offset, "reason": problem.reason},
    }
    packed: bytes = msgpack.packb(record, use_bin_type=True)
    return packed


def stats(path: Path | str) -> LogStats:
    """Segments, records, bytes, and the times of the first and last record (their "at")."""
    directory = Path(path)
    segments = list_segments(directory)
    size = sum(seg.stat().st_size for _, seg in segments)
    if not segments:
        return LogStats(0, 0, 0, None, None, None, None)
    with EventLog.open(directory, readonly=True) as log:
        if log.damage is not None:
            raise log.damage
        last = log.last_seq
        first_seq = segments[0][0]
        if last < first_seq:
            return LogStats(len(segments), 0, size, None, None, None, None)
        first_record = next(iter(log.read(first_seq)), None)
        last_record = None
        for item in log.read(last):
            last_record = item
    return LogStats(
        segments=len(segments),
        events=last - first_seq + 1,
        bytes=size,
        first_seq=first_seq,
        last_seq=last,
        first_time=_time_of(first_record),
        last_time=_time_of(last_record),
    )


def _time_of(item: tuple[int, Mapping[str, Any]] | None) -> float | None:
    if item is None:
        return None
    at = item[1].get("at")
    return float(at) if isinstance(at, int | float) else None


def apply_retention(
    log: EventLog,
    snapshot_seq: int,
    *,
    now: float,
    max_age: float | None = None,
    max_bytes: int | None = None,
) -> list[Path]:
    """Remove the oldest sealed segments covered by the snapshot at `snapshot_seq`.

    A segment goes when it is older than `max_age` seconds (by its file's mtime) or while
    the log exceeds `max_bytes`; never one holding a record newer than `snapshot_seq`.
    Pass the seq of the OLDEST snapshot kept (the Recorder's `after_snapshot` gets exactly
    that): were the newer snapshots damaged later, start-up falls back to an older one and
    must still find every record after it. It deletes files: call it outside any lock that
    records wait on.
    """
    segments = log.segments()
    total = sum(seg.stat().st_size for _, seg in segments)
    cut = 0
    for (_, seg), (next_first, _) in itertools.pairwise(segments):
        if next_first - 1 > snapshot_seq:
            break
        info = seg.stat()
        too_old = max_age is not None and now - info.st_mtime > max_age
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            break
        total -= info.st_size
        cut = next_first - 1
    return log.remove_segments_before(cut) if cut else []
