"""The OpenBSD platform: the original setup, done with the system's own tools.

Observing runs `ifconfig <if>`; the tunnel is configured by `/etc/hostname.gif0`, which
`sh /etc/netstart gif0` applies; the WAN comes back with the configured command or, by
default, `dhcpleasectl -w 30 em0` when dhcpleased owns it (`inet autoconf`: netstart would
change nothing there) and `sh /etc/netstart em0` otherwise; the firewall reloads with the
configured command (`pfctl -f /etc/pf.conf`).

Several IPv4 addresses on the WAN: ifconfig lists them in the kernel's order, in which a
static alias may come before dhcpleased's lease. The tunnel's address is, in this order,
the one inside `wan.address_in`, the lease (`dhcpleasectl -l em0`, asked only when there is
a choice to make), the first one listed.

Several WANs: 6in4 must leave through the active WAN whatever the default route says (a
WAN whose upstream broke keeps its route). On a WAN other than the first, the tunnel's
restart first pins a host route to HE's server via that WAN's gateway (dhcpleased's lease,
else the WAN's default route in `route -n show -inet`), labelled `reconciler` so that later
passes know it as ours; back on the first WAN it is deleted and the ordinary table rules
again. A host route to the server that we did not make is never touched (said once per
platform, which the daemon builds anew on each switch).

Every program runs through a CommandRunner as an argv list with a timeout, so the same code
runs against the real host and the scripted one (reconciler.testing).

`root` prefixes every file this module reads or writes (tests use a temporary root); the
commands' own paths stay as the real host knows them.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.errors import PermanentError, ReconcilerError, TemporaryError
from reconciler.model.config import OPENBSD_TUNNEL_NAME, Config
from reconciler.world.hostname_file import backup_path, read_hostname_file, replace_hostname_file
from reconciler.world.openbsd_text import (
    IfconfigInterface,
    RouteGot,
    is_missing_interface,
    parse_default_gateway,
    parse_ifconfig,
    parse_lease,
    parse_lease_gateway,
    parse_monitor_line,
    parse_route_get,
)
from reconciler.world.platform import ChangeNotice, TunnelState, WanState, tunnel_address_first
from reconciler.world.runner import CommandRunner, Completed, LineStream, check, last_line

__all__ = ["OpenBSDPlatform", "RouteMonitorWatch"]

log = logging.getLogger(__name__)

OBSERVE_TIMEOUT = 10.0
RESTART_WAN_TIMEOUT = 120.0  # DHCP may take a while to get a lease
DHCP_WAIT = 30  # dhcpleasectl -w: seconds to wait for the lease (its own default is 10)
RESTART_TUNNEL_TIMEOUT = 60.0
RELOAD_FIREWALL_TIMEOUT = 60.0
MONITOR_ARGV = ("route", "-n", "monitor")
ROUTE_LABEL = "reconciler"  # marks the host route to HE's server as ours (route -label)


class OpenBSDPlatform:
    """reconciler.world.platform.Platform on OpenBSD."""

    name = "openbsd"

    def __init__(
        self,
        config: Config,
        runner: CommandRunner,
        root: Path = Path("/"),
        *,
        monitor_restart_delay: float = 5.0,
    ) -> None:
        self._config = config
        self._runner = runner
        self._root = Path(root)
        self._monitor_restart_delay = monitor_restart_delay
        tunnel = config.tunnel
        system_path = tunnel.hostname_file or Path(f"/etc/hostname.{tunnel.interface}")
        self.hostname_file = self._root / system_path.relative_to(system_path.anchor)
        # Whether dhcpleased owned the WAN when last observed (None: not observed yet).
        self._wan_autoconf: bool | None = None
        self._foreign_routes_said: set[tuple[str, str | None]] = set()

    # -- observing --------------------------------------------------------------------------

    def observe_wan(self) -> WanState:
        name = self._config.wan.interface
        interface = self._ifconfig(name)
        if interface is None:
            self._wan_autoconf = False  # netstart creates and configures it
            return WanState(name, exists=False, link_up=False)
        addresses = tuple(a.address for a in interface.inet)
        self._wan_autoconf = interface.autoconf4
        return WanState(
            name,
            exists=True,
            link_up=interface.link_up,
            addresses=self._tunnel_address_first(interface, addresses),
            autoconf=interface.autoconf4,
        )

    def _tunnel_address_first(
        self, interface: IfconfigInterface, addresses: tuple[str, ...]
    ) -> tuple[str, ...]:
        """`addresses` with the tunnel's first (see tunnel_address_first); dhcpleased is
        asked for its lease only when there is a choice that `wan.address_in` left open."""
        address_in = self._config.wan.address_in
        if len(addresses) < 2:
            return addresses
        network = ipaddress.IPv4Network(address_in) if address_in is not None else None
        selected = network is not None and any(
            ipaddress.IPv4Address(a) in network for a in addresses
        )
        lease = self._lease(interface.name) if interface.autoconf4 and not selected else None
        return tunnel_address_first(addresses, address_in, lease)

    def _lease(self, name: str) -> str | None:
        """The address of dhcpleased's lease on `name`; None when it cannot say."""
        completed = self._runner.run(("dhcpleasectl", "-l", name), timeout=OBSERVE_TIMEOUT)
        if completed.returncode != 0:
            log.warning(
                "`dhcpleasectl -l %s` failed (%s): the tunnel uses the first address listed",
                name,
                last_line(completed.stderr) or f"status {completed.returncode}",
            )
            return None
        return parse_lease(completed.stdout)

    def observe_tunnel(self) -> TunnelState:
        name = self._config.tunnel.interface
        interface = self._ifconfig(name)
        if interface is None:
            return TunnelState(name, exists=False, up=False)
        return TunnelState(
            name,
            exists=True,
            up=interface.up,
            local=interface.tunnel_local,
            remote=interface.tunnel_remote,
            mode="gif",
            ttl=interface.tunnel_ttl,
        )

    def read_hostname_file(self) -> bytes | None:
        return read_hostname_file(self.hostname_file)

    # -- acting -----------------------------------------------------------------------------

    def write_hostname_file(self, content: str) -> bool:
        self._refuse_unless_gif()
        return replace_hostname_file(self.hostname_file, content)

    @property
    def backup_file(self) -> Path:
        return backup_path(self.hostname_file)

    def restart_wan(self) -> None:
        self._run(self.restart_wan_argv(), RESTART_WAN_TIMEOUT)

    def restart_wan_argv(self) -> tuple[str, ...]:
        """The configured command; by default, on a WAN dhcpleased owns, a request for a
        lease that waits for it (netstart would find `inet autoconf` already done and change
        nothing), else netstart."""
        wan = self._config.wan
        if wan.restart_command:
            return wan.restart_command
        autoconf = self._wan_autoconf
        if autoconf is None:  # a restart before any observation: look now
            interface = self._ifconfig(wan.interface)
            autoconf = interface is not None and interface.autoconf4
        if autoconf:
            return ("dhcpleasectl", "-w", str(DHCP_WAIT), wan.interface)
        return ("sh", "/etc/netstart", wan.interface)

    def restart_tunnel(self, local: str, remote: str) -> None:
        name = self._config.tunnel.interface
        self._refuse_unless_gif()
        if self._config.failover is not None:
            # Before netstart: a failed route fails the restart, which the next pass repeats
            # (once the gif had moved, no pass would restart it for the route alone).
            self.route_server_via_active_wan()
        completed = self._run(("sh", "/etc/netstart", name), RESTART_TUNNEL_TIMEOUT)
        # netstart exits 0 even when a line of the hostname file failed: check the result.
        state = self.observe_tunnel()
        ttl = self._config.tunnel.ttl
        if (
            state.exists
            and state.up
            and (state.local, state.remote) == (local, remote)
            and state.ttl in (None, ttl)
        ):
            return
        if not state.exists:
            found = f"{name} does not exist"
        else:
            ends = f"{state.local} --> {state.remote}" if state.local else "no tunnel"
            found = f"{name} is {'up' if state.up else 'down'} with {ends}"
            if state.ttl not in (None, ttl):
                found += f" ttl {state.ttl}"
        wanted = f"{local} --> {remote}"
        if state.exists and state.ttl not in (None, ttl):
            wanted += f" ttl {ttl}"
        complaint = last_line(completed.stderr)
        raise TemporaryError(
            f"after `sh /etc/netstart {name}` {found}, not {wanted}"
            + (f": {complaint}" if complaint else f" (is {self.hostname_file} current?)")
        )

    def route_server_via_active_wan(self) -> None:
        """With several WANs: the host route to HE's server via the active WAN's gateway
        when that WAN is not the first, none of ours when it is (see the module's text)."""
        assert self._config.failover is not None
        server = self._config.tunnel.server_ipv4
        active = self._config.wan.interface
        got = self._route_get(server)
        host_route = got is not None and got.host and got.destination == server
        ours = host_route and got is not None and got.label == ROUTE_LABEL
        if host_route and not ours:
            gateway = got.gateway if got is not None else None
            if (server, gateway) not in self._foreign_routes_said:
                self._foreign_routes_said.add((server, gateway))
                log.warning(
                    "a host route to %s via %s exists that reconciler did not make: left "
                    "alone, so 6in4 follows it, not necessarily %s",
                    server,
                    gateway,
                    active,
                )
            return
        if active == self._config.failover.wans[0].interface:
            if ours:
                self._run(("route", "-n", "delete", "-inet", "-host", server), OBSERVE_TIMEOUT)
            return
        gateway = self._gateway_of(active)
        if gateway is None:
            raise TemporaryError(
                f"no gateway for {active}: neither a DHCP lease nor a default route via "
                f"{active} names one, so 6in4 to {server} cannot be sent through it"
            )
        if ours and got is not None and got.gateway == gateway:
            return
        verb = "change" if ours else "add"
        argv = ("route", "-n", verb, "-inet", "-host", "-label", ROUTE_LABEL, server, gateway)
        self._run(argv, OBSERVE_TIMEOUT)

    def _route_get(self, destination: str) -> RouteGot | None:
        """The route that carries `destination`; None when there is none."""
        completed = self._runner.run(
            ("route", "-n", "get", "-inet", destination), timeout=OBSERVE_TIMEOUT
        )
        if completed.returncode != 0 and "not in table" in completed.stderr + completed.stdout:
            return None
        if completed.returncode != 0 and "No such process" in completed.stderr:
            return None  # route.c: ESRCH, no route at all
        check(completed)
        try:
            return parse_route_get(completed.stdout)
        except ValueError as exc:
            raise TemporaryError(f"`route -n get -inet {destination}`: {exc}") from None

    def _gateway_of(self, wan: str) -> str | None:
        """The IPv4 gateway of `wan`: dhcpleased's lease when it owns the WAN, else the
        default route through it."""
        interface = self._ifconfig(wan)
        if interface is not None and interface.autoconf4:
            completed = self._runner.run(("dhcpleasectl", "-l", wan), timeout=OBSERVE_TIMEOUT)
            gateway = parse_lease_gateway(completed.stdout) if completed.returncode == 0 else None
            if gateway is not None:
                return gateway
        completed = check(
            self._runner.run(("route", "-n", "show", "-inet"), timeout=OBSERVE_TIMEOUT)
        )
        return parse_default_gateway(completed.stdout, wan)

    def reload_firewall(self) -> None:
        argv = self._config.firewall.reload_command
        if argv:
            self._run(argv, RELOAD_FIREWALL_TIMEOUT)

    def watch(self, notify: Callable[[ChangeNotice], None]) -> RouteMonitorWatch:
        return RouteMonitorWatch(self._runner, notify, restart_delay=self._monitor_restart_delay)

    # -- helpers ----------------------------------------------------------------------------

    def _refuse_unless_gif(self) -> None:
        """OpenBSD's driver is in the name: /etc/hostname.em0 and `netstart em0` would
        reconfigure the WAN (or whatever em0 is), not build a tunnel. Never touch it."""
        name = self._config.tunnel.interface
        if OPENBSD_TUNNEL_NAME.fullmatch(name) is None:
            raise PermanentError(
                f"{name} is not a gif interface: reconciler configures only gif tunnels "
                f"(set tunnel.interface to gif0, gif1...)"
            )

    def _run(self, argv: Sequence[str], timeout: float) -> Completed:
        return check(self._runner.run(argv, timeout=timeout))

    def _ifconfig(self, name: str) -> IfconfigInterface | None:
        completed = self._runner.run(("ifconfig", name), timeout=OBSERVE_TIMEOUT)
        if completed.returncode != 0 and is_missing_interface(completed.stderr):
            return None
        check(completed)
        try:
            return parse_ifconfig(completed.stdout)
        except ValueError as exc:
            raise TemporaryError(f"`ifconfig {name}`: {exc}") from None


