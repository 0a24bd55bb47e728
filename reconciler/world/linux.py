"""The Linux platform: links, addresses, the tunnel and change notifications through netlink.

Everything the kernel knows is read and changed over rtnetlink with pyroute2; nothing parses
`ip` output. Two tunnel modes: `sit` (6in4, what Hurricane Electric speaks) and `vxlan`, a
stand-in for kernels without `sit` (containers, micro-VMs, this project's lab), where IPv6
rides in UDP to the far end.

Every public call opens its own short-lived netlink socket (in `netns` when given, through
`reconciler.world.netns`): that costs about a millisecond here (about a dozen in a named
netns, where pyroute2 forks a helper to open the socket), keeps the platform safe to call
from any scheduler thread, and survives the namespace's links being replaced behind our back.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
)
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from reconciler.errors import PermanentError, PlatformUnsupportedError, TemporaryError
from reconciler.model.config import Config
from reconciler.world.hostname_file import read_hostname_file, replace_hostname_file
from reconciler.world.netns import rtnetlink, rtnetlink_socket
from reconciler.world.platform import ChangeNotice, TunnelState, WanState, tunnel_address_first
from reconciler.world.runner import (
    NOT_STARTED,
    CommandRunner,
    SubprocessRunner,
    describe_failure,
)
from reconciler.world.tunnel_owner import persist_local
from reconciler.world.wanowner import WanOwner, detect_wan_owner

__all__ = [
    "COMMAND_TIMEOUT",
    "SIT_UNSUPPORTED",
    "LinuxPlatform",
    "NetlinkWatch",
    "foreign_link_refusal",
]

log = logging.getLogger(__name__)

SIT_UNSUPPORTED = (
    'this kernel has no sit (6in4) support: load the sit module, or use mode = "vxlan" for the lab'
)
COMMAND_TIMEOUT = 60.0  # seconds a restart or reload command may run before it is killed
# How long restart-wan waits for the WAN's carrier and address after its owner was told: a
# renew over networkd or NetworkManager returns at once and the lease follows (a DHCP
# exchange takes a second or two); a command or `dhclient -1` has done its work on return.
WAN_SETTLE = {"networkd": 5.0, "networkmanager": 5.0, "dhcpcd": 5.0}
WAN_SETTLE_DEFAULT = 1.0
VXLAN_DEFAULT_PORT = 4789

_IFF_UP = 0x1
_IFF_RUNNING = 0x40  # RFC 2863 operationally up
_IFA_F_NODAD = 0x02
_IFA_F_PERMANENT = 0x80  # set by hand (ip addr add); a DHCP client's has a lifetime instead
_INFINITY_LIFE_TIME = 0xFFFFFFFF
_WATCH_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
_MAIN_TABLE = 254
_ANY = "0.0.0.0"
_RTN_UNICAST = 1
_WATCH_RCVBUF = 1 << 20
# Errors where trying again later cannot help: the request itself is refused.
_PERMANENT_ERRNOS = {errno.EPERM, errno.EACCES, errno.EOPNOTSUPP, errno.EINVAL, errno.ERANGE}


class LinuxPlatform:
    """reconciler.world.platform.Platform for Linux, optionally inside a named netns."""

    name = "linux"

    def __init__(
        self,
        config: Config,
        *,
        netns: str | None = None,
        runner: CommandRunner | None = None,
    ) -> None:
        mode = config.tunnel.mode
        if mode not in ("sit", "vxlan"):
            raise PlatformUnsupportedError(
                f'tunnel.mode = "{mode}" is not available on Linux: use "sit" or "vxlan"'
            )
        if mode == "vxlan" and config.tunnel.vxlan_id is None:
            raise PlatformUnsupportedError('tunnel.mode = "vxlan" needs tunnel.vxlan_id')
        self.config = config
        self.netns = netns
        self.runner: CommandRunner = runner if runner is not None else SubprocessRunner()
        self._ttl_warned: set[str] = set()
        self._dhcp_seen = False  # the WAN has shown a dynamic (DHCP) address
        self._native_said: set[tuple[str, int, int | None]] = set()

    # -- observing ------------------------------------------------------------------------

    def observe_wan(self) -> WanState:
        """The WAN's IPv4 addresses (ours: IFA_LOCAL, never a point-to-point peer), the
        tunnel's first (see tunnel_address_first), whether its link is up, whether a DHCP
        client owns it (autoconf) and whether the IPv4 default route leaves through it."""
        interface = self.config.wan.interface
        with self._netlink("observe", interface) as ipr:
            link = _find_link(ipr, interface)
            if link is None:
                recorded = self._wan_owner(None).recorded
                return WanState(interface=interface, exists=False, link_up=False, owner=recorded)
            index = int(link["index"])
            owned = _ipv4_addresses(ipr, index)
            route_source = _route_source(ipr, self.config.tunnel.server_ipv4, index)
            default_route = _has_default_route(ipr, index)
        owner = self._wan_owner(index)
        addresses = tuple(address for address, _dynamic in owned)
        dynamic = tuple(address for address, is_dynamic in owned if is_dynamic)
        if dynamic:
            # A DHCP client's link stays one while its lease is gone (the grace is for then).
            self._dhcp_seen = True
        flags = link["flags"]
        link_up = bool(flags & _IFF_UP) and bool(flags & _IFF_RUNNING)
        return WanState(
            interface=interface,
            exists=True,
            link_up=link_up,
            addresses=tunnel_address_first(
                addresses,
                self.config.wan.address_in,
                route_source=route_source,
                dynamic=dynamic,
            ),
            autoconf=self._dhcp_seen,
            default_route=default_route,
            owner=owner.recorded,
        )

    def wan_owner(self) -> WanOwner:
        """Who owns the WAN and what restart-wan will do (see world/wanowner.py)."""
        interface = self.config.wan.interface
        with self._netlink("observe", interface) as ipr:
            link = _find_link(ipr, interface)
        return self._wan_owner(int(link["index"]) if link is not None else None)

    def _wan_owner(self, index: int | None) -> WanOwner:
        netns_path = Path("/run/netns", self.netns) if self.netns else None
        owner = detect_wan_owner(
            self.config.wan.interface,
            index=index,
            restart_command=self.config.wan.restart_command,
            netns_path=netns_path,
        )
        if owner.dhcp:
            self._dhcp_seen = True  # its client owns the WAN, lease or not
        return owner

    def observe_tunnel(self) -> TunnelState:
        """The tunnel link's kind, ends and state, whatever mode it was created in."""
        interface = self.config.tunnel.interface
        with self._netlink("observe", interface) as ipr:
            link = _find_link(ipr, interface)
            if link is None:
                return TunnelState(interface=interface, exists=False, up=False)
            default_route = _default_route_of(_ipv6_defaults(ipr), int(link["index"]))
            kind, data = _link_kind(link)
            local = remote = None
            if kind == "sit" and data is not None:
                local = _address_or_none(data.get_attr("IFLA_SIT_LOCAL"))
                remote = _address_or_none(data.get_attr("IFLA_SIT_REMOTE"))
            elif kind == "vxlan" and data is not None:
                local = _address_or_none(data.get_attr("IFLA_VXLAN_LOCAL"))
                remote = _address_or_none(data.get_attr("IFLA_VXLAN_GROUP"))
            if local is None and remote is not None and kind in ("sit", "vxlan"):
                # Local end "any": the packets leave from whatever source the kernel picks
                # towards the remote, which is the local end that matters (and follows the
                # WAN by itself).
                local = _source_towards(ipr, remote)
        up = bool(link["flags"] & _IFF_UP) and link.get_attr("IFLA_OPERSTATE") != "DOWN"
        return TunnelState(
            interface=interface,
            exists=True,
            up=up,
            local=local,
            remote=remote,
            mode=kind,
            default_route=default_route,
        )

    # -- the hostname file (only when tunnel.hostname_file is set) ------------------------

    def read_hostname_file(self) -> bytes | None:
        """The configured hostname file's bytes; None when unset or missing."""
        path = self.config.tunnel.hostname_file
        return None if path is None else read_hostname_file(path)

    def write_hostname_file(self, content: str) -> bool:
        """Atomically replace the configured file (backup kept); False when unchanged/unset."""
        path = self.config.tunnel.hostname_file
        return False if path is None else replace_hostname_file(path, content)

    # -- acting ---------------------------------------------------------------------------

    def restart_wan(self) -> None:
        """Ask the WAN's owner to bring it back (wan.restart_command when configured; see
        world/wanowner.py), never bouncing the link under it (that deletes the DHCP client's
        default route); done only when the WAN has its carrier and an address afterwards."""
        owner = self.wan_owner()
        interface = self.config.wan.interface
        if not owner.steps:
            raise TemporaryError(f"cannot restart WAN {interface}: {owner.describe()}")
        key = "wan.restart_command" if owner.name == "command" else f"restart-wan ({owner.name})"
        for step in owner.steps:
            self._run_command(key, self._in_netns(list(step)))
        settle = WAN_SETTLE.get(owner.name, WAN_SETTLE_DEFAULT)
        deadline = time.monotonic() + settle
        while True:
            state = self.observe_wan()
            if state.exists and state.link_up and state.address is not None:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not state.exists:
            missing = "is gone"
        elif not state.link_up:
            missing = "has no carrier"
        else:
            missing = "has no IPv4 address"
        raise TemporaryError(f"{key} ran, but {interface} {missing} {settle:g} s later")

    def _in_netns(self, argv: list[str]) -> list[str]:
        """`argv` run in the platform's namespace (the tests'; a daemon runs in its own)."""
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def restart_tunnel(self, local: str, remote: str) -> None:
        """Make the tunnel exist, up, from `local` to `remote`, with its address and routes.

        An existing link's ends are changed in place and everything else of it is kept (it
        may be another owner's); see _ensure_tunnel_link. A link of another kind by that
        name is never touched: PermanentError. When everything is already right nothing
        changes.
        """
        tunnel = self.config.tunnel
        with self._netlink("restart", tunnel.interface) as ipr:
            index, pinned, created = self._ensure_tunnel_link(ipr, local, remote)
            if created:  # an existing link's MTU is its owner's, as its TTL is
                ipr.link("set", index=index, mtu=tunnel.mtu)
            ipr.link("set", index=index, state="up")
            self._ensure_client_address(ipr, index)
            self._ensure_routes(ipr, index)
        if pinned:
            # The owner rebuilds the link at boot from its own config: tell it too.
            done = persist_local(tunnel, local, self.runner)
            if done:
                log.info("told the tunnel's owner: %s", done)

    def reload_firewall(self) -> None:
        """firewall.reload_command when configured; Linux has nothing to reload otherwise."""
        command = self.config.firewall.reload_command
        if command:
            self._run_command("firewall.reload_command", list(command))

    def watch(self, notify: Callable[[ChangeNotice], None]) -> NetlinkWatch:
        """Deliver link, address and IPv6 default route changes to `notify` from a
        background thread."""
        names: dict[int, str] = {}
        with self._netlink("watch", "links") as ipr:
            for link in ipr.get_links():
                names[link["index"]] = str(link.get_attr("IFLA_IFNAME"))
        try:
            sock = rtnetlink_socket(self.netns)
        except OSError as exc:
            raise TemporaryError(f"cannot open a netlink socket: {_reason(exc)}") from exc
        return NetlinkWatch(sock, notify, names)

    # -- the tunnel, step by step ---------------------------------------------------------

    def _ensure_tunnel_link(self, ipr: IPRoute, local: str, remote: str) -> tuple[int, bool, bool]:
        """The tunnel link's index, created or changed in place so that its ends are
        local/remote; whether its local end is pinned to `local`; whether it was created.

        The local end is left as it is where it is "any" (0.0.0.0: it follows the WAN by
        itself), and everywhere with tunnel.local = "any"; a link made then gets "any".

        An existing link keeps everything but its ends: it may be another owner's (networkd,
        NetworkManager, ifupdown), and what the repair needs is the ends. Its TTL, MTU, path
        MTU discovery and MAC learning are the owner's to choose, even where we prefer other
        values (a TTL of 0 is warned about once). Only a vxlan link whose id or port differ
        (it cannot carry the tunnel at all) is deleted and built again. A link of another
        kind by that name is never touched: PermanentError.
        """
        tunnel = self.config.tunnel
        lower = self._lower_device(ipr)
        link = _find_link(ipr, tunnel.interface)
        if link is not None:
            kind, data = _link_kind(link)
            if kind != tunnel.mode:
                # Not ours to delete or retype: a WAN, a bridge, someone else's link.
                raise PermanentError(foreign_link_refusal(tunnel.interface, kind, tunnel.mode))
            if data is not None and self._carries_the_tunnel(data, lower):
                self._warn_about_ttl(data)
                current_local, current_remote = self._ends(data)
                wanted: str | None = local
                if tunnel.local == "any" or current_local is None:
                    wanted = current_local  # not ours to pin
                wrong_lower = (  # vxlan: rebuilt above when its lower device is wrong
                    tunnel.mode == "sit"
                    and lower is not None
                    and data.get_attr("IFLA_SIT_LINK") != lower
                )
                if (current_local, current_remote) != (wanted, remote) or wrong_lower:
                    change = self._ends_spec(wanted, remote, data, lower)
                    try:
                        ipr.link("set", index=link["index"], **change)
                    except NetlinkError as exc:
                        raise _netlink_failure(
                            f"change the ends of {tunnel.interface}", exc
                        ) from exc
                return int(link["index"]), wanted is not None, False
            log.info(
                "recreating %s: its vxlan id, port or lower device is not the configured one",
                tunnel.interface,
            )
            ipr.link("del", index=link["index"])
        new_local = None if tunnel.local == "any" else local
        try:
            spec = self._tunnel_spec(new_local, remote, lower)
            ipr.link("add", ifname=tunnel.interface, **spec)
        except NetlinkError as exc:
            if tunnel.mode == "sit" and exc.code == errno.EOPNOTSUPP:
                raise PlatformUnsupportedError(SIT_UNSUPPORTED) from exc
            raise _netlink_failure(f"create tunnel {tunnel.interface}", exc) from exc
        created = _find_link(ipr, tunnel.interface)
        if created is None:
            raise TemporaryError(f"tunnel {tunnel.interface} vanished right after creation")
        return int(created["index"]), new_local is not None, True

    def _lower_device(self, ipr: IPRoute) -> int | None:
        """With several WANs, the active WAN's index: the tunnel's packets leave through it
        (sit `dev`, vxlan `dev`) whatever the routing table prefers, as a WAN whose upstream
        broke keeps its routes. None with one WAN (the routing table decides, as ever)."""
        if self.config.failover is None:
            return None
        wan = _find_link(ipr, self.config.wan.interface)
        if wan is None:
            raise TemporaryError(f"WAN {self.config.wan.interface} does not exist")
        return int(wan["index"])

    def _tunnel_spec(self, local: str | None, remote: str, lower: int | None) -> dict[str, Any]:
        """A new link's parameters: ours, from the configuration (local None: "any"; lower:
        the device it must leave through, several WANs only)."""
        tunnel = self.config.tunnel
        if tunnel.mode == "sit":
            sit: dict[str, Any] = {
                "kind": "sit",
                "sit_local": local or _ANY,
                "sit_remote": remote,
                "sit_ttl": tunnel.ttl,
                "sit_pmtudisc": 1,
            }
            return sit if lower is None else {**sit, "sit_link": lower}
        spec: dict[str, Any] = {
            "kind": "vxlan",
            "vxlan_id": tunnel.vxlan_id,
            "vxlan_port": self._vxlan_port(),
            "vxlan_group": remote,
            "vxlan_learning": 0,
            "vxlan_ttl": tunnel.ttl,
        }
        if lower is not None:
            spec["vxlan_link"] = lower
        return spec if local is None else {**spec, "vxlan_local": local}

    def _ends_spec(
        self, local: str | None, remote: str, data: Any, lower: int | None
    ) -> dict[str, Any]:
        """The request that moves the ends of the existing link (`data`: its IFLA_INFO_DATA).

        vxlan: only the two ends; the kernel keeps the rest, and refuses a change that names
        the id or port at all, even unchanged. sit: the kernel rebuilds every parameter from
        the request and gives whatever is missing its default (TTL 64, DF set, TOS 0), so
        the request carries them all, every one but the ends as the link has them.
        """
        if self.config.tunnel.mode != "sit":
            if local is None:  # any: left out, the kernel keeps it
                return {"kind": "vxlan", "vxlan_group": remote}
            return {"kind": "vxlan", "vxlan_local": local, "vxlan_group": remote}
        spec: dict[str, Any] = {"kind": "sit", "sit_local": local or _ANY, "sit_remote": remote}
        for attr in ("ttl", "pmtudisc", "tos", "link", "proto", "flags"):
            value = data.get_attr(f"IFLA_SIT_{attr.upper()}")
            if value is not None:
                spec[f"sit_{attr}"] = value
        if lower is not None:  # several WANs: the active one's device (sit can change it)
            spec["sit_link"] = lower
        return spec

    def _vxlan_port(self) -> int:
        port = self.config.tunnel.vxlan_port
        return port if port is not None else VXLAN_DEFAULT_PORT

    def _ends(self, data: Any) -> tuple[str | None, str | None]:
        if self.config.tunnel.mode == "sit":
            return (
                _address_or_none(data.get_attr("IFLA_SIT_LOCAL")),
                _address_or_none(data.get_attr("IFLA_SIT_REMOTE")),
            )
        return (
            _address_or_none(data.get_attr("IFLA_VXLAN_LOCAL")),
            _address_or_none(data.get_attr("IFLA_VXLAN_GROUP")),
        )

    def _carries_the_tunnel(self, data: Any, lower: int | None) -> bool:
        """Whether the existing link can carry the tunnel once its ends are right: always for
        sit; for vxlan, the configured id and port (the far end listens there) and, with
        several WANs, the active WAN as its lower device (the kernel cannot change that)."""
        if self.config.tunnel.mode == "sit":
            return True
        return bool(
            data.get_attr("IFLA_VXLAN_ID") == self.config.tunnel.vxlan_id
            and data.get_attr("IFLA_VXLAN_PORT") == self._vxlan_port()
            and (lower is None or data.get_attr("IFLA_VXLAN_LINK") == lower)
        )

    def _warn_about_ttl(self, data: Any) -> None:
        """Once per link: a sit TTL of 0 copies each IPv6 packet's hop limit into the IPv4
        header, so packets sent with a small hop limit (traceroute, some routing protocols)
        die on the IPv4 path to HE; HE's own example sets 255."""
        if self.config.tunnel.mode != "sit" or data.get_attr("IFLA_SIT_TTL") != 0:
            return
        if self.config.tunnel.interface in self._ttl_warned:
            return
        self._ttl_warned.add(self.config.tunnel.interface)
        log.warning(
            "%s has TTL 0 (inherit): kept, as its owner set it; TTL 255 (HE's example) keeps "
            "packets with a small IPv6 hop limit from expiring on the IPv4 path to HE "
            "(networkd: TTL=255 under [Tunnel]; ip: ttl 255)",
            self.config.tunnel.interface,
        )

    def _ensure_client_address(self, ipr: IPRoute, index: int) -> None:
        tunnel = self.config.tunnel
        present = {
            (str(msg.get_attr("IFA_ADDRESS")), msg["prefixlen"])
            for msg in ipr.get_addr(family=socket.AF_INET6, index=index)
        }
        if (tunnel.client_ipv6, tunnel.prefixlen) in present:
            return
        # A point-to-point tunnel has nobody to collide with: skip duplicate detection so
        # the address is usable at once (sit has none anyway).
        try:
            ipr.addr(
                "add",
                index=index,
                family=socket.AF_INET6,
                address=tunnel.client_ipv6,
                prefixlen=tunnel.prefixlen,
                flags=_IFA_F_NODAD,
            )
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                doing = f"add {tunnel.client_ipv6} to {tunnel.interface}"
                raise _netlink_failure(doing, exc) from exc

    def _ensure_routes(self, ipr: IPRoute, index: int) -> None:
        """sit: the IPv6 default route through the tunnel. vxlan (an Ethernet-like link): the
        server on-link, and the default route via the server.

        A default route through another interface (from router advertisements, another
        protocol or metric) is not ours: it is left alone, and ours is not added beside it
        (the kernel would pick by metric, not by us); said once per route."""
        tunnel = self.config.tunnel
        try:
            if tunnel.mode == "vxlan":
                server = f"{tunnel.server_ipv6}/128"
                ipr.route("replace", family=socket.AF_INET6, dst=server, oif=index)
            native = [r for r in _ipv6_defaults(ipr) if _route_oif(r) != index]
            if native:
                self._say_native_default(ipr, native)
                return
            if tunnel.mode == "sit":
                ipr.route("replace", family=socket.AF_INET6, dst="::/0", oif=index)
                return
            ipr.route(
                "replace",
                family=socket.AF_INET6,
                dst="::/0",
                gateway=tunnel.server_ipv6,
                oif=index,
            )
        except NetlinkError as exc:
            raise _netlink_failure(f"route IPv6 through {tunnel.interface}", exc) from exc

    def _say_native_default(self, ipr: IPRoute, routes: list[Any]) -> None:
        for route in routes:
            oif = _route_oif(route)
            links = ipr.get_links(oif) if oif is not None else []
            name = str(links[0].get_attr("IFLA_IFNAME")) if links else f"index {oif}"
            key = (name, route["proto"], route.get_attr("RTA_PRIORITY"))
            if key in self._native_said:
                continue
            self._native_said.add(key)
            log.warning(
                "leaving the IPv6 default route via %s (proto %s, metric %s) alone: we did not "
                "make it, so IPv6 leaves through it, not through %s (delete it, or stop what "
                "adds it, to route IPv6 through the tunnel)",
                name,
                route["proto"],
                route.get_attr("RTA_PRIORITY"),
                self.config.tunnel.interface,
            )

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _netlink(self, doing: str, what: str) -> Iterator[IPRoute]:
        """A netlink socket for one call; kernel refusals become Temporary/PermanentError."""
        try:
            ipr = rtnetlink(self.netns)
        except FileNotFoundError as exc:
            raise TemporaryError(f"network namespace {self.netns} does not exist") from exc
        except OSError as exc:
            raise TemporaryError(f"cannot open a netlink socket: {_reason(exc)}") from exc
        try:
            yield ipr
        except NetlinkError as exc:
            raise _netlink_failure(f"{doing} {what}", exc) from exc
        finally:
            ipr.close()

    def _run_command(self, key: str, argv: list[str]) -> None:
        """Run a configured command (argv, no shell); a failure becomes a one-line error."""
        done = self.runner.run(argv, timeout=COMMAND_TIMEOUT)
        if done.ok:
            return
        message = f"{key}: {describe_failure(done)}"
        if done.returncode == NOT_STARTED and not done.timed_out:
            # Could not even start it (missing, not executable): retrying will not help.
            raise PermanentError(message)
        raise TemporaryError(message)


