"""The daemon's clock: wall-clock time that never runs backwards within a run.

Routers without a real-time clock boot in the past and step forward when NTP syncs; an NTP
correction may also step the clock back. Facts carry wall-clock stamps (a post-mortem needs
dates), and the planner measures holds as "now minus the stamp". Were `now` read straight
from the wall clock, a step back would make every fact recorded before it look as if it came
from the future: the planner counts such a fact as just now (it never holds longer than the
interval from `now`), but on every pass afresh, so a hold would last as long as the step.

So within a run the daemon reads time from a RunClock. It follows the wall clock forward
(after a restart a step and time passing cannot be told apart, and the stamps stay true for
whoever reads the log). When the wall clock reads earlier than the last time given out, it
does not go back: it runs on from there at half the speed of the monotonic clock, so the wall
clock catches up after twice the step, and meanwhile a hold lasts at most twice its interval
in real time rather than the length of the step. Stamps in the log never go backwards within
a run. Seeded with the log's newest stamp at start-up (`not_before`), the same holds across a
restart into the past.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["SLEW", "RunClock"]

# While the wall clock is behind, this clock advances at this fraction of monotonic time.
SLEW = 0.5


class RunClock:
    """Callable like time.time; never returns less than the wall clock, nor less than the
    last value plus SLEW times the monotonic time passed since it was returned."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last: float | None = None  # the last time given out (or the floor set)
        self._last_mono = 0.0

    def __call__(self) -> float:
        with self._lock:
            wall, mono = self._wall(), self._monotonic()
            if self._last is not None:
                wall = max(wall, self._last + (mono - self._last_mono) * SLEW)
            self._last, self._last_mono = wall, mono
            return wall

    def not_before(self, at: float) -> None:
        """Never give out a time before `at` (the newest stamp in the log at start-up), from
        now on: the clock runs on from there while the wall clock is behind it."""
        with self._lock:
            mono = self._monotonic()
            current = at if self._last is None else self._last + (mono - self._last_mono) * SLEW
            self._last, self._last_mono = max(current, at), mono

    @property
    def behind(self) -> float:
        """How far the wall clock reads behind this clock now (0 when it does not)."""
        with self._lock:
            if self._last is None:
                return 0.0
            ahead = self._last + (self._monotonic() - self._last_mono) * SLEW
            return max(0.0, ahead - self._wall())
