"""The on-disk format of a log segment: header, frames, checksums (see docs/log-format.md).

A segment is a header (24 bytes in format 1, 40 in format 2, which adds the log's
identity) followed by frames. A frame is a 20-byte header and a msgpack
payload. The frame header carries its own CRC so that a damaged length field is recognised
as damage and cannot pass for a write that was cut short.

This module only encodes and decodes bytes; it opens no files.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Literal

from attrs import frozen

__all__ = [
    "CRC32_RESIDUE",
    "FORMAT_VERSION",
    "FRAME_HEADER",
    "FRAME_HEAD_STRUCT",
    "FRAME_OVERHEAD",
    "FRAME_TRAILER",
    "LOG_ID_SIZE",
    "MAX_PAYLOAD",
    "SEGMENT_HEADER",
    "SEGMENT_HEADER_V1",
    "SEGMENT_MAGIC",
    "SEGMENT_SUFFIX",
    "U32_STRUCT",
    "Damage",
    "Frame",
    "SegmentHeader",
    "decode_segment_header",
    "encode_frame",
    "encode_segment_header",
    "find_intact_frame",
    "inspect_frame",
    "is_segment_name",
    "is_torn_tail",
    "scan_frames",
    "segment_first_seq",
    "segment_name",
    "walk_frames",
]

SEGMENT_MAGIC = b"\x89RCLOG\r\n"  # like PNG's: catches text-mode and 7-bit transfers
FORMAT_VERSION = 2
SEGMENT_SUFFIX = ".log"
# Format 1: magic, format version (u16), flags (u16, zero), first sequence number (u64), CRC
# of the rest. Format 2 puts the log's identity (16 random bytes, the same in every segment
# of one log) before the CRC; everything after the header is the same in both.
_SEGMENT_HEAD_V1 = struct.Struct("<8sHHQ")
_SEGMENT_HEAD = struct.Struct("<8sHHQ16s")
SEGMENT_HEADER_V1 = _SEGMENT_HEAD_V1.size + 4
SEGMENT_HEADER = _SEGMENT_HEAD.size + 4  # what this release writes
LOG_ID_SIZE = 16
_HEADS = {1: _SEGMENT_HEAD_V1, 2: _SEGMENT_HEAD}
# Frame: payload length (u32), sequence number (u64), CRC-32 of those 12 bytes (u32), the
# payload, then a CRC-32 of everything before it in the frame (u32 trailer).
FRAME_HEAD_STRUCT = struct.Struct("<IQ")
_FRAME_FULL = struct.Struct("<IQI")
FRAME_HEADER = _FRAME_FULL.size
FRAME_TRAILER = 4
FRAME_OVERHEAD = FRAME_HEADER + FRAME_TRAILER
MAX_PAYLOAD = 2**30  # a larger length is damage, whatever its CRC says
U32_STRUCT = struct.Struct("<I")
# CRC-32 of any bytes followed by their own CRC (u32, little-endian): a constant. A frame is
# intact exactly when the CRC over all of it, trailer included, is this value, so readers
# check a frame with one CRC call and no trailer unpacking.
CRC32_RESIDUE = 0x2144DF1C

_crc32 = zlib.crc32


def segment_name(first_seq: int) -> str:
    """Segments are named by their first sequence number, zero-padded so names sort."""
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def is_segment_name(name: str) -> bool:
    stem = name[: -len(SEGMENT_SUFFIX)]
    return name.endswith(SEGMENT_SUFFIX) and len(stem) == 20 and stem.isdigit()


def segment_first_seq(name: str) -> int:
    return int(name[: -len(SEGMENT_SUFFIX)])


@frozen
class SegmentHeader:
    """A valid segment header: the first sequence number, the log's identity (None in a
    format-1 segment, which has none) and the header's size (where frames begin)."""

    first_seq: int
    log_id: bytes | None
    size: int


