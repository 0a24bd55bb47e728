"""LinuxPlatform working with the WAN's owner (issue 20): who it is, told the way an admin
would tell it, never a link bounce under it.

Real owners in the test's namespaces: dnsmasq as the ISP's DHCP server and ISC dhclient as
the router's client (reconciler.testing.dhcp), systemd-networkd as a DHCP client
(reconciler.testing.networkd), pppd's place taken by a process named so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.errors import TemporaryError
from reconciler.testing.dhcp import DHCLIENT, Dhclient, DhcpServer
from reconciler.world.linux import LinuxPlatform
from reconciler.world.netns import rtnetlink
from reconciler.world.wanowner import detect_wan_owner
from tests.world.test_linux import WAN, ip, make_config, namespaces

__all__ = ["namespaces"]  # the fixture, shared with test_linux.py

POOL = ("198.51.100.50", "198.51.100.59")


@pytest.fixture
def dhcp_wan(
    namespaces: tuple[str, str], tmp_path: Path, dhcp_available: None
) -> Iterator[tuple[str, str, Dhclient]]:
    """The router's WAN without an address, dnsmasq serving it from the far side, dhclient
    holding a lease on it: (router, far, client)."""
    router, far = namespaces
    ip(router, "-4", "addr", "flush", "dev", WAN)
    with DhcpServer(far, "up0", "198.51.100.1", tmp_path) as isp:
        isp.start(POOL)
        with Dhclient(router, WAN, tmp_path) as client:
            client.start()
            yield router, far, client


def default_route(router: str) -> str:
    return ip(router, "-4", "route", "show", "default").stdout.strip()


def test_dhclient_is_the_owner_and_a_restart_keeps_the_default_route(
    dhcp_wan: tuple[str, str, Dhclient], tmp_path: Path
) -> None:
    """With dhclient running for the WAN: a dynamic address (autoconf), the owner
    "dhclient", and restart-wan is `dhclient -r` then `dhclient -1` with the client's own
    files: afterwards the WAN has an address and the default route (a link bounce left it
    without one until the next renewal)."""
    router, _far, client = dhcp_wan
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    state = platform.observe_wan()
    assert (state.autoconf, state.owner, state.default_route) == (True, "dhclient", True)
    owner = platform.wan_owner()
    assert owner.steps[0][:2] == (client.argv[0], "-r")
    assert str(client.pid_file) in owner.steps[1] and owner.steps[1][-1] == WAN
    before, carrier = client.pid(), carrier_changes(router)
    platform.restart_wan()
    assert carrier_changes(router) == carrier  # told, not bounced
    after = platform.observe_wan()
    assert after.address is not None and after.default_route is True
    assert "default via 198.51.100.1" in default_route(router)
    assert client.pid() not in (None, before)  # the owner's own client runs again


def test_dhclient_of_another_namespace_is_not_the_owner(
    dhcp_wan: tuple[str, str, Dhclient], tmp_path: Path, lab_available: None
) -> None:
    """Only processes in the WAN's namespace count: another namespace's `wan0` (this
    test's router, seen from a namespace of its own) has no owner."""
    other = f"rclo{os.getpid()}"
    subprocess.run(["ip", "netns", "add", other], check=True)
    try:
        ip(other, "link", "add", WAN, "type", "veth", "peer", "name", "wan0p")
        owner = detect_wan_owner(WAN, index=2, netns_path=Path("/run/netns", other))
        assert owner.recorded == "none"
        assert "restart-wan only observes" in owner.describe()
    finally:
        subprocess.run(["ip", "netns", "del", other], check=True)


def test_a_wan_nobody_owns_is_not_bounced(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """No owner and no restart_command: restart-wan fails in one line and leaves the link
    as it is (down stays down: the bounce is gone)."""
    router, _far = namespaces
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    assert platform.observe_wan().owner == "none"
    ip(router, "link", "set", WAN, "down")
    with pytest.raises(TemporaryError) as failure:
        platform.restart_wan()
    assert "restart-wan only observes" in str(failure.value)
    assert "\n" not in str(failure.value)
    assert not platform.observe_wan().link_up


def test_a_restart_is_done_only_with_carrier_and_address(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """A restart_command that leaves the WAN without an address is a temporary failure
    saying so; one after which the WAN has both succeeds."""
    router, _far = namespaces
    ip(router, "-4", "addr", "flush", "dev", WAN)
    ip_path = shutil.which("ip") or "ip"
    nothing = LinuxPlatform(make_config(tmp_path, wan_restart=("true",)), netns=router)
    assert nothing.observe_wan().owner == "command"
    with pytest.raises(TemporaryError, match=f"but {WAN} has no IPv4 address 1 s later"):
        nothing.restart_wan()
    fixes = (ip_path, "addr", "add", "198.51.100.7/24", "dev", WAN)
    LinuxPlatform(make_config(tmp_path, wan_restart=fixes), netns=router).restart_wan()


def test_pppd_owns_its_link_and_is_only_observed(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """pppd redials by itself: a pppd for the WAN (`ifname wan0`) makes it observed only,
    also while the WAN is gone."""
    router, _far = namespaces
    # The host kernel has no ppp_generic (the real pppd runs in the UML guest): a process
    # that calls itself pppd, with pppd's options, stands in for it here.
    sleeper = "import time; time.sleep(30)"
    pppd = subprocess.Popen(
        ["ip", "netns", "exec", router, "bash", "-c", 'exec -a /usr/sbin/pppd "$@"', "pppd",
         sys.executable, "-c", sleeper, "ifname", WAN],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        platform = LinuxPlatform(make_config(tmp_path), netns=router)
        deadline = time.monotonic() + 5
        while platform.wan_owner().name != "pppd" and time.monotonic() < deadline:
            time.sleep(0.05)
        owner = platform.wan_owner()
        assert (owner.name, owner.recorded) == ("pppd", "none")
        assert "redials by itself" in owner.describe()
        ip(router, "link", "del", WAN)
        assert platform.observe_wan().owner == "none"
    finally:
        pppd.kill()
        pppd.wait()


NETWORKD_DHCP = f"""[Match]
Name={WAN}

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
"""


def test_networkd_is_the_owner_and_is_told_to_renew(
    namespaces: tuple[str, str],
    tmp_path: Path,
    dhcp_available: None,
    networkd_available: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """networkd as the WAN's DHCP client (its own /run and D-Bus): the owner is networkd,
    read from its state files; restart-wan is `networkctl renew wan0` (over networkd's bus),
    after which the WAN has its lease and default route; the link is never bounced."""
    from reconciler.testing.networkd import Networkd

    router, far = namespaces
    ip(router, "-4", "addr", "flush", "dev", WAN)
    with DhcpServer(far, "up0", "198.51.100.1", tmp_path) as isp, Networkd(router) as networkd:
        isp.start(POOL)
        networkd.write("wan0.network", NETWORKD_DHCP)
        networkd.start()
        networkd.wait_setup(WAN, "configured", timeout=15)
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", networkd.bus_address)
        platform = LinuxPlatform(make_config(tmp_path), netns=router)
        state = platform.observe_wan()
        assert (state.owner, state.autoconf, state.default_route) == ("networkd", True, True)
        assert platform.wan_owner().steps == (("networkctl", "renew", WAN),)
        carrier, acks = carrier_changes(router), dhcp_acks(isp)
        platform.restart_wan()
        after = platform.observe_wan()
        assert after.address is not None and after.default_route is True
        assert carrier_changes(router) == carrier  # never bounced
        wait_for(lambda: dhcp_acks(isp) > acks, "networkd's renewal at the ISP")


def carrier_changes(router: str) -> int:
    """How often the WAN's carrier changed (a link bounce adds two)."""
    ipr = rtnetlink(router)  # pyroute2 0.7.2's IPRoute takes no netns
    try:
        link = ipr.get_links(ipr.link_lookup(ifname=WAN)[0])[0]
        return int(link.get_attr("IFLA_CARRIER_CHANGES"))
    finally:
        ipr.close()


def dhcp_acks(isp: DhcpServer) -> int:
    return isp.log_path.read_text(errors="replace").count("DHCPACK")


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.05)


def test_check_config_and_init_name_the_owner_and_the_restart(
    dhcp_wan: tuple[str, str, Dhclient], tmp_path: Path
) -> None:
    """check-config and init, run on the router, say that dhclient owns the WAN and which
    commands restart-wan will run (init's --json too)."""
    from tests.commands.test_init import init_in, old_setup

    router, _far, client = dhcp_wan
    config = tmp_path / "reconciler.conf"
    argv = old_setup(tmp_path)
    init = init_in(router, tmp_path, *argv, "--platform", "linux", "--wan", WAN)
    assert init.returncode == 0, init.stderr
    pid = client.pid()
    expected = f"WAN owner: dhclient runs for {WAN} (pid {pid}): restart-wan runs {DHCLIENT} -r"
    assert expected in init.stdout
    check = subprocess.run(
        ["ip", "netns", "exec", router, sys.executable, "-m", "reconciler",
         "check-config", "-c", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert f"  {expected}" in check.stdout
    assert f"; then {DHCLIENT} -1 " in check.stdout
    argv[argv.index("-o") + 1] = str(tmp_path / "second.conf")
    as_json = init_in(router, tmp_path, *argv, "--platform", "linux", "--wan", WAN, "--json")
    assert as_json.returncode == 0, as_json.stderr
    owner = json.loads(as_json.stdout)["wan_owner"]
    assert owner["name"] == "dhclient" and owner["found"].startswith(f"dhclient runs for {WAN}")
    assert [step[:2] for step in owner["restart_wan"]] == [[DHCLIENT, "-r"], [DHCLIENT, "-1"]]


def fake_process(proc: Path, pid: int, argv: list[str], cgroup: str) -> None:
    """A process as /proc shows it: its command line, cgroup and network namespace."""
    entry = proc / str(pid)
    (entry / "ns").mkdir(parents=True)
    (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (entry / "cgroup").write_text(f"0::{cgroup}\n")
    (entry / "ns" / "net").symlink_to(proc / "netns")


def test_a_dhclient_run_by_a_systemd_unit_is_restarted_by_that_unit(tmp_path: Path) -> None:
    """ifupdown's dhclient (in ifup@eth0.service) is restarted with `systemctl restart
    ifup@eth0.service`: one we started would live in our cgroup and sandbox (no AF_PACKET)
    and die with us. A dhclient in no unit is asked directly; our own unit is no owner's."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "netns").write_text("")
    argv = ["/sbin/dhclient", "-4", "-v", "-i", "-pf", "/run/dhclient.eth0.pid", "eth0"]
    fake_process(proc, 400, argv, "/system.slice/system-ifup.slice/ifup@eth0.service")
    owner = detect_wan_owner("eth0", index=2, netns_path=proc / "netns", proc=proc)
    assert owner.steps == (("systemctl", "restart", "ifup@eth0.service"),)
    assert "in ifup@eth0.service" in owner.describe()
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "netns").write_text("")
    fake_process(alone, 401, argv, "/system.slice/reconciler.service")
    direct = detect_wan_owner("eth0", index=2, netns_path=alone / "netns", proc=alone)
    assert [step[:2] for step in direct.steps] == [
        ("/sbin/dhclient", "-r"),
        ("/sbin/dhclient", "-1"),
    ]
    assert direct.steps[1] == ("/sbin/dhclient", "-1", "-4", "-i", "-pf",
                               "/run/dhclient.eth0.pid", "eth0")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "name", "steps"),
    [
        (["/usr/sbin/NetworkManager", "--no-daemon"], "networkmanager",
         (("nmcli", "device", "reapply", "eth0"),)),
        (["dhcpcd: [manager] [ip4] [ip6]"], "dhcpcd", (("dhcpcd", "-n", "eth0"),)),  # 9.x
        (["dhcpcd: eth1 [ip4]"], "none", ()),
        (["dhcpcd: [privileged proxy]"], "none", ()),
        (["/usr/sbin/dhcpcd", "-q", "-b"], "dhcpcd", (("dhcpcd", "-n", "eth0"),)),
        (["/usr/sbin/dhcpcd", "-4", "eth1"], "none", ()),  # another link's
        (["/usr/sbin/pppd", "call", "isp"], "none", ()),  # pppd names ppp*, not eth0
    ],
)  # fmt: skip
def test_network_manager_and_dhcpcd_are_told_their_own_way(
    tmp_path: Path, argv: list[str], name: str, steps: tuple[tuple[str, ...], ...]
) -> None:
    """NetworkManager reapplies, dhcpcd (for every link, or for this one; dhcpcd 9 shows a
    title instead of its command line) renews; a client of another link, a helper process,
    or pppd for a ppp link, owns nothing here. (Neither NetworkManager nor
    dhcpcd is installed here: their processes are read as /proc shows them.)"""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "netns").write_text("")
    fake_process(proc, 500, argv, "/")
    owner = detect_wan_owner("eth0", index=2, netns_path=proc / "netns", proc=proc)
    assert (owner.recorded, owner.steps) == (name, steps)
