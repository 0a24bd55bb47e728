"""The tunnel's owner on Linux, told the new local end so that it survives a reboot.

On OpenBSD the tunnel's persistent config is /etc/hostname.gif0, which we rewrite. On Linux
the link usually belongs to a network manager (`tunnel.owner`), and its config is what a
reboot rebuilds the link from. The platform changes the live link's ends itself (netlink),
then tells the owner the new local end the way its own tools would:

- systemd-networkd: a drop-in `<netdev>.d/reconciler.conf` beside the .netdev that makes the
  link (`[Tunnel] Local=` for sit, `[VXLAN] Local=` for the vxlan stand-in), then
  `networkctl reload`. The .netdev itself is never edited.
- NetworkManager: `nmcli connection modify <connection> ip-tunnel.local <address>` (written
  from NetworkManager's documentation: no NetworkManager runs in this project's tests).
- ifupdown: the `local` line of the tunnel's `iface <name> inet6 v4tunnel` stanza in
  /etc/network/interfaces, rewritten in place (the rest of the file byte for byte).

Where the owner's config cannot be found (no .netdev names the link, no such stanza) the
call fails with one line saying what is missing; nothing is guessed. Files are written only
through reconciler.atomicfile, and only when their content changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.atomicfile import write_atomically
from reconciler.errors import PermanentError, TemporaryError
from reconciler.model.config import TunnelConfig
from reconciler.world.runner import NOT_STARTED, CommandRunner, Completed, describe_failure

__all__ = [
    "DROP_IN_NAME",
    "OwnerConfigMissing",
    "find_netdev",
    "ifupdown_with_local",
    "networkd_drop_in",
    "owner_config_problem",
    "persist_local",
]

DROP_IN_NAME = "reconciler.conf"
COMMAND_TIMEOUT = 30.0
# nmcli(1), EXIT STATUS: 10 "Connection, device, or access point does not exist"
_NMCLI_NOT_FOUND = 10
_MAX_CONFIG_BYTES = 1 << 20  # an owner's config file is small; more is not what we think
# ifupdown(5): a stanza starts with one of these words at the start of a line
_STANZA_STARTS = ("iface", "mapping", "auto", "allow-", "source", "no-auto-down", "no-scripts")


class OwnerConfigMissing(PermanentError):
    """The owner's config for the tunnel cannot be found: nothing to tell it through."""


def persist_local(tunnel: TunnelConfig, local: str, runner: CommandRunner) -> str | None:
    """Tell `tunnel.owner` that the tunnel's local end is now `local`; what was done (one
    line), or None when the owner already had it (or there is no owner to tell)."""
    if tunnel.owner == "networkd":
        return _persist_networkd(tunnel, local, runner)
    if tunnel.owner == "networkmanager":
        connection = tunnel.nm_connection or tunnel.interface
        argv = ["nmcli", "connection", "modify", connection, "ip-tunnel.local", local]
        done = runner.run(argv, timeout=COMMAND_TIMEOUT)
        if done.returncode == _NMCLI_NOT_FOUND:
            raise OwnerConfigMissing(
                f"tunnel.owner = networkmanager: NetworkManager has no connection {connection!r} "
                "(set tunnel.nm_connection to the tunnel's connection name)"
            )
        _check("nmcli connection modify", done)
        return f"NetworkManager connection {connection}: ip-tunnel.local {local}"
    if tunnel.owner == "ifupdown":
        return _persist_ifupdown(tunnel, local)
    return None


def owner_config_problem(tunnel: TunnelConfig) -> str | None:
    """Why the owner's config for the tunnel cannot be found (for check-config), or None."""
    try:
        if tunnel.owner == "networkd":
            find_netdev(tunnel.networkd_dir, tunnel.interface)
        elif tunnel.owner == "ifupdown":
            text = _read_text(tunnel.ifupdown_file)
            ifupdown_with_local(text, tunnel.interface, "0.0.0.0", tunnel.ifupdown_file)
    except OwnerConfigMissing as missing:
        return str(missing)
    except TemporaryError as problem:
        return str(problem)
    return None


# -- systemd-networkd -----------------------------------------------------------------------


def networkd_drop_in(mode: str, local: str) -> str:
    """The drop-in's text: the section of the .netdev kind that holds the local end."""
    section = "VXLAN" if mode == "vxlan" else "Tunnel"
    return (
        "# Written by reconciler: the tunnel's local end follows the WAN address.\n"
        "# Delete this file (and stop reconciler) to go back to the .netdev's own Local=.\n"
        f"[{section}]\nLocal={local}\n"
    )


