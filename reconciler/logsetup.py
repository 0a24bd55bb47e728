"""Where the daemon's log lines go: syslog (facility daemon, ident "reconciler") or stderr.

On OpenBSD the daemon logs to syslog like every base daemon; under systemd it writes to
stderr and the journal adds the timestamps, so the stderr format carries none. Log lines are
one per decision and per outcome; the update key never reaches a logger (nothing reads it
except the tunnelbroker client, which never logs it).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import TextIO

__all__ = ["configure_logging"]

_STDERR_FORMAT = "%(levelname)s %(message)s"
_SYSLOG_SOCKET = "/dev/log"
_HANDLER_NAME = "reconciler"


def configure_logging(
    target: str, *, level: int = logging.INFO, stream: TextIO | None = None
) -> logging.Handler:
    """Route the `reconciler` loggers to `target` ("syslog" or "stderr"); returns the handler.

    Syslog falls back to stderr (with one line saying so) when the host has no /dev/log, so a
    daemon never dies for want of a logger.
    """
    handler: logging.Handler
    if target == "syslog" and os.path.exists(_SYSLOG_SOCKET):
        syslog = logging.handlers.SysLogHandler(
            address=_SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON
        )
        syslog.ident = f"reconciler[{os.getpid()}]: "
        syslog.setFormatter(logging.Formatter("%(message)s"))
        handler = syslog
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(logging.Formatter(_STDERR_FORMAT))
    root = logging.getLogger("reconciler")
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:  # configured before (a test, a second main())
            root.removeHandler(old)
            old.close()
    handler.set_name(_HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    if target == "syslog" and not isinstance(handler, logging.handlers.SysLogHandler):
        root.warning("no %s on this host: logging to stderr instead of syslog", _SYSLOG_SOCKET)
    # APScheduler logs every job run at INFO: only its warnings matter here.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return handler