class RouteMonitorWatch:
    """Runs `route -n monitor` in a thread and turns its messages into ChangeNotices.

    When the monitor dies (or cannot start) nobody knows what changed meanwhile: the watch
    says "desync" so the loop observes everything afresh, waits `restart_delay` seconds (a
    monitor that dies at once must not spin), and starts it again.

    Known limit: route(8) flushes stdout after address and link messages but not after
    RTM_IFANNOUNCE or RTM_DESYNC, so through a pipe those two arrive with the next flushed
    message; the periodic observations are the backstop (a pty would lift this)."""

    def __init__(
        self,
        runner: CommandRunner,
        notify: Callable[[ChangeNotice], None],
        *,
        restart_delay: float,
        argv: Sequence[str] = MONITOR_ARGV,
    ) -> None:
        self._runner = runner
        self._notify = notify
        self._restart_delay = restart_delay
        self._argv = tuple(argv)
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._stream: LineStream | None = None
        self._thread = threading.Thread(target=self._loop, name="route-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the monitor; once this returns, `notify` is not called again."""
        self._stopped.set()
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10.0)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            stream = self._start()
            if stream is not None:
                for line in stream:
                    notice = parse_monitor_line(line)
                    if notice is not None and not self._stopped.is_set():
                        self._deliver(notice)
                with self._lock:
                    self._stream = None
                stream.close()
            if self._stopped.is_set():
                return
            self._deliver(ChangeNotice("desync"))
            self._stopped.wait(self._restart_delay)

    def _start(self) -> LineStream | None:
        try:
            stream = self._runner.stream(self._argv)
        except ReconcilerError as exc:
            log.warning("route monitor did not start: %s", exc)
            return None
        with self._lock:
            if self._stopped.is_set():
                stream.close()
                return None
            self._stream = stream
        return stream

    def _deliver(self, notice: ChangeNotice) -> None:
        try:
            self._notify(notice)
        except Exception as exc:  # the watch must outlive a faulty callback
            log.warning("change notice %s not delivered: %s", notice.kind, exc)
