"""Tests for SubprocessRunner and check(), against real programs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reconciler.errors import TemporaryError
from reconciler.world.runner import (
    Completed,
    SubprocessRunner,
    check,
    describe_failure,
    kill_session,
)


@pytest.fixture
def runner() -> SubprocessRunner:
    return SubprocessRunner()


def test_output_and_status_are_captured(runner: SubprocessRunner) -> None:
    """stdout, stderr and the exit status of a real program come back in the Completed."""
    done = runner.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=5)
    assert done.argv == ("sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert not done.ok
    assert done.duration >= 0


def test_arguments_are_never_shell_interpreted(runner: SubprocessRunner, tmp_path: Path) -> None:
    """An argument full of shell syntax reaches the program as one literal argument."""
    trap = tmp_path / "pwned"
    done = runner.run(["echo", f"a; touch {trap}"], timeout=5)
    assert done.stdout == f"a; touch {trap}\n"
    assert not trap.exists()


def test_missing_program_is_reported_not_raised(runner: SubprocessRunner) -> None:
    """A program that does not exist gives exit status 127 and a one-line reason."""
    done = runner.run(["/nonexistent/reconciler-test-tool", "x"], timeout=5)
    assert done.returncode == 127
    assert "/nonexistent/reconciler-test-tool: cannot run" in done.stderr


def test_timeout_kills_the_child_and_what_it_started(
    runner: SubprocessRunner, tmp_path: Path
) -> None:
    """An overrunning program is killed with its own children, and reported as timed out."""
    pidfile = tmp_path / "grandchild.pid"
    started = time.monotonic()
    done = runner.run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert done.timed_out
    assert not done.ok
    assert _gone_within(5.0, int(pidfile.read_text())), "the program's child survived the timeout"


def test_a_started_child_leads_its_session_and_kill_session_ends_all_it_started(
    tmp_path: Path,
) -> None:
    """start() (what the UML guest runner uses) gives the child this runner's environment,
    stderr where asked (here into stdout) and a session of its own; kill_session ends the
    child together with what it started."""
    runner = SubprocessRunner(env={"PATH": os.environ["PATH"], "RC_MARK": "from-runner"})
    pidfile = tmp_path / "grandchild.pid"
    child = runner.start(
        ["sh", "-c", f'sleep 30 & echo $! > {pidfile}; echo "$RC_MARK"; echo err >&2; wait'],
        stderr=subprocess.STDOUT,
    )
    assert child.stdout is not None
    # both lines come after the pidfile is written
    assert [child.stdout.readline(), child.stdout.readline()] == ["from-runner\n", "err\n"]
    assert os.getsid(child.pid) == child.pid
    grandchild = int(pidfile.read_text())
    kill_session(child, signal.SIGKILL)
    assert child.wait(timeout=5) == -signal.SIGKILL
    child.stdout.close()
    assert _gone_within(5.0, grandchild), "kill_session left the child's child alive"


def _gone_within(seconds: float, pid: int) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_check_passes_a_success_through(runner: SubprocessRunner) -> None:
    """check() returns a successful Completed unchanged."""
    done = runner.run(["true"], timeout=5)
    assert check(done) is done


def test_check_names_status_and_last_stderr_line(runner: SubprocessRunner) -> None:
    """A failure becomes a TemporaryError with the command, status and stderr's last line."""
    done = runner.run(
        ["sh", "-c", "echo first >&2; echo 'pf rules not loaded' >&2; exit 1"], timeout=5
    )
    with pytest.raises(TemporaryError) as caught:
        check(done)
    message = str(caught.value)
    assert "\n" not in message
    assert "exited with status 1" in message
    assert message.endswith(": pf rules not loaded")
    assert caught.value.temporary


def test_describe_timeout_and_signal() -> None:
    """Timeouts and deaths by signal are described as such."""
    timed = Completed(("sleep", "9"), -9, "", "", 1.25, timed_out=True)
    assert describe_failure(timed) == "`sleep 9` timed out after 1.2s"
    killed = Completed(("route", "-n", "monitor"), -15, "", "", 0.5)
    assert describe_failure(killed) == "`route -n monitor` was killed by signal 15"


def test_stream_yields_lines_until_the_program_exits(runner: SubprocessRunner) -> None:
    """stream() yields the program's lines without newlines and ends when it exits."""
    stream = runner.stream(["sh", "-c", "echo one; echo two"])
    assert list(stream) == ["one", "two"]
    stream.close()


def test_stream_close_stops_a_long_running_program(runner: SubprocessRunner) -> None:
    """close() ends a program that would run forever, and iteration stops."""
    stream = runner.stream(["sh", "-c", "while :; do echo tick; sleep 0.05; done"])
    lines = iter(stream)
    assert next(lines) == "tick"
    stream.close()
    rest = list(lines)
    assert len(rest) < 5
    stream.close()  # twice is harmless


def test_stream_of_a_missing_program_raises_temporary_error(runner: SubprocessRunner) -> None:
    """A stream that cannot start raises TemporaryError with one line, not OSError."""
    with pytest.raises(TemporaryError, match="cannot run"):
        runner.stream(["/nonexistent/route", "-n", "monitor"])


def test_a_run_ends_when_the_program_exits_not_when_its_pipes_close(
    runner: SubprocessRunner, tmp_path: Path
) -> None:
    """A restart command that leaves a daemon behind (setsid, out of its group) holding its
    stdout and stderr: the run is over when the command exits, with what it printed."""
    pidfile = tmp_path / "daemon.pid"
    started = time.monotonic()
    done = runner.run(
        ["sh", "-c", f"setsid sleep 30 & echo $! > {pidfile}; echo started; exit 0"], timeout=2
    )
    try:
        assert time.monotonic() - started < 1.5
        assert (done.ok, done.timed_out, done.stdout) == (True, False, "started\n")
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_a_timed_out_run_whose_escaped_child_holds_the_pipes_still_ends(
    runner: SubprocessRunner, tmp_path: Path
) -> None:
    """Killed at its timeout while a child outside its group keeps the pipes open: the run
    ends within the timeout plus a moment, reported as timed out."""
    pidfile = tmp_path / "daemon.pid"
    started = time.monotonic()
    done = runner.run(
        ["sh", "-c", f"setsid sleep 30 & echo $! > {pidfile}; echo half >&2; sleep 30"],
        timeout=0.5,
    )
    try:
        assert time.monotonic() - started < 3
        assert done.timed_out and done.stderr == "half\n"
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_output_reads_as_text_pipes_read_it(runner: SubprocessRunner) -> None:
    """Undecodable bytes are replaced and CR LF or CR end lines, as a text pipe reads them."""
    done = runner.run(["printf", "a\\r\\nb\\rc\\377\\n"], timeout=5)
    assert done.stdout == "a\nb\nc\ufffd\n"
