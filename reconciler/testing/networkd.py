"""systemd-networkd run as a plain process inside a test's network namespace.

    with Networkd("rc-router-123-1") as networkd:
        networkd.write("50-wan.network", "[Match]\\nName=wan0\\n[Network]\\nDHCP=ipv4\\n")
        networkd.start()
        networkd.wait_setup("wan0", "configured", timeout=5)
        networkd.networkctl("reconfigure", "wan0")

No systemd as PID 1 and nothing of the host's networkd is touched. A holder process enters
the namespace and a private mount namespace of its own, where:

- `/run` is `workdir/run` (so networkd's state files and the bus socket are private and
  readable from the host at `run_dir`);
- `/etc/systemd/network` is `workdir/network` (`config_dir`: write .network/.netdev files
  and drop-ins there from the host; the host's own config is hidden);
- `/sys` is a fresh read-only sysfs of the namespace: networkd then knows no udev will
  announce the links (as in a container) and configures them at once instead of waiting;
- a private D-Bus system bus (dbus-daemon with a permissive config) listens at the usual
  `/run/dbus/system_bus_socket`, so `networkctl reload/reconfigure` work. From outside the
  mount namespace the same bus is `bus_address` (set DBUS_SYSTEM_BUS_ADDRESS to it, as
  `env()` does, to run networkctl the way a daemon in the namespace would).

The work dir lives on tmpfs (/dev/shm) when there is one. networkd 252 runs as root here
and drops to the `systemd-network` user itself (the systemd package creates it). Every
wait is bounded; `close()` (also on a failed start) stops networkd, the bus and the holder
and removes the work dir.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from reconciler.testing.processes import stop_group, wait_until

__all__ = ["NETWORKD", "Networkd", "NetworkdError", "networkd_unavailable_reason"]

NETWORKD = "/lib/systemd/systemd-networkd"
_TOOLS = ("ip", "unshare", "nsenter", "dbus-daemon", "networkctl", "busctl", "mount")
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


class NetworkdError(RuntimeError):
    """networkd or its bus could not be started, stopped or asked."""


def networkd_unavailable_reason() -> str | None:
    """Why networkd cannot run in a namespace here, or None when it can."""
    if os.geteuid() != 0:
        return "networkd in a namespace needs root"
    if not os.access(NETWORKD, os.X_OK):
        return f"{NETWORKD} is not installed (Debian: systemd)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"networkd in a namespace needs {', '.join(missing)}"
    try:
        pwd.getpwnam("systemd-network")
    except KeyError:
        return "no systemd-network user (networkd drops privileges to it)"
    return None


class Networkd:
    """networkd, its bus and its private /run and config dir for one namespace."""

    def __init__(
        self,
        netns: str,
        *,
        log_level: str = "debug",
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        reason = networkd_unavailable_reason()
        if reason:
            raise NetworkdError(reason)
        self.netns = netns
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"networkd-{netns}-", dir=base))
        self.workdir.chmod(0o755)
        self.run_dir = self.workdir / "run"
        self.config_dir = self.workdir / "network"
        self.log_path = self.workdir / "networkd.log"
        self.bus_log_path = self.workdir / "dbus.log"
        self.bus_address = f"unix:path={self.run_dir}/dbus/system_bus_socket"
        for directory in (
            self.run_dir,
            self.run_dir / "dbus",
            self.run_dir / "systemd",
            self.config_dir,
        ):
            directory.mkdir(mode=0o755)
            directory.chmod(0o755)
        (self.workdir / "bus.conf").write_text(_BUS_CONFIG)
        self._holder: subprocess.Popen[bytes] | None = None
        self._bus: subprocess.Popen[bytes] | None = None
        self._networkd: subprocess.Popen[bytes] | None = None

    # -- context ------------------------------------------------------------------------

    def __enter__(self) -> Networkd:
        try:
            self._start_holder()
            self._start_bus()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what tests call ------------------------------------------------------------------

    def write(self, name: str, text: str) -> Path:
        """Write `name` (a path relative to the config dir, e.g. "he.netdev.d/x.conf")."""
        path = self.config_dir / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        path.write_text(text)
        path.chmod(0o644)
        return path

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment whose system bus is this networkd's (for a daemon under test)."""
        env = dict(os.environ if base is None else base)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus_address
        return env

    def enter_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run in networkd's network and mount namespaces."""
        if self._holder is None:
            raise NetworkdError("the namespace holder is not running")
        return ["nsenter", "-t", str(self._holder.pid), "-m", "-n", "--", *argv]

    @property
    def running(self) -> bool:
        return self._networkd is not None and self._networkd.poll() is None

    def start(self) -> None:
        """Start networkd and wait until it owns its bus name and wrote its state file."""
        if self.running:
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "SYSTEMD_LOG_LEVEL": self.log_level,
            "SYSTEMD_LOG_TARGET": "console",
        }
        with open(self.log_path, "ab") as log:
            self._networkd = subprocess.Popen(
                self.enter_argv([NETWORKD]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        state = self.run_dir / "systemd" / "netif" / "state"

        def ready() -> bool:
            if self._networkd is not None and self._networkd.poll() is not None:
                raise NetworkdError(f"systemd-networkd exited: {self.log_tail()}")
            return state.exists() and self._bus_has("org.freedesktop.network1")

        try:
            wait_until(ready, self.start_timeout, "systemd-networkd to start", NetworkdError)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM networkd (SIGKILL after stop_timeout); its links stay, as on a real stop."""
        process, self._networkd = self._networkd, None
        if process is not None:
            stop_group(process, self.stop_timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self, timeout: float = 10.0) -> None:
        """`networkctl reload`: networkd reads its .network/.netdev files again."""
        self.networkctl("reload", timeout=timeout)

    def reconfigure(self, interface: str, timeout: float = 10.0) -> None:
        self.networkctl("reconfigure", interface, timeout=timeout)

    def networkctl(
        self, *args: str, timeout: float = 10.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """networkctl ARGS inside the namespaces (NetworkdError on failure when `check`)."""
        argv = self.enter_argv(["networkctl", "--no-pager", *args])
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, env=self.env()
            )
        except subprocess.TimeoutExpired as exc:
            raise NetworkdError(
                f"networkctl {shlex.join(args)}: no answer in {timeout:g} s"
            ) from exc
        if check and done.returncode != 0:
            raise NetworkdError(
                f"networkctl {shlex.join(args)}: {done.stderr.strip() or done.returncode}"
            )
        return done

    def setup_state(self, interface: str) -> str | None:
        """networkd's setup state of `interface` ("configured", "unmanaged", ...), None
        when networkd does not list it."""
        done = self.networkctl("list", "--no-legend", check=False)
        for line in done.stdout.splitlines():
            words = line.split()
            if len(words) >= 5 and words[1] == interface:
                return words[4]
        return None

    def wait_setup(self, interface: str, state: str = "configured", timeout: float = 10.0) -> None:
        """Wait until networkd reports `interface` in setup `state`."""

        def reached() -> bool:
            if not self.running:
                raise NetworkdError(f"systemd-networkd is not running: {self.log_tail()}")
            return self.setup_state(interface) == state

        wait_until(reached, timeout, f"networkd to report {interface} {state}", NetworkdError)

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode(errors="replace").strip()
        except OSError:
            return ""

    def close(self) -> None:
        """Stop networkd, the bus and the holder; remove the work dir. Safe to call twice."""
        try:
            self.stop()
        finally:
            try:
                for attribute in ("_bus", "_holder"):
                    process = getattr(self, attribute)
                    setattr(self, attribute, None)
                    if process is not None:
                        stop_group(process, self.stop_timeout)
            finally:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the private namespace and bus ----------------------------------------------------

    def _start_holder(self) -> None:
        ready = self.workdir / "holder-ready"
        script = "\n".join(
            [
                "set -e",
                f"mount --bind {shlex.quote(str(self.run_dir))} /run",
                "mkdir -p /etc/systemd/network",
                f"mount --bind {shlex.quote(str(self.config_dir))} /etc/systemd/network",
                # a read-only sysfs says "no udev here": links are configured without it
                "mount -o remount,bind,ro /sys",
                f"echo $$ > {shlex.quote(str(ready))}",
                "exec sleep 2147483647",
            ]
        )
        argv = ["ip", "netns", "exec", self.netns]
        argv += ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        holder = self._holder = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

        def holding() -> bool:
            if holder.poll() is not None:
                error = holder.stderr.read() if holder.stderr else b""
                raise NetworkdError(f"cannot enter {self.netns}: {error.decode().strip()}")
            return ready.exists() and ready.read_text().strip() == str(holder.pid)

        wait_until(
            holding, self.start_timeout, f"a private mount namespace in {self.netns}", NetworkdError
        )

    def _start_bus(self) -> None:
        argv = ["dbus-daemon", "--nofork", "--nopidfile"]
        argv.append(f"--config-file={self.workdir / 'bus.conf'}")
        with open(self.bus_log_path, "ab") as log:
            self._bus = subprocess.Popen(
                self.enter_argv(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        socket_path = self.run_dir / "dbus" / "system_bus_socket"

        def listening() -> bool:
            if self._bus is not None and self._bus.poll() is not None:
                raise NetworkdError(f"dbus-daemon exited: {self.bus_log_path.read_text()}")
            return socket_path.exists() and self._bus_has("org.freedesktop.DBus")

        wait_until(listening, self.start_timeout, "the private D-Bus to listen", NetworkdError)

    def _bus_has(self, name: str) -> bool:
        argv = ["busctl", "--system", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus"]
        argv += ["org.freedesktop.DBus", "NameHasOwner", "s", name]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=5, env=self.env())
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0 and done.stdout.strip() == "b true"
