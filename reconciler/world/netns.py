"""rtnetlink in a named network namespace, the same way with every pyroute2 we accept.

pyroute2's own ways into a namespace changed across releases: 0.7.2 (Debian 12's) has no
`pyroute2.netns.create_socket` and its IPRoute takes no `netns`; 0.9 builds both into
IPRoute. `NetNS(name)` is in all of them (a forked proxy process in 0.7, a wrapper of
`IPRoute(netns=...)` in 0.9), so the platform's short-lived sockets use it. The kernel watch
needs a plain socket it can select() on: a thread of its own enters the namespace (setns(2)
moves only the calling thread), creates the socket, which belongs to that namespace for
good, and ends. Without a namespace (the daemon on a router) it is one socket() call.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from typing import Any

from pyroute2 import IPRoute, NetNS

__all__ = ["NETNS_RUN_DIR", "rtnetlink", "rtnetlink_socket"]

NETNS_RUN_DIR = "/run/netns"  # where `ip netns add` binds a namespace by name
_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0
_ENTER_TIMEOUT = 5.0  # seconds: setns and socket() are system calls, never a wait


def rtnetlink(netns: str | None) -> Any:
    """An IPRoute for this namespace (the caller closes it): FileNotFoundError when the
    namespace does not exist, OSError when the socket cannot be had."""
    if netns is None:
        return IPRoute()
    _check_name(netns)
    if not os.path.exists(os.path.join(NETNS_RUN_DIR, netns)):
        raise FileNotFoundError(f"no network namespace {netns}")
    return NetNS(netns, flags=0)


def rtnetlink_socket(netns: str | None) -> socket.socket:
    """A raw NETLINK_ROUTE socket in `netns` (this thread's namespace when None)."""
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
    _check_name(netns)
    path = os.path.join(NETNS_RUN_DIR, netns)
    made: list[socket.socket] = []
    failed: list[OSError] = []

    def enter_and_open() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE))
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=enter_and_open, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join(_ENTER_TIMEOUT)
    if made:
        return made[0]
    if failed:
        raise failed[0]
    raise TimeoutError(f"entering network namespace {netns} took over {_ENTER_TIMEOUT:g} s")


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12
    if setns is not None:
        setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _check_name(netns: str) -> None:
    if not netns or "/" in netns or netns in (".", ".."):
        raise ValueError(f"not a network namespace name: {netns!r}")
