"""The tunnel's OpenBSD hostname file (`/etc/hostname.gif0`), rendered from the config.

hostname.if(5): a plain line is handed to `ifconfig <if>`; a line starting with `!` runs in
the shell with `$if` set to the interface name. The content is a pure function of the
tunnel config and the local (WAN) address, with no date in it (the original script wrote
one), so that its digest changes exactly when the tunnel's parameters change and the
planner can compare digests instead of files.
"""

from __future__ import annotations

import hashlib

from reconciler.model.config import TunnelConfig

__all__ = ["HEADER", "digest_of", "render_hostname_file"]

HEADER = "# Written by reconciler for the Hurricane Electric tunnel; edits here are replaced."


def render_hostname_file(tunnel: TunnelConfig, local: str) -> str:
    """The hostname file that brings the tunnel up between `local` and HE's server."""
    lines = [
        HEADER,
        f"tunnel {local} {tunnel.server_ipv4}",
        # ifconfig's `tunnelttl`: the TTL of the encapsulating IPv4 packets (gif(4) uses 64
        # unless told); observing gif0 reads it back from ifconfig's `tunnel:` line.
        f"tunnelttl {tunnel.ttl}",
        f"mtu {tunnel.mtu}",  # gif(4) defaults to 1280; HE's side uses the configured MTU
        (
            f"!ifconfig $if inet6 alias {tunnel.client_ipv6} {tunnel.server_ipv6}"
            f" prefixlen {tunnel.prefixlen}"
        ),
        # `up` comes before the route: the default route's gateway is reached through the
        # tunnel, which must be up to carry it.
        "up",
        f"!route -n add -inet6 default {tunnel.server_ipv6}",
    ]
    return "\n".join(lines) + "\n"


def digest_of(content: bytes) -> str:
    """The sha256 of a hostname file's bytes, in hex (what HostnameFileObserved records)."""
    return hashlib.sha256(content).hexdigest()
