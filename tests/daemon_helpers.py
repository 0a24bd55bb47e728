"""Test helpers for the daemon, recorder, observers, executors and their commands.

Builds configurations for the scripted OpenBSD host (in-process tests) and writes TOML config
files for daemons started as subprocesses inside a network namespace.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import logging
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reconciler.model.config import (
    Config,
    DaemonConfig,
    FirewallConfig,
    ProbeConfig,
    ReconcileConfig,
    TunnelbrokerConfig,
    TunnelConfig,
    WanConfig,
)
from reconciler.testing import fake_he
from tests.netns import namespace

__all__ = [
    "TEST_KEY",
    "fake_he_control",
    "fake_he_in",
    "key_encodings",
    "linux_config_text",
    "openbsd_config",
    "restored_loggers",
    "router_netns",
    "syslog_listener",
    "write_key",
]

TEST_KEY = "sekrit-update-key-7f3a9c"
HE_SERVER = "198.51.100.1"
CLIENT6 = "2001:db8:1f06:abc::2"
SERVER6 = "2001:db8:1f06:abc::1"


def key_encodings(key: str, username: str = "rcuser") -> dict[str, bytes]:
    """Every form of `key` a leak could take, as bytes to search files and outputs for:
    the key in UTF-8 and latin-1, the Basic token as requests (latin-1) and a UTF-8 client
    build it, the key alone in base64, URL-, HTML- and JSON-escaped. Built here on purpose,
    not from the scrubber's own list, so a form the scrubber forgets is still looked for."""
    forms: dict[str, bytes] = {}
    for encoding in ("utf-8", "latin-1"):
        try:
            raw = key.encode(encoding)
            basic = f"{username}:{key}".encode(encoding)
        except UnicodeEncodeError:
            continue
        forms[f"raw {encoding}"] = raw
        forms[f"basic token {encoding}"] = base64.b64encode(basic)
        forms[f"basic token {encoding} unpadded"] = base64.b64encode(basic).rstrip(b"=")
        forms[f"base64 {encoding}"] = base64.b64encode(raw).rstrip(b"=")
        forms[f"url-quoted {encoding}"] = urllib.parse.quote(raw, safe="").encode()
        forms[f"url-quoted-plus {encoding}"] = urllib.parse.quote_plus(raw).encode()
    forms["html-escaped"] = html.escape(key).encode()
    forms["json-escaped"] = json.dumps(key)[1:-1].encode()
    forms["python repr"] = repr(key)[1:-1].encode()
    return forms


def write_key(directory: Path, key: str = TEST_KEY) -> Path:
    path = directory / "tunnelbroker.key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


def openbsd_config(
    tmp_path: Path,
    *,
    update_url: str,
    info_url: str | None = None,
    probes: dict[str, ProbeConfig] | None = None,
    firewall: tuple[str, ...] = ("pfctl", "-f", "/etc/pf.conf"),
    observe_interval: float = 30.0,
    watch_kernel: bool = True,
    digest: str = "",
    read_timeout: float = 2.0,
) -> Config:
    """A Config for the scripted OpenBSD host rooted at tmp_path/root (em0, gif0)."""
    key_file = (
        write_key(tmp_path)
        if not (tmp_path / "tunnelbroker.key").exists()
        else (tmp_path / "tunnelbroker.key")
    )
    return Config(
        path=tmp_path / "reconciler.conf",
        digest=digest or hashlib.sha256(f"{update_url}{firewall}".encode()).hexdigest(),
        daemon=DaemonConfig(
            platform="openbsd",
            state_dir=tmp_path / "state",
            log="stderr",
            watch_kernel=watch_kernel,
        ),
        wan=WanConfig(interface="em0", restart_command=None),
        probes=probes or {},
        tunnel=TunnelConfig(
            interface="gif0",
            mode="gif",
            server_ipv4=HE_SERVER,
            client_ipv6=CLIENT6,
            server_ipv6=SERVER6,
            hostname_file=Path("/etc/hostname.gif0"),  # under the host's root
            observe_interval=observe_interval,
        ),
        tunnelbroker=TunnelbrokerConfig(
            tunnel_id="123456",
            username="rcuser",
            update_key_file=key_file,
            update_url=update_url,
            info_url=info_url,
            min_update_interval=1.0,
            connect_timeout=1.0,
            read_timeout=read_timeout,
        ),
        firewall=FirewallConfig(reload_command=firewall),
        reconcile=ReconcileConfig(backoff_min=0.5, backoff_max=5.0),
    )