class NetlinkWatch:
    """A background thread reading rtnetlink link, address and IPv6 default route
    notifications until stop()."""

    def __init__(
        self,
        sock: socket.socket,
        notify: Callable[[ChangeNotice], None],
        names: dict[int, str],
        *,
        rcvbuf: int = _WATCH_RCVBUF,
    ) -> None:
        self._sock = sock
        self._notify = notify
        self._names = dict(names)
        self._marshal = MarshalRtnl()
        # stop() writes to this pipe so the thread wakes at once instead of at a poll tick.
        self._wake_r, self._wake_w = os.pipe()
        self._stopped = threading.Event()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, _WATCH_GROUPS))
        self._thread = threading.Thread(target=self._loop, name="netlink-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread; no notice is delivered once this returns."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5.0)
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            readers: list[Any] = [self._sock, self._wake_r]
            ready, _, _ = select.select(readers, [], [])
            if self._stopped.is_set() or self._wake_r in ready:
                return
            try:
                data = self._sock.recv(1 << 16)
            except OSError as exc:
                # ENOBUFS: the kernel dropped messages because we fell behind. Either way
                # what we know may be stale: ask for a fresh look.
                self._deliver(ChangeNotice("desync"))
                if exc.errno == errno.ENOBUFS:
                    continue
                log.warning("netlink watch ended: %s", _reason(exc))
                return
            try:
                messages = list(self._marshal.parse(data))
            except Exception as exc:  # pyroute2 parse failures have no common base class
                log.warning("unreadable netlink message: %s", exc)
                self._deliver(ChangeNotice("desync"))
                continue
            for message in messages:
                self._handle(message)

    def _handle(self, message: Any) -> None:
        kind = message["header"]["type"]
        index = message.get("index")
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            name = message.get_attr("IFLA_IFNAME") or self._names.get(index)
            if kind == RTM_NEWLINK and name:
                self._names[index] = str(name)
            else:
                self._names.pop(index, None)
            self._deliver(ChangeNotice("link", str(name) if name else None))
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            self._deliver(ChangeNotice("address", self._names.get(index)))
        elif kind in (RTM_NEWROUTE, RTM_DELROUTE):
            # Only the IPv6 default route matters (it is the tunnel's); the others are many.
            if message["dst_len"] == 0 and message.get_attr("RTA_TABLE") in (None, _MAIN_TABLE):
                oif = _route_oif(message)
                name = self._names.get(oif) if oif is not None else None
                self._deliver(ChangeNotice("route", name))
        elif message["header"].get("error") is not None:
            self._deliver(ChangeNotice("desync"))

    def _deliver(self, notice: ChangeNotice) -> None:
        if self._stopped.is_set():
            return
        try:
            self._notify(notice)
        except Exception:  # a broken callback must not end the watch
            log.exception("change notification callback failed")


