"""Who owns the WAN on Linux, and how restart-wan asks it to bring the WAN back.

On Linux the WAN usually belongs to something else: a DHCP client (dhclient, dhcpcd), a
network manager (systemd-networkd, NetworkManager) or pppd. Bouncing the link under it
deletes its default route, which it does not notice (issue 20). So restart-wan asks the
owner, the way an admin would:

    wan.restart_command   the configured argv (always wins)
    systemd-networkd      networkctl renew IF (a DHCP lease), networkctl reconfigure IF
    NetworkManager        nmcli device reapply IF
    dhcpcd                dhcpcd -n IF
    dhclient (ifupdown)   systemctl restart UNIT when a systemd unit runs it (ifup@IF);
                          else dhclient -r ... IF, then dhclient -1 ... IF, with the
                          running client's own pid, lease and config files
    pppd, nobody          nothing: pppd redials by itself; the WAN is only observed

Only processes in the WAN's network namespace count (a dhclient of another namespace's
`eth0` is not ours); networkd's state files are read through its own root
(/proc/PID/root), so a networkd with a private /run is seen as it sees itself. Reading
/proc is all this does: nothing is started, nothing is changed.
"""

from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from attrs import frozen

__all__ = ["NOBODY", "WanOwner", "detect_here", "detect_wan_owner"]

NOBODY = "none"  # the owner name recorded when nobody can be told

# dhclient options that take a value (kept, with it, for the client started again).
_DHCLIENT_VALUED = frozenset(
    {"-p", "-pf", "-lf", "-cf", "-sf", "-s", "-g", "-e", "-df", "-D", "--timeout"}
)
# dhclient options that are about how that run was started, not about the client.
_DHCLIENT_DROPPED = frozenset({"-d", "-1", "-r", "-x", "-nw", "-w", "-q", "-v", "--no-pid"})


@frozen
class WanOwner:
    """Who owns the WAN: `name` ("command", "networkd", "networkmanager", "dhcpcd",
    "dhclient", "pppd", "none"), the commands restart-wan runs in order (none: it only
    observes) and how it was found (one line, for check-config and init)."""

    name: str
    steps: tuple[tuple[str, ...], ...]
    found: str
    dhcp: bool = False  # a DHCP client: the WAN's address comes and goes with its lease

    @property
    def recorded(self) -> str:
        """The owner as the WAN fact records it: its name, or "none" when it cannot be told."""
        return self.name if self.steps else NOBODY

    def describe(self) -> str:
        """One line: who owns the WAN and what restart-wan will do."""
        if not self.steps:
            return f"{self.found}: restart-wan only observes (set wan.restart_command to act)"
        commands = "; then ".join(shlex.join(step) for step in self.steps)
        return f"{self.found}: restart-wan runs {commands}"


def detect_wan_owner(
    interface: str,
    *,
    index: int | None,
    restart_command: Sequence[str] | None = None,
    netns_path: Path | None = None,
    proc: Path = Path("/proc"),
) -> WanOwner:
    """The WAN's owner, as far as it can be told from here.

    `index` is the WAN's interface index (None while it is gone: then only processes that
    name it can own it); `netns_path` the WAN's network namespace (/run/netns/NAME;
    None: ours).
    """
    if restart_command:
        return WanOwner("command", (tuple(restart_command),), "wan.restart_command is set")
    namespace = _namespace_id(netns_path or proc / "self" / "ns" / "net")
    found: dict[str, WanOwner] = {}
    for pid, argv in _processes(proc, namespace):
        program = os.path.basename(argv[0])
        if program == "systemd-networkd":
            owner = _networkd(interface, index, proc / str(pid) / "root")
        elif program == "NetworkManager":
            owner = WanOwner(
                "networkmanager",
                (("nmcli", "device", "reapply", interface),),
                f"NetworkManager runs (pid {pid})",
            )
        elif (program == "dhcpcd" and _names(argv, interface, manager_ok=True)) or (
            program.startswith("dhcpcd:") and _dhcpcd_title_names(program, interface)
        ):
            owner = WanOwner(
                "dhcpcd", (("dhcpcd", "-n", interface),), f"dhcpcd runs for {interface}", True
            )
        elif program == "dhclient" and _names(argv, interface):
            owner = _dhclient(interface, argv, pid, _unit_of(proc / str(pid)))
        elif program == "pppd" and _pppd_names(argv, interface):
            owner = WanOwner("pppd", (), f"pppd (pid {pid}) owns {interface} and redials by itself")
        else:
            continue
        if owner is not None:
            found.setdefault(owner.name, owner)
    # The most specific first: a DHCP client that runs for this very interface, then the
    # managers that may have started it, then pppd.
    for name in ("dhclient", "dhcpcd", "networkd", "networkmanager", "pppd"):
        if name in found:
            return found[name]
    return WanOwner(NOBODY, (), f"no DHCP client, network manager or pppd owns {interface}")