def linux_config_text(
    directory: Path,
    *,
    wan: str,
    update_url: str,
    interval: float = 1.0,
    read_timeout: float = 1.0,
    min_update_interval: float = 1.0,
) -> str:
    """A TOML config for a daemon run inside a namespace: vxlan tunnel, probes on loopback."""
    key_file = (
        write_key(directory)
        if not (directory / "tunnelbroker.key").exists()
        else (directory / "tunnelbroker.key")
    )
    return f"""\
[daemon]
platform = "linux"
state_dir = "state"
log = "stderr"

[wan]
interface = "{wan}"

[probe.ipv4]
target = "127.0.0.1"
interval = {interval}
timeout = 0.5

[probe.ipv6]
target = "{CLIENT6}"
interval = {interval}
timeout = 0.5

[tunnel]
interface = "rctun0"
mode = "vxlan"
server_ipv4 = "{HE_SERVER}"
client_ipv6 = "{CLIENT6}"
server_ipv6 = "{SERVER6}"
prefixlen = 64
mtu = 1450
vxlan_id = 42
vxlan_port = 4789
observe_interval = {interval}

[tunnelbroker]
tunnel_id = "123456"
username = "rcuser"
update_key_file = "{key_file}"
update_url = "{update_url}"
min_update_interval = {min_update_interval}
connect_timeout = 1
read_timeout = {read_timeout}

[firewall]
reload_command = []

[reconcile]
backoff_min = 1
backoff_max = 5
"""


@contextlib.contextmanager
def router_netns(name: str, wan_address: str = "203.0.113.7") -> Iterator[str]:
    """A namespace with loopback up and a veth `wan0` holding `wan_address`/24; always
    deleted afterwards."""
    with namespace(
        name,
        ["link", "add", "wan0", "type", "veth", "peer", "name", "wanpeer"],
        ["link", "set", "wanpeer", "up"],
        ["addr", "add", f"{wan_address}/24", "dev", "wan0"],
        ["link", "set", "wan0", "up"],
    ):
        yield name


@contextlib.contextmanager
def fake_he_in(netns: str, directory: Path, endpoint: str = "203.0.113.5") -> Iterator[str]:
    """The fake HE as a process inside `netns` on its loopback; yields its update URL."""
    key_file = (
        write_key(directory)
        if not (directory / "tunnelbroker.key").exists()
        else (directory / "tunnelbroker.key")
    )
    with fake_he.running_process(
        netns=netns,
        listen="127.0.0.1:0",
        tunnel_id="123456",
        username="rcuser",
        key_file=key_file,
        endpoint=endpoint,
    ) as (_, address):
        yield f"http://{address}/nic/update"


def fake_he_control(netns: str, update_url: str, request: str) -> dict[str, Any]:
    """Ask the fake HE inside `netns` (its update URL) a control request such as
    `delay?seconds=8` or `stats`; its JSON answer."""
    url = update_url.removesuffix("/nic/update") + "/_lab/" + request
    fetch = (
        "import sys, urllib.request; "
        "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", fetch, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


@contextlib.contextmanager
def restored_loggers(*names: str) -> Iterator[None]:
    """Put the named loggers' handlers, level and propagation back as they were afterwards:
    configure_logging changes process-wide state that other tests (caplog) rely on."""
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if handler not in handlers:
                    logger.removeHandler(handler)
                    handler.close()
            logger.setLevel(level)
            logger.propagate = propagate


@contextlib.contextmanager
def syslog_listener(directory: Path) -> Iterator[tuple[str, socket.socket]]:
    """A unix datagram socket standing in for syslogd's /dev/log; yields its path and the
    socket (with a 5 s receive timeout)."""
    path = str(directory / "log")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        listener.bind(path)
        listener.settimeout(5.0)
        yield path, listener
    finally:
        listener.close()
