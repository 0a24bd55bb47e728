"""Long-lived worker threads, started when all are busy and kept for the next task.

The daemon runs its observers and its HE calls on threads. A thread per task was simple, but
glibc hands each new thread one of its malloc arenas, whichever is free at that moment, so a
few new threads a second scatter the daemon's small allocations over every arena and the
freed pages stay resident: RSS crept up by about 1 MB in ten minutes of address changes,
while the Python heap stayed flat. Kept threads keep their arenas, and their memory is
reused.

Not concurrent.futures.ThreadPoolExecutor: it joins its threads at interpreter exit, so a
task stuck on HE's read timeout would hold a stopping process. These threads are daemon
threads and are never joined. Nor has the pool a maximum: a task waiting behind a busy
thread (a probe behind a slow HE call) would be late, and the callers bound the number of
tasks at once themselves (one run per observer job, one HE call at a time).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

__all__ = ["Workers"]

_log = logging.getLogger(__name__)


class Workers:
    """A pool of daemon threads named `<name>-<n>` that grows to the most tasks run at once."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads free to take a queued task (waiting, or about to wait)
        self._threads = 0
        self._closed = False

    @property
    def threads(self) -> int:
        """How many threads the pool has started (and keeps)."""
        with self._lock:
            return self._threads

    @property
    def idle(self) -> int:
        """How many of them are free for a task now."""
        with self._lock:
            return self._idle

    def submit(self, task: Callable[[], None]) -> None:
        """Run `task` on a free thread, or on a new one if none is free. `task` handles its
        own errors; one that escapes is logged and the thread goes on to the next task.
        After close, a late task (a reload racing an observer) still runs, on a thread that
        ends with it."""
        with self._lock:
            if self._closed:
                threading.Thread(
                    target=self._run, args=(task,), name=f"{self._name}-late", daemon=True
                ).start()
                return
            if self._idle > 0:
                self._idle -= 1
            else:
                self._threads += 1
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}-{self._threads}", daemon=True
                )
                thread.start()
        self._tasks.put(task)

    def close(self) -> None:
        """Let the threads end once their current task is done. Never waits: a thread stuck
        in a task ends when its task does."""
        with self._lock:
            self._closed = True
            count = self._threads
        for _ in range(count):
            self._tasks.put(None)

    def _serve(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            self._run(task)
            with self._lock:
                self._idle += 1

    def _run(self, task: Callable[[], None]) -> None:
        try:
            task()
        except BaseException:  # a task's own failure must not take the thread with it
            _log.exception("%s: a task failed", self._name)
