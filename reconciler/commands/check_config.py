"""`reconciler check-config`: validate the configuration and exit (like `ifstated -n`).

Exit 0 with a short summary when valid; exit 1 with every problem, one per line (the CLI
prints ConfigError's problems), never a traceback. The update key is never read.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.cli import Environment

__all__ = ["run"]


def run(args: argparse.Namespace, env: Environment) -> int:
    from reconciler.commands._common import load_config_for

    config = load_config_for(args, env)
    probes = ", ".join(
        f"{family} {p.target} every {p.interval:g} s" for family, p in sorted(config.probes.items())
    )
    firewall = " ".join(config.firewall.reload_command) or "none"
    lines = [
        f"{config.path}: valid",
        f"  platform {config.daemon.platform}, state in {config.daemon.state_dir}",
        f"  WAN {config.wan.interface} ({config.wan.public_address} address)",
        f"  tunnel {config.tunnel.interface} ({config.tunnel.mode}) to {config.tunnel.server_ipv4}",
        f"  HE tunnel {config.tunnelbroker.tunnel_id}, "
        f"updates at most every {config.tunnelbroker.min_update_interval:g} s",
        f"  probes: {probes}",
        f"  firewall reload: {firewall}",
        f"  digest {config.digest[:16]}",
    ]
    print("\n".join(lines), file=env.stdout)
    return 0
