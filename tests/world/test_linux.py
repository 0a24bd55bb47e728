"""LinuxPlatform against real kernel interfaces in network namespaces made for each test.

The world: a `router` namespace holding the WAN end of a veth pair (198.51.100.7/24) and a
`far` namespace playing Hurricane Electric (198.51.100.1/24 on the veth, 203.0.113.1 as the
tunnel server, routed). The kernel here has no `sit`, so the tunnel runs in vxlan mode.
The test's own changes to the world go through `ip`; the platform under test uses netlink.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from reconciler.errors import PermanentError, PlatformUnsupportedError, TemporaryError
from reconciler.model.config import (
    Config,
    DaemonConfig,
    FirewallConfig,
    TunnelbrokerConfig,
    TunnelConfig,
    WanConfig,
)
from reconciler.world.linux import SIT_UNSUPPORTED, LinuxPlatform, NetlinkWatch
from reconciler.world.netns import rtnetlink_socket
from reconciler.world.platform import ChangeNotice, tunnel_address_first
from reconciler.world.probe import ping
from tests.world.platform_contract import NoticeCollector, PlatformContract, World

WAN = "wan0"
TUNNEL = "he-ipv6"
SERVER_V4 = "203.0.113.1"
CLIENT_V6 = "2001:db8:1f06:abc::2"
SERVER_V6 = "2001:db8:1f06:abc::1"
VXLAN_ID = 4242
VXLAN_PORT = 4789
_RUN = itertools.count()


def ip(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip -n <netns> ...` (the test's own hand on the world, never the platform's)."""
    return subprocess.run(["ip", "-n", netns, *argv], check=check, capture_output=True, text=True)


def link_details(netns: str, name: str) -> dict[str, Any] | None:
    shown = ip(netns, "-d", "-j", "link", "show", name, check=False)
    if shown.returncode != 0:
        return None
    details: dict[str, Any] = json.loads(shown.stdout)[0]
    return details


def make_config(
    tmp_path: Path,
    *,
    mode: str = "vxlan",
    vxlan_id: int | None = VXLAN_ID,
    wan_restart: tuple[str, ...] | None = None,
    firewall: tuple[str, ...] = (),
    hostname_file: Path | None = None,
    address_in: str | None = None,
) -> Config:
    return Config(
        path=tmp_path / "reconciler.conf",
        digest="test",
        daemon=DaemonConfig(platform="linux", state_dir=tmp_path / "state", log="stderr"),
        wan=WanConfig(interface=WAN, restart_command=wan_restart, address_in=address_in),
        probes={},
        tunnel=TunnelConfig(
            interface=TUNNEL,
            mode=mode,  # type: ignore[arg-type]
            server_ipv4=SERVER_V4,
            client_ipv6=CLIENT_V6,
            server_ipv6=SERVER_V6,
            prefixlen=64,
            mtu=1400,
            hostname_file=hostname_file,
            vxlan_id=vxlan_id,
            vxlan_port=VXLAN_PORT,
        ),
        tunnelbroker=TunnelbrokerConfig(
            tunnel_id="1", username="test", update_key_file=tmp_path / "key"
        ),
        firewall=FirewallConfig(reload_command=firewall),
    )


class LinuxControls:
    """The test's hand on the namespaces (WorldControls of the contract suite)."""

    wan_interface = WAN
    tunnel_remote = SERVER_V4

    def __init__(self, router: str, far: str, reload_count_file: Path) -> None:
        self.router = router
        self.far = far
        self.reload_count_file = reload_count_file

    def set_wan_address(self, address: str) -> None:
        ip(self.router, "-4", "addr", "flush", "dev", WAN)
        ip(self.router, "addr", "add", f"{address}/24", "dev", WAN)
        ip(self.router, "route", "replace", "203.0.113.0/24", "via", "198.51.100.1")

    def remove_wan_address(self) -> None:
        ip(self.router, "-4", "addr", "flush", "dev", WAN)

    def remove_wan_interface(self) -> None:
        ip(self.router, "link", "del", WAN)

    def take_tunnel_down(self) -> None:
        ip(self.router, "link", "set", TUNNEL, "down")

    def firewall_reloads(self) -> int:
        if not self.reload_count_file.exists():
            return 0
        return len(self.reload_count_file.read_text().splitlines())


