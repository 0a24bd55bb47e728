"""Configured commands looked at before they are needed: found on PATH, of this platform.

A command that is missing, or another platform's tool (`pfctl` on Linux, `nft` on
OpenBSD), fails only when the daemon first needs it: after a WAN change, when the tunnel has
just been rebuilt and the firewall step fails for good. check-config says so beforehand, one
line per command. An `nft -f FILE` whose file starts over with `flush ruleset` (Debian's
/etc/nftables.conf does) would wipe every other table on each tunnel restart (Docker's,
libvirt's, fail2ban's): said too. Warnings, not errors: the file is valid, and a program may
be installed after the configuration is written.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Iterator, Mapping

from reconciler.model.config import Config

__all__ = ["OTHER_PLATFORMS_TOOLS", "command_warnings"]

# Programs that exist on one platform only, and what the other one uses instead.
OTHER_PLATFORMS_TOOLS: Mapping[str, Mapping[str, str]] = {
    "linux": {
        "pfctl": "OpenBSD's pf; on Linux use nft (docs/linux.md), or [] for no firewall step",
        "dhcpleasectl": "OpenBSD's dhcpleased; on Linux restart the WAN's own DHCP client",
        "rcctl": "OpenBSD's; on Linux use systemctl",
        "/etc/netstart": "OpenBSD's; on Linux restart the WAN's owner (networkctl, nmcli, ifup)",
    },
    "openbsd": {
        "nft": "Linux's nftables; on OpenBSD use pfctl -f /etc/pf.conf",
        "iptables": "Linux's; on OpenBSD use pfctl -f /etc/pf.conf",
        "ip6tables": "Linux's; on OpenBSD use pfctl -f /etc/pf.conf",
        "iptables-restore": "Linux's; on OpenBSD use pfctl -f /etc/pf.conf",
        "ip6tables-restore": "Linux's; on OpenBSD use pfctl -f /etc/pf.conf",
        "ufw": "Linux's; on OpenBSD use pfctl -f /etc/pf.conf",
        "firewall-cmd": "Linux's firewalld; on OpenBSD use pfctl -f /etc/pf.conf",
        "systemctl": "Linux's; on OpenBSD use rcctl",
        "networkctl": "Linux's systemd-networkd; on OpenBSD use sh /etc/netstart",
        "nmcli": "Linux's NetworkManager; on OpenBSD use sh /etc/netstart",
        "ip": "Linux's iproute2; on OpenBSD use ifconfig or sh /etc/netstart",
    },
}
_FLUSH_RULESET = re.compile(r"^\s*flush\s+ruleset\b", re.MULTILINE)
_NFT_FILE_LIMIT = 1 << 20  # bytes of an nft file read to look for `flush ruleset`


def command_warnings(config: Config, environ: Mapping[str, str]) -> list[str]:
    """One line per problem with a configured command, naming the key."""
    tools = OTHER_PLATFORMS_TOOLS.get(config.daemon.platform, {})
    path = environ.get("PATH", os.defpath)
    warnings = []
    for key, argv in _configured_commands(config):
        program = argv[0]
        # `sh /etc/netstart em0`: the script is the tool, not the shell.
        names = [os.path.basename(program), *argv[1:2]]
        other = next((tools[name] for name in names if name in tools), None)
        if other is not None:
            warnings.append(f"{key}: {_shown(argv)} is {other}")
        elif _missing(program, path):
            where = "does not exist or is not executable" if "/" in program else "is not on PATH"
            warnings.append(f"{key}: {program} {where}")
        elif os.path.basename(program) == "nft" and _flushes_ruleset(argv):
            warnings.append(
                f"{key}: {_shown(argv)} loads a file that starts with `flush ruleset`: every "
                "table goes (Docker's, libvirt's, fail2ban's); load a table of your own "
                "instead (docs/linux.md)"
            )
    return warnings


def _configured_commands(config: Config) -> Iterator[tuple[str, tuple[str, ...]]]:
    if config.wan.restart_command:
        yield "wan.restart_command", config.wan.restart_command
    if config.firewall.reload_command:
        yield "firewall.reload_command", config.firewall.reload_command
    if config.notify.command:
        yield "notify.command", config.notify.command


def _missing(program: str, path: str) -> bool:
    if "/" in program:
        return not (os.path.isfile(program) and os.access(program, os.X_OK))
    return shutil.which(program, path=path) is None


def _flushes_ruleset(argv: tuple[str, ...]) -> bool:
    """Whether `nft ... -f FILE` (or --file FILE) names a readable file holding
    `flush ruleset` outside comments."""
    for flag, value in itertools.pairwise(argv):
        if flag in ("-f", "--file"):
            try:
                with open(value, encoding="utf-8", errors="replace") as stream:
                    text = stream.read(_NFT_FILE_LIMIT)
            except OSError:
                return False
            return bool(_FLUSH_RULESET.search(text))
    return False


def _shown(argv: tuple[str, ...]) -> str:
    return " ".join(argv)
