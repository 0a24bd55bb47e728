"""The torn-tail rule of format.is_torn_tail, on segment bytes built in memory."""

from __future__ import annotations

import pytest

from reconciler.eventlog.format import (
    FRAME_HEADER,
    SEGMENT_HEADER,
    Damage,
    encode_frame,
    encode_segment_header,
    is_torn_tail,
    walk_frames,
)

PAYLOAD = b"\x82\xa1n\x05\xa3pad" + b"\xa5" * 40  # msgpack-ish bytes, none of them zero


def _segment(count: int) -> bytes:
    """A segment of `count` frames numbered from 1."""
    return encode_segment_header(1, b"L" * 16) + b"".join(
        encode_frame(s, PAYLOAD) for s in range(1, 1 + count)
    )


def _last_frame_offset(count: int) -> int:
    return len(_segment(count - 1))


def _damage(buf: bytes) -> Damage:
    """The damage a walk of the whole segment stops at (the test expects some)."""
    items = list(walk_frames(buf, SEGMENT_HEADER, 1))
    assert isinstance(items[-1], Damage), "expected damage in the segment"
    return items[-1]


@pytest.mark.parametrize("junk", [1, 5, FRAME_HEADER - 1, FRAME_HEADER])
@pytest.mark.parametrize("zeros", [0, 1, 300])
def test_header_garbage_within_one_header_then_zeros_is_torn(junk: int, zeros: int) -> None:
    """Up to one header's worth of garbage, then only zeros, is a header cut or half-written."""
    buf = _segment(3) + b"\x5a" * junk + b"\0" * zeros
    damage = _damage(buf)
    assert damage.offset == len(_segment(3))
    assert is_torn_tail(buf, damage)


@pytest.mark.parametrize("junk", [FRAME_HEADER + 1, 200])
def test_garbage_beyond_one_header_is_corruption(junk: int) -> None:
    """More non-zero bytes than a header behind a bad header is not what a cut write leaves."""
    buf = _segment(3) + b"\x5a" * junk + b"\0" * 50
    assert not is_torn_tail(buf, _damage(buf))


@pytest.mark.parametrize("at", range(FRAME_HEADER))
def test_bad_header_with_payload_behind_is_corruption(at: int) -> None:
    """A flipped bit in any header byte of the last frame, its payload intact behind: corruption."""
    buf = bytearray(_segment(4))
    offset = _last_frame_offset(4)
    buf[offset + at] ^= 0x01
    damage = _damage(bytes(buf))
    assert (damage.offset, damage.kind) == (offset, "header")
    assert not is_torn_tail(bytes(buf), damage)


def test_damaged_first_length_with_data_behind_is_corruption() -> None:
    """A damaged length in the only frame, kilobytes of data behind it, is never a torn tail."""
    buf = bytearray(encode_segment_header(1, b"L" * 16) + encode_frame(1, b"\x91" * 4096))
    buf[SEGMENT_HEADER + 1] ^= 0x5A
    damage = _damage(bytes(buf))
    assert damage.offset == SEGMENT_HEADER
    assert not is_torn_tail(bytes(buf), damage)


@pytest.mark.parametrize("missing", [1, 4, len(PAYLOAD) + 3])
def test_good_header_running_past_the_end_is_torn(missing: int) -> None:
    """A frame whose sound header promises more bytes than the file holds was cut short."""
    buf = _segment(4)[:-missing]
    damage = _damage(buf)
    assert damage.kind == "incomplete"
    assert is_torn_tail(buf, damage)


@pytest.mark.parametrize("zeros", [0, 1, 700])
def test_good_header_bad_payload_then_only_zeros_is_torn(zeros: int) -> None:
    """A final frame with a sound header whose payload did not all reach the disk is torn."""
    buf = bytearray(_segment(4) + b"\0" * zeros)
    offset = _last_frame_offset(4)
    buf[offset + FRAME_HEADER + 10 : offset + FRAME_HEADER + len(PAYLOAD)] = bytes(
        len(PAYLOAD) - 10
    )
    damage = _damage(bytes(buf))
    assert (damage.offset, damage.kind) == (offset, "payload")
    assert is_torn_tail(bytes(buf), damage)


def test_good_header_bad_payload_then_data_is_corruption() -> None:
    """Non-zero bytes after the end of a frame whose payload fails its CRC: corruption."""
    buf = bytearray(_segment(4) + b"\0" * 30 + b"\x01")
    offset = _last_frame_offset(4)
    buf[offset + FRAME_HEADER + 3] ^= 0x10
    damage = _damage(bytes(buf))
    assert damage.kind == "payload"
    assert not is_torn_tail(bytes(buf), damage)


def test_intact_frame_after_damage_is_corruption() -> None:
    """Damage followed by an intact frame is corruption, whatever the damage looks like."""
    buf = bytearray(_segment(4))
    buf[_last_frame_offset(3) + FRAME_HEADER + 2] ^= 0x10  # payload of frame 3 of 4
    damage = _damage(bytes(buf))
    assert damage.kind == "payload"
    assert not is_torn_tail(bytes(buf), damage)


def test_sound_header_running_past_the_end_over_an_intact_frame_is_corruption() -> None:
    """A sound header whose length runs past the end is not torn when an intact frame follows."""
    buf = bytearray(_segment(4))
    offset = _last_frame_offset(3)
    buf[offset : offset + FRAME_HEADER] = encode_frame(3, bytes(10_000))[:FRAME_HEADER]
    damage = _damage(bytes(buf))
    assert (damage.offset, damage.kind) == (offset, "incomplete")
    assert not is_torn_tail(bytes(buf), damage)


def test_frame_out_of_sequence_is_corruption() -> None:
    """An intact final frame carrying the wrong sequence number is never torn."""
    buf = _segment(3) + encode_frame(9, PAYLOAD)
    damage = _damage(buf)
    assert damage.kind == "sequence"
    assert not is_torn_tail(buf, damage)


def test_memoryview_is_judged_like_bytes() -> None:
    """The rule gives the same answer for a memoryview of the segment as for its bytes."""
    torn = _segment(3) + b"\x5a" * 3
    damaged = _segment(3) + b"\x5a" * 40
    assert is_torn_tail(memoryview(torn), _damage(torn))
    assert not is_torn_tail(memoryview(damaged), _damage(damaged))


def test_crc_over_a_frame_and_its_trailer_is_the_residue_only_when_intact() -> None:
    """A whole frame's CRC is CRC32_RESIDUE when intact; any changed trailer bit breaks it."""
    import zlib

    from reconciler.eventlog.format import CRC32_RESIDUE

    for size in (0, 1, 5, 200):
        frame = encode_frame(7, bytes(range(size)))
        assert zlib.crc32(frame) == CRC32_RESIDUE
        for bit in range(32):
            bad = bytearray(frame)
            bad[len(frame) - 4 + bit // 8] ^= 1 << (bit % 8)
            assert zlib.crc32(bytes(bad)) != CRC32_RESIDUE


def test_scan_frames_stops_at_a_bad_trailer() -> None:
    """scan_frames walks intact frames and reports a frame whose trailer is wrong as damage."""
    from reconciler.eventlog.format import scan_frames

    data = bytearray(_segment(3))
    data[-1] ^= 0x01
    end, seq, damage = scan_frames(bytes(data), SEGMENT_HEADER, 1)
    assert (end, seq) == (_last_frame_offset(3), 3)
    assert damage is not None and damage.kind == "payload"