def foreign_link_refusal(interface: str, kind: str | None, mode: str) -> str:
    """The one line a restart-tunnel fails with when `interface` is not a `mode` tunnel."""
    what = f"a {kind} link" if kind else "a link of no tunnel kind (a physical interface?)"
    return (
        f"{interface} is {what}, not a {mode} tunnel: reconciler deletes or changes only "
        f"{mode} tunnels (delete {interface} yourself, or set another tunnel.interface)"
    )


def _source_towards(ipr: IPRoute, remote: str) -> str | None:
    """The source address the kernel would use towards `remote`; None without a route."""
    try:
        routes = ipr.route("get", dst=remote)
    except NetlinkError:
        return None
    for route in routes:
        source = route.get_attr("RTA_PREFSRC")
        if source:
            return str(source)
    return None


def _ipv6_defaults(ipr: IPRoute) -> list[Any]:
    """The unicast IPv6 default routes of the main table."""
    routes = ipr.get_routes(family=socket.AF_INET6, table=_MAIN_TABLE)
    return [r for r in routes if r["dst_len"] == 0 and r["type"] == _RTN_UNICAST]


def _route_oif(route: Any) -> int | None:
    """A route's outgoing interface (a multipath route's first hop's)."""
    oif = route.get_attr("RTA_OIF")
    if oif is None:
        hops = route.get_attr("RTA_MULTIPATH") or []
        oif = hops[0]["oif"] if hops else None
    return None if oif is None else int(oif)