def encode_segment_header(first_seq: int, log_id: bytes | None) -> bytes:
    """A format-2 header naming the log `log_id`; format 1 when None (`log repair` keeps the
    format of a segment it rebuilds)."""
    if log_id is None:
        head = _SEGMENT_HEAD_V1.pack(SEGMENT_MAGIC, 1, 0, first_seq)
    else:
        if len(log_id) != LOG_ID_SIZE:
            raise ValueError(f"a log id is {LOG_ID_SIZE} bytes, not {len(log_id)}")
        head = _SEGMENT_HEAD.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, first_seq, log_id)
    return head + U32_STRUCT.pack(_crc32(head))


def decode_segment_header(data: bytes) -> SegmentHeader | str:
    """The header at the start of `data` (which may run on into frames), or a one-line
    reason it is not valid."""
    if len(data) < SEGMENT_HEADER_V1:
        return f"segment header is {len(data)} bytes, expected {SEGMENT_HEADER_V1} or more"
    magic, version, _flags, _first = _SEGMENT_HEAD_V1.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        return "not a reconciler log segment (bad magic)"
    head = _HEADS.get(version)
    if head is None:
        (crc,) = U32_STRUCT.unpack_from(data, _SEGMENT_HEAD_V1.size)
        if crc != _crc32(data[: _SEGMENT_HEAD_V1.size]):
            return "segment header checksum mismatch"
        return f"unsupported format version {version}"
    size = head.size + 4
    if len(data) < size:
        return f"segment header is {len(data)} bytes, expected {size}"
    (crc,) = U32_STRUCT.unpack_from(data, head.size)
    if crc != _crc32(data[: head.size]):
        return "segment header checksum mismatch"
    fields = head.unpack_from(data)
    return SegmentHeader(int(fields[3]), bytes(fields[4]) if version >= 2 else None, size)


def encode_frame(seq: int, payload: bytes) -> bytes:
    head = FRAME_HEAD_STRUCT.pack(len(payload), seq)
    head += U32_STRUCT.pack(_crc32(head))
    return b"".join((head, payload, U32_STRUCT.pack(_crc32(payload, _crc32(head)))))


@frozen
class Frame:
    """An intact frame: where it starts, its sequence number, payload start, and frame end."""

    offset: int
    seq: int
    start: int
    end: int

    @property
    def payload_end(self) -> int:
        return self.end - FRAME_TRAILER


@frozen
class Damage:
    """Why walking stopped at `offset` (relative to the buffer walked)."""

    offset: int
    kind: Literal["incomplete", "header", "payload", "sequence"]
    reason: str


def inspect_frame(buf: bytes | memoryview, pos: int, seq: int | None) -> int | Damage:
    """The end of the intact frame at `pos` (numbered `seq` unless None), or why it is not.

    The header CRC is checked first, so a damaged length reads as damage ("header") rather
    than as a frame running past the end of the file ("incomplete", a torn write).
    """
    size = len(buf)
    if pos + FRAME_HEADER > size:
        return Damage(pos, "incomplete", f"frame header cut short ({size - pos} bytes)")
    length, frame_seq, header_crc = _FRAME_FULL.unpack_from(buf, pos)
    if _crc32(buf[pos : pos + 12]) != header_crc or length > MAX_PAYLOAD:
        return Damage(pos, "header", "frame header checksum mismatch")
    end: int = pos + FRAME_OVERHEAD + length
    if end > size:
        return Damage(pos, "incomplete", f"frame of {length} bytes cut short")
    (stored,) = U32_STRUCT.unpack_from(buf, end - FRAME_TRAILER)
    if _crc32(buf[pos : end - FRAME_TRAILER]) != stored:
        return Damage(pos, "payload", "frame checksum mismatch")
    if seq is not None and frame_seq != seq:
        return Damage(pos, "sequence", f"sequence number {frame_seq}, expected {seq}")
    return end


