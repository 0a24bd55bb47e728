"""Finding and loading the configuration file (TOML), all-or-nothing.

`load_config(path)` either returns a complete, valid `Config` or raises one `ConfigError`
listing every problem, one line each: `<file>: <key>: <what is wrong>`. Unknown keys are
errors (a typo must not pass silently), addresses go through `ipaddress`, commands are argv
lists, and relative paths resolve against the config file's directory. The update key file
is checked (it exists, is a regular file, no one but its owner may read it, and it holds one
line of printable ASCII: `world.updatekey`), but its content appears nowhere, not even in a
problem, and the digest covers only its inode, size and mtime.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import reprlib
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reconciler.configwans import read_failover, read_wans
from reconciler.errors import ConfigError
from reconciler.model.config import (
    IFUPDOWN_FILE,
    NETWORKD_DIR,
    OPENBSD_TUNNEL_NAME,
    Config,
    DaemonConfig,
    FirewallConfig,
    MetricsConfig,
    NotifyConfig,
    ProbeConfig,
    ReconcileConfig,
    TunnelbrokerConfig,
    TunnelConfig,
    WanConfig,
    interface_name_problem,
)
from reconciler.model.notices import EVENTS
from reconciler.world.updatekey import UpdateKeyError, read_update_key

__all__ = ["DEFAULT_STATE_DIRS", "SEARCH_PATHS", "find_config_path", "load_config"]

# After -c and $RECONCILER_CONFIG; the first is relative to the working directory.
SEARCH_PATHS = (Path("etc/reconciler.conf"), Path("/etc/reconciler.conf"))

# daemon.state_dir when the file has none: where each system keeps a daemon's state (OpenBSD's
# /var/db; on Linux the FHS's /var/lib, which the systemd unit makes writable).
DEFAULT_STATE_DIRS = {"openbsd": "/var/db/reconciler", "linux": "/var/lib/reconciler"}

_MISSING = object()

# Upper bounds of numeric values. Every number has one, so that no value check-config accepts
# can overflow a timer, a timedelta or a socket timeout later (docs/configuration.md lists
# them). A duration a key does not bound otherwise is at most a week.
_DAY = 86400.0
_WEEK = 7 * _DAY
# A configuration is a few kilobytes; a file much larger is something else.
MAX_CONFIG_BYTES = 1 << 20
# HE's tunnel ids are decimal numbers (six or seven digits today).
_TUNNEL_ID = re.compile(r"[0-9]{1,20}")


def find_config_path(cli_value: str | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """The config file to use: -c, then $RECONCILER_CONFIG, then the search paths.

    A path that is given must name a regular, non-empty file: an empty path, a directory, a
    FIFO or a device is an error that says which (never a silent fall-through to the search
    paths, never a read that blocks)."""
    for given, origin in (
        (cli_value, "--config"),
        (environ.get("RECONCILER_CONFIG"), "$RECONCILER_CONFIG"),
    ):
        if given is None:
            continue
        if not given:
            raise ConfigError("reconciler.conf", [f"empty configuration path (from {origin})"])
        path = _absolute(cwd / given)
        problem = config_file_problem(path)
        if problem is not None:
            raise ConfigError(path, [f"{path}: {problem} (from {origin})"])
        return path
    for candidate in SEARCH_PATHS:
        path = _absolute(cwd / candidate)
        if os.path.exists(path):
            problem = config_file_problem(path)
            if problem is not None:
                raise ConfigError(path, [f"{path}: {problem}"])
            return path
    searched = ", ".join(str((cwd / c).resolve()) for c in SEARCH_PATHS)
    raise ConfigError(
        "reconciler.conf",
        [f"no configuration file: use -c PATH or $RECONCILER_CONFIG (searched {searched})"],
    )


def config_file_problem(path: Path) -> str | None:
    """What keeps `path` from being read as a configuration file, or None."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "no such configuration file"
    except NotADirectoryError:
        return "no such configuration file (a component of the path is not a directory)"
    except OSError as exc:
        return f"cannot read: {exc.strerror or type(exc).__name__}"
    except ValueError:  # a NUL byte in the path
        return "not a valid path"
    return _not_a_config_file(info)


