"""`reconciler check-config`: validate the configuration and exit (like `ifstated -n`).

Exit 0 with a short summary when valid; exit 1 with every problem, one per line (the CLI
prints ConfigError's problems), never a traceback. The update key is never read. What is
valid but will fail or harm when the daemon needs it (a configured command missing, or
another platform's tool; on Linux a path the systemd unit's sandbox makes read-only or
hides, when the unit can be read: `--unit FILE` or `systemctl cat`) is a warning on
stderr, one line each, and still exit 0.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.cli import Environment
    from reconciler.model.config import Config
    from reconciler.world.netifd import NetifdTunnel

__all__ = ["run"]


def run(args: argparse.Namespace, env: Environment) -> int:
    from reconciler.commands._common import load_config_for

    config = load_config_for(args, env)
    _check_listen(config)
    probes = ", ".join(
        f"{family} {p.target} every {p.interval:g} s" for family, p in sorted(config.probes.items())
    )
    firewall = " ".join(config.firewall.reload_command) or "none"
    lines = [
        f"{config.path}: valid",
        f"  platform {config.daemon.platform}, state in {config.daemon.state_dir}",
        f"  WAN {config.wan.interface} ({config.wan.public_address} address)",
        f"  tunnel {config.tunnel.interface} ({config.tunnel.mode}) to {config.tunnel.server_ipv4}"
        f"{_owner(config)}",
        f"  HE tunnel {config.tunnelbroker.tunnel_id}, "
        f"updates at most every {config.tunnelbroker.min_update_interval:g} s",
        f"  probes: {probes}",
        *_wan_owner(config),
        *_netifd_lines(config, env),
        f"  firewall reload: {firewall}",
        f"  notify: {' '.join(config.notify.command) or 'none'}",
        f"  metrics: textfile {config.metrics.textfile or 'none'}, "
        f"listen {_shown(config.metrics.listen)}",
        f"  digest {config.digest[:16]}",
    ]
    print("\n".join(lines), file=env.stdout)
    for warning in _warnings(config, env, getattr(args, "unit", None)):
        print(f"{config.path}: warning: {warning}", file=env.stderr)
    return 0


def _warnings(config: Config, env: Environment, unit: str | None) -> list[str]:
    from pathlib import Path

    from reconciler.world.toolcheck import command_warnings
    from reconciler.world.unitsandbox import installed_unit, sandbox_warnings

    warnings = command_warnings(config, env.environ)
    warnings += [
        line
        for tunnel in _netifd(config, env)
        if (line := tunnel.warning(config.tunnelbroker.tunnel_id)) is not None
    ]
    if config.daemon.platform == "linux" or unit is not None:
        try:
            sandbox = installed_unit(None if unit is None else env.cwd / Path(unit))
        except OSError as exc:
            warnings.append(f"--unit {unit}: cannot read: {exc.strerror or exc}")
        else:
            if sandbox is not None:
                warnings += sandbox_warnings(config, sandbox)
    return warnings


def _netifd(config: Config, env: Environment) -> list[NetifdTunnel]:
    """OpenWrt: netifd's 6in4 interfaces that are this tunnel, or the same HE tunnel."""
    if config.daemon.platform != "linux":
        return []
    from reconciler.world.netifd import tunnels_concerning

    return tunnels_concerning(
        config.tunnel.interface,
        str(config.tunnel.server_ipv4),
        config.tunnelbroker.tunnel_id,
        env.environ,
    )


def _netifd_lines(config: Config, env: Environment) -> list[str]:
    lines = []
    for tunnel in _netifd(config, env):
        lines.append(f"  tunnel owner: {tunnel.owner_line(config.tunnel.interface)}")
        lines.append(f"  HE updates: {tunnel.updater_line()}")
    return lines


def _wan_owner(config: Config) -> list[str]:
    """On the Linux host it runs on: who owns the WAN and what restart-wan will do."""
    if config.daemon.platform != "linux" or not sys.platform.startswith("linux"):
        return []
    from reconciler.world.wanowner import detect_here

    owner = detect_here(config.wan.interface, config.wan.restart_command)
    return [f"  WAN owner: {owner.describe()}"]


def _owner(config: Config) -> str:
    """ ", made by networkd (told the local end through .../he.netdev.d)" and the like."""
    tunnel = config.tunnel
    if tunnel.local == "any":
        return ", local end any (left alone)"
    if tunnel.owner == "networkd":
        return f", made by networkd (told the local end through a drop-in in {tunnel.networkd_dir})"
    if tunnel.owner == "ifupdown":
        return f", made by ifupdown (told the local end in {tunnel.ifupdown_file})"
    if tunnel.owner == "networkmanager":
        name = tunnel.nm_connection or tunnel.interface
        return f", made by NetworkManager (told the local end through connection {name})"
    return ""


def _shown(address: tuple[str, int] | None) -> str:
    if address is None:
        return "none"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_listen(config: Config) -> None:
    """[metrics] listen must be free to bind, unless this configuration's daemon runs (then
    it is presumably the one holding it: a reload keeps the address it has)."""
    from reconciler.commands.status import _lock_holder
    from reconciler.errors import ConfigError
    from reconciler.statedir import events_dir

    address = config.metrics.listen
    if address is None:
        return
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
    if _lock_holder(events_dir(config.daemon.state_dir)) is not None:
        return
    raise ConfigError(config.path, [f"{config.path}: metrics.listen: {_shown(address)}: {reason}"])
