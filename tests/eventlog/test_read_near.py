"""EventLog.read(near=...): a read that begins where a record was written, checked first."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.eventlog import EventLog


def _filled(path: Path, count: int, segment_size: int = 4096) -> dict[int, tuple[int, int]]:
    """A log of `count` records in small segments; the position noted before each append."""
    positions = {}
    with EventLog.open(path, segment_size=segment_size) as log:
        for n in range(1, count + 1):
            positions[n] = log.position
            assert log.append({"n": n, "pad": "x" * 40}) == n
    return positions


def test_a_read_near_a_noted_position_gives_what_a_plain_read_gives(tmp_path: Path) -> None:
    positions = _filled(tmp_path, 300)
    with EventLog.open(tmp_path, readonly=True) as log:
        assert len(log.segments()) > 3
        for start in (1, 2, 57, 150, 299, 300):
            expected = list(log.read(start))
            assert list(log.read(start, near=positions[start])) == expected
            assert expected[0][0] == start


@pytest.mark.parametrize("wrong", [(1, 24), (1, 10**9), (999, 24), (1, 3)])
def test_a_position_that_does_not_hold_the_record_is_ignored(
    tmp_path: Path, wrong: tuple[int, int]
) -> None:
    """A stale or wrong position (another record there, past the end, no such segment, inside
    the header) reads as if none were given."""
    _filled(tmp_path, 200)
    with EventLog.open(tmp_path, readonly=True) as log:
        assert list(log.read(150, near=wrong)) == list(log.read(150))


def test_a_position_at_a_segments_end_continues_in_the_next(tmp_path: Path) -> None:
    """The writer's position before a rotation is the full segment's end: the record is the
    next segment's first."""
    positions = _filled(tmp_path, 200)
    with EventLog.open(tmp_path, readonly=True) as log:
        firsts = [first for first, _ in log.segments()][1:]
        for first in firsts:
            segment, offset = positions[first]
            if segment != first:  # noted before the rotation
                assert list(log.read(first, near=(segment, offset))) == list(log.read(first))
                return
    pytest.fail("no rotation noted")