def find_netdev(directory: Path, interface: str) -> Path:
    """The .netdev in `directory` whose [NetDev] Name= is `interface` (networkd reads them in
    lexical order and the first one naming a link wins)."""
    try:
        names = sorted(entry.name for entry in os.scandir(directory) if entry.is_file())
    except OSError as exc:
        raise OwnerConfigMissing(
            f"tunnel.owner = networkd: cannot read {directory}: {exc.strerror or exc}"
        ) from exc
    for name in names:
        if not name.endswith(".netdev"):
            continue
        path = directory / name
        try:
            text = _read_text(path)
        except TemporaryError:
            continue
        if interface in _netdev_names(text):
            return path
    raise OwnerConfigMissing(
        f"tunnel.owner = networkd: no .netdev in {directory} has [NetDev] Name={interface}, "
        "so nothing makes the tunnel at boot to tell its local end to"
    )


def _netdev_names(text: str) -> list[str]:
    names: list[str] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep and section == "NetDev" and key.strip() == "Name":
            names.append(value.strip())
    return names


def _persist_networkd(tunnel: TunnelConfig, local: str, runner: CommandRunner) -> str | None:
    netdev = find_netdev(tunnel.networkd_dir, tunnel.interface)
    drop_in_dir = netdev.with_name(netdev.name + ".d")
    drop_in = drop_in_dir / DROP_IN_NAME
    content = networkd_drop_in(tunnel.mode, local)
    try:
        if drop_in.exists() and _read_text(drop_in) == content:
            return None
        try:
            os.mkdir(drop_in_dir, 0o755)
        except FileExistsError:
            if drop_in_dir.is_symlink() or not drop_in_dir.is_dir():
                raise OwnerConfigMissing(
                    f"{drop_in_dir} is not a directory we can write a drop-in into"
                ) from None
        write_atomically(drop_in, content.encode(), mode=0o644)
    except OSError as exc:
        raise TemporaryError(f"cannot write {drop_in}: {exc.strerror or exc}") from exc
    _run("networkctl reload", ["networkctl", "reload"], runner)
    return f"wrote {drop_in} (Local={local}) and reloaded networkd"


# -- ifupdown -------------------------------------------------------------------------------


def ifupdown_with_local(text: str, interface: str, local: str, path: Path) -> str:
    """`text` (an interfaces(5) file) with the `local` line of `iface INTERFACE inet6
    v4tunnel` set to `local` (added after the iface line when missing); every other line as
    it was. OwnerConfigMissing when the file has no such stanza."""
    lines = text.splitlines(keepends=True)
    start = _stanza_start(lines, interface)
    if start is None:
        raise OwnerConfigMissing(
            f"tunnel.owner = ifupdown: {path} has no 'iface {interface} inet6 v4tunnel' "
            "stanza (a stanza in a sourced file is not rewritten)"
        )
    end = start + 1
    while end < len(lines) and not _starts_stanza(lines[end]):
        end += 1
    for number in range(start + 1, end):
        words = lines[number].split()
        if words and words[0] == "local":
            indent = lines[number][: len(lines[number]) - len(lines[number].lstrip())]
            newline = "\n" if lines[number].endswith("\n") else ""
            lines[number] = f"{indent}local {local}{newline}"
            return "".join(lines)
    body = [line for line in lines[start + 1 : end] if line.strip()]
    indent = body[0][: len(body[0]) - len(body[0].lstrip())] if body else "    "
    if not lines[start].endswith("\n"):
        lines[start] += "\n"
    lines.insert(start + 1, f"{indent}local {local}\n")
    return "".join(lines)


def _stanza_start(lines: list[str], interface: str) -> int | None:
    for number, line in enumerate(lines):
        words = line.split()
        if words[:4] == ["iface", interface, "inet6", "v4tunnel"]:
            return number
    return None


def _starts_stanza(line: str) -> bool:
    if not line or line[0].isspace():
        return False
    return line.startswith(_STANZA_STARTS)


def _persist_ifupdown(tunnel: TunnelConfig, local: str) -> str | None:
    path = tunnel.ifupdown_file
    text = _read_text(path)
    updated = ifupdown_with_local(text, tunnel.interface, local, path)
    if updated == text:
        return None
    try:
        mode = os.stat(path).st_mode & 0o777
        write_atomically(path, updated.encode(), mode=mode)
    except OSError as exc:
        raise TemporaryError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return f"{path}: local {local} for {tunnel.interface}"


# -- plumbing -------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as exc:
        raise OwnerConfigMissing(f"{path} does not exist") from exc
    except OSError as exc:
        raise TemporaryError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > _MAX_CONFIG_BYTES:
        raise OwnerConfigMissing(f"{path} is larger than 1 MiB: not an owner's config we know")
    return data.decode("utf-8", errors="surrogateescape")


def _run(what: str, argv: list[str], runner: CommandRunner) -> None:
    _check(what, runner.run(argv, timeout=COMMAND_TIMEOUT))


def _check(what: str, done: Completed) -> None:
    if done.ok:
        return
    message = f"{what}: {describe_failure(done)}"
    if done.returncode == NOT_STARTED and not done.timed_out:
        raise PermanentError(message)
    raise TemporaryError(message)