def _not_a_config_file(info: os.stat_result) -> str | None:
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        return "is a directory, not a configuration file"
    if not stat.S_ISREG(mode):
        kinds = (
            (stat.S_ISFIFO, "a FIFO"),
            (stat.S_ISSOCK, "a socket"),
            (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"),
        )
        kind = next((name for test, name in kinds if test(mode)), "not a file")
        return f"is not a regular file ({kind})"
    if info.st_size > MAX_CONFIG_BYTES:
        return f"is {info.st_size} bytes long: not a configuration file (at most 1 MiB)"
    return None


def _absolute(path: Path) -> Path:
    """`path` made absolute, symlinks resolved where they can be (a loop stays as given)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: stat() names the problem
        return Path(os.path.abspath(path))


def _read_config_file(path: Path) -> bytes:
    """The file's bytes. Opened without blocking (a FIFO put in the file's place must not
    hang a reload) and checked on the open descriptor, so a swap cannot slip between."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(path, [f"{path}: no such configuration file"]) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(path, [f"{path}: cannot read: {reason}"]) from None
    with open(fd, "rb") as file:
        try:
            problem = _not_a_config_file(os.fstat(fd))
            raw = b"" if problem else file.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            problem = f"cannot read: {exc.strerror or type(exc).__name__}"
    if problem is None and len(raw) > MAX_CONFIG_BYTES:
        problem = "is longer than 1 MiB: not a configuration file"
    if problem is None and not raw.strip():
        problem = "is empty"
    if problem is not None:
        raise ConfigError(path, [f"{path}: {problem}"])
    return raw


