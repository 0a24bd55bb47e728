"""Tests for RecordingRunner and ScriptedStream."""

from __future__ import annotations

import pytest

from reconciler.errors import TemporaryError
from reconciler.testing import RecordingRunner, ScriptedStream
from reconciler.world.runner import Completed


def test_records_argv_and_timeout() -> None:
    """Every run is recorded as an argv tuple with its timeout."""
    runner = RecordingRunner()
    runner.script(["true"])
    runner.run(["true"], timeout=3)
    runner.run(("true",), timeout=7)
    assert runner.calls == [("true",), ("true",)]
    assert runner.timeouts == [3, 7]


def test_scripted_answers_are_used_in_order_and_the_last_repeats() -> None:
    """Answers for one argv come in the order scripted; the last one keeps answering."""
    runner = RecordingRunner()
    runner.script(["pfctl", "-f", "/etc/pf.conf"], returncode=1, stderr="syntax error")
    runner.script(["pfctl", "-f", "/etc/pf.conf"])
    codes = [runner.run(["pfctl", "-f", "/etc/pf.conf"], timeout=1).returncode for _ in "abc"]
    assert codes == [1, 0, 0]


def test_an_unexpected_command_fails_the_test() -> None:
    """A command with no script and no responder raises AssertionError naming it."""
    runner = RecordingRunner()
    with pytest.raises(AssertionError, match="unexpected command: rm -rf /"):
        runner.run(["rm", "-rf", "/"], timeout=1)


def test_the_responder_answers_unscripted_commands() -> None:
    """Commands without a script go to the responder."""
    runner = RecordingRunner(lambda argv, timeout: Completed(argv, 0, "hi\n", "", 0.0))
    assert runner.run(["echo", "hi"], timeout=1).stdout == "hi\n"


def test_streams_are_fed_and_ended_by_the_test() -> None:
    """A scripted stream yields what was fed and stops at end()."""
    runner = RecordingRunner()
    stream = runner.stream(["route", "-n", "monitor"])
    assert isinstance(stream, ScriptedStream)
    stream.feed("a\nb\n")
    stream.end()
    stream.feed("after the end\n")
    assert list(stream) == ["a", "b"]
    assert runner.calls == [("route", "-n", "monitor")]
    assert runner.live_streams() == []


def test_a_failing_stream_raises_temporary_error() -> None:
    """fail_stream makes starting the program fail as a missing program would."""
    runner = RecordingRunner()
    runner.fail_stream(["route", "-n", "monitor"], "cannot run: No such file or directory")
    with pytest.raises(TemporaryError, match="cannot run"):
        runner.stream(["route", "-n", "monitor"])
