"""Shared by the event-log tests: fill a log, find frames on disk, damage bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.eventlog import EventLog
from reconciler.eventlog.files import list_segments
from reconciler.eventlog.format import SEGMENT_HEADER, Frame, walk_frames

__all__ = ["fill", "flip_byte", "frames_of", "last_segment", "record_for"]


def record_for(seq: int) -> dict[str, Any]:
    """A record whose content is a function of its sequence number (so reads can be checked)."""
    return {"at": 1_700_000_000.0 + seq, "n": seq, "pad": "x" * (seq % 37)}


def fill(path: Path, count: int, **open_args: Any) -> None:
    with EventLog.open(path, **open_args) as log:
        for _ in range(count):
            log.append(record_for(log.last_seq + 1))


def frames_of(segment: Path) -> list[Frame]:
    """The intact frames of one segment file, in order."""
    data = segment.read_bytes()
    first = int(segment.name.split(".")[0])
    return [f for f in walk_frames(data, SEGMENT_HEADER, first) if isinstance(f, Frame)]


def last_segment(path: Path) -> Path:
    return list_segments(path)[-1][1]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
