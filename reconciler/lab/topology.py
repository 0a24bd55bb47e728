"""The lab's topology: two network namespaces, a veth "internet", a tunnel, a fake HE.

    rc-router-<id>                                   rc-he-<id>
    wan0 203.0.113.10/24  ──── veth "internet" ────  inet0 203.0.113.1/24
    he-ipv6 (vxlan|sit)   ════ the 6in4 tunnel ════  he6 (far end), 2001:db8:1f06:abc::1/64
      2001:db8:1f06:abc::2/64                        fake HE update server on 203.0.113.1

The daemon runs in the router namespace (`ip netns exec`), the fake HE server in the he
namespace; when the fake accepts an update it moves its end of the tunnel to the new
address (`--on-update-exec`), as Hurricane Electric does. Every name carries a per-run id,
and `close()` (also on an exception or Ctrl-C) stops the processes (SIGTERM, then SIGKILL),
kills whatever else still lives in the namespaces, and deletes both namespaces, which
deletes every link in them; each step runs whatever became of the one before. Only
addresses inside the namespaces are used.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from reconciler.atomicfile import write_atomically
from reconciler.testing import fake_he

__all__ = [
    "MODE_ENV",
    "Lab",
    "LabError",
    "kernel_has_sit",
    "lab_unavailable_reason",
    "render_toml",
    "wait_until",
]

T = TypeVar("T")

HE_ADDRESS = "203.0.113.1"
FIRST_WAN_ADDRESS = "203.0.113.10"
WAN_PREFIXLEN = 24
SERVER_IPV6 = "2001:db8:1f06:abc::1"
CLIENT_IPV6 = "2001:db8:1f06:abc::2"
TUNNEL_PREFIXLEN = 64
HE_PORT = 8053
VXLAN_ID = 41
VXLAN_PORT = 4789
# The tunnel's MTU over the veth's 1500: sit adds a 20-byte IPv4 header (HE's 1480);
# vxlan adds 50, so the stand-in stays a little lower.
TUNNEL_MTU = {"sit": 1480, "vxlan": 1400}
TUNNEL_ID = "731245"
# For `doctor`: where the lab's HE pings from (never the real 66.220.2.74), and an IPv6 probe
# target beyond HE's end of the tunnel (so that it can go down while the far end answers).
HE_PING_SOURCE = "203.0.113.74"
PROBE_TARGET6 = "2001:db8:ffff::1"
USERNAME = "lab-user"

WAN_INTERFACE = "wan0"
HE_WAN_INTERFACE = "inet0"
# The second WAN (Lab(second_wan=True)): another ISP, its own range, a default route of a
# higher metric than the first's.
SECOND_WAN_INTERFACE = "wan1"
HE_SECOND_WAN_INTERFACE = "inet1"
SECOND_ISP_ADDRESS = "198.51.100.1"
SECOND_WAN_ADDRESS = "198.51.100.10"
WAN_METRICS = (100, 200)
TUNNEL_INTERFACE = "he-ipv6"
HE_TUNNEL_INTERFACE = "he6"

# Names the mode every Lab() without an explicit one must use ("sit" in the UML guest):
# there a lab that quietly fell back to vxlan would pass without testing sit at all.
MODE_ENV = "RECONCILER_LAB_MODE"
MODES = ("sit", "vxlan")

_run_counter = itertools.count(1)


# Lab.idle_connections' client: holds argv[2] connections to 127.0.0.1:argv[1], reopening
# any the server closes; prints how many the first round opened; ends when stdin closes.
_IDLE_CLIENTS = """
import select, socket, sys, threading
port, count = int(sys.argv[1]), int(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
def connect():
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except OSError:
        return None
held = [connect() for _ in range(count)]
print(sum(s is not None for s in held), flush=True)
while not stop.wait(0.1):
    for i, sock in enumerate(held):
        if sock is None:
            held[i] = connect()
            continue
        if select.select([sock], [], [], 0)[0]:
            try:
                gone = sock.recv(1) == b""
            except OSError:
                gone = True
            if gone:
                sock.close()
                held[i] = connect()
"""


class LabError(RuntimeError):
    """The lab could not be built or driven (a command failed, a process did not start)."""


def lab_unavailable_reason() -> str | None:
    """Why the lab cannot run on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "the lab needs iproute2 (ip)"
    if shutil.which("ping") is None:
        return "the lab needs ping"
    return None


def wait_until(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy; LabError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


def render_toml(config: Mapping[str, Any]) -> str:
    """A small TOML writer for the lab's config: tables of str/bool/int/float/str lists, and
    lists of such tables ([[wan]])."""
    lines: list[str] = []
    for table, values in config.items():
        for one in values if isinstance(values, list) else [values]:
            lines.append(f"[[{table}]]" if isinstance(values, list) else f"[{table}]")
            for key, value in one.items():
                if value is None:
                    continue
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


# Endpoints for the probe link only: it is never brought up, so nothing is ever sent to them.
_PROBE_ENDS = "local 192.0.2.1 remote 192.0.2.2"


def kernel_has_sit(namespace: str) -> bool:
    """Whether `namespace` can hold a sit link: make one and delete it (the kernel may
    autoload the module on the way).

    The probe names its own endpoints: a sit link without them is (any, any), the same ends
    as the `sit0` fallback device every namespace gets once the module is loaded, and the
    kernel refuses it with "File exists" exactly where sit works.
    """
    if _ip(namespace, f"link add rcsitprobe type sit {_PROBE_ENDS}", check=False).returncode:
        return False
    _ip(namespace, "link del rcsitprobe", check=False)
    return True


def _sysctl(namespace: str, key: str, value: str) -> None:
    argv = ["ip", "netns", "exec", namespace, "sysctl", "-qw", f"{key}={value}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


def _ip(
    namespace: str | None, command: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `ip [-n NAMESPACE] COMMAND` (the words of COMMAND never contain spaces)."""
    argv = ["ip", *(["-n", namespace] if namespace else []), *command.split()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done


class Lab:
    """The lab as a context manager: `with Lab() as lab: lab.start_daemon(); ...`.

    `mode` is "vxlan" or "sit"; None takes $RECONCILER_LAB_MODE, and without it picks sit
    when the kernel has it, else vxlan. A lab asked for sit on a kernel without it fails.
    `prebuild_tunnel` builds the router's tunnel before the daemon starts, so a quiet day
    starts converged (the daemon then has nothing to do). `with_fake_he=False` leaves the
    update server out (for testing the topology alone).
    """

    def __init__(
        self,
        *,
        mode: str | None = None,
        prebuild_tunnel: bool = True,
        keep_workdir: bool = False,
        with_fake_he: bool = True,
        python: str = sys.executable,
        stop_grace: float = 5.0,
        kill_wait: float = 10.0,
        second_wan: bool = False,
    ) -> None:
        self.run_id = f"{os.getpid()}-{next(_run_counter)}"
        self.router_ns = f"rc-router-{self.run_id}"
        self.he_ns = f"rc-he-{self.run_id}"
        mode = mode or os.environ.get(MODE_ENV) or None
        if mode not in (None, *MODES):
            raise LabError(f"lab mode {mode!r}: use one of {', '.join(MODES)}")
        self.requested_mode = mode
        self.mode = mode or "vxlan"
        self.prebuild_tunnel = prebuild_tunnel
        self.keep_workdir = keep_workdir
        self.with_fake_he = with_fake_he
        self.second_wan = second_wan
        self.python = python
        # teardown: how long a process gets after SIGTERM (the daemon promises 5 s), and how
        # long to wait for the kernel to remove what SIGKILL hit
        self.stop_grace = stop_grace
        self.kill_wait = kill_wait
        self.teardown_problems: list[str] = []
        self.wan_address: str | None = FIRST_WAN_ADDRESS
        self.workdir = Path(tempfile.mkdtemp(prefix=f"reconciler-lab-{self.run_id}-"))
        self.state_dir = self.workdir / "state"
        self.config_path = self.workdir / "reconciler.conf"
        self.key_file = self.workdir / "he-update.key"
        self.he_key_file = self.workdir / "he-accepts.key"
        self.firewall_marker = self.workdir / "firewall-reloaded"
        self.daemon_stderr_path = self.workdir / "daemon.stderr"
        self.he_output_path = self.workdir / "fake-he.out"
        self.cli_transcript_path = self.workdir / "cli-transcript.log"
        self.update_key = f"lab-key-{os.urandom(12).hex()}"
        self.keys_used: list[str] = [self.update_key]  # every key: none may leak anywhere
        self.secret_files: set[Path] = {self.key_file, self.he_key_file}
        self.daemon: subprocess.Popen[bytes] | None = None
        self.he_server: subprocess.Popen[bytes] | None = None
        self._namespaces: list[str] = []
        # `section__key` overrides that stay in force for every config written (reloads too)
        self.config_overrides: dict[str, Any] = {}

    # -- building and tearing down ------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            self.close()
        except LabError as problem:
            if exc_type is None:
                raise
            # the failure that brought us here is the one worth reading; the lab is gone anyway
            warnings.warn(str(problem), RuntimeWarning, stacklevel=2)

    def build(self) -> None:
        """Namespaces, the veth internet, the HE end of the tunnel, the key, the fake HE."""
        reason = lab_unavailable_reason()
        if reason:
            raise LabError(reason)
        router, he = self.router_ns, self.he_ns
        for namespace in (router, he):
            _ip(None, f"netns add {namespace}")
            self._namespaces.append(namespace)
            _ip(namespace, "link set lo up")
        if self.requested_mode is None:
            self.mode = "sit" if kernel_has_sit(router) else "vxlan"
        elif self.mode == "sit" and not kernel_has_sit(router):
            raise LabError("this kernel has no sit (6in4); the sit lab runs in the UML guest")
        _ip(router, f"link add {WAN_INTERFACE} type veth peer name {HE_WAN_INTERFACE} netns {he}")
        _ip(he, f"addr add {HE_ADDRESS}/{WAN_PREFIXLEN} dev {HE_WAN_INTERFACE}")
        _ip(he, f"link set {HE_WAN_INTERFACE} up")
        _ip(router, f"addr add {FIRST_WAN_ADDRESS}/{WAN_PREFIXLEN} dev {WAN_INTERFACE}")
        _ip(router, f"link set {WAN_INTERFACE} up")
        if self.second_wan:
            self._build_second_wan(router, he)
        self._build_tunnel_end(he, HE_TUNNEL_INTERFACE, HE_ADDRESS, FIRST_WAN_ADDRESS, SERVER_IPV6)
        if self.prebuild_tunnel:
            self._build_tunnel_end(
                router, TUNNEL_INTERFACE, FIRST_WAN_ADDRESS, HE_ADDRESS, CLIENT_IPV6
            )
            # IPv6's default route through the tunnel, as a converged router has it
            via = f"via {SERVER_IPV6} " if self.mode == "vxlan" else ""
            _ip(router, f"-6 route add default {via}dev {TUNNEL_INTERFACE}")
        self._write_secret(self.key_file, self.update_key)
        self._write_secret(self.he_key_file, self.update_key)
        if self.with_fake_he:
            self._start_fake_he()

    def _build_second_wan(self, router: str, he: str) -> None:
        """A second ISP: wan1 in its own range, both WANs with a default route (the first's
        of a lower metric), and routes through a link without carrier ignored, as a router
        with two WANs has them (else the first WAN's routes stay in use when its carrier is
        lost)."""
        _ip(
            router,
            f"link add {SECOND_WAN_INTERFACE} type veth peer name {HE_SECOND_WAN_INTERFACE} "
            f"netns {he}",
        )
        _ip(he, f"addr add {SECOND_ISP_ADDRESS}/{WAN_PREFIXLEN} dev {HE_SECOND_WAN_INTERFACE}")
        _ip(he, f"link set {HE_SECOND_WAN_INTERFACE} up")
        _ip(router, f"addr add {SECOND_WAN_ADDRESS}/{WAN_PREFIXLEN} dev {SECOND_WAN_INTERFACE}")
        _ip(router, f"link set {SECOND_WAN_INTERFACE} up")
        first, second = WAN_METRICS
        _ip(router, f"route add default via {HE_ADDRESS} dev {WAN_INTERFACE} metric {first}")
        _ip(
            router,
            f"route add default via {SECOND_ISP_ADDRESS} dev {SECOND_WAN_INTERFACE} "
            f"metric {second}",
        )
        _sysctl(router, "net.ipv4.conf.all.ignore_routes_with_linkdown", "1")

    def isp_link(self, wan: int, up: bool) -> None:
        """The ISP's end of WAN `wan` (0 or 1) goes down (or up): the router's WAN loses (or
        gets back) its carrier; its own link stays administratively up."""
        peer = (HE_WAN_INTERFACE, HE_SECOND_WAN_INTERFACE)[wan]
        _ip(self.he_ns, f"link set {peer} {'up' if up else 'down'}")

    def break_upstream(self, wan: int, broken: bool = True) -> None:
        """The ISP of WAN `wan` (0 or 1) stops forwarding (or forwards again): nothing gets
        back to that WAN's address (a blackhole route for it in the HE namespace: silent, no
        ICMP), while the router's link keeps its carrier, its address and its routes. A
        route, not nftables: the UML guest's kernel has no nftables."""
        address = (FIRST_WAN_ADDRESS, SECOND_WAN_ADDRESS)[wan]
        _ip(self.he_ns, f"route {'add' if broken else 'del'} blackhole {address}/32")

    def _build_tunnel_end(
        self, namespace: str, name: str, local: str, remote: str, ipv6: str
    ) -> None:
        if self.mode == "vxlan":
            kind = f"vxlan id {VXLAN_ID} dstport {VXLAN_PORT} nolearning"
        else:
            kind = "sit ttl 255"
        _ip(namespace, f"link add {name} type {kind} local {local} remote {remote}")
        _ip(namespace, f"link set {name} mtu {TUNNEL_MTU[self.mode]} up")
        _ip(namespace, f"addr add {ipv6}/{TUNNEL_PREFIXLEN} dev {name} nodad")

    def write_secret(self, path: Path, content: str) -> None:
        """Write a key file (0600); the key joins `keys_used`."""
        if content not in self.keys_used:
            self.keys_used.append(content)
        self.secret_files.add(path)
        self._write_secret(path, content)

    @staticmethod
    def _write_secret(path: Path, content: str) -> None:
        write_atomically(path, (content + "\n").encode(), mode=0o600)

    def _start_fake_he(self) -> None:
        move_far_end = [
            "ip",
            "link",
            "set",
            HE_TUNNEL_INTERFACE,
            "type",
            self.mode,
            "remote",
            "{address}",
        ]
        argv = fake_he.process_argv(
            netns=self.he_ns,
            python=self.python,
            listen=f"{HE_ADDRESS}:{HE_PORT}",
            tunnel_id=TUNNEL_ID,
            username=USERNAME,
            key_file=self.he_key_file,
            endpoint=FIRST_WAN_ADDRESS,
            extra=["--on-update-exec", *move_far_end],
        )
        with open(self.he_output_path, "wb") as out:
            self.he_server = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )

        def ready() -> bool:
            if self.he_server is not None and self.he_server.poll() is not None:
                raise LabError(f"the fake HE server exited: {self._tail(self.he_output_path)}")
            return b"listening on" in self.he_output_path.read_bytes()

        wait_until(ready, timeout=15, what="the fake HE server to listen")

    def close(self) -> None:
        """Stop the processes, kill what is left in the namespaces, delete both namespaces
        (and so their links), remove the work dir.

        Each step is on its own: a process that does not stop, or a step that fails, does not
        keep the later steps from running, and the namespaces are deleted last whatever
        happened before (also on KeyboardInterrupt). Problems are kept in `teardown_problems`
        and raised together as one LabError at the end.
        """
        problems: list[str] = []
        try:
            for name, process in (("the daemon", self.daemon), ("the fake HE", self.he_server)):
                if process is None:
                    continue
                try:
                    self._stop_process(process)
                except Exception as exc:  # teardown goes on whatever failed
                    problems.append(f"stopping {name} (pid {process.pid}): {exc!r}")
            for namespace in self._namespaces:
                try:
                    self._kill_namespace_processes(namespace)
                except Exception as exc:
                    problems.append(f"killing the processes in {namespace}: {exc!r}")
        finally:
            while self._namespaces:
                namespace = self._namespaces.pop()
                try:
                    deleted = _ip(None, f"netns del {namespace}", check=False)
                    if deleted.returncode != 0:
                        problems.append(f"ip netns del {namespace}: {deleted.stderr.strip()}")
                except Exception as exc:
                    problems.append(f"ip netns del {namespace}: {exc!r}")
            if not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.teardown_problems.extend(problems)
        if problems:
            raise LabError("lab teardown: " + "; ".join(problems))

    def _stop_process(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM, `stop_grace` to exit, then SIGKILL to its whole process group."""
        if process.poll() is not None:
            return
        self._signal(process, signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_grace)
            return
        except subprocess.TimeoutExpired:
            pass
        # Not reaped yet, so the pid (its own group's id: start_new_session) is still ours.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        self._signal(process, signal.SIGKILL)
        process.wait(timeout=self.kill_wait)

    def _kill_namespace_processes(self, namespace: str) -> None:
        """SIGKILL every process still in `namespace`: one left alive keeps the namespace,
        and so its links and addresses, alive after `ip netns del` removed its name."""

        def pids() -> list[int]:
            listed = subprocess.run(
                ["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=20
            )
            return [int(word) for word in listed.stdout.split()]

        for pid in pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: not pids(), timeout=self.kill_wait, what=f"the processes in {namespace} to die"
        )

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)

    @staticmethod
    def _tail(path: Path, limit: int = 2000) -> str:
        try:
            return path.read_bytes()[-limit:].decode(errors="replace").strip()
        except OSError:
            return ""

    # -- the configuration ----------------------------------------------------------------

    def config(self, **overrides: Any) -> dict[str, dict[str, Any]]:
        """The lab's configuration as tables; `section__key=value` overrides one key
        (`probe_ipv6__interval=60` for [probe.ipv6] interval)."""
        base = f"http://{HE_ADDRESS}:{HE_PORT}"
        probe = {"interval": 1.0, "timeout": 0.5, "fail_after": 2, "recover_after": 1}
        tables: dict[str, dict[str, Any]] = {
            "daemon": {
                "platform": "linux",
                "state_dir": str(self.state_dir),
                "log": "stderr",
                "watch_kernel": True,
                # Counts of quiet observations every few seconds: a lab run lasts a minute.
                "quiet_summary_interval": 5.0,
            },
            "wan": {
                "interface": WAN_INTERFACE,
                "public_address": "interface",
                "restart_command": [shutil.which("ip") or "ip", "link", "set", WAN_INTERFACE, "up"],
            },
            "probe.ipv4": {"target": HE_ADDRESS, **probe},
            "probe.ipv6": {"target": SERVER_IPV6, **probe},
            "tunnel": {
                "interface": TUNNEL_INTERFACE,
                "mode": self.mode,
                "server_ipv4": HE_ADDRESS,
                "client_ipv6": CLIENT_IPV6,
                "server_ipv6": SERVER_IPV6,
                "prefixlen": TUNNEL_PREFIXLEN,
                "mtu": TUNNEL_MTU[self.mode],
                "observe_interval": 1.0,
                **(
                    {"vxlan_id": VXLAN_ID, "vxlan_port": VXLAN_PORT} if self.mode == "vxlan" else {}
                ),
            },
            "tunnelbroker": {
                "tunnel_id": TUNNEL_ID,
                "username": USERNAME,
                "update_key_file": str(self.key_file),
                "update_url": f"{base}/nic/update",
                "info_url": f"{base}/tunnelInfo.php",
                "min_update_interval": 1.0,
                "connect_timeout": 2.0,
                "read_timeout": 5.0,
            },
            "firewall": {
                "reload_command": [shutil.which("touch") or "touch", str(self.firewall_marker)]
            },
            "reconcile": {
                "backoff_min": 0.5,
                "backoff_max": 4.0,
                "restart_limit": 50,
                "restart_window": 60.0,
            },
        }
        for name, value in {**self.config_overrides, **overrides}.items():
            section, _, key = name.partition("__")
            table = tables.setdefault(section.replace("_ipv", ".ipv"), {})
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        if self.second_wan:
            first = tables.pop("wan")
            second = {
                "interface": SECOND_WAN_INTERFACE,
                "public_address": "interface",
                "restart_command": [
                    shutil.which("ip") or "ip",
                    "link",
                    "set",
                    SECOND_WAN_INTERFACE,
                    "up",
                ],
                "probe_target": HE_ADDRESS,
            }
            tables["wan"] = [{**first, "probe_target": HE_ADDRESS}, second]  # type: ignore[assignment]
            tables.setdefault("failover", {})
        return tables

    def write_config(self, **overrides: Any) -> Path:
        """Write the configuration file (atomically: the daemon may reload it any moment)."""
        text = render_toml(self.config(**overrides))
        write_atomically(self.config_path, text.encode(), mode=0o600)
        return self.config_path

    def set_update_key(self, key: str) -> None:
        """Replace the key in the daemon's key file (what a user fixing the config does)."""
        self.write_secret(self.key_file, key)  # atomically: the daemon may read it any moment
        self.update_key = key

    # -- the daemon -----------------------------------------------------------------------

    def start_daemon(
        self, *, nofile: int | None = None, **config_overrides: Any
    ) -> subprocess.Popen[bytes]:
        """Write the config (with overrides) and start `reconciler run` in the router;
        `nofile` holds it to that many file descriptors (RLIMIT_NOFILE, soft and hard, set
        with prlimit before it starts, as a login class or ulimit would)."""
        if self.daemon is not None and self.daemon.poll() is None:
            raise LabError("the daemon is already running")
        self.config_overrides.update(config_overrides)
        self.write_config()
        limit = [] if nofile is None else ["prlimit", f"--nofile={nofile}:{nofile}", "--"]
        argv = [
            "ip",
            "netns",
            "exec",
            self.router_ns,
            *limit,
            self.python,
            "-m",
            "reconciler",
            "run",
            "-c",
            str(self.config_path),
        ]
        with open(self.daemon_stderr_path, "ab") as err:
            self.daemon = subprocess.Popen(
                argv,
                stdout=err,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
                env=self._child_env(),
            )
        return self.daemon

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("RECONCILER_CONFIG", None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` and wait for the daemon to exit; its exit status."""
        if self.daemon is None:
            raise LabError("no daemon was started")
        self._signal(self.daemon, sig)
        try:
            return self.daemon.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LabError(f"the daemon did not exit within {timeout:g} s of {sig!r}") from None

    def kill_daemon(self) -> int:
        """SIGKILL: the daemon gets no chance to finish anything."""
        return self.stop_daemon(signal.SIGKILL)

    def reload_daemon(self) -> None:
        """SIGHUP: the daemon rereads its configuration."""
        if self.daemon is None or self.daemon.poll() is not None:
            raise LabError("the daemon is not running")
        self._signal(self.daemon, signal.SIGHUP)

    def daemon_running(self) -> bool:
        return self.daemon is not None and self.daemon.poll() is None

    def daemon_stderr(self) -> str:
        return self.daemon_stderr_path.read_bytes().decode(errors="replace")

    def add_namespace(self, role: str) -> str:
        """A further namespace `rc-<role>-<run id>` (a NAT router, say), torn down with the
        lab's own; its name."""
        name = f"rc-{role}-{self.run_id}"
        _ip(None, f"netns add {name}")
        self._namespaces.append(name)
        _ip(name, "link set lo up")
        return name

    # -- the ISP: the WAN link and its address --------------------------------------------

    def set_wan_address(self, address: str) -> None:
        """Give the WAN a new address (the old one goes) and bring the link up."""
        _ip(self.router_ns, f"addr flush dev {WAN_INTERFACE} scope global")
        _ip(self.router_ns, f"addr add {address}/{WAN_PREFIXLEN} dev {WAN_INTERFACE}")
        _ip(self.router_ns, f"link set {WAN_INTERFACE} up")
        self.wan_address = address

    def remove_wan_address(self) -> None:
        """The ISP takes the address away."""
        _ip(self.router_ns, f"addr flush dev {WAN_INTERFACE} scope global")
        self.wan_address = None

    def wan_link(self, up: bool) -> None:
        """The WAN link goes down (or up) on the router's side."""
        _ip(self.router_ns, f"link set {WAN_INTERFACE} {'up' if up else 'down'}")

    def route_like_a_router(self) -> None:
        """The routes a working router has, which the lab's direct veth does without: the
        IPv4 default via HE's side, the IPv6 default via HE's end of the tunnel (again after
        a test took one away)."""
        _ip(self.router_ns, f"route replace default via {HE_ADDRESS} dev {WAN_INTERFACE}")
        _ip(
            self.router_ns,
            f"-6 route replace default via {SERVER_IPV6} dev {TUNNEL_INTERFACE}",
        )

    def serve_probe_target6(self) -> None:
        """PROBE_TARGET6 answers in the he namespace, and the daemon's IPv6 probe (from every
        config written from now on) pings it rather than HE's end of the tunnel."""
        _ip(self.he_ns, f"addr add {PROBE_TARGET6}/128 dev lo")
        self.config_overrides["probe_ipv6__target"] = PROBE_TARGET6

    def tunnel_down(self) -> None:
        """The router's tunnel goes down (the original's "normal situation")."""
        _ip(self.router_ns, f"link set {TUNNEL_INTERFACE} down")

    def tunnel_state(self) -> dict[str, Any] | None:
        """The router's tunnel as `ip -d -j link show` reports it; None when missing."""
        return self.interface_state(TUNNEL_INTERFACE, missing_ok=True) or None

    def interface_state(
        self, name: str, *, namespace: str | None = None, missing_ok: bool = False
    ) -> dict[str, Any]:
        """A link in the router (or `namespace`) as `ip -d -j link show` reports it; LabError
        when it is missing, or {} with `missing_ok`."""
        shown = _ip(namespace or self.router_ns, f"-d -j link show {name}", check=not missing_ok)
        links: list[dict[str, Any]] = json.loads(shown.stdout) if shown.returncode == 0 else []
        return links[0] if links else {}

    def tunnel_local(self) -> str | None:
        """The local IPv4 end of the router's tunnel."""
        link = self.tunnel_state()
        if not link:
            return None
        data = link.get("linkinfo", {}).get("info_data", {})
        local = data.get("local")
        return str(local) if local else None

    def move_he_end(self, address: str) -> None:
        """Point HE's end of the tunnel at `address` (what a good update makes the fake do)."""
        _ip(self.he_ns, f"link set {HE_TUNNEL_INTERFACE} type {self.mode} remote {address}")

    def he_tunnel_remote(self) -> str | None:
        """Where HE's end of the tunnel points (moved by the fake on a good update)."""
        shown = _ip(self.he_ns, f"-d -j link show {HE_TUNNEL_INTERFACE}")
        data = json.loads(shown.stdout)[0].get("linkinfo", {}).get("info_data", {})
        remote = data.get("remote")
        return str(remote) if remote else None

    # -- probing across the lab -----------------------------------------------------------

    def ping6_through_tunnel(self, timeout: float = 1.0) -> bool:
        """One ping from the router to HE's tunnel address: it can only cross the tunnel."""
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.router_ns,
                "ping",
                "-6",
                "-n",
                "-c",
                "1",
                "-W",
                f"{max(timeout, 0.2):g}",
                SERVER_IPV6,
            ],
            capture_output=True,
            timeout=timeout + 5,
        )
        return done.returncode == 0

    def move_wan_and_time_repair(
        self, address: str, *, timeout: float, link_down_first: bool = False
    ) -> float:
        """Give the WAN `address` and return the time to repair: the seconds from the change
        to the first IPv6 ping from the router that crosses the tunnel. LabError when none
        does within `timeout` s.

        `link_down_first` is the ISP reconnecting: the link goes down, then comes up with the
        new address, and the clock starts before it goes down. The tunnel is pinged every
        20 ms, each ping given 0.2 s to be answered, so every caller (the bench, the demo,
        the tests) measures the same way and the bench's figures stay comparable.
        """
        started = time.monotonic()
        if link_down_first:
            self.wan_link(False)
        self.set_wan_address(address)
        wait_until(
            lambda: self.ping6_through_tunnel(timeout=0.2),
            timeout=timeout,
            interval=0.02,
            what=f"IPv6 across the tunnel after moving to {address}",
        )
        return time.monotonic() - started

    @contextlib.contextmanager
    def idle_connections(self, port: int, count: int) -> Iterator[int]:
        """Hold `count` connections to the router's loopback `port` open, sending nothing
        (as any local user could), and reopen each one the server closes, ten rounds a
        second, until the block ends; yields how many the first round opened."""
        flood = subprocess.Popen(
            ["ip", "netns", "exec", self.router_ns, sys.executable, "-c", _IDLE_CLIENTS,
             str(port), str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert flood.stdout is not None
            yield int(flood.stdout.readline() or 0)
        finally:
            assert flood.stdin is not None
            flood.stdin.close()
            try:
                flood.wait(timeout=10)
            except subprocess.TimeoutExpired:
                flood.kill()
                flood.wait(timeout=10)

    @contextlib.contextmanager
    def capture_internet(self) -> Iterator[list[dict[str, Any]]]:
        """Record the IPv4 packets on HE's side of the veth "internet" while the block runs;
        the list yielded fills in when it ends (reconciler.testing.packets decodes them)."""
        argv = ["ip", "netns", "exec", self.he_ns, self.python, "-m", "reconciler.testing.packets"]
        capture = subprocess.Popen(
            [*argv, HE_WAN_INTERFACE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        packets: list[dict[str, Any]] = []
        try:
            ready = capture.stdout.readline() if capture.stdout else b""
            if not ready.startswith(b"listening on"):
                capture.kill()
                err = capture.communicate(timeout=30)[1]
                raise LabError(f"the packet capture did not start: {err.decode().strip()}")
            yield packets
            out, err = capture.communicate(timeout=30)
        finally:
            if capture.poll() is None:
                capture.kill()
                capture.wait()
        if capture.returncode != 0:
            raise LabError(f"the packet capture failed: {err.decode(errors='replace').strip()}")
        packets.extend(json.loads(line) for line in out.splitlines() if line.strip())

    # -- the fake HE's control API --------------------------------------------------------

    def he(self, path: str, **params: Any) -> Any:
        """Call the fake HE's `/_lab/<path>` from inside the he namespace; JSON or text."""
        from urllib.parse import urlencode

        query = f"?{urlencode(params)}" if params else ""
        url = f"http://{HE_ADDRESS}:{HE_PORT}/_lab/{path.lstrip('/')}{query}"
        code = (
            "import sys, urllib.request\n"
            "with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n"
            "    sys.stdout.buffer.write(r.read())\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", self.he_ns, self.python, "-c", code, url],
            capture_output=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise LabError(f"fake HE {path}: {done.stderr.decode(errors='replace').strip()}")
        body = done.stdout.decode()
        try:
            return json.loads(body)
        except ValueError:
            return body

    def he_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.he("stats")
        return stats

    def he_update_calls(self) -> int:
        """How many `/nic/update` requests the fake HE has received."""
        return _update_count(self.he_stats())

    # -- the CLI and the event log --------------------------------------------------------

    def reconciler(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `reconciler ARGS -c <lab config>` in the router namespace."""
        argv = [
            "ip",
            "netns",
            "exec",
            self.router_ns,
            self.python,
            "-m",
            "reconciler",
            *args,
            "-c",
            str(self.config_path),
        ]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
            env=self._child_env(),
        )
        with open(self.cli_transcript_path, "a") as transcript:
            transcript.write(f"$ reconciler {' '.join(args)}  (exit {done.returncode})\n")
            transcript.write(done.stdout)
            transcript.write(done.stderr)
        return done

    def envelopes(self) -> list[Any]:
        """Every fact in the event log so far (read-only; works while the daemon runs)."""
        from reconciler.history import iter_envelopes

        if not self.state_dir.exists():
            return []
        return list(iter_envelopes(self.state_dir))

    def produced_files(self) -> Iterator[Path]:
        """Every file the run produced except the key files themselves."""
        for path in sorted(self.workdir.rglob("*")):
            if path.is_file() and path not in self.secret_files and path.suffix != ".tmp":
                yield path


def _update_count(stats: Mapping[str, Any]) -> int:
    """The number of `/nic/update` requests in the fake HE's stats (`counts.update`)."""
    counts = stats.get("counts")
    if not isinstance(counts, Mapping):
        raise LabError(f"the fake HE's stats have no counts: {sorted(stats)}")
    return int(counts.get("update", 0))
