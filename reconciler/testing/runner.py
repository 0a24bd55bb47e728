"""A CommandRunner double that records every argv and answers from a script.

    runner = RecordingRunner()
    runner.script(["pfctl", "-f", "/etc/pf.conf"], returncode=1, stderr="pfctl: ...")
    platform = OpenBSDPlatform(config, runner, root=tmp_path)
    ...
    assert runner.calls == [("pfctl", "-f", "/etc/pf.conf")]

Scripted answers for one argv are used in order; the last one repeats. An argv without a
script goes to the `responder` given at construction (the scripted OpenBSD host is one), and
without a responder it is a test failure (AssertionError naming the command), so a test
never passes by running a command nobody expected.
"""

from __future__ import annotations

import queue
import shlex
import threading
from collections.abc import Callable, Iterator, Sequence

from reconciler.errors import TemporaryError
from reconciler.world.runner import Completed

__all__ = ["RecordingRunner", "ScriptedStream"]

Responder = Callable[[tuple[str, ...], float], Completed]

_END = object()


class ScriptedStream:
    """The output of a long-running program, fed by the test (or the scripted host).

    `feed(text)` makes lines available, `end()` makes the program exit (as if it died),
    `close()` is what the platform calls to stop it."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = tuple(argv)
        self._lines: queue.Queue[object] = queue.Queue()
        self._ended = threading.Event()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def feed(self, text: str) -> None:
        if self._ended.is_set():
            return
        for line in text.splitlines():
            self._lines.put(line)

    def end(self) -> None:
        if not self._ended.is_set():
            self._ended.set()
            self._lines.put(_END)

    def close(self) -> None:
        self.end()

    def __iter__(self) -> Iterator[str]:
        while True:
            item = self._lines.get()
            if item is _END:
                return
            assert isinstance(item, str)
            yield item


class RecordingRunner:
    """Records every command (argv and timeout) and answers from scripted results."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.timeouts: list[float] = []
        self.streams: list[ScriptedStream] = []
        self._responder = responder
        self._answers: dict[tuple[str, ...], list[Completed]] = {}
        self._stream_failures: dict[tuple[str, ...], str] = {}
        self._lock = threading.Lock()
        self.stream_started = threading.Condition(self._lock)

    def script(
        self,
        argv: Sequence[str],
        *,
        returncode: int = 0,
        stdout: str = "",
        stderr: str = "",
        timed_out: bool = False,
        duration: float = 0.01,
    ) -> None:
        """Queue one answer for `argv` (answers are used in order; the last one repeats)."""
        answer = Completed(tuple(argv), returncode, stdout, stderr, duration, timed_out)
        with self._lock:
            self._answers.setdefault(tuple(argv), []).append(answer)

    def fail_stream(self, argv: Sequence[str], reason: str) -> None:
        """Make starting `argv` as a stream fail, as a missing program would."""
        with self._lock:
            self._stream_failures[tuple(argv)] = reason

    def run(self, argv: Sequence[str], *, timeout: float) -> Completed:
        args = tuple(argv)
        with self._lock:
            self.calls.append(args)
            self.timeouts.append(timeout)
            answers = self._answers.get(args)
            if answers:
                return answers.pop(0) if len(answers) > 1 else answers[0]
        if self._responder is None:
            raise AssertionError(f"unexpected command: {shlex.join(args)}")
        return self._responder(args, timeout)

    def stream(self, argv: Sequence[str]) -> ScriptedStream:
        args = tuple(argv)
        with self._lock:
            self.calls.append(args)
            failure = self._stream_failures.get(args)
            if failure is not None:
                raise TemporaryError(f"`{shlex.join(args)}`: {failure}")
            stream = ScriptedStream(args)
            self.streams.append(stream)
            self.stream_started.notify_all()
        self.stream_opened(stream)
        return stream

    def stream_opened(self, stream: ScriptedStream) -> None:
        """Hook for subclasses: a program started streaming."""

    def live_streams(self) -> list[ScriptedStream]:
        with self._lock:
            return [s for s in self.streams if not s.ended]

    def wait_for_streams(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until `count` streams have been started in total."""
        with self._lock:
            return self.stream_started.wait_for(lambda: len(self.streams) >= count, timeout)
