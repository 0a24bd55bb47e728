"""Tests for reconciler.workers: kept threads, a new one only when all are busy."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from reconciler.workers import Workers


def _run(workers: Workers, task: object = None) -> str:
    """Run one task and wait for it; the name of the thread that ran it."""
    ran: list[str] = []
    done = threading.Event()

    def work() -> None:
        ran.append(threading.current_thread().name)
        done.set()

    workers.submit(work)
    assert done.wait(5)
    return ran[0]


def _until_idle(workers: Workers, count: int) -> None:
    deadline = time.monotonic() + 5
    while workers.idle < count:
        assert time.monotonic() < deadline, "the threads never became free"
        time.sleep(0.01)


def test_tasks_one_after_another_share_one_kept_thread() -> None:
    workers = Workers("t-seq")
    try:
        names = {_run(workers) for _ in range(50)}
        assert names == {"t-seq-1"}
        assert workers.threads == 1
    finally:
        workers.close()


def test_a_busy_thread_never_delays_the_next_task() -> None:
    workers = Workers("t-busy")
    release = threading.Event()
    try:
        workers.submit(lambda: release.wait(10))
        # One thread is held; the second task runs at once on a second thread.
        _run(workers)
        assert workers.threads == 2
        release.set()
        _until_idle(workers, 2)
        # Both are free now: no third thread for the tasks that follow.
        for _ in range(10):
            _run(workers)
        assert workers.threads == 2
    finally:
        release.set()
        workers.close()


def test_threads_are_daemon_threads_so_a_stuck_task_never_holds_the_exit() -> None:
    workers = Workers("t-daemon")
    release = threading.Event()
    try:
        workers.submit(lambda: release.wait(10))
        (thread,) = [t for t in threading.enumerate() if t.name == "t-daemon-1"]
        assert thread.daemon
    finally:
        release.set()
        workers.close()


def test_a_failing_task_is_logged_and_the_thread_serves_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="reconciler.workers")
    workers = Workers("t-fail")
    try:
        workers.submit(lambda: 1 / 0)  # type: ignore[func-returns-value]
        _until_idle(workers, 1)
        assert _run(workers) == "t-fail-1"
        assert workers.threads == 1
        assert "t-fail: a task failed" in caplog.text
        assert "ZeroDivisionError" in caplog.text
    finally:
        workers.close()


def test_close_ends_the_threads_and_a_late_task_still_runs() -> None:
    workers = Workers("t-close")
    release = threading.Event()
    workers.submit(lambda: release.wait(10))
    _run(workers)
    kept = [t for t in threading.enumerate() if t.name.startswith("t-close-")]
    assert len(kept) == 2
    workers.close()
    release.set()
    for thread in kept:
        thread.join(5)
        assert not thread.is_alive()
    assert _run(workers) == "t-close-late"
