"""RunClock: wall-clock time that follows forward steps and never runs backwards in a run."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reconciler.runclock import SLEW, RunClock


class _Clocks:
    def __init__(self, wall: float) -> None:
        self.wall, self.mono = wall, 1000.0

    def tick(self, seconds: float, step: float = 0.0) -> None:
        self.mono += seconds
        self.wall += seconds + step


def test_a_step_back_is_bridged_then_caught_up() -> None:
    """Two hours back: the clock goes on from where it was at half speed, never backwards,
    until the wall clock catches up (after twice the step); then it follows the wall."""
    clocks = _Clocks(10_000.0)
    clock = RunClock(lambda: clocks.wall, lambda: clocks.mono)
    assert clock() == 10_000.0
    clocks.tick(10.0, step=-7200.0)
    assert clock() == 10_000.0 + 10.0 * SLEW and clock.behind == 7200.0 - 10.0 + 10.0 * SLEW
    clocks.tick(600.0)
    assert clock() == 10_000.0 + 610.0 * SLEW
    clocks.tick(7200.0 / (1 - SLEW))
    assert clock() == clocks.wall and clock.behind == 0.0


def test_a_step_forward_is_followed() -> None:
    """NTP's first sync after a boot in the past moves the clock forward with the wall."""
    clocks = _Clocks(100.0)
    clock = RunClock(lambda: clocks.wall, lambda: clocks.mono)
    clock()
    clocks.tick(1.0, step=1.7e9)
    assert clock() == clocks.wall


def test_not_before_carries_the_last_run_forward() -> None:
    """Seeded with the log's newest stamp two hours ahead of the wall clock, the clock starts
    there and runs on by monotonic time."""
    clocks = _Clocks(10_000.0)
    clock = RunClock(lambda: clocks.wall, lambda: clocks.mono)
    clock.not_before(17_200.0)
    assert clock() == 17_200.0
    clocks.tick(30.0)
    assert clock() == 17_200.0 + 30.0 * SLEW
    clock.not_before(5.0)  # an older stamp changes nothing
    assert clock() == 17_200.0 + 30.0 * SLEW


@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(-1e8, 1e8)), max_size=50))
def test_never_backwards_and_never_slower_than_monotonic(
    moves: list[tuple[float, float]],
) -> None:
    """Whatever the wall clock does, each reading is at least the wall clock and at least
    the previous one plus SLEW times the monotonic time between them."""
    clocks = _Clocks(1.7e9)
    clock = RunClock(lambda: clocks.wall, lambda: clocks.mono)
    last, last_mono = clock(), clocks.mono
    for seconds, step in moves:
        clocks.tick(seconds, step)
        now = clock()
        assert now >= clocks.wall
        assert now >= last + (clocks.mono - last_mono) * SLEW - 1e-6
        last, last_mono = now, clocks.mono