def walk_frames(buf: bytes | memoryview, pos: int, expected_seq: int) -> Iterator[Frame | Damage]:
    """Yield the frames in buf[pos:] in order; a Damage ends the walk.

    The walk ends silently when the buffer ends exactly on a frame boundary. Sequence numbers
    must run on from `expected_seq`.
    """
    seq = expected_seq
    while pos < len(buf):
        found = inspect_frame(buf, pos, seq)
        if isinstance(found, Damage):
            yield found
            return
        yield Frame(pos, seq, pos + FRAME_HEADER, found)
        seq += 1
        pos = found


def find_intact_frame(buf: bytes | memoryview, after: int) -> Frame | None:
    """The first intact frame (both checksums good) starting after offset `after`, if any.

    Good frames after damage make it corruption, never a torn tail (see is_torn_tail).
    Trailing zeros cannot hold a frame (an all-zero header fails its CRC), so the
    scan stops where they begin.
    """
    data = bytes(buf)
    limit = len(data.rstrip(b"\0"))
    pos = after + 1
    while pos + FRAME_HEADER <= len(data) and pos < limit:
        found = inspect_frame(data, pos, None)
        if not isinstance(found, Damage):
            seq = _FRAME_FULL.unpack_from(data, pos)[1]
            return Frame(pos, seq, pos + FRAME_HEADER, found)
        pos += 1
    return None


def scan_frames(
    buf: bytes, pos: int, seq: int, limit: int | None = None
) -> tuple[int, int, Damage | None]:
    """Walk intact frames from `pos` as fast as possible: (end offset, next seq, damage).

    Stops after `limit` frames when given. The hot path of opening a log (no objects per
    frame); `walk_frames` says the same thing frame by frame.
    """
    size = len(buf)
    unpack = FRAME_HEAD_STRUCT.unpack_from
    crc32 = _crc32
    residue = CRC32_RESIDUE
    left = -1 if limit is None else limit
    while pos + FRAME_HEADER <= size and left != 0:
        length, frame_seq = unpack(buf, pos)
        end = pos + FRAME_OVERHEAD + length
        if end > size or frame_seq != seq or crc32(buf[pos:end]) != residue:
            found = inspect_frame(buf, pos, seq)
            assert isinstance(found, Damage)
            return pos, seq, found
        seq += 1
        pos = end
        left -= 1
    if pos < size and left != 0:
        return pos, seq, Damage(pos, "incomplete", f"frame header cut short ({size - pos} bytes)")
    return pos, seq, None


def is_torn_tail(buf: bytes | memoryview, damage: Damage) -> bool:
    """Whether damage found in the last segment is a write cut short, not corruption.

    Only what an interrupted append can leave counts as torn (docs/log-format.md, recovery):

    - never when the damage is an intact frame out of sequence, or when an intact frame
      follows the damage anywhere (cutting there would lose good data);
    - when the frame header at the damage passes its own CRC: the frame runs past the end of
      the file, or nothing but zeros follows the frame's end (a final frame written partly);
    - when the header fails its CRC or is cut short: nothing but zeros follows the header's
      16 bytes (a header half-written before zero fill). A bad header with data behind it is
      a damaged length field, which must not pass for a torn tail.

    Runs only on damage; the cheap byte checks come before the scan for an intact frame.
    """
    if damage.kind == "sequence":
        return False
    data = bytes(buf)
    offset = damage.offset
    size = len(data)
    junk_end = offset + FRAME_HEADER  # where a torn write may stop leaving non-zero bytes
    if junk_end <= size:
        length, _, header_crc = _FRAME_FULL.unpack_from(data, offset)
        if _crc32(data[offset : offset + 12]) == header_crc and length <= MAX_PAYLOAD:
            junk_end = offset + FRAME_OVERHEAD + length  # the header is trustworthy
    if junk_end < size and data.count(0, junk_end) != size - junk_end:
        return False
    return find_intact_frame(data, offset) is None
