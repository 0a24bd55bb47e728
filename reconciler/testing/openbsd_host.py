"""A scripted OpenBSD host: the commands reconciler runs, behaving like the real ones.

`OpenBSDHost(root)` is a CommandRunner (a RecordingRunner, so `host.calls` lists every argv)
that keeps a small model of the kernel's interfaces and answers over a temporary root:

- `ifconfig <if>` prints the interface in the real format (AUTOCONF4 among the flags of a
  DHCP WAN, `ttl N` on a tunnel's line), or exits 1 with `<if>: no such interface` (no
  `ifconfig:` prefix: ifconfig.c prints it with fprintf, not err);
- `sh /etc/netstart <if>` reads `<root>/etc/hostname.<if>` and applies it as netstart does:
  plain lines go to `ifconfig <if> <line>`, `!` lines run with `$if` expanded (the host
  understands `ifconfig` and `route` there); a world-readable file is fixed to 0640 with
  netstart's warning. For a static WAN, netstart brings the interface up with `host.lease`
  (the address the ISP hands out next) when one is set. For a DHCP WAN (`autoconf=True`,
  `inet autoconf`) it changes nothing once the interface is up, as on OpenBSD;
- dhcpleased, on a DHCP WAN: it keeps its address through a link loss; when the link
  returns (`plug`) or `dhcpleasectl -w N <if>` asks, it requests a lease. A lease other than
  the one it holds is NAKed: the old address goes at once, the new one (`host.lease`)
  arrives `host.dhcp_delay` seconds later, from another thread, as the server answers.
  `dhcpleasectl -w N` waits for it (N seconds at most) and prints the lease as dhcpleasectl
  does; `dhcpleasectl -l <if>` prints the lease held;
- `pfctl -f /etc/pf.conf` loads `<root>/etc/pf.conf` or fails as scripted (`pf_error`);
  pf is enabled (as rc does at boot), so `-e` loads the rules and then exits 1 with
  `pfctl: pf already enabled`, as pfctl.c's pfctl_enable does;
- `route -n monitor` streams routing messages in the real format (route.c's print_rtmsg:
  RTM_IFINFO with route's flag names, PTP not POINTOPOINT) for every change the host makes,
  whoever makes it (the platform, the test, or dhcpleased);
- `ping -c 1 -w N [-I source] target` answers as OpenBSD's ping does, out of the source
  address's interface (else the first default route's), unless that interface has lost its
  carrier or its ISP drops everything (`upstream_broken`);
- IPv4 routes: each WAN's default route (`add_wan(..., gateway=)`, `default_routes`) and
  host routes (`host_routes`, with their label): `route -n show -inet` prints the table as
  route.c's p_rtentry does, `route -n get -inet <addr>` the route that carries it as
  print_getmsg does (the label line included), `route -n add|change|delete -inet -host`
  act on host routes with route's own complaints.

The test plays the ISP and the administrator through `set_address`, `add_alias`,
`remove_addresses`, `destroy`, `set_down`, `unplug`, `plug`, `kill_monitors`, `add_wan`
and `host_routes`.
"""

from __future__ import annotations

import shlex
import stat
import threading
from pathlib import Path

from attrs import define, field

from reconciler.testing.runner import RecordingRunner, ScriptedStream
from reconciler.world.runner import Completed

__all__ = ["HostInterface", "HostRoute", "OpenBSDHost"]


@define
class HostRoute:
    """A static IPv4 host route: its gateway and its label (route -label), if any."""

    gateway: str
    label: str | None = None


# route(8) prints ctime(3) of the message; a fixed one keeps transcripts stable.
_MONITOR_TIME = "Mon Jun  3 12:00:00 2024"
_CLONERS = ("gif", "gre", "vlan", "lo", "tun")
_FLAG_BITS = {  # if.h values (xflags shifted 16 bits up), in the order ifconfig prints them
    "UP": 0x1,
    "BROADCAST": 0x2,
    "POINTOPOINT": 0x10,
    "RUNNING": 0x40,
    "SIMPLEX": 0x800,
    "MULTICAST": 0x8000,
    "AUTOCONF4": 0x80 << 16,  # IFXF_AUTOCONF4
}
# route(8)'s ifnetflags names where they differ from ifconfig's IFFBITS.
_ROUTE_FLAG_NAMES = {"POINTOPOINT": "PTP"}
_GIF_DEFAULT_TTL = 64
_DEFAULT_PF_CONF = "set skip on lo\nblock return\npass\n"
_PF_SYNTAX_FAILURE = "pfctl: Syntax error in config file: pf rules not loaded"


