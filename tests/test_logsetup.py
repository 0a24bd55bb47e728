"""Tests for reconciler.logsetup: syslog lines as syslogd reads them, stderr lines for the
journal, APScheduler's warnings on the same handler, and no key anywhere."""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.daemon import Daemon
from reconciler.eventlog import EventLog
from reconciler.logsetup import configure_logging
from reconciler.testing.fake_he import FakeTunnelbroker
from reconciler.testing.openbsd_host import OpenBSDHost
from reconciler.world.openbsd import OpenBSDPlatform
from tests.daemon_helpers import TEST_KEY, openbsd_config, restored_loggers, syslog_listener


@pytest.fixture(autouse=True)
def _loggers() -> Iterator[None]:
    with restored_loggers("reconciler", "apscheduler"):
        yield


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket's path is limited to 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="rclog") as name:
        yield Path(name)


def test_syslog_lines_carry_facility_daemon_and_the_tag_with_the_pid(short_dir: Path) -> None:
    """An INFO line reaches the socket as `<30>reconciler[pid]: message` (daemon.info), a
    warning as `<28>` (daemon.warning); no timestamp, syslogd adds its own."""
    with syslog_listener(short_dir) as (path, listener):
        handler = configure_logging("syslog", syslog_socket=path)
        assert isinstance(handler, logging.handlers.SysLogHandler)
        logging.getLogger("reconciler.daemon").info("plan: restart-tunnel")
        logging.getLogger("reconciler.world.executors").warning("failed reload-pf")
        first, second = listener.recv(4096), listener.recv(4096)
    assert first == f"<30>reconciler[{os.getpid()}]: plan: restart-tunnel\0".encode()
    assert second == f"<28>reconciler[{os.getpid()}]: failed reload-pf\0".encode()


def test_apscheduler_warnings_reach_the_configured_handler(short_dir: Path) -> None:
    """APScheduler's warnings go to syslog too (not to Python's last-resort stderr); its
    INFO chatter about every job run does not."""
    with syslog_listener(short_dir) as (path, listener):
        configure_logging("syslog", syslog_socket=path)
        scheduler_log = logging.getLogger("apscheduler.executors.default")
        scheduler_log.info('Job "wan" executed successfully')
        scheduler_log.warning('Run time of job "wan" was missed by 0:00:07')
        line = listener.recv(4096)
    assert (
        line
        == (
            f'<28>reconciler[{os.getpid()}]: Run time of job "wan" was missed by 0:00:07\0'
        ).encode()
    )


def test_stderr_lines_are_level_and_message_without_a_timestamp() -> None:
    """The journal timestamps stderr itself: a line is `LEVEL message` and nothing else, for
    our loggers and APScheduler's."""
    stream = io.StringIO()
    configure_logging("stderr", stream=stream)
    logging.getLogger("reconciler.daemon").info("held restart-wan: backoff")
    logging.getLogger("apscheduler.scheduler").warning("job raised")
    assert stream.getvalue() == "INFO held restart-wan: backoff\nWARNING job raised\n"


def test_configuring_again_replaces_the_handler(short_dir: Path) -> None:
    """A second call (a reload) moves the lines to the new target; the old one gets none."""
    stream = io.StringIO()
    with syslog_listener(short_dir) as (path, listener):
        configure_logging("syslog", syslog_socket=path)
        configure_logging("stderr", stream=stream)
        logging.getLogger("reconciler").info("after the reload")
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.recv(4096)
    assert stream.getvalue() == "INFO after the reload\n"
    for name in ("reconciler", "apscheduler"):
        ours = [h for h in logging.getLogger(name).handlers if h.get_name() == "reconciler"]
        assert len(ours) == 1


def test_syslog_without_a_socket_falls_back_to_stderr_saying_so(short_dir: Path) -> None:
    """No socket at the path: stderr, with one line naming the missing socket."""
    stream = io.StringIO()
    missing = str(short_dir / "nolog")
    configure_logging("syslog", stream=stream, syslog_socket=missing)
    assert stream.getvalue() == (
        f"WARNING no {missing} on this host: logging to stderr instead of syslog\n"
    )