def load_config(path: Path) -> Config:
    """The validated configuration in `path`; ConfigError naming every problem."""
    path = Path(path)
    raw = _read_config_file(path)
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, [f"{path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"{path}: TOML syntax: {exc}"]) from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigError(path, [f"{path}: TOML: arrays or tables nested too deeply"]) from None
    except ValueError as exc:  # an integer too long to convert ("Exceeds the limit ...")
        raise ConfigError(path, [f"{path}: TOML value: {exc}"]) from None
    reader = _Reader(path, document)
    config = reader.config(raw)
    if reader.problems or config is None:
        raise ConfigError(path, reader.problems)
    return config


class _Reader:
    """Walks the document once, collecting every problem instead of stopping at the first."""

    def __init__(self, path: Path, document: Mapping[str, Any]) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.document = document
        self.problems: list[str] = []

    def problem(self, key: str, what: str) -> None:
        self.problems.append(f"{self.path}: {key}: {what}")

    # --- sections ---------------------------------------------------------------------

    def section(self, name: str, allowed: set[str], *, required: bool = True) -> dict[str, Any]:
        parent: Any = self.document
        for part in name.split("."):
            parent = parent.get(part, _MISSING) if isinstance(parent, Mapping) else _MISSING
        if parent is _MISSING:
            if required:
                self.problem(name, "section is missing")
            return {}
        if not isinstance(parent, Mapping):
            self.problem(name, "must be a table ([" + name + "])")
            return {}
        table = dict(parent)
        for key in sorted(set(table) - allowed):
            self.problem(f"{name}.{key}", "unknown key")
        return table

    def config(self, raw: bytes) -> Config | None:
        sections = {"daemon", "wan", "probe", "tunnel", "tunnelbroker", "firewall", "reconcile"}
        sections |= {"notify", "metrics", "failover"}
        for key in sorted(set(self.document) - sections):
            self.problem(key, "unknown section")
        probe_table = self.document.get("probe", {})
        if isinstance(probe_table, Mapping):
            for key in sorted(set(probe_table) - {"ipv4", "ipv6"}):
                self.problem(f"probe.{key}", "unknown section (probe.ipv4 and probe.ipv6 exist)")
        daemon = self.daemon()
        wans = read_wans(self, daemon)
        wan = wans[0] if wans else None
        probes = {family: self.probe(family) for family in ("ipv4", "ipv6")}
        ipv4 = probes["ipv4"]
        failover = read_failover(self, wans, ipv4.source if ipv4 else None, daemon)
        tunnel = self.tunnel(daemon, wan)
        for other in (wans or ())[1:]:
            if tunnel is not None and tunnel.interface == other.interface:
                self.problem(
                    "tunnel.interface", f'must differ from every WAN\'s ("{other.interface}")'
                )
        broker, key_file_stat = self.tunnelbroker()
        firewall = self.firewall()
        reconcile = self.reconcile()
        notify = self.notify()
        metrics = self.metrics()
        if self.problems:
            return None
        assert daemon and wan and tunnel and broker and firewall and reconcile
        digest = hashlib.sha256(raw)
        digest.update(repr(key_file_stat).encode())
        return Config(
            path=self.path.resolve(),
            digest=digest.hexdigest(),
            daemon=daemon,
            wan=wan,
            probes={f: p for f, p in probes.items() if p is not None},
            tunnel=tunnel,
            tunnelbroker=broker,
            firewall=firewall,
            reconcile=reconcile,
            notify=notify or NotifyConfig(),
            metrics=metrics or MetricsConfig(),
            failover=failover,
        )

    def daemon(self) -> DaemonConfig | None:
        t = self.section(
            "daemon",
            {
                "platform",
                "state_dir",
                "log",
                "watch_kernel",
                "retain_days",
                "retain_mb",
                "quiet_summary_interval",
            },
        )
        platform = self.choice(t, "daemon.platform", ("openbsd", "linux"))
        # Without a valid platform there is no default, and no DaemonConfig either: "." stands
        # in so that only the platform is reported.
        default_state_dir = DEFAULT_STATE_DIRS.get(platform or "", ".")
        state_dir = self.path_value(t, "daemon.state_dir", default=default_state_dir)
        if state_dir is not None:
            kind = self.file_kind("daemon.state_dir", state_dir)
            if kind not in ("directory", "missing", "unknown"):
                self.problem("daemon.state_dir", f"{state_dir} exists and is not a directory")
        log = self.choice(t, "daemon.log", ("syslog", "stderr"), default="syslog")
        watch = self.boolean(t, "daemon.watch_kernel", default=True)
        retain_days = self.number(
            t, "daemon.retain_days", default=0.0, minimum=0.0, maximum=36500.0, unit="days"
        )
        retain_mb = self.number(
            t, "daemon.retain_mb", default=0.0, minimum=0.0, maximum=2.0**20, unit="MiB"
        )
        quiet = self.number(
            t, "daemon.quiet_summary_interval", default=3600.0, minimum=0.0, maximum=86400.0,
            unit="seconds",
        )  # fmt: skip
        if platform is None or state_dir is None or log is None or watch is None:
            return None
        if retain_days is None or retain_mb is None or quiet is None:
            return None
        return DaemonConfig(
            platform,  # type: ignore[arg-type]  # checked by choice()
            state_dir,
            log,  # type: ignore[arg-type]
            watch,
            retain_days,
            retain_mb,
            quiet,
        )

    def wan(self, daemon: DaemonConfig | None) -> WanConfig | None:
        t = self.section(
            "wan", {"interface", "restart_command", "public_address", "dhcp_grace", "address_in"}
        )
        interface = self.interface_name(t, "wan.interface", daemon)
        command = self.argv(t, "wan.restart_command", allow_empty=False)
        public = self.choice(
            t, "wan.public_address", ("interface", "tunnelbroker"), default="interface"
        )
        grace = self.number(t, "wan.dhcp_grace", default=30.0, minimum=0.0, maximum=_DAY)
        address_in = self.ipv4_network(t, "wan.address_in")
        if interface is None or public is None or command is _MISSING or grace is None:
            return None
        if address_in is _MISSING:
            return None
        return WanConfig(interface, command, public, grace, address_in)  # type: ignore[arg-type]

    def ipv4_network(self, t: Mapping[str, Any], key: str) -> Any:
        """An IPv4 network in CIDR notation (an address alone is a /32): the canonical
        string, None when absent, _MISSING when invalid."""
        value = self.get(t, key, False)
        if value is _MISSING:
            return None
        try:
            network = ipaddress.IPv4Network(value, strict=False) if isinstance(value, str) else None
        except ValueError:
            network = None
        if network is None:
            self.problem(
                key, f'must be an IPv4 network such as "198.51.100.0/24", not {_show(value)}'
            )
            return _MISSING
        return str(network)

    def probe(self, family: str) -> ProbeConfig | None:
        name = f"probe.{family}"
        t = self.section(
            name, {"target", "interval", "timeout", "fail_after", "recover_after", "source"}
        )
        version = 4 if family == "ipv4" else 6
        target = self.address(t, f"{name}.target", version, host=True)
        interval = self.number(t, f"{name}.interval", default=60.0, minimum=1.0, maximum=_DAY)
        timeout = self.number(t, f"{name}.timeout", default=1.0, minimum=0.1, maximum=60.0)
        fail_after = self.integer(t, f"{name}.fail_after", default=3, low=1, high=100)
        recover_after = self.integer(t, f"{name}.recover_after", default=1, low=1, high=100)
        source = self.address(t, f"{name}.source", version, required=False, host=True)
        if interval is not None and timeout is not None and timeout >= interval:
            self.problem(f"{name}.timeout", f"must be shorter than interval ({interval:g} s)")
        values = (target, interval, timeout, fail_after, recover_after)
        if any(v is None for v in values):
            return None
        return ProbeConfig(
            family,  # type: ignore[arg-type]
            target,  # type: ignore[arg-type]
            interval,  # type: ignore[arg-type]
            timeout,  # type: ignore[arg-type]
            fail_after,  # type: ignore[arg-type]
            recover_after,  # type: ignore[arg-type]
            source,
        )

    def tunnel(self, daemon: DaemonConfig | None, wan: WanConfig | None) -> TunnelConfig | None:
        keys = {
            "interface", "mode", "server_ipv4", "client_ipv6", "server_ipv6", "prefixlen",
            "mtu", "ttl", "hostname_file", "vxlan_id", "vxlan_port", "observe_interval",
            "owner", "local", "networkd_dir", "ifupdown_file", "nm_connection",
        }  # fmt: skip
        t = self.section("tunnel", keys)
        interface = self.interface_name(t, "tunnel.interface", daemon)
        mode = self.choice(t, "tunnel.mode", ("gif", "sit", "vxlan"))
        if interface is not None and wan is not None and interface == wan.interface:
            # The tunnel is created, retyped and deleted at will: never on the uplink.
            self.problem("tunnel.interface", f'must differ from wan.interface ("{interface}")')
            interface = None
        if (
            interface is not None
            and daemon is not None
            and daemon.platform == "openbsd"
            and OPENBSD_TUNNEL_NAME.fullmatch(interface) is None
        ):
            # OpenBSD's driver is in the name: /etc/hostname.em1 would configure an em(4).
            self.problem(
                "tunnel.interface", f'"{interface}" is not a gif interface (gif0, gif1...)'
            )
            interface = None
        server_ipv4 = self.address(t, "tunnel.server_ipv4", 4, host=True)
        client_ipv6 = self.address(t, "tunnel.client_ipv6", 6, host=True)
        server_ipv6 = self.address(t, "tunnel.server_ipv6", 6, host=True)
        prefixlen = self.integer(t, "tunnel.prefixlen", default=128, low=1, high=128)
        mtu = self.integer(t, "tunnel.mtu", default=1480, low=1280, high=65535)
        ttl = self.integer(t, "tunnel.ttl", default=255, low=1, high=255)
        hostname_file = self.path_value(t, "tunnel.hostname_file", required=False)
        if hostname_file is not None:
            kind = self.file_kind("tunnel.hostname_file", hostname_file.parent)
            if kind not in ("directory", "unknown"):
                self.problem(
                    "tunnel.hostname_file", f"directory {hostname_file.parent} does not exist"
                )
        if hostname_file is not None and daemon is not None and daemon.platform == "linux":
            # OpenBSD ifconfig lines: pointed at a .netdev or an interfaces file, the rewrite
            # would replace the owner's config with lines it cannot read.
            self.problem(
                "tunnel.hostname_file",
                "is OpenBSD's (ifconfig lines for netstart); on Linux set tunnel.owner to "
                "whatever makes the tunnel (networkd, networkmanager, ifupdown)",
            )
        owner = self.choice(
            t, "tunnel.owner", ("reconciler", "networkd", "networkmanager", "ifupdown"),
            default="reconciler",
        )  # fmt: skip
        if owner not in (None, "reconciler") and daemon is not None and daemon.platform != "linux":
            self.problem("tunnel.owner", f'"{owner}" is a Linux owner (this is {daemon.platform})')
        local_mode = self.choice(t, "tunnel.local", ("wan", "any"), default="wan")
        networkd_dir = self.path_value(t, "tunnel.networkd_dir", required=False)
        ifupdown_file = self.path_value(t, "tunnel.ifupdown_file", required=False)
        nm_connection = self.string(t, "tunnel.nm_connection", required=False)
        if nm_connection is not None and not nm_connection.isprintable():
            self.problem("tunnel.nm_connection", "must be printable (a connection's name)")
            nm_connection = None
        for key, wanted in (
            ("networkd_dir", "networkd"),
            ("ifupdown_file", "ifupdown"),
            ("nm_connection", "networkmanager"),
        ):
            if key in t and owner is not None and owner != wanted:
                self.problem(f"tunnel.{key}", f'only with owner = "{wanted}"')
        if (
            hostname_file is not None
            and interface is not None
            and daemon is not None
            and daemon.platform == "openbsd"
            and hostname_file.name != f"hostname.{interface}"
        ):
            self.problem(
                "tunnel.hostname_file",
                f"netstart reads only /etc/hostname.{interface} for {interface}: "
                f"{hostname_file.name} would never be applied",
            )
        vxlan_id = self.integer(t, "tunnel.vxlan_id", default=None, low=0, high=2**24 - 1)
        vxlan_port = self.integer(t, "tunnel.vxlan_port", default=None, low=1, high=65535)
        observe = self.number(t, "tunnel.observe_interval", default=30.0, minimum=1.0, maximum=_DAY)
        if mode is not None and mode != "vxlan":
            for key in ("vxlan_id", "vxlan_port"):
                if key in t:
                    self.problem(f"tunnel.{key}", f'only with mode = "vxlan" (mode is "{mode}")')
        if mode == "vxlan" and "vxlan_id" not in t:
            self.problem("tunnel.vxlan_id", 'is required with mode = "vxlan"')
        if daemon is not None and mode is not None:
            allowed = {"openbsd": ("gif",), "linux": ("sit", "vxlan")}[daemon.platform]
            if mode not in allowed:
                self.problem(
                    "tunnel.mode",
                    f'"{mode}" does not exist on {daemon.platform} (use {" or ".join(allowed)})',
                )
        if server_ipv6 is not None and server_ipv6 == client_ipv6:
            self.problem("tunnel.server_ipv6", "must differ from tunnel.client_ipv6")
        values = (interface, mode, server_ipv4, client_ipv6, server_ipv6, prefixlen, mtu, ttl)
        if any(v is None for v in values) or observe is None or owner is None:
            return None
        if local_mode is None:
            return None
        tunnel = TunnelConfig(
            interface,  # type: ignore[arg-type]
            mode,  # type: ignore[arg-type]
            server_ipv4,  # type: ignore[arg-type]
            client_ipv6,  # type: ignore[arg-type]
            server_ipv6,  # type: ignore[arg-type]
            prefixlen,  # type: ignore[arg-type]
            mtu,  # type: ignore[arg-type]
            ttl,  # type: ignore[arg-type]
            hostname_file,
            vxlan_id,
            vxlan_port,
            observe,
            owner,  # type: ignore[arg-type]
            local_mode,  # type: ignore[arg-type]
            networkd_dir or NETWORKD_DIR,
            ifupdown_file or IFUPDOWN_FILE,
            nm_connection,
        )
        if local_mode == "wan":
            from reconciler.world.tunnel_owner import owner_config_problem

            problem = owner_config_problem(tunnel)
            if problem is not None:
                self.problem("tunnel.owner", problem)
        return tunnel

    def tunnelbroker(self) -> tuple[TunnelbrokerConfig | None, tuple[int, int, int] | None]:
        keys = {
            "tunnel_id", "username", "update_key_file", "update_url", "info_url",
            "min_update_interval", "connect_timeout", "read_timeout", "ca_file",
        }  # fmt: skip
        t = self.section("tunnelbroker", keys)
        tunnel_id = self.string(t, "tunnelbroker.tunnel_id")
        # ASCII digits: str.isdigit() also takes "¹²³" and full-width digits, which HE does not.
        if tunnel_id is not None and _TUNNEL_ID.fullmatch(tunnel_id) is None:
            self.problem(
                "tunnelbroker.tunnel_id",
                f"must be HE's numeric tunnel id (ASCII digits), not {_show(tunnel_id)}",
            )
            tunnel_id = None
        username = self.string(t, "tunnelbroker.username")
        key_file = self.path_value(t, "tunnelbroker.update_key_file")
        key_stat = self.key_file(key_file) if key_file is not None else None
        update_url = self.url(
            t, "tunnelbroker.update_url", default="https://ipv4.tunnelbroker.net/nic/update"
        )
        info_url = self.url(t, "tunnelbroker.info_url", default=None)
        # 0 would switch off the rate gate that keeps HE from locking the account for abuse;
        # 1 s is for the lab, a router wants minutes (see docs/configuration.md).
        interval = self.number(
            t, "tunnelbroker.min_update_interval", default=600.0, minimum=1.0, maximum=_DAY
        )
        connect = self.number(
            t, "tunnelbroker.connect_timeout", default=5.0, minimum=0.1, maximum=300.0
        )
        read = self.number(t, "tunnelbroker.read_timeout", default=15.0, minimum=0.1, maximum=300.0)
        ca_file = self.path_value(t, "tunnelbroker.ca_file", required=False)
        if ca_file is not None and self.file_kind("tunnelbroker.ca_file", ca_file) not in (
            "file",
            "unknown",
        ):
            self.problem("tunnelbroker.ca_file", f"{ca_file} is not a file")
        values = (tunnel_id, username, key_file, key_stat, update_url, interval, connect, read)
        if any(v is None for v in values):
            return None, None
        broker = TunnelbrokerConfig(
            tunnel_id,  # type: ignore[arg-type]
            username,  # type: ignore[arg-type]
            key_file,  # type: ignore[arg-type]
            update_url,  # type: ignore[arg-type]
            info_url,
            interval,  # type: ignore[arg-type]
            connect,  # type: ignore[arg-type]
            read,  # type: ignore[arg-type]
            ca_file,
        )
        return broker, key_stat

    def firewall(self) -> FirewallConfig | None:
        t = self.section("firewall", {"reload_command"}, required=False)
        command = self.argv(t, "firewall.reload_command", allow_empty=True)
        if command is _MISSING:
            return None
        return FirewallConfig(command or ())

    def reconcile(self) -> ReconcileConfig | None:
        keys = {"backoff_min", "backoff_max", "restart_limit", "restart_window", "he_backoff_max"}
        t = self.section("reconcile", keys, required=False)
        low = self.number(t, "reconcile.backoff_min", default=5.0, minimum=0.1, maximum=_DAY)
        high = self.number(t, "reconcile.backoff_max", default=3600.0, minimum=0.1, maximum=_WEEK)
        limit = self.integer(t, "reconcile.restart_limit", default=5, low=1, high=1000)
        window = self.number(
            t, "reconcile.restart_window", default=900.0, minimum=1.0, maximum=_WEEK
        )
        he_high = self.number(
            t, "reconcile.he_backoff_max", default=600.0, minimum=0.1, maximum=_DAY
        )
        if low is not None and high is not None and high < low:
            self.problem("reconcile.backoff_max", f"must be at least backoff_min ({low:g})")
            return None
        if low is not None and he_high is not None and he_high < low:
            self.problem("reconcile.he_backoff_max", f"must be at least backoff_min ({low:g})")
            return None
        if low is None or high is None or limit is None or window is None or he_high is None:
            return None
        return ReconcileConfig(low, high, limit, window, he_high)

    def notify(self) -> NotifyConfig | None:
        t = self.section("notify", {"command", "events", "timeout"}, required=False)
        if not t:
            return NotifyConfig()
        command = self.argv(t, "notify.command", allow_empty=False)
        if command is None and "command" not in t:
            self.problem("notify.command", "is required in [notify]")
        elif isinstance(command, tuple):
            program = Path(command[0])
            if not program.is_absolute():
                self.problem("notify.command", f"{command[0]!r} must be an absolute path")
            elif not (
                self.file_kind("notify.command", program) == "file" and os.access(program, os.X_OK)
            ):
                self.problem("notify.command", f"{program} is not an executable file")
        events = t.get("events", _MISSING)
        chosen: frozenset[str] = frozenset()
        if events is not _MISSING:
            known = ", ".join(EVENTS)
            if (
                not isinstance(events, list)
                or not events
                or not all(isinstance(e, str) for e in events)
            ):
                self.problem("notify.events", f"must be a non-empty list of events ({known})")
            else:
                for event in sorted(set(events) - set(EVENTS)):
                    self.problem("notify.events", f"{event!r} is not an event ({known})")
                chosen = frozenset(events)
        timeout = self.number(t, "notify.timeout", default=30.0, minimum=0.1, maximum=3600.0)
        if self.problems or not isinstance(command, tuple) or timeout is None:
            return None
        return NotifyConfig(command, chosen, timeout)

    def metrics(self) -> MetricsConfig | None:
        t = self.section("metrics", {"textfile", "listen", "listen_public"}, required=False)
        textfile = self.path_value(t, "metrics.textfile", required=False)
        if textfile is not None:
            if textfile.suffix != ".prom":
                self.problem(
                    "metrics.textfile",
                    f"{_show(str(textfile))} must end in .prom (node_exporter reads only those)",
                )
            elif (parent := self.file_kind("metrics.textfile", textfile.parent)) == "missing":
                self.problem(
                    "metrics.textfile", f"directory {_show(str(textfile.parent))} does not exist"
                )
            elif parent != "directory":
                if parent != "unknown":
                    self.problem(
                        "metrics.textfile", f"{_show(str(textfile.parent))} is not a directory"
                    )
            elif self.file_kind("metrics.textfile", textfile) == "directory":
                self.problem(
                    "metrics.textfile",
                    f"{_show(str(textfile))} is a directory; name the file to write in it",
                )
        public = self.boolean(t, "metrics.listen_public", default=False)
        listen = self.listen_address(t, "metrics.listen", public=bool(public))
        if public is None or listen is _MISSING:
            return None
        return MetricsConfig(textfile, listen, public)

    # --- values -------------------------------------------------------------------------

    def listen_address(self, t: Mapping[str, Any], key: str, *, public: bool) -> Any:
        """("address", port) from "127.0.0.1:9469" or "[::1]:9469"; None when absent,
        _MISSING when invalid. Only loopback unless `public`."""
        value = self.get(t, key, False)
        if value is _MISSING:
            return None
        shown = _show(value)
        if not isinstance(value, str):
            self.problem(key, f'must be "ADDRESS:PORT" (e.g. "127.0.0.1:9469"), not {shown}')
            return _MISSING
        host, _, port_text = value.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            address = ipaddress.ip_address(host)
            port = int(port_text)
        except ValueError:
            self.problem(key, f'must be "ADDRESS:PORT" (e.g. "127.0.0.1:9469"), not {shown}')
            return _MISSING
        if not 1 <= port <= 65535 or not port_text.isdigit():
            self.problem(key, f"port must be between 1 and 65535, in {shown}")
            return _MISSING
        if not address.is_loopback and not public:
            self.problem(
                key, f"{address} is not a loopback address; set metrics.listen_public = true"
            )
            return _MISSING
        return (str(address), port)

    def get(self, table: Mapping[str, Any], key: str, required: bool) -> Any:
        value = table.get(key.rsplit(".", 1)[1], _MISSING)
        if value is _MISSING and required:
            self.problem(key, "is required")
        return value

    def string(self, t: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
        value = self.get(t, key, required)
        if value is _MISSING:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(key, f"must be a non-empty string, not {_show(value)}")
            return None
        return value

    def choice(
        self, t: Mapping[str, Any], key: str, options: tuple[str, ...], default: str | None = None
    ) -> str | None:
        value = self.get(t, key, default is None)
        if value is _MISSING:
            return default
        if value not in options:
            wanted = " or ".join(f'"{o}"' for o in options)
            self.problem(key, f"must be {wanted}, not {_show(value)}")
            return None
        return str(value)

    def boolean(self, t: Mapping[str, Any], key: str, *, default: bool) -> bool | None:
        value = self.get(t, key, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, not {_show(value)}")
            return None
        return value

    def number(
        self,
        t: Mapping[str, Any],
        key: str,
        *,
        default: float | None,
        minimum: float,
        maximum: float = _WEEK,
        unit: str = "seconds",
    ) -> float | None:
        """A number between `minimum` and `maximum` (nan, inf and 400-digit integers are
        outside: the comparison is exact, nothing is converted before it)."""
        value = self.get(t, key, default is None)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(key, f"must be a number of {unit}, not {_show(value)}")
            return None
        if not minimum <= value <= maximum:
            self.problem(
                key, f"must be between {minimum:g} and {maximum:g} {unit}, not {_show(value)}"
            )
            return None
        return float(value)

    def integer(
        self, t: Mapping[str, Any], key: str, *, default: int | None, low: int, high: int
    ) -> int | None:
        value = self.get(t, key, False)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be an integer, not {_show(value)}")
            return None
        if not low <= value <= high:
            self.problem(key, f"must be between {low} and {high}, not {_show(value)}")
            return None
        return value

    def address(
        self,
        t: Mapping[str, Any],
        key: str,
        version: int,
        *,
        required: bool = True,
        host: bool = False,
    ) -> str | None:
        """An address of `version`; with `host`, one that names a single host (unicast)."""
        value = self.get(t, key, required)
        if value is _MISSING:
            return None
        family = "IPv4" if version == 4 else "IPv6"
        if not isinstance(value, str):
            self.problem(key, f"must be an {family} address as a string, not {_show(value)}")
            return None
        try:
            parsed = ipaddress.ip_address(value)
        except ValueError:
            self.problem(key, f"{value!r} is not an {family} address")
            return None
        if parsed.version != version:
            self.problem(key, f"{value!r} is an IPv{parsed.version} address, expected {family}")
            return None
        not_a_host = _not_a_host(parsed) if host else None
        if not_a_host:
            self.problem(key, f"{value!r} is {not_a_host}, not the address of a host")
            return None
        return str(parsed)

    def interface_name(
        self, t: Mapping[str, Any], key: str, daemon: DaemonConfig | None
    ) -> str | None:
        value = self.string(t, key)
        if value is None:
            return None
        problem = interface_name_problem(value, daemon.platform if daemon else None)
        if problem is not None:
            self.problem(key, f"{_SHORT.repr(value)} {problem}")
            return None
        return value

    def argv(self, t: Mapping[str, Any], key: str, *, allow_empty: bool) -> Any:
        """A command as an argv list; None when absent, _MISSING when invalid."""
        value = self.get(t, key, False)
        if value is _MISSING:
            return None
        if isinstance(value, str):
            self.problem(key, "must be a list of arguments (argv), not a shell string")
            return _MISSING
        if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
            self.problem(key, f"must be a list of non-empty strings, not {_show(value)}")
            return _MISSING
        if not value and not allow_empty:
            self.problem(key, "must name a command (leave the key out for the default)")
            return _MISSING
        return tuple(value)

    def url(self, t: Mapping[str, Any], key: str, *, default: str | None) -> str | None:
        value = self.get(t, key, False)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            self.problem(key, f"must be an http(s) URL, not {_show(value)}")
            return None
        # urlsplit and .port raise ValueError on a malformed host ("https://[::1/nic") or port
        # ("https://h:99999/", "https://h:x/"): a problem with this key, not an internal error.
        try:
            parts = urlsplit(value)
            hostname, port = parts.hostname, parts.port
        except ValueError as exc:
            self.problem(key, f"{_show(value)} is not a valid URL: {exc}")
            return None
        if parts.scheme not in ("http", "https") or not hostname:
            self.problem(key, f"must be an http(s) URL, not {_show(value)}")
            return None
        if port == 0:
            self.problem(key, f"port 0 is not a port to connect to, in {_show(value)}")
            return None
        if parts.username or parts.password:
            self.problem(key, "must not carry credentials (they come from update_key_file)")
            return None
        return value

    def path_value(
        self, t: Mapping[str, Any], key: str, *, required: bool = True, default: str | None = None
    ) -> Path | None:
        value = self.get(t, key, required and default is None)
        if value is _MISSING:
            return None if default is None else (self.base / default)
        if not isinstance(value, str) or not value or "\0" in value:
            self.problem(key, f"must be a path, not {_show(value)}")
            return None
        try:
            expanded = Path(value).expanduser()
        except RuntimeError:  # "~nosuchuser/x": Python cannot find that home directory
            user = value.split("/", 1)[0]
            self.problem(key, f"{_show(value)}: no home directory for {user}")
            return None
        return Path(os.path.normpath(self.base / expanded))

    def file_kind(self, key: str, path: Path) -> str:
        """ "directory", "file", "other" or "missing"; "unknown" (and a problem for `key`)
        when the system cannot tell (a name too long, no permission)."""
        try:
            mode = os.stat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        except OSError as exc:
            self.problem(key, f"{_show(str(path))}: {exc.strerror or type(exc).__name__}")
            return "unknown"
        if stat.S_ISDIR(mode):
            return "directory"
        return "file" if stat.S_ISREG(mode) else "other"

    def key_file(self, path: Path) -> tuple[int, int, int] | None:
        """Check the update key file like ssh checks a private key; never read it."""
        key = "tunnelbroker.update_key_file"
        try:
            info = path.stat()
        except FileNotFoundError:
            self.problem(key, f"{path} does not exist")
            return None
        except OSError as exc:
            self.problem(key, f"{path}: {exc.strerror}")
            return None
        if not stat.S_ISREG(info.st_mode):
            self.problem(key, f"{path} is not a regular file")
            return None
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            self.problem(
                key,
                f"{path} is accessible by group or others (mode {mode:04o}); chmod 600 it",
            )
            return None
        try:
            read_update_key(path)
        except UpdateKeyError as exc:  # names the file and the kind of problem, never the key
            self.problem(key, str(exc).removeprefix("update key file "))
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)


def _not_a_host(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of non-host address `address` is, or None when it names one host."""
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address):
        if address == ipaddress.IPv4Address("255.255.255.255"):
            return "the broadcast address"
    elif address.scope_id is not None:
        # a zone ("%eth0") ties the address to one link of this machine: not a peer anywhere
        return "a scoped address"
    return None


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 2, 40, 40


def _show(value: Any) -> str:
    """A value for an error message, short, with its TOML type."""
    kind = {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "a list", dict: "a table",
    }.get(type(value), type(value).__name__)  # fmt: skip
    if type(value) is int and value.bit_length() > 64:
        # repr() of a 5000-digit integer raises; nobody reads 400 digits anyway
        return f"{kind} of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = _SHORT.repr(value)
    return f"{kind} {text[:40] + '...' if len(text) > 40 else text}"
