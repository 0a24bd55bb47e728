"""A real DHCP story for the tests: dnsmasq as the ISP's DHCP server in one namespace and
ISC dhclient (Debian's, with its dhclient-script) as the router's client in another.

    with DhcpServer("rc-he-1", "inet0", "203.0.113.1", workdir) as isp:
        isp.start(("203.0.113.50", "203.0.113.59"))
        with Dhclient("rc-router-1", "wan0", workdir) as client:
            client.start()                      # returns once it holds a lease
            isp.renumber(("203.0.113.70", "203.0.113.79"))   # the next renewal moves it

Leases are short to keep a story to seconds: dnsmasq's minimum lease is two minutes, but
it sends the renewal times T1/T2 it is given (3 s and 5 s here), and dhclient renews then;
an ISP that renumbers answers the renewal with a NAK (it is authoritative and no longer
knows the address) and the client starts over, as real clients do. Neither DNS servers nor
anything else the host would act on is handed out: dhclient-script then leaves
/etc/resolv.conf alone. Every file lives in `workdir`; every wait is bounded; close() stops
what was started (dhclient by its pid file, as `dhclient -r` would find it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from reconciler.testing.processes import stop_group, wait_until

__all__ = ["DHCLIENT", "DNSMASQ", "Dhclient", "DhcpError", "DhcpServer", "dhcp_unavailable_reason"]

DNSMASQ = "/usr/sbin/dnsmasq"
DHCLIENT = "/usr/sbin/dhclient"
# What the client asks for: an address, its mask and the default route, nothing else.
_DHCLIENT_CONF = "request subnet-mask, broadcast-address, routers;\ntimeout 20;\nretry 1;\n"


class DhcpError(RuntimeError):
    """The DHCP server or client could not be started, stopped or did not answer in time."""


def dhcp_unavailable_reason() -> str | None:
    """Why the DHCP story cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "dnsmasq and dhclient in namespaces need root"
    for program, package in ((DNSMASQ, "dnsmasq-base"), (DHCLIENT, "isc-dhcp-client")):
        if not os.access(program, os.X_OK):
            return f"{program} is not installed (Debian: {package})"
    return None


class DhcpServer:
    """dnsmasq serving one range on `interface` in `netns`, `router` as the default route."""

    def __init__(
        self,
        netns: str,
        interface: str,
        router: str,
        workdir: Path,
        *,
        netmask: str = "255.255.255.0",
        renew_after: int = 3,
        rebind_after: int = 5,
    ) -> None:
        self.netns = netns
        self.interface = interface
        self.router = router
        self.netmask = netmask
        self.renew_after = renew_after
        self.rebind_after = rebind_after
        self.workdir = workdir
        self.lease_file = workdir / f"dnsmasq-{netns}.leases"
        self.log_path = workdir / f"dnsmasq-{netns}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DhcpServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, pool: tuple[str, str]) -> None:
        """Serve addresses from `pool` (first, last), forgetting every earlier lease."""
        self.stop()
        self.lease_file.unlink(missing_ok=True)
        first, last = pool
        argv = [
            "ip", "netns", "exec", self.netns, DNSMASQ,
            "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--no-ping",
            f"--interface={self.interface}", "--bind-interfaces", "--dhcp-authoritative",
            f"--dhcp-range={first},{last},{self.netmask},2m",
            f"--dhcp-option=option:router,{self.router}",
            "--dhcp-option=option:dns-server",  # none: the host's resolv.conf stays as it is
            f"--dhcp-option=option:T1,{self.renew_after}",
            f"--dhcp-option=option:T2,{self.rebind_after}",
            f"--dhcp-leasefile={self.lease_file}", "--pid-file=",
            "--log-dhcp", f"--log-facility={self.log_path}",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        process = self._process

        def listening() -> bool:
            if process.poll() is not None:
                raise DhcpError(f"dnsmasq exited: {_tail(self.log_path)}")
            return "DHCP, IP range" in _tail(self.log_path, 100_000)

        wait_until(listening, 10.0, "dnsmasq to listen", DhcpError)

    def renumber(self, pool: tuple[str, str]) -> None:
        """The ISP renumbers: the server starts again with another pool and no leases, so
        the client's next renewal is refused and it takes an address from `pool`."""
        self.start(pool)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_group(process)


class Dhclient:
    """ISC dhclient on `interface` in `netns`, with its pid, lease and config files in
    `workdir` (what `dhclient -r` with the same files finds)."""

    def __init__(self, netns: str, interface: str, workdir: Path) -> None:
        self.netns = netns
        self.interface = interface
        self.pid_file = workdir / f"dhclient-{netns}.pid"
        self.lease_file = workdir / f"dhclient-{netns}.leases"
        self.conf_file = workdir / f"dhclient-{netns}.conf"
        self.conf_file.write_text(_DHCLIENT_CONF)

    def __enter__(self) -> Dhclient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def argv(self) -> list[str]:
        """How the client is started (daemonising once it holds a lease, as at boot)."""
        files = ["-cf", str(self.conf_file), "-pf", str(self.pid_file)]
        return [DHCLIENT, "-4", *files, "-lf", str(self.lease_file), self.interface]

    def start(self, timeout: float = 30.0) -> None:
        """Start the client; return once it holds a lease and has gone to the background."""
        argv = ["ip", "netns", "exec", self.netns, *self.argv]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DhcpError(f"dhclient got no lease in {timeout:g} s") from exc
        if done.returncode != 0:
            raise DhcpError(f"dhclient failed: {done.stderr.strip()[-500:]}")
        wait_until(lambda: self.pid() is not None, 5.0, "dhclient's pid file", DhcpError)

    def pid(self) -> int | None:
        """The running client's pid (from its pid file), None when none runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def stop(self) -> None:
        """End whichever client runs with these files now (the owner may have restarted it)."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(DhcpError):
            wait_until(lambda: self.pid() is None, 5.0, "dhclient to stop", DhcpError)
        if self.pid() == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_bytes()[-limit:].decode(errors="replace")
    except OSError:
        return ""