@define
class HostInterface:
    name: str
    index: int
    flags: set[str]
    mtu: int
    lladdr: str | None = None
    status: str | None = None  # physical interfaces print a media status
    inet: list[tuple[str, str, str]] = field(factory=list)  # (address, netmask, broadcast)
    inet6: list[tuple[str, str | None, int]] = field(factory=list)  # (address, peer, plen)
    tunnel: tuple[str, str] | None = None
    tunnel_ttl: int = _GIF_DEFAULT_TTL
    carrier: bool = True
    lease: str | None = None  # the address dhcpleased holds (an AUTOCONF4 interface)

    @property
    def flag_value(self) -> int:
        return sum(bit for name, bit in _FLAG_BITS.items() if name in self.flags)

    def render(self) -> str:
        """`ifconfig <if>` output, as OpenBSD 7.x prints it."""
        flags = ",".join(f for f in _FLAG_BITS if f in self.flags)
        lines = [f"{self.name}: flags={self.flag_value:x}<{flags}> mtu {self.mtu}"]
        if self.lladdr:
            lines.append(f"\tlladdr {self.lladdr}")
        lines.append(f"\tindex {self.index} priority 0 llprio 3")
        if self.tunnel is not None:
            lines.append("\tencap: txprio payload rxprio payload")
            lines.append("\tgroups: gif egress")
            local, remote = self.tunnel
            lines.append(f"\ttunnel: inet {local} --> {remote} ttl {self.tunnel_ttl} nodf ecn")
        else:
            lines.append("\tgroups: egress")
            lines.append("\tmedia: Ethernet autoselect (1000baseT full-duplex)")
        if self.status is not None:
            lines.append(f"\tstatus: {self.status}")
        for address, netmask, broadcast in self.inet:
            lines.append(f"\tinet {address} netmask {netmask} broadcast {broadcast}")
        for address, peer, prefixlen in self.inet6:
            arrow = f" --> {peer}" if peer else ""
            lines.append(f"\tinet6 {address}{arrow} prefixlen {prefixlen}")
        return "\n".join(lines) + "\n"


