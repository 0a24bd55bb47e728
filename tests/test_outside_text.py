"""Outside text (a hook's and a command's stderr, HE's bodies) is cleaned where it enters a
fact: no escape sequence or control character reaches the log, and what is printed (replay,
status, the daemon's log lines) shows any that an old log holds as `\\xNN`, never raw."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from reconciler.eventlog import EventLog
from reconciler.logsetup import configure_logging
from reconciler.model.actions import RestartWan
from reconciler.model.config import NotifyConfig
from reconciler.model.facts import ActionFailed, HookRan
from reconciler.model.notices import Notice
from reconciler.outside_text import clean_line, last_line, printable_output
from reconciler.recorder import Recorder
from reconciler.statedir import events_dir
from reconciler.world.executors import Executor
from reconciler.world.hooks import HookRunner
from reconciler.world.linux import LinuxPlatform
from reconciler.world.tunnelbroker import TunnelbrokerClient
from tests.commands.test_diff import run_cli
from tests.world.test_linux import make_config

# What a hostile program prints: retitle the window (OSC ... BEL and OSC ... ST), clear the
# screen, move the cursor home, a C1 CSI, a bidi override, a bell, then fake text.
HOSTILE = (
    "\x1b]0;pwned\x07\x1b]2;again\x1b\\\x1b[2J\x1b[H\x9b31m\u202eevil\u202c\x07"
    "\x1b[1;31mall is well\x1b[0m"
)
TERMINAL_DRIVERS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))]


def drives_a_terminal(text: str) -> bool:
    return any(ch in text for ch in TERMINAL_DRIVERS)


def printable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


# -- the sanitiser ---------------------------------------------------------------------------

# Any characters, with the pieces of escape sequences (and sequences whole) made frequent.
ANY_TEXT = st.lists(
    st.one_of(
        st.text(max_size=8),
        st.sampled_from(["\x1b", "\x1b[", "\x1b]0;", "\x07", "\x9b", "\x9d", "\x9c", "\n", "["]),
        st.sampled_from(["\x1b[2J", "\x1b]0;t\x07", "\x1bP1$r\x1b\\", "\u202e", "\x1bc", "\r"]),
    ),
    max_size=40,
).map("".join)


@given(ANY_TEXT, st.integers(min_value=3, max_value=500))
def test_clean_line_is_one_bounded_printable_line(text: str, limit: int) -> None:
    cleaned = clean_line(text, limit)
    assert printable(cleaned) and "\x1b" not in cleaned
    assert len(cleaned) <= limit
    assert cleaned == cleaned.strip() and "  " not in cleaned
    assert clean_line(cleaned, limit) == cleaned
    line = last_line(text, limit)
    assert printable(line) and len(line) <= limit


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200))
def test_clean_line_keeps_plain_text(text: str) -> None:
    assert clean_line(text, 1000) == " ".join(text.split())


@given(ANY_TEXT)
def test_printable_output_never_drives_a_terminal_and_hides_nothing(text: str) -> None:
    shown = printable_output(text)
    assert not drives_a_terminal(shown)
    assert shown == text or "\\x" in shown


def test_escape_sequences_go_whole_and_the_text_stays() -> None:
    assert clean_line(HOSTILE) == "evil all is well"
    assert last_line(f"first\n{HOSTILE}\n\x1b[2J\n") == "evil all is well"


# -- where outside text enters facts ---------------------------------------------------------


def test_a_hook_and_a_restart_command_writing_escapes_leave_clean_facts_and_replay(
    tmp_path: Path,
) -> None:
    hostile = tmp_path / "hostile"
    hostile.write_text("#!/bin/sh\nprintf '" + _printf(HOSTILE) + "\\n' >&2\nexit 1\n")
    hostile.chmod(0o755)
    config = make_config(tmp_path, wan_restart=(str(hostile),))
    with EventLog.open(events_dir(config.daemon.state_dir)) as log:
        recorder = Recorder(log)
        executor = Executor(
            LinuxPlatform(config), TunnelbrokerClient(config.tunnelbroker), recorder
        )
        outcome = executor.execute(RestartWan("wan0"))
        hooks = HookRunner(
            NotifyConfig((str(hostile),), timeout=10), lambda f: recorder.record(f, "notify")
        )
        hooks.start()
        hooks.submit(Notice("action-failed", "failed", 1, 1.0))
        deadline = time.monotonic() + 10
        while not any(isinstance(e.fact, HookRan) for e in recorder_envelopes(log)):
            assert time.monotonic() < deadline, "no hook-ran fact"
            time.sleep(0.05)
        hooks.stop(time.monotonic() + 5)
        facts = [e.fact for e in recorder_envelopes(log)]
    failed = next(f for f in facts if isinstance(f, ActionFailed))
    ran = next(f for f in facts if isinstance(f, HookRan))
    assert outcome.status == "temporary"
    assert failed.message.endswith("exited with status 1: evil all is well"), failed.message
    assert ran.detail == "exit status 1: evil all is well"
    assert printable(failed.message) and printable(ran.detail)
    code, out, err = run_cli(["replay", "--state-dir", str(config.daemon.state_dir)], tmp_path)
    assert code == 0 and "evil all is well" in out
    assert not drives_a_terminal(out + err) and "\\x" not in out


def recorder_envelopes(log: EventLog) -> list:  # type: ignore[type-arg]
    from reconciler.model.facts import from_record

    return [from_record(seq, record) for seq, record in log.read(1)]


def _printf(text: str) -> str:
    """`text` as a printf format: every character as an octal escape."""
    return "".join(f"\\{b:03o}" for b in text.encode())


# -- what is printed, from an old log -------------------------------------------------------


def test_replay_and_status_of_an_old_log_with_raw_escapes_show_them_escaped(
    tmp_path: Path,
) -> None:
    """Facts an older version recorded raw (no cleaning then) are shown as `\\x1b...`."""
    state = tmp_path / "state"
    with EventLog.open(events_dir(state)) as log:
        recorder = Recorder(log)
        recorder.record(
            ActionFailed(key="restart-wan:wan0", action="restart-wan", kind="temporary",
                         message=HOSTILE),
            "executor:restart-wan",
        )  # fmt: skip
        recorder.record(HookRan("repaired", 1, "failed", 1, 0.1, HOSTILE, 0), "notify")
    for args in (["replay"], ["status"], ["replay", "--json"], ["status", "--json"]):
        code, out, err = run_cli([*args, "--state-dir", str(state)], tmp_path)
        assert not drives_a_terminal(out + err), (args, out + err)
    code, out, _ = run_cli(["replay", "--state-dir", str(state)], tmp_path)
    assert code == 0 and "\\x1b]0;pwned" in out and "all is well" in out


def test_log_lines_show_control_characters_escaped() -> None:
    stream = io.StringIO()
    handler = configure_logging("stderr", stream=stream)
    try:
        logging.getLogger("reconciler.test").warning("hook said: %s", HOSTILE)
    finally:
        logging.getLogger("reconciler").removeHandler(handler)
        logging.getLogger("apscheduler").removeHandler(handler)
    line = stream.getvalue()
    assert "all is well" in line and "\\x1b[2J" in line
    assert not drives_a_terminal(line.rstrip("\n"))
