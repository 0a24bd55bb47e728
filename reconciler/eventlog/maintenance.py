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

from reconciler.eventlog.files import fsync_dir, list_segments, unused_name, write_durably
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


@frozen
class VerifyReport:
    segments: int
    records: int
    problems: list[Problem]
    torn_tail: Problem | None

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
    if isinstance(header, str):
        problems.append(Problem(path, 0, header))
    elif header != first_seq:
        problems.append(Problem(path, 0, f"header says first sequence {header}"))
    frames: list[tuple[int, bytes]] = []
    torn: Problem | None = None
    pos, seq = SEGMENT_HEADER, first_seq
    while pos < len(data):
        damage: Damage | None = None
        for item in walk_frames(data, pos, seq):
            if isinstance(item, Frame):
                payload = data[item.start : item.payload_end]
                if _decodes_to_mapping(payload):
                    frames.append((item.seq, payload))
                    seq, pos = item.seq + 1, item.end
                    continue
                damage = Damage(item.offset, "payload", "payload is not a msgpack mapping")
            else:
                damage = item
            break
        if damage is None:
            break
        if last and is_torn_tail(data, damage):
            torn = Problem(path, damage.offset, f"torn tail: {damage.reason}")
            break
        problems.append(Problem(path, damage.offset, damage.reason))
        found = find_intact_frame(data, damage.offset)
        while found is not None and found.seq < seq:  # stale or duplicated: not ours
            found = find_intact_frame(data, found.offset)
        if found is None:
            break
        pos, seq = found.offset, found.seq
    return _SegmentScan(path, first_seq, frames, problems, torn, len(data))


def _decodes_to_mapping(payload: bytes) -> bool:
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException):
        return False
    return isinstance(value, Mapping)


def _scan_all(path: Path) -> list[_SegmentScan]:
    segments = list_segments(path)
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
    return scans


def verify(path: Path | str) -> VerifyReport:
    """Read every frame of every segment (checksums, sequence, msgpack) and report damage."""
    scans = _scan_all(Path(path))
    problems = [p for s in scans for p in s.problems]
    torn = scans[-1].torn if scans else None
    return VerifyReport(len(scans), sum(len(s.frames) for s in scans), problems, torn)


def repair(path: Path | str) -> RepairReport:
    """Salvage every intact frame; move damaged segments aside (`.damaged`); delete nothing.

    Each rewritten segment keeps the intact records under their own sequence numbers and a
    lost-record marker for each one that could not be read, so numbers stay contiguous.
    Takes the writer's lock: a running daemon must be stopped first.
    """
    directory = Path(path)
    with writer_lock(directory):
        scans = _scan_all(directory)
        moved: list[tuple[Path, Path]] = []
        lost: list[int] = []
        salvaged = 0
        problems = [p for s in scans for p in s.problems]
        for i, scan in enumerate(scans):
            if not scan.problems:
                continue
            end_seq = scans[i + 1].first_seq - 1 if i + 1 < len(scans) else None
            data, gaps = _rebuild(scan, end_seq)
            aside = unused_name(scan.path, ".damaged")
            os.link(scan.path, aside)  # the original stays reachable at every moment
            write_durably(scan.path, data)
            moved.append((scan.path, aside))
            lost.extend(gaps)
            salvaged += len(scan.frames)
        if moved:
            fsync_dir(directory)
        torn = scans[-1].torn if scans else None
    if torn is not None and not scans[-1].problems:
        EventLog.open(directory).close()  # a writer cuts the torn tail, keeping it in .broken
    return RepairReport(moved, salvaged, lost, torn, problems)


def _rebuild(scan: _SegmentScan, end_seq: int | None) -> tuple[bytes, list[int]]:
    """A segment with the intact frames and a marker for every missing number."""
    parts = [encode_segment_header(scan.first_seq)]
    lost: list[int] = []
    seq = scan.first_seq
    at: Any = None
    where = scan.problems[0]
    for frame_seq, payload in scan.frames:
        if frame_seq < seq or (end_seq is not None and frame_seq > end_seq):
            continue  # kept only in the damaged original
        while seq < frame_seq:
            parts.append(encode_frame(seq, _lost_marker(where, at)))
            lost.append(seq)
            seq += 1
        parts.append(encode_frame(seq, payload))
        record = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        at = record.get("at", at)
        seq += 1
    while end_seq is not None and seq <= end_seq:
        parts.append(encode_frame(seq, _lost_marker(where, at)))
        lost.append(seq)
        seq += 1
    return b"".join(parts), lost


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