@pytest.fixture
def namespaces(lab_available: None) -> Iterator[tuple[str, str]]:
    """(router, far): two fresh namespaces joined by a veth, removed afterwards."""
    run = f"{os.getpid()}x{next(_RUN)}"
    router, far = f"rclr{run}", f"rclf{run}"
    made: list[str] = []
    try:
        for name in (router, far):
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            made.append(name)
        ip(router, "link", "add", WAN, "type", "veth", "peer", "name", "up0", "netns", far)
        ip(router, "addr", "add", "198.51.100.7/24", "dev", WAN)
        ip(far, "addr", "add", "198.51.100.1/24", "dev", "up0")
        ip(far, "addr", "add", f"{SERVER_V4}/32", "dev", "lo")
        for ns, dev in ((router, WAN), (far, "up0")):
            ip(ns, "link", "set", dev, "up")
            ip(ns, "link", "set", "lo", "up")
        ip(router, "route", "add", "203.0.113.0/24", "via", "198.51.100.1")
        yield router, far
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def reload_command(count_file: Path) -> tuple[str, ...]:
    """A firewall "reload" that leaves a line in count_file each time it runs."""
    script = "import sys; open(sys.argv[1], 'a').write('reload\\n')"
    return (sys.executable, "-c", script, str(count_file))


class TestLinuxContract(PlatformContract):
    """The shared platform contract, on real links in a namespace (vxlan mode)."""

    HAS_HOSTNAME_FILE = False

    @pytest.fixture
    def world(self, namespaces: tuple[str, str], tmp_path: Path) -> Iterator[World]:
        router, far = namespaces
        count_file = tmp_path / "reloads"
        config = make_config(tmp_path, firewall=reload_command(count_file))
        yield World(LinuxPlatform(config, netns=router), LinuxControls(router, far, count_file))


# -- the tunnel's details ---------------------------------------------------------------