class OpenBSDHost(RecordingRunner):
    """A small OpenBSD router (WAN `em0`) answering reconciler's commands over `root`."""

    def __init__(
        self,
        root: Path,
        *,
        wan: str = "em0",
        wan_address: str | None = "198.51.100.7",
        autoconf: bool = False,
        dhcp_delay: float = 0.0,
    ) -> None:
        super().__init__(responder=self._answer)
        self.root = Path(root)
        # A fresh OpenBSD install has /etc and a default /etc/pf.conf.
        (self.root / "etc").mkdir(parents=True, exist_ok=True)
        pf_conf = self.root / "etc" / "pf.conf"
        if not pf_conf.exists():
            pf_conf.write_text(_DEFAULT_PF_CONF)
        self.wan = wan
        self.interfaces: dict[str, HostInterface] = {}
        self.lease: str | None = None
        self.dhcp_delay = dhcp_delay
        self.pf_error: str | None = None
        self.pf_loads = 0
        self.default_inet6: str | None = None
        # IPv4 default routes, one per WAN (interface -> gateway), in priority order.
        self.default_routes: dict[str, str] = {}
        self.host_routes: dict[str, HostRoute] = {}
        self.upstream_broken: set[str] = set()  # WANs whose ISP drops what they send
        self.applied: list[str] = []  # the ifconfig/route commands netstart ran, in order
        self._state = threading.RLock()
        self._next_index = 1
        self._dhcp_exchange: threading.Timer | None = None
        self._bound = threading.Event()
        self._add_interface(wan, physical=True)
        if autoconf:
            self.interfaces[wan].flags.add("AUTOCONF4")
        if wan_address is not None:
            self.set_address(wan, wan_address)
            if autoconf:
                self.interfaces[wan].lease = wan_address
                self._bound.set()

    # -- the test's side: the ISP and the administrator ------------------------------------

    def set_address(self, name: str, address: str) -> None:
        """The interface holds exactly the IPv4 `address` (a /24 from the ISP)."""
        with self._state:
            self.remove_addresses(name)
            prefix = address.rsplit(".", 1)[0]
            self.interfaces[name].inet.append((address, "0xffffff00", f"{prefix}.255"))
            self._announce("RTM_NEWADDR", name, address)

    def add_wan(self, name: str, address: str, *, gateway: str | None = None) -> None:
        """One more physical WAN holding `address`, with a default route via `gateway`
        (after the ones there are: a lower priority)."""
        with self._state:
            self._add_interface(name, physical=True)
            self.set_address(name, address)
            if gateway is not None:
                self.default_routes[name] = gateway

    def add_alias(self, name: str, address: str) -> None:
        """One more IPv4 address, after those the interface has (`inet alias`)."""
        with self._state:
            prefix = address.rsplit(".", 1)[0]
            self.interfaces[name].inet.append((address, "0xffffff00", f"{prefix}.255"))
            self._announce("RTM_NEWADDR", name, address)

    def unplug(self, name: str) -> None:
        """The carrier goes (a cable pulled, the modem rebooting); addresses stay."""
        with self._state:
            interface = self.interfaces[name]
            interface.carrier = False
            interface.status = "no carrier"
            self._link_changed(interface)

    def plug(self, name: str) -> None:
        """The carrier returns; dhcpleased, on a DHCP interface, asks for its lease."""
        with self._state:
            interface = self.interfaces[name]
            interface.carrier = True
            interface.status = "active"
            self._link_changed(interface)
            if "AUTOCONF4" in interface.flags and "UP" in interface.flags:
                self._request_lease(name)

    def stop_dhcp(self) -> None:
        """Cancel a DHCP exchange under way (the test is over)."""
        with self._state:
            if self._dhcp_exchange is not None:
                self._dhcp_exchange.cancel()
                self._dhcp_exchange = None

    def remove_addresses(self, name: str) -> None:
        with self._state:
            interface = self.interfaces[name]
            for entry in list(interface.inet):
                interface.inet.remove(entry)
                self._announce("RTM_DELADDR", name, entry[0])
            interface.lease = None

    def destroy(self, name: str) -> None:
        """The interface departs (a cloned one destroyed, a USB NIC unplugged)."""
        with self._state:
            interface = self.interfaces.pop(name)
            self._emit(
                f"RTM_IFANNOUNCE: iface arrival/departure: len 40, if# {interface.index}, "
                f"name {name}, what: departure"
            )

    def set_down(self, name: str) -> None:
        with self._state:
            self.interfaces[name].flags.discard("UP")
            self.interfaces[name].flags.discard("RUNNING")
            self._link_changed(self.interfaces[name])

    def kill_monitors(self) -> None:
        """Every running `route -n monitor` dies (as when it is killed)."""
        for stream in self.live_streams():
            stream.end()

    def hostname_path(self, name: str) -> Path:
        return self.root / "etc" / f"hostname.{name}"

    # -- the commands -----------------------------------------------------------------------

    def _answer(self, argv: tuple[str, ...], timeout: float) -> Completed:
        if argv[:1] == ("dhcpleasectl",):
            return self._dhcpleasectl(argv, timeout)  # waits for the lease: not under the lock
        with self._state:
            match argv:
                case ("ifconfig", name):
                    return self._ifconfig_show(argv, name)
                case ("sh", "/etc/netstart", *names) if names:
                    return self._netstart(argv, names)
                case ("pfctl", *flags, "-f", path) if set(flags) <= {"-e", "-v"}:
                    return self._pfctl(argv, path, enable="-e" in flags)
                case ("ifconfig", name, *words):
                    code, err = self._ifconfig(name, list(words))
                    return Completed(argv, code, "", err, 0.001)
                case ("ping", *words):
                    return self._ping(argv, list(words))
                case ("route", "-n", "show", "-inet"):
                    return Completed(argv, 0, self._route_show(), "", 0.01)
                case ("route", "-n", "get", "-inet", destination):
                    return self._route_get(destination)
                case ("route", *words):
                    code, err = self._route(list(words))
                    return Completed(argv, code, "", err, 0.001)
            return Completed(argv, 127, "", f"ksh: {argv[0]}: not found", 0.001)

    def stream_opened(self, stream: ScriptedStream) -> None:
        if stream.argv != ("route", "-n", "monitor"):
            stream.feed(f"ksh: {stream.argv[0]}: not found")
            stream.end()

    def _ifconfig_show(self, argv: tuple[str, ...], name: str) -> Completed:
        interface = self.interfaces.get(name)
        if interface is None:
            return Completed(argv, 1, "", f"{name}: no such interface\n", 0.002)
        return Completed(argv, 0, interface.render(), "", 0.002)

    def _netstart(self, argv: tuple[str, ...], names: list[str]) -> Completed:
        errors: list[str] = []
        for name in names:
            if name == self.wan:
                errors.extend(self._netstart_wan(name))
            else:
                errors.extend(self._netstart_file(name))
        return Completed(argv, 0, "", "".join(f"{e}\n" for e in errors), 0.05)

    def _netstart_wan(self, name: str) -> list[str]:
        interface = self.interfaces.get(name)
        if interface is None:
            return [f"{name}: no such interface"]
        if "AUTOCONF4" in interface.flags:
            # hostname.em0 says `inet autoconf`: on an interface already up and autoconf
            # that changes nothing; on one that was down, dhcpleased starts an exchange.
            if "UP" not in interface.flags:
                interface.flags |= {"UP", "RUNNING"}
                self._link_changed(interface)
                if interface.carrier:
                    self._request_lease(name)
            return []
        interface.flags |= {"UP", "RUNNING"}
        interface.carrier = True
        interface.status = "active"
        self._link_changed(interface)
        if self.lease is not None:
            self.set_address(name, self.lease)
        return []

    def _netstart_file(self, name: str) -> list[str]:
        path = self.hostname_path(name)
        if not path.is_file():
            return [f"netstart: /etc/hostname.{name}: No such file or directory"]
        errors: list[str] = []
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o027:
            errors.append(f"WARNING: /etc/hostname.{name} is insecure, fixing permissions.")
            path.chmod(0o640)
        if name not in self.interfaces:
            self._ifconfig(name, ["create"])
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("!"):
                words = shlex.split(line[1:].replace("$if", name))
            else:
                words = ["ifconfig", name, *shlex.split(line)]
            self.applied.append(shlex.join(words))
            if words[:1] == ["ifconfig"] and len(words) >= 2:
                _, err = self._ifconfig(words[1], words[2:])
            elif words[:1] == ["route"]:
                _, err = self._route(words[1:])
            else:
                err = f"ksh: {words[0] if words else ''}: not found"
            if err:
                errors.append(err)
        return errors

    def _ifconfig(self, name: str, words: list[str]) -> tuple[int, str]:
        if words == ["create"]:
            if name in self.interfaces:
                return 1, f"ifconfig: {name}: SIOCIFCREATE: File exists"
            if not name.startswith(_CLONERS):
                return 1, f"ifconfig: {name}: SIOCIFCREATE: Invalid argument"
            self._add_interface(name, physical=False)
            return 0, ""
        interface = self.interfaces.get(name)
        if interface is None:
            return 1, f"{name}: no such interface"
        if words == ["destroy"]:
            self.destroy(name)
            return 0, ""
        while words:
            match words:
                case ["tunnel", local, remote, *rest]:
                    interface.tunnel = (local, remote)
                    words = rest
                case ["tunnelttl", ttl, *rest]:
                    interface.tunnel_ttl = int(ttl)
                    words = rest
                case ["deletetunnel", *rest]:
                    interface.tunnel = None
                    words = rest
                case ["mtu", mtu, *rest]:
                    interface.mtu = int(mtu)
                    words = rest
                case ["up", *rest]:
                    interface.flags |= {"UP", "RUNNING"}
                    self._link_changed(interface)
                    words = rest
                case ["down", *rest]:
                    self.set_down(name)
                    words = rest
                case ["inet6", "alias", address, peer, "prefixlen", plen, *rest]:
                    entry = (address, peer, int(plen))
                    if entry not in interface.inet6:
                        interface.inet6.append(entry)
                        self._announce("RTM_NEWADDR", name, address)
                    words = rest
                case _:
                    return 1, f"ifconfig: {words[0]}: bad value"
        return 0, ""

    def _route(self, words: list[str]) -> tuple[int, str]:
        match words:
            case ["-n", "add", "-inet6", "default", gateway]:
                if self.default_inet6 is not None:
                    return 1, f"add net default: gateway {gateway}: File exists"
                self.default_inet6 = gateway
                return 0, ""
            case ["-n", "delete", "-inet6", "default", *_]:
                if self.default_inet6 is None:
                    return 1, "delete net default: not in table"
                self.default_inet6 = None
                return 0, ""
            case ["-n", "add", "-inet", "-host", *rest]:
                label, (destination, gateway) = _label_and_args(rest)
                if destination in self.host_routes:
                    return 1, f"add host {destination}: gateway {gateway}: File exists"
                self.host_routes[destination] = HostRoute(gateway, label)
                return 0, ""
            case ["-n", "change", "-inet", "-host", *rest]:
                label, (destination, gateway) = _label_and_args(rest)
                if destination not in self.host_routes:
                    return 1, f"change host {destination}: gateway {gateway}: not in table"
                self.host_routes[destination] = HostRoute(gateway, label)
                return 0, ""
            case ["-n", "delete", "-inet", "-host", destination]:
                if self.host_routes.pop(destination, None) is None:
                    return 1, f"delete host {destination}: not in table"
                return 0, ""
        return 1, f"route: {' '.join(words)}: unsupported here"

    def _ping(self, argv: tuple[str, ...], words: list[str]) -> Completed:
        """`ping -c 1 -w N [-I source] target`: a reply when the interface it leaves by (the
        source address's, else the first default route's) has its carrier and an upstream
        (`upstream_broken` holds the interfaces whose ISP drops everything)."""
        target = words[-1]
        source = words[words.index("-I") + 1] if "-I" in words else None
        if source is not None:
            name = next(
                (n for n, i in self.interfaces.items() if any(a[0] == source for a in i.inet)),
                None,
            )
            if name is None:
                return Completed(argv, 1, "", "ping: bind: Can't assign requested address\n", 0.01)
        else:
            name = next(iter(self.default_routes), None)
        interface = self.interfaces.get(name) if name is not None else None
        header = f"PING {target} ({target}): 56 data bytes\n"
        stats = f"\n--- {target} ping statistics ---\n1 packets transmitted, "
        if interface is None or not interface.carrier or name in self.upstream_broken:
            out = header + stats + "0 packets received, 100.0% packet loss\n"
            return Completed(argv, 1, out, "", 0.01)
        out = (
            header
            + f"64 bytes from {target}: icmp_seq=0 ttl=59 time=1.234 ms\n"
            + stats
            + "1 packets received, 0.0% packet loss\n"
            + "round-trip min/avg/max/std-dev = 1.234/1.234/1.234/0.000 ms\n"
        )
        return Completed(argv, 0, out, "", 0.01)

    def _route_show(self) -> str:
        """`route -n show -inet`: the IPv4 table as route.c's p_rtentry prints it."""
        lines = [
            "Routing tables",
            "",
            "Internet:",
            f"{'Destination':<19}{'Gateway':<19}Flags   Refs      Use   Mtu  Prio Iface",
        ]
        for index, (name, gateway) in enumerate(self.default_routes.items()):
            prio = 8 + index
            lines.append(
                f"{'default':<19}{gateway:<19}UGS        1        0     - {prio:>5} {name}"
            )
        for destination, route in sorted(self.host_routes.items()):
            name = self._interface_for(route.gateway) or "-"
            lines.append(
                f"{destination:<19}{route.gateway:<19}UGHS       0        0     -     8 {name}"
            )
        return "\n".join(lines) + "\n"

    def _route_get(self, destination: str) -> Completed:
        """`route -n get -inet <destination>` as route.c's print_getmsg prints it."""
        argv = ("route", "-n", "get", "-inet", destination)
        host = self.host_routes.get(destination)
        if host is not None:
            gateway, flags, label = host.gateway, "<UP,GATEWAY,HOST,DONE,STATIC>", host.label
            shown, mask = destination, None
        elif self.default_routes:
            gateway = next(iter(self.default_routes.values()))
            flags, label, shown, mask = "<UP,GATEWAY,DONE,STATIC>", None, "default", "default"
        else:
            return Completed(
                argv, 1, "", "route: writing to routing socket: No such process\n", 0.01
            )
        name = self._interface_for(gateway) or "?"
        lines = [f"   route to: {destination}", f"destination: {shown}"]
        if mask is not None:
            lines.append(f"       mask: {mask}")
        lines += [f"    gateway: {gateway}", f"  interface: {name}"]
        lines += ["   priority: 8 (static)", f"      flags: {flags}"]
        if label is not None:
            lines.append(f"      label: {label}")
        lines += ["     use       mtu    expire", "       0         0         0"]
        return Completed(argv, 0, "\n".join(lines) + "\n", "", 0.01)

    def _interface_for(self, gateway: str) -> str | None:
        """The interface whose /24 holds `gateway`."""
        prefix = gateway.rsplit(".", 1)[0]
        for name, interface in self.interfaces.items():
            if any(address.rsplit(".", 1)[0] == prefix for address, _, _ in interface.inet):
                return name
        return None

    # -- dhcpleased and dhcpleasectl ------------------------------------------------------

    def _dhcpleasectl(self, argv: tuple[str, ...], timeout: float) -> Completed:
        match argv[1:]:
            case ("-l", name):
                with self._state:
                    interface = self.interfaces.get(name)
                    if interface is None:
                        return Completed(argv, 1, "", "dhcpleasectl: unknown interface\n", 0.01)
                    if "AUTOCONF4" not in interface.flags:
                        message = f"dhcpleasectl: non-autoconf interface {name}\n"
                        return Completed(argv, 1, "", message, 0.01)
                    return Completed(argv, 0, self._show_lease(interface), "", 0.01)
            case ("-w", maxwait, name) if maxwait.isdigit():
                with self._state:
                    interface = self.interfaces.get(name)
                    if interface is None:
                        return Completed(argv, 1, "", "dhcpleasectl: unknown interface\n", 0.01)
                    # dhcpleasectl sets UP and AUTOCONF4 itself, then asks for a lease.
                    interface.flags |= {"UP", "RUNNING", "AUTOCONF4"}
                    self._request_lease(name)
                waited = 0.0
                wait = min(float(maxwait), timeout)
                if not self._bound.wait(wait):
                    waited = wait
                with self._state:
                    interface = self.interfaces.get(name)
                    if interface is None:
                        return Completed(argv, 1, "", "dhcpleasectl: unknown interface\n", 0.01)
                    # One dot per second spent waiting, then a newline, then the lease.
                    dots = "." * int(waited)
                    out = (dots + "\n" if dots else "") + self._show_lease(interface)
                    return Completed(argv, 0, out, "", waited)
        usage = "usage: dhcpleasectl [-l] [-s socket] [-w maxwait] interface\n"
        return Completed(argv, 1, "", usage, 0.01)

    def _show_lease(self, interface: HostInterface) -> str:
        """dhcpleasectl's show_interface_msg for the lease `interface` holds."""
        if interface.lease is None:
            return f"{interface.name} [Init]\n"
        prefix = interface.lease.rsplit(".", 1)[0]
        return (
            f"{interface.name} [Bound]\n"
            f"\tinet {interface.lease} netmask 255.255.255.0\n"
            f"\tdefault gateway {prefix}.1\n"
            f"\tnameservers {prefix}.1\n"
            "\tlease 12 hours\n"
            f"\tdhcp server {prefix}.1\n"
        )

    def _request_lease(self, name: str) -> None:
        """dhcpleased asks the ISP's server for a lease (called with the state held)."""
        interface = self.interfaces[name]
        if self._dhcp_exchange is not None:
            self._dhcp_exchange.cancel()
            self._dhcp_exchange = None
        offered = self.lease
        if offered is None or offered == interface.lease:
            if interface.lease is not None:
                self._bound.set()  # the server ACKs the lease held (or none answers)
            return
        # The server NAKs the old lease: dhcpleased removes its address and starts over.
        self._bound.clear()
        if interface.lease is not None:
            old = interface.lease
            interface.inet = [entry for entry in interface.inet if entry[0] != old]
            interface.lease = None
            self._announce("RTM_DELADDR", name, old)
        exchange = threading.Timer(self.dhcp_delay, self._bind_lease, (name, offered))
        exchange.daemon = True
        self._dhcp_exchange = exchange
        exchange.start()

    def _bind_lease(self, name: str, address: str) -> None:
        with self._state:
            self._dhcp_exchange = None
            interface = self.interfaces.get(name)
            if interface is None or not interface.carrier or interface.lease == address:
                return
            prefix = address.rsplit(".", 1)[0]
            interface.inet.append((address, "0xffffff00", f"{prefix}.255"))
            interface.lease = address
            self._announce("RTM_NEWADDR", name, address)
            self._bound.set()

    def _pfctl(self, argv: tuple[str, ...], path: str, *, enable: bool = False) -> Completed:
        if not (self.root / path.lstrip("/")).is_file():
            return Completed(argv, 1, "", f"pfctl: {path}: No such file or directory\n", 0.01)
        if self.pf_error is not None:
            return Completed(argv, 1, "", f"{self.pf_error}\n{_PF_SYNTAX_FAILURE}\n", 0.01)
        self.pf_loads += 1
        if enable:  # the rules are loaded; pfctl_enable then finds pf running: errx(1, ...)
            return Completed(argv, 1, "", "pfctl: pf already enabled\n", 0.01)
        return Completed(argv, 0, "", "", 0.01)

    # -- the kernel's side ------------------------------------------------------------------

    def _add_interface(self, name: str, *, physical: bool) -> None:
        index = self._next_index
        self._next_index += 1
        if physical:
            interface = HostInterface(
                name,
                index,
                {"UP", "BROADCAST", "RUNNING", "SIMPLEX", "MULTICAST"},
                1500,
                lladdr=f"fe:e1:ba:d0:00:{index:02x}",
                status="active",
            )
        else:
            interface = HostInterface(name, index, {"POINTOPOINT", "MULTICAST"}, 1280)
        self.interfaces[name] = interface
        self._emit(
            f"RTM_IFANNOUNCE: iface arrival/departure: len 40, if# {index}, "
            f"name {name}, what: arrival"
        )

    def _link_changed(self, interface: HostInterface) -> None:
        if interface.status is not None:  # a physical interface: its carrier
            link = "active" if interface.carrier else "no carrier"
        else:
            link = "active" if "UP" in interface.flags else "down"
        flags = ",".join(_ROUTE_FLAG_NAMES.get(f, f) for f in _FLAG_BITS if f in interface.flags)
        self._emit(
            f"RTM_IFINFO: iface status change: len 168, if# {interface.index}, "
            f"name {interface.name}, link: {link}, mtu: {interface.mtu}, flags:<{flags}>"
        )

    def _announce(self, kind: str, name: str, address: str) -> None:
        verb = "added to" if kind == "RTM_NEWADDR" else "removed from"
        index = self.interfaces[name].index if name in self.interfaces else 0
        self._emit(
            f"{kind}: address being {verb} iface: len 104, if# {index}, name {name}, "
            f"metric 0, flags:<UP>\nsockaddrs: <IFP,IFA>\n {name} {address}"
        )

    def _emit(self, message: str) -> None:
        text = f"got message of size 104 on {_MONITOR_TIME}\n{message}\n"
        for stream in self.live_streams():
            stream.feed(text)


def _label_and_args(words: list[str]) -> tuple[str | None, list[str]]:
    """route's `-label L` modifier and the other arguments."""
    if words[:1] == ["-label"] and len(words) >= 2:
        return words[1], words[2:]
    return None, words
