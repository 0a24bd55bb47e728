"""Running external programs: argv lists, never a shell, always a timeout.

Platforms act on the host through a `CommandRunner`, so tests can swap in the scripted
doubles of `reconciler.testing` while the platform code stays the same. `SubprocessRunner`
is the real one: a child that overruns its timeout is killed together with whatever it
started (it runs in its own session), and a program that cannot be started is reported as
exit status 127 with a one-line reason instead of an OSError escaping into the loop.
Its `start` is the one place a child is started that way; a caller that must wait for the
child and end it itself (the UML guest runner) takes it from there, with `kill_session`.

A run ends when the program exits, not when every copy of its pipes is closed: a
background child it leaves (`curl ... &`, a daemon that forks and calls setsid) may hold
them for ever. `collect` reads a child's output with a bound on time and size, stops reading
a short drain after the child exits, and kills the child's group at the timeout; every wait
here has a bound.

`check()` turns a failed run into a `TemporaryError` whose one-line message holds the
command, its exit status and the last line of its stderr: that line becomes the outcome
fact, so it must say what went wrong without the rest of the output (and, being outside
text, it is cleaned of escapes and controls by reconciler.outside_text).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any, Protocol

from attrs import frozen

from reconciler.errors import TemporaryError
from reconciler.outside_text import last_line

__all__ = [
    "Collected",
    "CommandRunner",
    "Completed",
    "LineStream",
    "SubprocessRunner",
    "check",
    "collect",
    "describe_failure",
    "kill_session",
    "last_line",
]

NOT_STARTED = 127  # the shell's convention for "command not found"
_KILL_GRACE = 2.0  # seconds a stream gets after SIGTERM before SIGKILL
# After the child exits, what is still in its pipes is read for at most this long: enough for
# what it wrote before exiting, not long enough for a background child to hold the run.
DRAIN = 0.2
# After SIGKILL a process is gone at once unless stuck in the kernel; this bounds the wait.
_REAP = 5.0
# Output kept from one run: stdout from its start (it is parsed), stderr's end (its last line
# is the reason shown). Past these, the rest is read and dropped.
STDOUT_LIMIT = 16 << 20
STDERR_LIMIT = 64 << 10
_POLL = 0.05  # how often exit is checked while a pipe is still open


@frozen
class Completed:
    """A finished (or killed) run of one program."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float  # seconds
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def command(self) -> str:
        """The argv as a user would type it, for messages."""
        return shlex.join(self.argv)


class LineStream(Protocol):
    """Lines a long-running program prints, until it exits or is closed."""

    def __iter__(self) -> Iterator[str]: ...

    def close(self) -> None:
        """Stop the program; iteration ends soon after. Safe to call twice."""
        ...


class CommandRunner(Protocol):
    def run(self, argv: Sequence[str], *, timeout: float) -> Completed:
        """Run `argv` to completion (or kill it after `timeout` seconds); never raises for
        a failing or missing program: the Completed says what happened."""
        ...

    def stream(self, argv: Sequence[str]) -> LineStream:
        """Start a long-running program (`route -n monitor`) and read its lines.

        Raises TemporaryError when the program cannot be started."""
        ...


def describe_failure(completed: Completed) -> str:
    """One line: the command, how it ended, and stderr's last line."""
    if completed.timed_out:
        how = f"timed out after {completed.duration:.1f}s"
    elif completed.returncode < 0:
        how = f"was killed by signal {-completed.returncode}"
    else:
        how = f"exited with status {completed.returncode}"
    detail = last_line(completed.stderr) or last_line(completed.stdout)
    return f"`{completed.command}` {how}" + (f": {detail}" if detail else "")


def check(completed: Completed) -> Completed:
    """Return `completed` when it succeeded; raise TemporaryError describing it otherwise."""
    if not completed.ok:
        raise TemporaryError(describe_failure(completed))
    return completed