def _namespace_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _processes(proc: Path, namespace: tuple[int, int] | None) -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process in `namespace` (all of them when it is unknown)."""
    try:
        entries = list(os.scandir(proc))
    except OSError:
        return
    for entry in entries:
        if not entry.name.isdigit():
            continue
        base = Path(entry.path)
        if namespace is not None and _namespace_id(base / "ns" / "net") != namespace:
            continue
        try:
            raw = (base / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        if argv:
            yield int(entry.name), argv


def _names(argv: list[str], interface: str, *, manager_ok: bool = False) -> bool:
    """Whether a client's command line names `interface` (dhcpcd without any interface runs
    for all of them)."""
    operands = _operands(argv)
    return interface in operands or (manager_ok and not operands)


def _operands(argv: list[str]) -> list[str]:
    operands = []
    skip = False
    for word in argv[1:]:
        if skip:
            skip = False
        elif word in _DHCLIENT_VALUED:
            skip = True
        elif not word.startswith("-"):
            operands.append(word)
    return operands


def _dhcpcd_title_names(title: str, interface: str) -> bool:
    """dhcpcd 9 replaces its command line with a title: "dhcpcd: [manager] [ip4] [ip6]"
    (every link) or "dhcpcd: eth0 [ip4]" (one); its helpers are "[... proxy]", "[BPF ...]"."""
    words = title.removeprefix("dhcpcd:").split()
    if not words:
        return False
    return words[0] == "[manager]" or words[0] == interface


def _pppd_names(argv: list[str], interface: str) -> bool:
    """pppd names its link with `ifname NAME`, else it is ppp<unit> (`unit N`), else one of
    the ppp links: any pppd then counts for a ppp* WAN."""
    words = argv[1:]
    for option in ("ifname", "unit"):
        if option in words[:-1]:
            value = words[words.index(option) + 1]
            return interface == (value if option == "ifname" else f"ppp{value}")
    return interface.startswith("ppp")


def _dhclient(interface: str, argv: list[str], pid: int, unit: str | None) -> WanOwner:
    """A dhclient that a systemd unit runs (ifupdown's ifup@IF.service, dhclient@IF) is
    restarted by that unit: one we started would live in our own cgroup and sandbox (no
    AF_PACKET) and die with us. Otherwise dhclient -r (release: it stops the running client
    through its pid file) and dhclient -1 (one attempt, then it stays as the client), both
    with the running one's files."""
    if unit is not None:
        return WanOwner(
            "dhclient",
            (("systemctl", "restart", unit),),
            f"dhclient runs for {interface} (pid {pid}) in {unit}",
            True,
        )
    kept: list[str] = []
    words = iter(argv[1:])
    for word in words:
        if word in _DHCLIENT_VALUED:
            kept += [word, next(words, "")]
        elif word.startswith("-") and word not in _DHCLIENT_DROPPED:
            kept.append(word)
    program = argv[0] if os.path.isabs(argv[0]) else "dhclient"
    steps = (
        (program, "-r", *kept, interface),
        (program, "-1", *kept, interface),
    )
    return WanOwner("dhclient", steps, f"dhclient runs for {interface} (pid {pid})", True)


def _unit_of(process: Path) -> str | None:
    """The systemd service a process runs in (from its cgroup), None outside one (no
    systemd, a container's own cgroup, or reconciler's own service)."""
    try:
        lines = (process / "cgroup").read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(":", 2)[-1]
        unit = path.rstrip("/").rsplit("/", 1)[-1]
        if unit.endswith(".service") and unit != "reconciler.service":
            return unit
    return None


def _networkd(interface: str, index: int | None, root: Path) -> WanOwner | None:
    """networkd owns the link when its state file says it manages it; a link with a DHCPv4
    lease is renewed, any other reconfigured."""
    if index is None:
        return None
    netif = root / "run" / "systemd" / "netif"
    try:
        state = (netif / "links" / str(index)).read_text(errors="replace")
    except OSError:
        return None
    values = dict(line.split("=", 1) for line in state.splitlines() if "=" in line)
    if values.get("ADMIN_STATE", "unmanaged") in ("unmanaged", "linger"):
        return None
    network = values.get("NETWORK_FILE", "its .network file")
    if (netif / "leases" / str(index)).exists():
        step = ("networkctl", "renew", interface)
        found = f"systemd-networkd manages {interface} with a DHCP lease ({network})"
        return WanOwner("networkd", (step,), found, True)
    step = ("networkctl", "reconfigure", interface)
    return WanOwner("networkd", (step,), f"systemd-networkd manages {interface} ({network})")


def detect_here(interface: str, restart_command: Sequence[str] | None = None) -> WanOwner:
    """The owner of `interface` in this process's own namespace (check-config, init)."""
    try:
        index: int | None = socket.if_nametoindex(interface)
    except OSError:
        index = None
    return detect_wan_owner(interface, index=index, restart_command=restart_command)
