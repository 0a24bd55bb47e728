"""Where the daemon's log lines go: syslog (facility daemon, ident "reconciler") or stderr.

On OpenBSD the daemon logs to syslog like every base daemon; under systemd it writes to
stderr and the journal adds the timestamps, so the stderr format carries none. When stderr is
the journal's stream (JOURNAL_STREAM names its device and inode, sd-daemon(3)), every line
starts with its syslog priority, `<4>` for a warning, which journald takes off and keeps as
the entry's priority: `journalctl -p warning -u reconciler` then finds them. Log lines are
one per decision and per outcome; the update key never reaches a logger (nothing reads it
except the tunnelbroker client, which never logs it). Every line goes out through
outside_text.printable_output: a control character that reached a message (from an old
log, or text no one cleaned) is shown as `\\xNN`, never sent to a terminal or the journal raw.

APScheduler's loggers get the same handler: its warnings (a missed run, a job that raised)
would otherwise go to Python's last-resort stderr handler, which rc.d throws away.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from reconciler.outside_text import printable_output

__all__ = ["SYSLOG_SOCKET", "configure_logging", "is_journal_stream"]

SYSLOG_SOCKET = "/dev/log"
_STDERR_FORMAT = "%(levelname)s %(message)s"
_HANDLER_NAME = "reconciler"
# The loggers that get the handler, and the least level each passes on. APScheduler logs
# every job run at INFO: only its warnings matter here.
_LOGGERS = {"reconciler": None, "apscheduler": logging.WARNING}
# sd-daemon(3)'s prefixes: syslog priorities, which journald reads off the start of a line.
_JOURNAL_PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def configure_logging(
    target: str,
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    syslog_socket: str = SYSLOG_SOCKET,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Route the `reconciler` and `apscheduler` loggers to `target` ("syslog" or "stderr");
    returns the handler. Calling it again replaces the handler (a reload changing
    [daemon] log).

    Syslog goes to the unix datagram socket `syslog_socket`, and falls back to stderr (with
    one line saying so) when there is none, so a daemon never dies for want of a logger.
    Stderr lines carry journald's priority prefix when the stream is the journal's
    (`environ`'s JOURNAL_STREAM, os.environ by default).
    """
    handler: logging.Handler
    if target == "syslog" and os.path.exists(syslog_socket):
        # A syslogd not listening right now is no error: like openlog(3), the handler
        # connects again when it next sends.
        handler = _syslog_handler(syslog_socket)
    else:
        out = stream if stream is not None else sys.stderr
        handler = logging.StreamHandler(out)
        env = os.environ if environ is None else environ
        journal = is_journal_stream(out, env.get("JOURNAL_STREAM"))
        handler.setFormatter(
            _JournalFormatter() if journal else _PrintableFormatter(_STDERR_FORMAT)
        )
    handler.set_name(_HANDLER_NAME)
    for name, least in _LOGGERS.items():
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if old.get_name() == _HANDLER_NAME:  # configured before (a reload, a test)
                logger.removeHandler(old)
                old.close()
        logger.addHandler(handler)
        logger.setLevel(level if least is None else max(level, least))
        logger.propagate = False
    if target == "syslog" and not isinstance(handler, logging.handlers.SysLogHandler):
        logging.getLogger("reconciler").warning(
            "no %s on this host: logging to stderr instead of syslog", syslog_socket
        )
    return handler


def is_journal_stream(stream: TextIO, journal_stream: str | None) -> bool:
    """Whether `stream` is the journal's: JOURNAL_STREAM ("DEV:INODE", set by systemd for a
    service whose output goes to the journal) matches the stream's file. A child whose stderr
    was redirected elsewhere inherits the variable, hence the comparison (sd-daemon(3))."""
    if not journal_stream:
        return False
    try:
        device, inode = (int(part) for part in journal_stream.split(":"))
        status = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):  # malformed, or no file behind the stream
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


class _PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return printable_output(super().format(record))


class _JournalFormatter(_PrintableFormatter):
    """`<N>LEVEL message` on every line of a record (a traceback's too): journald reads the
    priority at the start of each line it receives."""

    def __init__(self) -> None:
        super().__init__(_STDERR_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_JOURNAL_PRIORITIES.get(record.levelno, _priority_of(record.levelno))}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def _priority_of(levelno: int) -> int:
    """The priority of a level between the named ones: that of the named level below it."""
    below = [level for level in _JOURNAL_PRIORITIES if level <= levelno]
    return _JOURNAL_PRIORITIES[max(below)] if below else 7


def _syslog_handler(socket_path: str) -> logging.handlers.SysLogHandler:
    """Lines as syslogd expects them from a daemon: `<30>reconciler[pid]: message`."""
    syslog = logging.handlers.SysLogHandler(
        address=socket_path, facility=logging.handlers.SysLogHandler.LOG_DAEMON
    )
    syslog.ident = f"reconciler[{os.getpid()}]: "
    syslog.setFormatter(_PrintableFormatter("%(message)s"))
    return syslog