def test_syslog_socket_nobody_listens_on_is_reconnected_later(short_dir: Path) -> None:
    """A stale socket (syslogd restarting) is no error: once syslogd listens again at that
    path, the next line reaches it."""
    path = str(short_dir / "log")
    with syslog_listener(short_dir):
        pass  # closed: the file stays, nobody reads it
    configure_logging("syslog", syslog_socket=path)
    os.unlink(path)
    with syslog_listener(short_dir) as (_, listener):
        logging.getLogger("reconciler").info("syslogd is back")
        assert listener.recv(4096).endswith(b": syslogd is back\0")


def test_the_key_never_reaches_the_log_even_at_debug(tmp_path: Path) -> None:
    """A daemon run at DEBUG that updates HE, is refused (badauth) and retries writes
    plenty of lines, none holding the update key."""
    stream = io.StringIO()
    configure_logging("stderr", level=logging.DEBUG, stream=stream)
    (tmp_path / "root" / "etc").mkdir(parents=True)
    host = OpenBSDHost(tmp_path / "root", wan_address="203.0.113.7")
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        fake.script("badauth")
        config = openbsd_config(tmp_path, update_url=fake.update_url)
        with EventLog.open(tmp_path / "events") as log:
            daemon = Daemon(
                config, log, platform_factory=lambda c: OpenBSDPlatform(c, host, root=host.root)
            )
            thread = threading.Thread(target=lambda: daemon.run(install_signals=False))
            thread.start()
            try:
                deadline = time.monotonic() + 10
                while "failed update-he-endpoint" not in stream.getvalue():
                    assert time.monotonic() < deadline, stream.getvalue()
                    time.sleep(0.05)
            finally:
                daemon.request_stop("test over")
                thread.join(10)
    text = stream.getvalue()
    assert re.search(r"badauth", text, re.IGNORECASE)
    assert "DEBUG" in text and "stopped" in text
    assert TEST_KEY not in text


def _journal_stream_of(path: Path) -> str:
    status = os.stat(path)
    return f"{status.st_dev}:{status.st_ino}"


def test_stderr_that_is_the_journal_stream_carries_priority_prefixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With JOURNAL_STREAM naming stderr's device and inode (systemd's journal stream), each
    line starts with its sd-daemon priority, every line of a traceback too, so that
    `journalctl -p warning` finds the warnings."""
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_of(path))
        configure_logging("stderr", level=logging.DEBUG, stream=stream)
        daemon_log = logging.getLogger("reconciler.daemon")
        daemon_log.warning("cannot watch the kernel: polling only")
        daemon_log.info("plan: restart-tunnel")
        daemon_log.debug("observed wan0")
        daemon_log.error("failed restart-wan")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            daemon_log.exception("callback failed")
        logging.getLogger("apscheduler.scheduler").warning("job raised")
    lines = path.read_text().splitlines()
    assert lines[:4] == [
        "<4>WARNING cannot watch the kernel: polling only",
        "<6>INFO plan: restart-tunnel",
        "<7>DEBUG observed wan0",
        "<3>ERROR failed restart-wan",
    ]
    assert lines[4] == "<3>ERROR callback failed"
    assert lines[5] == "<3>Traceback (most recent call last):"
    assert lines[-2] == "<3>RuntimeError: boom"
    assert all(line.startswith("<3>") for line in lines[4:-1])
    assert lines[-1] == "<4>WARNING job raised"


@pytest.mark.parametrize("journal_stream", [None, "", "other", "1:2"])
def test_stderr_that_is_not_the_journal_stream_has_no_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal_stream: str | None
) -> None:
    """No JOURNAL_STREAM, a malformed one, or one naming another file (a child whose stderr
    was redirected inherits the variable): plain `LEVEL message` lines."""
    path = tmp_path / "stderr"
    if journal_stream is None:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    else:
        monkeypatch.setenv("JOURNAL_STREAM", journal_stream)
    with path.open("w") as stream:
        configure_logging("stderr", stream=stream)
        logging.getLogger("reconciler").warning("cannot watch the kernel")
    assert path.read_text() == "WARNING cannot watch the kernel\n"


def test_a_stream_without_a_file_is_not_the_journal(tmp_path: Path) -> None:
    """A stream with no file descriptor (a test's StringIO) is never the journal's."""
    stream = io.StringIO()
    path = tmp_path / "stderr"
    path.touch()
    configure_logging("stderr", stream=stream, environ={"JOURNAL_STREAM": _journal_stream_of(path)})
    logging.getLogger("reconciler").warning("plain")
    assert stream.getvalue() == "WARNING plain\n"
