"""PPPoE for the tests: Debian's pppoe-server as the ISP's access concentrator in one
namespace and pppd with its pppoe plugin as the router's client in another (kernel-mode
PPPoE: needs the pppoe and ppp_generic modules, which the UML guest has and a container's
kernel usually lacks).

    with PppoeServer("rc-he-1", "inet0", "203.0.113.1", workdir) as isp:
        isp.start("203.0.113.60")
        with PppClient("rc-router-1", "wan0", "ppp0", workdir) as client:
            client.start()               # returns once ppp0 has its address
            isp.redial("203.0.113.70")   # the session ends; pppd redials, gets .70

pppd needs /dev/ppp: the UML guest's kernel mounts a devtmpfs of its own on /dev, which has
it once ppp_generic is loaded (the guest loads it at boot). Nothing of the host's /etc/ppp
acts: ip-up and ip-down are /bin/true on both sides, no DNS is asked for, and
neither side authenticates. Every wait is bounded; close() ends what was started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.testing.processes import stop_group, wait_until

__all__ = [
    "PPPD",
    "PPPOE_SERVER",
    "PppClient",
    "PppoeError",
    "PppoeServer",
    "pppoe_unavailable_reason",
]

PPPD = "/usr/sbin/pppd"
PPPOE_SERVER = "/usr/sbin/pppoe-server"
# What both ends share: no compression, quick failure detection (an echo a second, three
# missed and the link is down), nothing run on ip-up/ip-down, no authentication.
_COMMON = (
    "noauth", "noccp", "novj", "nobsdcomp", "nodeflate", "mtu", "1492", "mru", "1492",
    "lcp-echo-interval", "1", "lcp-echo-failure", "3",
    "ip-up-script", "/bin/true", "ip-down-script", "/bin/true",
)  # fmt: skip


class PppoeError(RuntimeError):
    """The PPPoE server or client could not be started or did not connect in time."""


def pppoe_unavailable_reason() -> str | None:
    """Why PPPoE cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "PPPoE in namespaces needs root"
    for program, package in ((PPPD, "ppp"), (PPPOE_SERVER, "pppoe")):
        if not os.access(program, os.X_OK):
            return f"{program} is not installed (Debian: {package})"
    if not Path("/sys/module/pppoe").exists():
        return "this kernel has no pppoe module loaded (the UML guest has)"
    if not Path("/dev/ppp").exists():
        return "no /dev/ppp (the UML guest's devtmpfs has it once ppp_generic is loaded)"
    return None


def _in_namespace(netns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class PppoeServer:
    """pppoe-server on `interface` in `netns`: `local` its end, one session at a time, the
    client's address from the pool start given to start()."""

    def __init__(self, netns: str, interface: str, local: str, workdir: Path) -> None:
        self.netns = netns
        self.interface = interface
        self.local = local
        self.options = workdir / f"pppoe-server-{netns}.options"
        self.log_path = workdir / f"pppoe-server-{netns}.log"
        self.options.write_text("\n".join(_pairs(_COMMON)) + "\nnodefaultroute\n")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PppoeServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, remote: str) -> None:
        """Serve sessions, giving the client `remote` (kernel-mode PPPoE)."""
        self.stop()
        argv = [
            PPPOE_SERVER, "-F", "-k", "-I", self.interface, "-L", self.local, "-R", remote,
            "-N", "4", "-O", str(self.options), "-q", PPPD,
        ]  # fmt: skip
        self._process = _start(_in_namespace(self.netns, argv), self.log_path)
        time.sleep(0.2)
        if self._process.poll() is not None:
            raise PppoeError(f"pppoe-server exited: {_tail(self.log_path)}")

    def redial(self, remote: str) -> None:
        """The ISP ends the session (its pppd and the server stop) and serves `remote` from
        now on: the client's pppd (persist) redials and gets it."""
        self.start(remote)

    def stop(self) -> None:
        """Stop the server and end its sessions: their pppd detach from it, so every pppd
        in the namespace is told to stop (SIGTERM: it ends the link with an LCP terminate)."""
        process, self._process = self._process, None
        stop_group(process)
        sessions = _pppd_in(self.netns)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(PppoeError):
            wait_until(
                lambda: not _pppd_in(self.netns), 5.0, "the ISP's sessions to end", PppoeError
            )
        for pid in _pppd_in(self.netns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _pppd_in(netns: str) -> list[int]:
    """The pppd processes in `netns`."""
    done = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    found = []
    for word in done.stdout.split():
        try:
            if Path("/proc", word, "comm").read_text().strip() == "pppd":
                found.append(int(word))
        except (OSError, ValueError):
            continue
    return found


class PppClient:
    """pppd on `nic` in `netns` as `ifname`, redialling by itself (persist, holdoff 1 s),
    with the default route through the link."""

    def __init__(self, netns: str, nic: str, ifname: str, workdir: Path) -> None:
        self.netns = netns
        self.nic = nic
        self.ifname = ifname
        self.log_path = workdir / f"pppd-{netns}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PppClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def argv(self) -> list[str]:
        return [
            PPPD, "nodetach", "plugin", "pppoe.so", f"nic-{self.nic}", "ifname", self.ifname,
            *_COMMON, "noipdefault", "defaultroute", "persist", "holdoff", "1", "maxfail", "0",
        ]  # fmt: skip

    def start(self, address: Callable[[], str | None], timeout: float = 30.0) -> str:
        """Start pppd; return the address `address()` reports once the link has one."""
        self._process = _start(_in_namespace(self.netns, self.argv), self.log_path)
        got: list[str] = []

        def connected() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise PppoeError(f"pppd exited: {_tail(self.log_path)}")
            value = address()
            if value:
                got.append(value)
            return bool(value)

        try:
            wait_until(connected, timeout, f"{self.ifname} to come up", PppoeError)
        except PppoeError as exc:
            raise PppoeError(f"{exc}: {_tail(self.log_path)}") from None
        return got[-1]

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_group(process)


def _pairs(words: Sequence[str]) -> list[str]:
    """pppd options, one per line (an option and its value share one)."""
    lines: list[str] = []
    takes_value = {"mtu", "mru", "lcp-echo-interval", "lcp-echo-failure", "ip-up-script",
                   "ip-down-script"}  # fmt: skip
    pending = ""
    for word in words:
        if pending:
            lines.append(f"{pending} {word}")
            pending = ""
        elif word in takes_value:
            pending = word
        else:
            lines.append(word)
    return lines


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        return path.read_bytes()[-limit:].decode(errors="replace").strip()
    except OSError:
        return ""