def _default_route_of(defaults: list[Any], index: int) -> str:
    """ "tunnel" when an IPv6 default route goes through link `index`, "other" when one goes
    only elsewhere, "none" without one."""
    if any(_route_oif(route) == index for route in defaults):
        return "tunnel"
    return "other" if defaults else "none"


def _find_link(ipr: IPRoute, name: str) -> Any | None:
    indexes = ipr.link_lookup(ifname=name)
    if not indexes:
        return None
    links = ipr.get_links(indexes[0])
    return links[0] if links else None


def _link_kind(link: Any) -> tuple[str | None, Any | None]:
    info = link.get_attr("IFLA_LINKINFO")
    if info is None:
        return None, None
    return info.get_attr("IFLA_INFO_KIND"), info.get_attr("IFLA_INFO_DATA")


def _ipv4_addresses(ipr: IPRoute, index: int) -> list[tuple[str, bool]]:
    """The link's IPv4 addresses in the kernel's order, each with whether it is dynamic.

    Ours is IFA_LOCAL: on a point-to-point link (PPPoE) IFA_ADDRESS is the peer. Dynamic: not
    IFA_F_PERMANENT and a finite lifetime, which is how a DHCP client (dhclient-script,
    networkd, NetworkManager, dhcpcd) adds its lease."""
    found = []
    for msg in ipr.get_addr(family=socket.AF_INET, index=index):
        address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if not address:
            continue
        flags = msg.get_attr("IFA_FLAGS")
        flags = int(msg["flags"] if flags is None else flags)
        life = msg.get_attr("IFA_CACHEINFO")
        valid = life.get("ifa_valid") if life is not None else None
        dynamic = not flags & _IFA_F_PERMANENT and valid not in (None, _INFINITY_LIFE_TIME)
        found.append((str(address), dynamic))
    return found


