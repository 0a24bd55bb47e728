"""What the installed systemd unit lets the daemon, and what it runs, touch: check-config's
warnings for configured paths the sandbox blocks.

The shipped unit (etc/systemd/reconciler.service) makes the file system read-only but for
the state directory (ProtectSystem=strict, ReadWritePaths=), hides /home and /root
(ProtectHome=) and gives the daemon a /tmp of its own (PrivateTmp=). A textfile directory,
a hostname file or a hook outside what it allows fails only when the daemon first writes or
runs it. This reads the unit as systemd would (the unit file, then its drop-ins in order;
later assignments override, list settings add up and an empty one resets them) and says
which configured path it blocks. It judges only from a unit it found: without one (not a
systemd host, another unit name) it says nothing rather than guess.

Where the unit comes from: `check-config --unit PATH` (the file; drop-ins in PATH.d/ beside
it), else `systemctl cat reconciler.service` (what systemd has loaded, drop-ins included),
else the unit file in systemd's unit directories (systemd not running: a container, a
chroot, an image being built).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from attrs import field, frozen

from reconciler.model.config import Config
from reconciler.world.runner import SubprocessRunner

__all__ = [
    "UNIT_DIRECTORIES",
    "UNIT_NAME",
    "Sandbox",
    "installed_unit",
    "parse_unit",
    "sandbox_warnings",
]

UNIT_NAME = "reconciler.service"
# Where systemd looks for system units, first to last (systemd.unit(5)).
UNIT_DIRECTORIES = tuple(
    Path(d)
    for d in (
        "/etc/systemd/system",
        "/run/systemd/system",
        "/usr/local/lib/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
    )
)
_SYSTEMCTL_TIMEOUT = 5.0
_UNIT_LIMIT = 1 << 20  # bytes of a unit file read

# Settings that add up over assignments (an empty assignment resets them).
_LISTS = frozenset(
    {
        "ReadWritePaths",
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "StateDirectory",
        "RuntimeDirectory",
        "LogsDirectory",
        "CacheDirectory",
        "RestrictAddressFamilies",
    }
)
# The *Directory= settings: the directory each makes, writable under ProtectSystem=strict.
_MANAGED = {
    "StateDirectory": "/var/lib",
    "RuntimeDirectory": "/run",
    "LogsDirectory": "/var/log",
    "CacheDirectory": "/var/cache",
}
_ASSIGNMENT = re.compile(r"^([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)$")
_TRUE = frozenset({"1", "yes", "true", "on"})
_DHCP_CLIENTS = frozenset({"dhclient", "dhcpcd", "udhcpc", "pump"})


@frozen
class Sandbox:
    """The [Service] settings of a unit that decide what a path is to the daemon."""

    source: str  # where it was read, for the warnings
    settings: dict[str, str] = field(factory=dict)
    lists: dict[str, list[str]] = field(factory=dict)

    def value(self, key: str, default: str = "") -> str:
        return self.settings.get(key, default)

    def _rules(self) -> list[tuple[str, str]]:
        """(path, access) from the settings: "ro", "rw" or "hidden"; the deepest path that
        holds a given path decides (then hidden before read-only before writable)."""
        rules: list[tuple[str, str]] = []
        protect = self.value("ProtectSystem", "no").lower()
        if protect == "strict":
            rules += [("/", "ro"), ("/dev", "rw"), ("/proc", "rw"), ("/sys", "rw")]
        elif protect in ("full", *_TRUE):
            ro = ["/usr", "/boot", "/efi"] + (["/etc"] if protect == "full" else [])
            rules += [(path, "ro") for path in ro]
        home = self.value("ProtectHome", "no").lower()
        if home in _TRUE or home == "tmpfs":
            rules += [(path, "hidden") for path in ("/home", "/root", "/run/user")]
        elif home == "read-only":
            rules += [(path, "ro") for path in ("/home", "/root", "/run/user")]
        for key, base in _MANAGED.items():
            for name in self.lists.get(key, []):
                rules.append((posixpath.join(base, name), "rw"))
        for key, access in (
            ("ReadWritePaths", "rw"),
            ("ReadOnlyPaths", "ro"),
            ("InaccessiblePaths", "hidden"),
        ):
            for entry in self.lists.get(key, []):
                rules.append((entry.lstrip("-+"), access))
        return rules

    def access(self, path: str) -> tuple[str, str]:
        """What `path` is inside the unit: ("rw" | "ro" | "hidden" | "private", why)."""
        path = posixpath.normpath(path)
        if self.value("PrivateTmp", "no").lower() in _TRUE and _under(path, ("/tmp", "/var/tmp")):
            return "private", "PrivateTmp=yes"
        order = {"rw": 0, "ro": 1, "hidden": 2}
        best: tuple[int, int, str, str] | None = None
        for rule_path, access in self._rules():
            rule_path = posixpath.normpath(rule_path)
            if _under(path, (rule_path,)):
                depth = 0 if rule_path == "/" else rule_path.count("/")
                candidate = (depth, order[access], access, rule_path)
                if best is None or candidate[:2] > best[:2]:
                    best = candidate
        if best is None:
            return "rw", ""
        return best[2], _why(best[2], best[3], self)

    @property
    def address_families(self) -> list[str] | None:
        """The allowed address families, None when the unit does not restrict them (a deny
        list, starting with ~, is taken as no allow list)."""
        families = self.lists.get("RestrictAddressFamilies")
        if not families or families[0].startswith("~"):
            return None
        return families


def _why(access: str, rule_path: str, sandbox: Sandbox) -> str:
    if access == "rw":
        return ""
    protect = sandbox.value("ProtectSystem", "no")
    if rule_path in ("/", "/usr", "/boot", "/efi", "/etc") and access == "ro":
        return f"ProtectSystem={protect}"
    if rule_path in ("/home", "/root", "/run/user"):
        return f"ProtectHome={sandbox.value('ProtectHome')}"
    kind = {"ro": "ReadOnlyPaths", "hidden": "InaccessiblePaths"}[access]
    return f"{kind}={rule_path}"


def _under(path: str, parents: Iterable[str]) -> bool:
    return any(
        parent == "/" or path == parent or path.startswith(parent.rstrip("/") + "/")
        for parent in parents
    )


def parse_unit(text: str, source: str) -> Sandbox:
    """The [Service] settings of a unit's text (a unit file and its drop-ins one after the
    other, as `systemctl cat` prints them)."""
    settings: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):  # a continuation line
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        match = _ASSIGNMENT.match(line)
        if section != "Service" or match is None:
            continue
        key, value = match.group(1), match.group(2).strip()
        if key in _LISTS:
            if not value:
                lists[key] = []
            else:
                lists.setdefault(key, []).extend(value.split())
        else:
            settings[key] = value
    return Sandbox(source, settings, lists)


def installed_unit(
    unit_path: Path | None, search: tuple[Path, ...] | None = None
) -> Sandbox | None:
    """The unit's sandbox from `unit_path` (and PATH.d/*.conf); else what `systemctl cat`
    prints; else (no systemd running: a container, a chroot) the unit file found first in
    systemd's unit directories `search`, with every directory's drop-ins. None when none of
    these gives a unit."""
    if unit_path is not None:
        return _from_files(unit_path, [Path(f"{unit_path}.d")])
    systemctl = shutil.which("systemctl")
    if systemctl is not None:
        done = SubprocessRunner().run(
            [systemctl, "cat", "--no-pager", UNIT_NAME], timeout=_SYSTEMCTL_TIMEOUT
        )
        if done.ok and "[Service]" in done.stdout:
            first = done.stdout.splitlines()[0]
            source = first[2:].strip() if first.startswith("# ") else f"systemctl cat {UNIT_NAME}"
            return parse_unit(done.stdout, source)
    directories = UNIT_DIRECTORIES if search is None else search
    for directory in directories:
        unit = directory / UNIT_NAME
        if unit.is_file():
            return _from_files(unit, [d / f"{UNIT_NAME}.d" for d in directories])
    return None


def _from_files(unit: Path, dropin_dirs: list[Path]) -> Sandbox:
    """A unit file and its drop-ins, read in systemd's order: by file name, a name in an
    earlier directory hiding the same name in a later one."""
    dropins: dict[str, Path] = {}
    for directory in dropin_dirs:
        with contextlib.suppress(OSError):
            for path in directory.glob("*.conf"):
                dropins.setdefault(path.name, path)
    texts = [_read(unit), *(_read(dropins[name]) for name in sorted(dropins))]
    return parse_unit("\n".join(texts), str(unit))


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as unit:
        return unit.read(_UNIT_LIMIT)


def sandbox_warnings(config: Config, sandbox: Sandbox) -> list[str]:
    """One line for each configured path the unit blocks, and for a DHCP client run as
    wan.restart_command without AF_PACKET."""
    return list(_warnings(config, sandbox))


def _warnings(config: Config, sandbox: Sandbox) -> Iterator[str]:
    where = f"the unit {sandbox.source}"
    writable: list[tuple[str, Path, str]] = [
        ("daemon.state_dir", config.daemon.state_dir, "is"),
    ]
    if config.metrics.textfile is not None:
        writable.append(("metrics.textfile", config.metrics.textfile.parent, "is in"))
    if config.tunnel.hostname_file is not None:
        writable.append(("tunnel.hostname_file", config.tunnel.hostname_file.parent, "is in"))
    for key, directory, relation in writable:
        access, why = sandbox.access(_resolved(directory))
        if access == "ro":
            yield (
                f"{key}: {directory} {relation} a directory {where} makes read-only ({why}): "
                f"add it to ReadWritePaths= in a drop-in (etc/systemd/drop-ins/)"
            )
        elif access in ("hidden", "private"):
            yield (
                f"{key}: {directory} {relation} a directory {where} hides from the daemon "
                f"({why}): put it elsewhere"
            )
    readable = [("tunnelbroker.update_key_file", config.tunnelbroker.update_key_file)]
    for key, argv in (
        ("notify.command", config.notify.command),
        ("wan.restart_command", config.wan.restart_command or ()),
        ("firewall.reload_command", config.firewall.reload_command),
    ):
        if argv and os.path.isabs(argv[0]):
            readable.append((key, Path(argv[0])))
    for key, path in readable:
        access, why = sandbox.access(_resolved(path))
        if access in ("hidden", "private"):
            yield f"{key}: {path} is hidden from the daemon by {where} ({why}): put it elsewhere"
    client = _sandboxed_dhcp_client(config.wan.restart_command or ())
    families = sandbox.address_families
    if client is not None and families is not None and "AF_PACKET" not in families:
        yield (
            f"wan.restart_command: {client} needs AF_PACKET, which {where} does not allow "
            f"(RestrictAddressFamilies=): see etc/systemd/drop-ins/dhcp-client.conf"
        )


def _sandboxed_dhcp_client(argv: tuple[str, ...]) -> str | None:
    """The DHCP client `argv` runs inside our sandbox: argv[0], or what `systemd-run
    --scope` runs (without --scope, systemd-run starts a service of its own, outside it)."""
    if not argv:
        return None
    name = os.path.basename(argv[0])
    if name == "systemd-run" and "--scope" in argv:
        programs = [os.path.basename(arg) for arg in argv[1:] if not arg.startswith("-")]
        name = programs[0] if programs else name
    return name if name in _DHCP_CLIENTS else None


def _resolved(path: Path) -> str:
    """The path as the kernel will reach it (symlinks followed where they exist)."""
    return os.path.realpath(path)
