"""OpenWrt's netifd as the owner of an HE tunnel, and a second updater of HE.

An OpenWrt interface of `proto 6in4` in /etc/config/network is netifd's: it makes the sit
link `6in4-<interface>` and, when `tunnelid`, `username` and `updatekey` (or `password`) are
set, sends the HE endpoint update itself on every ifup (its 6in4.sh; the answer is never
read, three tries then it gives up). With reconciler beside it HE gets two updaters, and
every ifup a repeat HE counts towards abuse. check-config and init say which of the two
updates HE and how to turn the other off: reconciler (it reads HE's answers and backs off),
by deleting netifd's `tunnelid`.

The file is UCI's: `config TYPE 'NAME'` opens a section, `option KEY 'VALUE'` and `list KEY
'VALUE'` fill it, with shell-style quoting and `#` comments. It is read as text, never run;
`root` stands for / (tests).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path

from attrs import frozen

__all__ = [
    "NETWORK_CONFIG",
    "SYSTEM_ROOT_VARIABLE",
    "NetifdTunnel",
    "UciSection",
    "netifd_tunnels",
    "parse_uci",
    "tunnels_concerning",
]

NETWORK_CONFIG = "etc/config/network"  # relative to the root
SYSTEM_ROOT_VARIABLE = "RECONCILER_SYSTEM_ROOT"  # tests: read another root's files, not /
_LIMIT = 1 << 20  # bytes of /etc/config/network read
_UCI_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


@frozen
class UciSection:
    type: str
    name: str | None
    options: dict[str, str]


@frozen
class NetifdTunnel:
    """A `proto 6in4` interface of /etc/config/network."""

    interface: str  # the UCI section's name: `ifup wan6`, `uci set network.wan6...`
    link: str  # the sit link netifd makes: 6in4-<interface>
    server_ipv4: str | None  # `peeraddr`
    tunnel_id: str | None
    updates_he: bool  # tunnelid, username and updatekey (or password) all set
    disabled: bool

    def concerns(self, interface: str, server_ipv4: str | None, tunnel_id: str | None) -> bool:
        """Whether this is reconciler's tunnel link, or the same HE tunnel on another."""
        return (
            self.link == interface
            or (server_ipv4 is not None and self.server_ipv4 == server_ipv4)
            or (tunnel_id is not None and self.tunnel_id == tunnel_id)
        )

    def owner_line(self, interface: str) -> str:
        """What netifd has to do with reconciler's tunnel `interface`, in one line."""
        what = "owns this tunnel" if self.link == interface else "has the same HE tunnel as"
        state = ", disabled" if self.disabled else ""
        return f"netifd {what} {self.link} (proto 6in4, interface '{self.interface}'{state})"

    def updater_line(self) -> str:
        """Who updates HE, in one line."""
        if not self.updates_he or self.disabled:
            return (
                f"reconciler alone (netifd's 6in4 interface '{self.interface}' sends HE "
                "nothing: no tunnelid and updatekey, or disabled)"
            )
        return f"reconciler and netifd's 6in4 interface '{self.interface}': two updaters"

    def warning(self, tunnel_id: str) -> str | None:
        """The one line for two updaters: which should update HE and how to turn one off."""
        if not self.updates_he or self.disabled:
            return None
        which = "" if self.tunnel_id in (None, tunnel_id) else f" for tunnel {self.tunnel_id}"
        return (
            f"netifd's 6in4 interface '{self.interface}' (/{NETWORK_CONFIG}) sends the HE "
            f"update{which} itself on every ifup, never reading the answer: let reconciler "
            f"be the one updater (uci delete network.{self.interface}.tunnelid; "
            "uci commit network), or stop reconciler and leave it to netifd"
        )


def parse_uci(text: str) -> list[UciSection]:
    """The sections of a UCI file; a line that does not parse is skipped (UCI's own reader
    is stricter, and then netifd would not run it either)."""
    sections: list[UciSection] = []
    for words in _lines(text):
        match words:
            case ["config", kind, *name]:
                sections.append(UciSection(kind, name[0] if name else None, {}))
            case ["option", key, value] if sections:
                sections[-1].options[key] = value
            case ["list", key, value] if sections:
                # Lists do not matter here: kept as their last value.
                sections[-1].options[key] = value
    return sections


def netifd_tunnels(root: Path = Path("/")) -> list[NetifdTunnel]:
    """The 6in4 interfaces in root's /etc/config/network; [] where there is none (not
    OpenWrt) or it cannot be read."""
    try:
        with open(root / NETWORK_CONFIG, encoding="utf-8", errors="replace") as stream:
            text = stream.read(_LIMIT)
    except OSError:
        return []
    tunnels = []
    for section in parse_uci(text):
        options = section.options
        if section.type != "interface" or section.name is None:
            continue
        if options.get("proto") != "6in4" or not _UCI_NAME.fullmatch(section.name):
            continue  # UCI names are [A-Za-z0-9_]: anything else is not netifd's either
        updates = bool(
            options.get("tunnelid")
            and options.get("username")
            and (options.get("updatekey") or options.get("password"))
        )
        tunnels.append(
            NetifdTunnel(
                interface=section.name,
                link=f"6in4-{section.name}",
                server_ipv4=_ipv4_or_none(options.get("peeraddr")),
                tunnel_id=_digits_or_none(options.get("tunnelid")),
                updates_he=updates,
                disabled=options.get("disabled") == "1",
            )
        )
    return tunnels


def tunnels_concerning(
    interface: str,
    server_ipv4: str | None,
    tunnel_id: str | None,
    environ: Mapping[str, str],
) -> list[NetifdTunnel]:
    """The netifd 6in4 interfaces of this host (or of $RECONCILER_SYSTEM_ROOT) that are
    reconciler's tunnel link or the same HE tunnel."""
    root = Path(environ.get(SYSTEM_ROOT_VARIABLE) or "/")
    return [t for t in netifd_tunnels(root) if t.concerns(interface, server_ipv4, tunnel_id)]


def _lines(text: str) -> Iterator[list[str]]:
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an unclosed quote
            continue
        if words:
            yield words


def _ipv4_or_none(value: str | None) -> str | None:
    try:
        return str(ipaddress.IPv4Address(value)) if value else None
    except ValueError:
        return None


def _digits_or_none(value: str | None) -> str | None:
    return value if value and value.isascii() and value.isdigit() else None
