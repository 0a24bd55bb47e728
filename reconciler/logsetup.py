"""Where the daemon's log lines go: syslog (facility daemon, ident "reconciler") or stderr.

On OpenBSD the daemon logs to syslog like every base daemon; under systemd it writes to
stderr and the journal adds the timestamps, so the stderr format carries none. Log lines are
one per decision and per outcome; the update key never reaches a logger (nothing reads it
except the tunnelbroker client, which never logs it).

APScheduler's loggers get the same handler: its warnings (a missed run, a job that raised)
would otherwise go to Python's last-resort stderr handler, which rc.d throws away.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import TextIO

__all__ = ["SYSLOG_SOCKET", "configure_logging"]

SYSLOG_SOCKET = "/dev/log"
_STDERR_FORMAT = "%(levelname)s %(message)s"
_HANDLER_NAME = "reconciler"
# The loggers that get the handler, and the least level each passes on. APScheduler logs
# every job run at INFO: only its warnings matter here.
_LOGGERS = {"reconciler": None, "apscheduler": logging.WARNING}


def configure_logging(
    target: str,
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    syslog_socket: str = SYSLOG_SOCKET,
) -> logging.Handler:
    """Route the `reconciler` and `apscheduler` loggers to `target` ("syslog" or "stderr");
    returns the handler. Calling it again replaces the handler (a reload changing
    [daemon] log).

    Syslog goes to the unix datagram socket `syslog_socket`, and falls back to stderr (with
    one line saying so) when there is none, so a daemon never dies for want of a logger.
    """
    handler: logging.Handler
    if target == "syslog" and os.path.exists(syslog_socket):
        # A syslogd not listening right now is no error: like openlog(3), the handler
        # connects again when it next sends.
        handler = _syslog_handler(syslog_socket)
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(logging.Formatter(_STDERR_FORMAT))
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


def _syslog_handler(socket_path: str) -> logging.handlers.SysLogHandler:
    """Lines as syslogd expects them from a daemon: `<30>reconciler[pid]: message`."""
    syslog = logging.handlers.SysLogHandler(
        address=socket_path, facility=logging.handlers.SysLogHandler.LOG_DAEMON
    )
    syslog.ident = f"reconciler[{os.getpid()}]: "
    syslog.setFormatter(logging.Formatter("%(message)s"))
    return syslog