def test_restart_tunnel_builds_vxlan_address_and_routes(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """The vxlan link gets id, port, learning off, MTU, the client address and IPv6 routes."""
    router, _far = namespaces
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    platform.restart_tunnel("198.51.100.7", SERVER_V4)
    details = link_details(router, TUNNEL)
    assert details is not None
    data = details["linkinfo"]["info_data"]
    assert details["linkinfo"]["info_kind"] == "vxlan"
    assert (data["id"], data["port"], data["learning"]) == (VXLAN_ID, VXLAN_PORT, False)
    assert details["mtu"] == 1400
    addresses = json.loads(ip(router, "-6", "-j", "addr", "show", "dev", TUNNEL).stdout)
    global_v6 = [a for a in addresses[0]["addr_info"] if a["scope"] == "global"]
    assert [(a["local"], a["prefixlen"]) for a in global_v6] == [(CLIENT_V6, 64)]
    default = json.loads(ip(router, "-6", "-j", "route", "show", "default").stdout)
    assert [(r["dev"], r["gateway"]) for r in default] == [(TUNNEL, SERVER_V6)]


def test_restart_tunnel_twice_leaves_one_address_and_route(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """A second restart neither duplicates the address nor the default route."""
    router, _far = namespaces
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    platform.restart_tunnel("198.51.100.7", SERVER_V4)
    index_before = link_details(router, TUNNEL)["ifindex"]  # type: ignore[index]
    platform.restart_tunnel("198.51.100.7", SERVER_V4)
    assert link_details(router, TUNNEL)["ifindex"] == index_before  # type: ignore[index]
    shown = ip(router, "-6", "addr", "show", "dev", TUNNEL, "scope", "global").stdout
    assert shown.count(CLIENT_V6) == 1
    default = json.loads(ip(router, "-6", "-j", "route", "show", "default").stdout)
    assert len(default) == 1


def test_local_end_changes_in_place(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """Moving the local end keeps the same link (same ifindex): vxlan allows it in place."""
    router, _far = namespaces
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    platform.restart_tunnel("198.51.100.7", SERVER_V4)
    index_before = link_details(router, TUNNEL)["ifindex"]  # type: ignore[index]
    platform.restart_tunnel("198.51.100.9", SERVER_V4)
    details = link_details(router, TUNNEL)
    assert details is not None
    assert details["ifindex"] == index_before
    assert details["linkinfo"]["info_data"]["local"] == "198.51.100.9"


def test_wrong_vni_is_recreated(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """A vxlan link with another id (unchangeable in place) is deleted and built again."""
    router, _far = namespaces
    ip(router, "link", "add", TUNNEL, "type", "vxlan", "id", "7", "dstport", "4789",
       "local", "198.51.100.7", "remote", SERVER_V4)  # fmt: skip
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    platform.restart_tunnel("198.51.100.7", SERVER_V4)
    details = link_details(router, TUNNEL)
    assert details is not None
    assert details["linkinfo"]["info_data"]["id"] == VXLAN_ID
    assert platform.observe_tunnel().up


def test_a_link_of_another_kind_is_left_alone(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """A same-named link that is not a vxlan tunnel (a veth here) is neither deleted nor
    changed: restart_tunnel fails permanently, in one line that says why (it used to delete
    the link and build the tunnel in its place)."""
    router, _far = namespaces
    ip(router, "link", "add", TUNNEL, "type", "veth", "peer", "name", "stray0")
    before = link_details(router, TUNNEL)
    assert before is not None
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    with pytest.raises(PermanentError) as refused:
        platform.restart_tunnel("198.51.100.7", SERVER_V4)
    assert str(refused.value) == (
        f"{TUNNEL} is a veth link, not a vxlan tunnel: reconciler deletes or changes only vxlan "
        f"tunnels (delete {TUNNEL} yourself, or set another tunnel.interface)"
    )
    after = link_details(router, TUNNEL)
    assert after is not None
    assert (after["ifindex"], after["linkinfo"]["info_kind"]) == (before["ifindex"], "veth")
    assert after["mtu"] == before["mtu"] and after["flags"] == before["flags"]


def test_a_tunnel_of_the_other_mode_is_left_alone(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """Configured for sit, a vxlan link by the tunnel's name is not retyped either."""
    router, _far = namespaces
    ip(router, "link", "add", TUNNEL, "type", "vxlan", "id", "7", "dstport", "4789")
    platform = LinuxPlatform(make_config(tmp_path, mode="sit", vxlan_id=None), netns=router)
    with pytest.raises(PermanentError, match=f"{TUNNEL} is a vxlan link, not a sit tunnel"):
        platform.restart_tunnel("198.51.100.7", SERVER_V4)
    assert link_details(router, TUNNEL)["linkinfo"]["info_kind"] == "vxlan"  # type: ignore[index]


def test_the_wan_is_never_replaced_by_the_tunnel(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """tunnel.interface naming the WAN (check-config refuses it; a Config made in code does
    not): the WAN keeps its link, its address and its route."""
    router, _far = namespaces
    config = make_config(tmp_path)
    config = attrs.evolve(config, tunnel=attrs.evolve(config.tunnel, interface=WAN))
    before = link_details(router, WAN)
    assert before is not None
    with pytest.raises(PermanentError, match=f"{WAN} is a veth link, not a vxlan tunnel"):
        LinuxPlatform(config, netns=router).restart_tunnel("198.51.100.7", SERVER_V4)
    after = link_details(router, WAN)
    assert after is not None and after["ifindex"] == before["ifindex"]
    assert "198.51.100.7" in ip(router, "-4", "addr", "show", "dev", WAN).stdout
    assert "203.0.113.0/24 via 198.51.100.1" in ip(router, "-4", "route").stdout


def test_ipv6_crosses_the_tunnel(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """With the far end built to match, the server's IPv6 address answers through vxlan."""
    router, far = namespaces
    ip(far, "link", "add", "he6", "type", "vxlan", "id", str(VXLAN_ID), "dstport",
       str(VXLAN_PORT), "local", SERVER_V4, "remote", "198.51.100.7", "nolearning")  # fmt: skip
    ip(far, "link", "set", "he6", "mtu", "1400", "up")
    ip(far, "addr", "add", f"{SERVER_V6}/64", "dev", "he6", "nodad")
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    platform.restart_tunnel("198.51.100.7", SERVER_V4)
    result = ping("ipv6", SERVER_V6, timeout=2.0, source=CLIENT_V6, netns=router)
    assert result.ok, result.detail


def test_observe_missing_tunnel(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """Before any restart the tunnel is reported as missing, not raised."""
    router, _far = namespaces
    state = LinuxPlatform(make_config(tmp_path), netns=router).observe_tunnel()
    assert (state.exists, state.up, state.local, state.remote) == (False, False, None, None)


def test_sit_without_kernel_support_fails_with_one_line(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """Asking for sit on a kernel without it raises PlatformUnsupportedError, one clear line."""
    if Path("/sys/module/sit").exists():
        pytest.skip("this kernel has sit: the unsupported path cannot be shown here")
    router, _far = namespaces
    platform = LinuxPlatform(make_config(tmp_path, mode="sit", vxlan_id=None), netns=router)
    with pytest.raises(PlatformUnsupportedError) as raised:
        platform.restart_tunnel("198.51.100.7", SERVER_V4)
    assert str(raised.value) == SIT_UNSUPPORTED
    assert "\n" not in str(raised.value)
    assert not platform.observe_tunnel().exists


def test_modes_linux_cannot_do_are_refused(tmp_path: Path) -> None:
    """gif (OpenBSD's) and vxlan without an id are refused when the platform is made."""
    with pytest.raises(PlatformUnsupportedError, match="gif"):
        LinuxPlatform(make_config(tmp_path, mode="gif"))
    with pytest.raises(PlatformUnsupportedError, match="vxlan_id"):
        LinuxPlatform(make_config(tmp_path, vxlan_id=None))


def test_missing_namespace_is_a_temporary_error(lab_available: None, tmp_path: Path) -> None:
    """A namespace that does not exist gives a one-line TemporaryError, and is not created."""
    missing = f"rclmissing{os.getpid()}"
    platform = LinuxPlatform(make_config(tmp_path), netns=missing)
    with pytest.raises(TemporaryError, match=missing):
        platform.observe_wan()
    assert not Path("/run/netns", missing).exists()


# -- the WAN and commands ----------------------------------------------------------------


def test_a_point_to_point_wan_is_read_with_our_address(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """On a link with a peer (PPPoE) our address is IFA_LOCAL; IFA_ADDRESS is the peer's."""
    router, _far = namespaces
    ip(router, "-4", "addr", "flush", "dev", WAN)
    ip(router, "addr", "add", "198.51.100.20", "peer", "198.51.100.1/32", "dev", WAN)
    state = LinuxPlatform(make_config(tmp_path), netns=router).observe_wan()
    assert state.addresses == ("198.51.100.20",)


def test_a_dynamic_address_makes_the_wan_a_dhcp_one(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """An address with a lifetime (how DHCP clients add their lease) marks the WAN autoconf,
    and it stays so while the lease is gone (the DHCP grace is for then); an address added by
    hand (permanent) does not."""
    router, _far = namespaces
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    assert not platform.observe_wan().autoconf
    ip(router, "-4", "addr", "flush", "dev", WAN)
    ip(router, "addr", "add", "198.51.100.8/24", "dev", WAN, "valid_lft", "300",
       "preferred_lft", "300")  # fmt: skip
    assert platform.observe_wan().autoconf
    ip(router, "-4", "addr", "flush", "dev", WAN)
    gone = platform.observe_wan()
    assert (gone.address, gone.autoconf) == (None, True)


def test_the_tunnel_uses_the_address_routed_towards_he(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """A modem-management alias added before the ISP's address is not the tunnel's: the
    source of the route towards HE's server is; without such a route a dynamic address beats
    a static one; wan.address_in beats both."""
    router, _far = namespaces
    ip(router, "-4", "addr", "flush", "dev", WAN)
    ip(router, "addr", "add", "192.168.100.2/24", "dev", WAN)
    ip(router, "addr", "add", "198.51.100.7/24", "dev", WAN)
    ip(router, "route", "replace", "203.0.113.0/24", "via", "198.51.100.1", "src", "198.51.100.7")
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    assert platform.observe_wan().addresses == ("198.51.100.7", "192.168.100.2")
    ip(router, "route", "del", "203.0.113.0/24")
    assert platform.observe_wan().address == "192.168.100.2"  # no route: the kernel's first
    ip(router, "addr", "del", "198.51.100.7/24", "dev", WAN)
    ip(router, "addr", "add", "198.51.100.9/24", "dev", WAN, "valid_lft", "300",
       "preferred_lft", "300")  # fmt: skip
    assert platform.observe_wan().address == "198.51.100.9"  # the DHCP client's
    pinned = LinuxPlatform(make_config(tmp_path, address_in="192.168.100.0/24"), netns=router)
    assert pinned.observe_wan().address == "192.168.100.2"


def test_the_default_route_is_observed(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """Whether the IPv4 default route leaves through the WAN, kept as `linkdown` while the
    carrier is gone (it is there when the carrier returns)."""
    router, far = namespaces
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    assert platform.observe_wan().default_route is False
    ip(router, "route", "add", "default", "via", "198.51.100.1", "dev", WAN)
    assert platform.observe_wan().default_route is True
    ip(far, "link", "set", "up0", "down")  # the modem reboots: no carrier
    down = platform.observe_wan()
    assert (down.link_up, down.default_route) == (False, True)
    ip(router, "route", "del", "default")
    assert platform.observe_wan().default_route is False


def test_restart_wan_runs_the_configured_command(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """wan.restart_command is run as argv (once per call), not the netlink fallback."""
    router, _far = namespaces
    count_file = tmp_path / "restarts"
    platform = LinuxPlatform(
        make_config(tmp_path, wan_restart=reload_command(count_file)), netns=router
    )
    platform.restart_wan()
    platform.restart_wan()
    assert count_file.read_text().splitlines() == ["reload", "reload"]


def test_failing_command_is_a_temporary_one_line_error(tmp_path: Path) -> None:
    """A command exiting non-zero raises TemporaryError naming the status and its stderr."""
    failing = (sys.executable, "-c", "import sys; sys.exit('pf.conf: syntax error\\nmore')")
    platform = LinuxPlatform(make_config(tmp_path, firewall=failing))
    with pytest.raises(TemporaryError) as raised:
        platform.reload_firewall()
    message = str(raised.value)
    assert "firewall.reload_command" in message
    assert "status 1" in message
    assert "\n" not in message


def test_missing_program_is_a_permanent_error(tmp_path: Path) -> None:
    """A command that cannot be started at all raises PermanentError."""
    platform = LinuxPlatform(
        make_config(tmp_path, wan_restart=(str(tmp_path / "no-such-program"),))
    )
    with pytest.raises(PermanentError, match=r"wan\.restart_command"):
        platform.restart_wan()


def test_no_firewall_command_does_nothing(tmp_path: Path) -> None:
    """Without firewall.reload_command, reload_firewall is a no-op that succeeds."""
    LinuxPlatform(make_config(tmp_path)).reload_firewall()


# -- the hostname file -------------------------------------------------------------------


def test_hostname_file_when_configured(tmp_path: Path) -> None:
    """With tunnel.hostname_file set it is written atomically, mode 0640, with a backup."""
    target = tmp_path / "hostname.he-ipv6"
    platform = LinuxPlatform(make_config(tmp_path, hostname_file=target))
    assert platform.read_hostname_file() is None
    assert platform.write_hostname_file("first\n") is True
    assert platform.write_hostname_file("first\n") is False
    assert platform.write_hostname_file("second\n") is True
    assert platform.read_hostname_file() == b"second\n"
    assert (tmp_path / ".hostname.he-ipv6.bak").read_bytes() == b"first\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".hostname.he-ipv6.bak", "hostname.he-ipv6",
    ]  # fmt: skip


# -- change notifications ----------------------------------------------------------------


def test_watch_reports_links_and_ipv6_addresses_by_name(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """New links arrive as "link" notices and IPv6 address changes as "address", named."""
    router, _far = namespaces
    notices = NoticeCollector()
    watch = LinuxPlatform(make_config(tmp_path), netns=router).watch(notices)
    try:
        ip(router, "link", "add", "extra0", "type", "veth", "peer", "name", "extra1")
        assert notices.wait_for(ChangeNotice("link", "extra0"))
        ip(router, "-6", "addr", "add", "2001:db8:9::1/64", "dev", WAN, "nodad")
        assert notices.wait_for(ChangeNotice("address", WAN))
        ip(router, "link", "del", "extra0")
        assert notices.wait_for(ChangeNotice("link", "extra1"))
    finally:
        watch.stop()


def test_watch_stop_ends_its_thread(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """stop() ends the watch thread (it is woken, not left blocking on the socket)."""
    router, _far = namespaces
    before = {t for t in threading.enumerate() if t.name == "netlink-watch"}
    watch = LinuxPlatform(make_config(tmp_path), netns=router).watch(NoticeCollector())
    started = {t for t in threading.enumerate() if t.name == "netlink-watch"} - before
    assert len(started) == 1
    watch.stop()
    watch.stop()  # twice is harmless
    assert not started.pop().is_alive()


def test_watch_overrun_becomes_desync(namespaces: tuple[str, str]) -> None:
    """When the kernel drops notifications (ENOBUFS) the watcher says "desync"."""
    router, _far = namespaces
    notices = NoticeCollector()
    release = threading.Event()

    def slow_consumer(notice: ChangeNotice) -> None:
        # Hold the watch thread on its first notice so the kernel's queue overflows.
        release.wait(10)
        notices(notice)

    sock = rtnetlink_socket(router)
    watch = NetlinkWatch(sock, slow_consumer, {}, rcvbuf=4096)
    try:
        batch = "".join(f"address add 2001:db8:7::{n}/64 dev {WAN} nodad\n" for n in range(1, 400))
        subprocess.run(
            ["ip", "-n", router, "-batch", "-"], input=batch, text=True, check=True,
            capture_output=True,
        )  # fmt: skip
        release.set()
        assert notices.wait_for(ChangeNotice("desync"))
    finally:
        release.set()
        watch.stop()


def test_the_wan_selector_picks_the_tunnels_address(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """Two addresses on the WAN: the kernel's first, unless `wan.address_in` names the
    network of another."""
    router, _far = namespaces
    ip(router, "addr", "add", "192.0.2.9/24", "dev", WAN)
    config = make_config(tmp_path)
    assert LinuxPlatform(config, netns=router).observe_wan().addresses == (
        "198.51.100.7",
        "192.0.2.9",
    )
    config = attrs.evolve(config, wan=attrs.evolve(config.wan, address_in="192.0.2.0/24"))
    wan = LinuxPlatform(config, netns=router).observe_wan()
    assert wan.addresses == ("192.0.2.9", "198.51.100.7")
    assert wan.address == "192.0.2.9"


@pytest.mark.parametrize(
    ("address_in", "route_source", "dynamic", "first"),
    [
        (None, None, (), "192.168.100.2"),
        (None, "198.51.100.7", ("198.51.100.9",), "198.51.100.7"),
        (None, "203.0.113.99", ("198.51.100.9",), "198.51.100.9"),  # not the WAN's: ignored
        ("192.168.100.0/24", "198.51.100.7", ("198.51.100.9",), "192.168.100.2"),
    ],
)
def test_the_address_choice_order(
    address_in: str | None, route_source: str | None, dynamic: tuple[str, ...], first: str
) -> None:
    """wan.address_in, then the route's source towards HE, then a dynamic one, then the
    kernel's first; the others keep the kernel's order."""
    addresses = ("192.168.100.2", "198.51.100.7", "198.51.100.9")
    ordered = tunnel_address_first(
        addresses, address_in, route_source=route_source, dynamic=dynamic
    )
    assert ordered[0] == first
    assert sorted(ordered) == sorted(addresses)


# -- the IPv6 default route (issue 21 item 4) ---------------------------------------------


def _defaults(router: str) -> list[tuple[str, str | None, str]]:
    routes = json.loads(ip(router, "-6", "-j", "route", "show", "default").stdout)
    return [(r["dev"], r.get("gateway"), r.get("protocol", "")) for r in routes]


def test_observe_tunnel_reports_the_ipv6_default_route(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """ "tunnel" while ::/0 goes through the tunnel, "none" once it is deleted (as
    `networkctl reconfigure` does), "tunnel" again after a restart."""
    router, _far = namespaces
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    platform.restart_tunnel("198.51.100.7", SERVER_V4)
    assert platform.observe_tunnel().default_route == "tunnel"
    ip(router, "-6", "route", "del", "default", "dev", TUNNEL)
    assert platform.observe_tunnel().default_route == "none"
    platform.restart_tunnel("198.51.100.7", SERVER_V4)
    assert platform.observe_tunnel().default_route == "tunnel"


def test_a_native_default_route_is_left_alone_and_said_once(
    namespaces: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A default route from router advertisements on the WAN (same metric as ours) is not
    replaced by the tunnel's (`route replace` used to take it over): it stays, ours is not
    added, the tunnel reports "other", and the log says so once."""
    router, _far = namespaces
    native = ("default", "via", "fe80::1", "dev", WAN, "proto", "ra", "metric", "1024")
    ip(router, "-6", "route", "add", *native)
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    with caplog.at_level("WARNING", logger="reconciler.world.linux"):
        platform.restart_tunnel("198.51.100.7", SERVER_V4)
        platform.restart_tunnel("198.51.100.7", SERVER_V4)
    assert _defaults(router) == [(WAN, "fe80::1", "ra")]
    assert platform.observe_tunnel().default_route == "other"
    said = [r.getMessage() for r in caplog.records if "default route" in r.getMessage()]
    assert len(said) == 1
    assert f"via {WAN}" in said[0] and "alone" in said[0]


def test_watch_reports_a_deleted_default_route_by_its_interface(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """Deleting the tunnel's ::/0 arrives as a "route" notice naming the tunnel; other
    routes (a /64 on the WAN) say nothing."""
    router, _far = namespaces
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    platform.restart_tunnel("198.51.100.7", SERVER_V4)
    notices = NoticeCollector()
    watch = platform.watch(notices)
    try:
        ip(router, "-6", "route", "add", "2001:db8:99::/64", "dev", WAN)
        ip(router, "-6", "route", "del", "default", "dev", TUNNEL)
        assert notices.wait_for(ChangeNotice("route", TUNNEL), timeout=5)
        assert ChangeNotice("route", WAN) not in notices.items
    finally:
        watch.stop()
