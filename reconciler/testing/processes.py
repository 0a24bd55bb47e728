"""The real daemons the tests run beside us (dnsmasq, dhclient, networkd, pppd): waiting for
them and stopping them, each wait bounded."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable

__all__ = ["stop_group", "wait_until"]


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    error: type[Exception] = RuntimeError,
) -> None:
    """Poll `predicate` every 50 ms; raise `error` naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def stop_group(process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM the process's group (it was started in a session of its own), SIGKILL after
    `timeout`; always reaped."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=timeout)