def _route_source(ipr: IPRoute, destination: str, index: int) -> str | None:
    """The source address the kernel would give a packet to `destination` leaving through
    link `index`; None when it would not leave through it (or there is no route)."""
    try:
        routes = ipr.route("get", dst=destination)
    except NetlinkError:
        return None  # unreachable: no route at all
    for route in routes:
        if route.get_attr("RTA_OIF") == index and route.get_attr("RTA_PREFSRC"):
            return str(route.get_attr("RTA_PREFSRC"))
    return None


def _has_default_route(ipr: IPRoute, index: int) -> bool:
    """Whether an IPv4 default route of the main table leaves through link `index` (kept as
    `linkdown` while the carrier is gone, which still counts: it is there when it returns)."""
    for route in ipr.get_default_routes(family=socket.AF_INET):
        if route.get_attr("RTA_OIF") == index:
            return True
        multipath = route.get_attr("RTA_MULTIPATH") or ()
        if any(hop.get("oif") == index for hop in multipath):
            return True
    return False


def _address_or_none(value: Any) -> str | None:
    if value in (None, "", "0.0.0.0", "::"):
        return None
    return str(value)


def _netlink_failure(doing: str, exc: NetlinkError) -> TemporaryError | PermanentError:
    message = f"netlink: cannot {doing}: {_reason(exc)}"
    if exc.code in _PERMANENT_ERRNOS:
        return PermanentError(message)
    return TemporaryError(message)


def _reason(exc: OSError | NetlinkError) -> str:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
