"""Running the [notify] hook: an argv, never a shell; one run at a time, off the repair path.

`HookRunner.submit(notice)` only puts the notification in a bounded queue (it is called
while the recorder holds its lock, so it must never wait); one thread takes them in order and
runs the hook with the notification in RECONCILER_* variables and a small fixed environment
(nothing of the daemon's own: the update key is never in it, nor in an argument). A hook that
overruns `timeout` is killed with everything it started (it leads its own session). The
hook's own exit ends a run: a background child it leaves (`curl ... &`, a helper that
calls setsid) is neither waited for nor killed, even while it holds the hook's stderr. Each run
is recorded as a `hook-ran` fact with its exit status; notifications a full queue dropped are
counted, logged, and reported in the next run's fact. A failing hook is logged once per
streak of failures (and when it works again), and never stops anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from reconciler.errors import error_line
from reconciler.model.config import NotifyConfig
from reconciler.model.facts import HookRan
from reconciler.model.notices import Notice
from reconciler.outside_text import clean_line
from reconciler.world.runner import collect, last_line

__all__ = ["QUEUE_SIZE", "HookRunner"]

_log = logging.getLogger(__name__)

# Notifications waiting for the hook; more are dropped (and counted). A hook that keeps up
# never comes near it: a repair causes two or three.
QUEUE_SIZE = 32
# Variables a hook may need from the daemon's environment (a mail(1) or curl needs a PATH
# and a locale; nothing else of ours is its business).
_PASSED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
_DEFAULT_PATH = "/sbin:/usr/sbin:/bin:/usr/bin:/usr/local/sbin:/usr/local/bin"

Record = Callable[[HookRan], object]


class HookRunner:
    """Runs the hook for each notification, in order, on a thread of its own."""

    def __init__(self, config: NotifyConfig, record: Record) -> None:
        self._config = config
        self._record = record
        self._queue: queue.Queue[Notice | None] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._dropped = 0  # since the last run's fact
        self._failing = False
        self._dropping = False
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._abandoned = threading.Event()  # past the stop's deadline: start nothing more

    @property
    def config(self) -> NotifyConfig:
        return self._config

    @property
    def dropped(self) -> int:
        """Notifications dropped that no hook-ran fact reports yet."""
        with self._lock:
            return self._dropped

    def reconfigure(self, config: NotifyConfig) -> None:
        """Use `config` from the next run on (a run under way finishes as it was)."""
        self._config = config

    def wants(self, notice: Notice) -> bool:
        config = self._config
        return bool(config.command) and (not config.events or notice.event in config.events)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self._thread.start()

    def submit(self, notice: Notice) -> bool:
        """Queue `notice` for the hook, never waiting; False when it was dropped."""
        if not self.wants(notice) or self._stopping.is_set():
            return False
        try:
            self._queue.put_nowait(notice)
        except queue.Full:
            with self._lock:
                self._dropped += 1
                first = not self._dropping
                self._dropping = True
            if first:
                _log.warning(
                    "notify: the hook queue is full (%d waiting): dropping %s and later "
                    "notifications until it drains",
                    QUEUE_SIZE,
                    notice.event,
                )
            return False
        return True

    def stop(self, deadline: float) -> None:
        """Let queued notifications (the daemon-stopped one last) run until `deadline`
        (monotonic), then kill a hook still running and give up the rest."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._abandoned.set()
        process = self._process
        if process is not None and process.poll() is None:
            _kill(process)
            _log.warning("notify: killed the hook still running at the stop")
        left = self._queue.qsize()
        with self._lock:
            dropped = self._dropped
        if left or dropped:
            _log.warning(
                "notify: %d notification(s) not run at the stop, %d dropped unreported",
                left,
                dropped,
            )

    def _loop(self) -> None:
        while True:
            notice = self._queue.get()
            if notice is None or self._abandoned.is_set():
                return
            try:
                self._run(notice)
            except Exception as exc:  # the hook thread must outlive any one run
                _log.error(
                    "notify: running the hook for %s failed: %s", notice.event, error_line(exc)
                )

    def _run(self, notice: Notice) -> None:
        config = self._config
        if not config.command:
            return
        with self._lock:
            dropped, self._dropped = self._dropped, 0
            if self._queue.empty():
                self._dropping = False  # drained: the next drop starts a new spell (logged)
        started = time.monotonic()
        status: int | None = None
        detail = ""
        try:
            process = subprocess.Popen(
                config.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=_environment(notice),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            outcome = "not-started"
            detail = f"{config.command[0]}: cannot run: {exc.strerror or type(exc).__name__}"
        else:
            self._process = process
            try:
                # The hook's exit ends the run: a background child it leaves holding stderr
                # is not waited for (collect stops reading a moment after the exit).
                got = collect(process, config.timeout)
            finally:
                self._process = None
            if got.timed_out:
                outcome = "timeout"
                detail = f"killed after {config.timeout:g} s"
            else:
                status = process.returncode
                outcome = "ok" if status == 0 else "failed"
                if status is not None and status != 0:
                    reason = last_line(got.stderr.decode(errors="replace"))
                    how = f"exit status {status}" if status > 0 else f"signal {-status}"
                    detail = how + (f": {reason}" if reason else "")
        seconds = time.monotonic() - started
        self._tell(notice, outcome, detail)
        with contextlib.suppress(Exception):  # a stopped recorder: the log line must do
            self._record(
                HookRan(
                    event=notice.event,
                    cause=notice.seq,
                    outcome=outcome,
                    status=status,
                    seconds=round(seconds, 3),
                    detail=clean_line(detail),
                    dropped=dropped,
                )
            )

    def _tell(self, notice: Notice, outcome: str, detail: str) -> None:
        if outcome == "ok":
            if self._failing:
                _log.info("notify: the hook works again (%s)", notice.event)
            self._failing = False
            return
        if not self._failing:
            _log.warning(
                "notify: the hook failed for %s (#%d): %s; further failures are not logged "
                "until it works again",
                notice.event,
                notice.seq,
                detail,
            )
        self._failing = True


def _environment(notice: Notice) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED if name in os.environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    env.update(notice.environment())
    return env


def _kill(process: subprocess.Popen[bytes]) -> None:
    # The hook leads its own session: a shell script's children go with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