class SubprocessRunner:
    """Runs real programs with subprocess: no shell, own session, killed on timeout."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        # A fixed, small environment: the daemon's own environment may hold anything, and
        # programs whose output we parse must not be localised.
        self._env = env if env is not None else _default_env()

    def start(
        self, argv: Sequence[str], *, stderr: int = subprocess.PIPE, line_buffered: bool = False
    ) -> subprocess.Popen[str]:
        """Start `argv` and hand back the child, for a caller that waits for it and ends it
        itself (run, stream, the UML guest): no stdin, stdout a text pipe (undecodable bytes
        replaced), stderr as given (PIPE, STDOUT or DEVNULL), this runner's environment,
        and a session of its own, so that kill_session reaches whatever it starts. Raises
        OSError when the program cannot be started."""
        return subprocess.Popen(
            tuple(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            errors="replace",
            bufsize=1 if line_buffered else -1,
            env=self._env,
            start_new_session=True,
        )

    def run(self, argv: Sequence[str], *, timeout: float) -> Completed:
        args = tuple(argv)
        started = time.monotonic()
        if not args:
            return Completed(args, NOT_STARTED, "", "(empty command): cannot run", 0.0)
        try:
            proc = self.start(args)
        except OSError as exc:
            return Completed(
                args, NOT_STARTED, "", _start_failure(args, exc), time.monotonic() - started
            )
        got = collect(proc, timeout)
        return Completed(
            args,
            proc.returncode if proc.returncode is not None else -signal.SIGKILL,
            _text(got.stdout),
            _text(got.stderr),
            time.monotonic() - started,
            timed_out=got.timed_out,
        )

    def stream(self, argv: Sequence[str]) -> LineStream:
        args = tuple(argv)
        if not args:
            raise TemporaryError("(empty command): cannot run")
        try:
            proc = self.start(args, stderr=subprocess.DEVNULL, line_buffered=True)
        except OSError as exc:
            raise TemporaryError(f"`{shlex.join(args)}`: {_start_failure(args, exc)}") from None
        return _ProcessLines(proc)


class _ProcessLines:
    """The stdout lines of a running child; close() ends the child and its session."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        out: IO[str] | None = self._proc.stdout
        if out is None:
            return
        try:
            for line in out:
                if self._closed.is_set():
                    return
                yield line.rstrip("\n")
        except ValueError:  # the pipe was closed under us by close()
            return
        finally:
            self._proc.poll()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        kill_session(self._proc, signal.SIGTERM)
        try:
            self._proc.wait(timeout=_KILL_GRACE)
        except subprocess.TimeoutExpired:
            kill_session(self._proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=_REAP)


@frozen
class Collected:
    """What `collect` read from a child, and whether its timeout killed it."""

    stdout: bytes
    stderr: bytes
    timed_out: bool


def collect(proc: subprocess.Popen[Any], timeout: float, *, drain: float = DRAIN) -> Collected:
    """Read `proc`'s stdout and stderr pipes (those it has) until it exits, then for at most
    `drain` seconds more; at `timeout` seconds kill its group (kill_session) and reap it
    (bounded). The pipes are closed on return; background children that still hold them
    are not waited for. The caller reads proc.returncode (None only if a killed child could
    not be reaped)."""
    deadline = time.monotonic() + timeout
    kept = {"stdout": bytearray(), "stderr": bytearray()}
    selector = selectors.DefaultSelector()
    pipes: list[IO[Any]] = []
    for name in kept:
        pipe = getattr(proc, name)
        if pipe is not None:
            os.set_blocking(pipe.fileno(), False)
            selector.register(pipe.fileno(), selectors.EVENT_READ, name)
            pipes.append(pipe)
    timed_out = False
    ends: float | None = None  # when reading stops: set once the child has exited
    try:
        while True:
            now = time.monotonic()
            if ends is None and proc.poll() is not None:
                ends = now + drain
            if ends is None and now >= deadline:
                timed_out = True
                kill_session(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_REAP)
                ends = time.monotonic() + drain
            if not selector.get_map():
                if ends is not None:
                    break
                # Both pipes closed, the child not yet exited: wait for it (bounded).
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.0, deadline - now))
                continue
            if ends is not None and now >= ends:
                break
            limit = ends if ends is not None else deadline
            for key, _ in selector.select(min(_POLL, max(0.0, limit - now))):
                _read_into(kept[key.data], key.fd, selector, key.data == "stdout")
    finally:
        selector.close()
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.close()
    return Collected(bytes(kept["stdout"]), bytes(kept["stderr"]), timed_out)


def _read_into(
    buffer: bytearray, fd: int, selector: selectors.BaseSelector, keep_head: bool
) -> None:
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return
    except OSError:
        chunk = b""
    if not chunk:
        selector.unregister(fd)
        return
    if keep_head:
        buffer += chunk[: max(0, STDOUT_LIMIT - len(buffer))]
    else:
        buffer += chunk
        del buffer[: max(0, len(buffer) - STDERR_LIMIT)]


def kill_session(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    """Send `sig` to a child of SubprocessRunner.start and to everything it started (a
    shell script's children too, a UML kernel's helpers): it leads its own session, so its
    process group holds them all. A group already gone is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _text(output: bytes) -> str:
    """Output as the text pipes of start() read it: undecodable bytes replaced, universal
    newlines."""
    return output.decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def _start_failure(argv: tuple[str, ...], exc: OSError) -> str:
    program = argv[0] if argv else "(empty command)"
    reason = exc.strerror or type(exc).__name__
    return f"{program}: cannot run: {reason}"


def _default_env() -> dict[str, str]:
    env = {
        "PATH": "/sbin:/usr/sbin:/bin:/usr/bin:/usr/local/sbin:/usr/local/bin",
        "LC_ALL": "C",
        "LANG": "C",
    }
    # A system bus elsewhere than /run/dbus (a container's, a test's networkd): networkctl
    # and nmcli, which restart-wan and the tunnel's owner (told the new local end) may run,
    # must reach the owner's.
    bus = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    if bus:
        env["DBUS_SYSTEM_BUS_ADDRESS"] = bus
    return env
