"""Tests for the OpenBSD platform: the contract suite, its own details, and the original's
two stories, run against the scripted OpenBSD host over a temporary root."""

from __future__ import annotations

import os
import stat
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from reconciler.errors import PermanentError, TemporaryError
from reconciler.model.config import (
    Config,
    DaemonConfig,
    FirewallConfig,
    TunnelbrokerConfig,
    TunnelConfig,
    WanConfig,
)
from reconciler.model.hostname import render_hostname_file
from reconciler.testing import OpenBSDHost, RecordingRunner
from reconciler.world.openbsd import OpenBSDPlatform
from reconciler.world.platform import ChangeNotice, Platform, tunnel_address_first
from tests.world.platform_contract import NoticeCollector, PlatformContract, World

FIXTURES = Path(__file__).parent / "fixtures" / "openbsd"
REPO = Path(__file__).resolve().parents[2]
HE_SERVER = "203.0.113.1"
OLD_ADDRESS = "198.51.100.7"
NEW_ADDRESS = "198.51.100.77"
PF_RELOAD = ("pfctl", "-f", "/etc/pf.conf")

TUNNEL = TunnelConfig(
    interface="gif0",
    mode="gif",
    server_ipv4=HE_SERVER,
    client_ipv6="2001:db8:1f06:abc::2",
    server_ipv6="2001:db8:1f06:abc::1",
)


def make_config(
    tmp_path: Path,
    *,
    reload_command: tuple[str, ...] = PF_RELOAD,
    restart_command: tuple[str, ...] | None = None,
) -> Config:
    return Config(
        path=tmp_path / "reconciler.conf",
        digest="test",
        daemon=DaemonConfig(platform="openbsd", state_dir=tmp_path / "state", log="stderr"),
        wan=WanConfig(interface="em0", restart_command=restart_command),
        probes={},
        tunnel=TUNNEL,
        tunnelbroker=TunnelbrokerConfig(
            tunnel_id="123456", username="someone", update_key_file=tmp_path / "key"
        ),
        firewall=FirewallConfig(reload_command=reload_command),
    )


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "pf.conf").write_text("pass\n")
    return root


@pytest.fixture
def host(tmp_path: Path) -> OpenBSDHost:
    return OpenBSDHost(make_root(tmp_path), wan_address=OLD_ADDRESS)


@pytest.fixture
def platform(tmp_path: Path, host: OpenBSDHost) -> Iterator[OpenBSDPlatform]:
    yield OpenBSDPlatform(make_config(tmp_path), host, host.root, monitor_restart_delay=0.05)


# -- the contract -----------------------------------------------------------------------------


class HostControls:
    """The contract's controls, played by the scripted host."""

    wan_interface = "em0"
    tunnel_remote = HE_SERVER

    def __init__(self, host: OpenBSDHost) -> None:
        self.host = host

    def set_wan_address(self, address: str) -> None:
        self.host.set_address("em0", address)

    def remove_wan_address(self) -> None:
        self.host.remove_addresses("em0")

    def remove_wan_interface(self) -> None:
        self.host.destroy("em0")

    def take_tunnel_down(self) -> None:
        self.host.set_down("gif0")

    def firewall_reloads(self) -> int:
        return self.host.pf_loads


class TestOpenBSDContract(PlatformContract):
    WAN_ADDRESS = OLD_ADDRESS
    NEW_WAN_ADDRESS = NEW_ADDRESS

    @pytest.fixture
    def world(self, tmp_path: Path) -> Iterator[World]:
        host = OpenBSDHost(make_root(tmp_path), wan_address=self.WAN_ADDRESS)
        platform = OpenBSDPlatform(
            make_config(tmp_path), host, host.root, monitor_restart_delay=0.05
        )
        yield World(platform, HostControls(host))

    def prepare_restart_tunnel(self, platform: Platform, local: str, remote: str) -> None:
        assert remote == TUNNEL.server_ipv4
        platform.write_hostname_file(render_hostname_file(TUNNEL, local))


# -- the original's two stories ---------------------------------------------------------------


def bring_tunnel_up(platform: OpenBSDPlatform, host: OpenBSDHost) -> None:
    """The state before either story: hostname file for OLD_ADDRESS, tunnel up."""
    platform.write_hostname_file(render_hostname_file(TUNNEL, OLD_ADDRESS))
    platform.restart_tunnel(OLD_ADDRESS, HE_SERVER)
    platform.reload_firewall()
    host.calls.clear()


def test_story_tunnel_drops_while_ipv4_is_up(platform: OpenBSDPlatform, host: OpenBSDHost) -> None:
    """IPv4 up, tunnel drops: `sh /etc/netstart gif0` then `pfctl -f /etc/pf.conf`."""
    bring_tunnel_up(platform, host)
    host.set_down("gif0")

    wan = platform.observe_wan()
    tunnel = platform.observe_tunnel()
    assert wan.address == OLD_ADDRESS
    assert not tunnel.up
    assert platform.write_hostname_file(render_hostname_file(TUNNEL, wan.address)) is False
    platform.restart_tunnel(wan.address, HE_SERVER)
    platform.reload_firewall()

    assert host.calls == [
        ("ifconfig", "em0"),
        ("ifconfig", "gif0"),
        ("sh", "/etc/netstart", "gif0"),
        ("ifconfig", "gif0"),  # restart_tunnel checks what netstart did
        PF_RELOAD,
    ]
    assert platform.hostname_file.read_text() == render_hostname_file(TUNNEL, OLD_ADDRESS)
    after = platform.observe_tunnel()
    assert (after.up, after.local, after.remote) == (True, OLD_ADDRESS, HE_SERVER)


def test_story_ipv4_down_then_back_with_a_new_address(
    platform: OpenBSDPlatform, host: OpenBSDHost
) -> None:
    """IPv4 down, back with a new address: netstart em0, rewrite, netstart gif0, pfctl."""
    bring_tunnel_up(platform, host)
    host.remove_addresses("em0")
    host.lease = NEW_ADDRESS

    assert platform.observe_wan().address is None
    platform.restart_wan()
    wan = platform.observe_wan()
    assert wan.address == NEW_ADDRESS
    assert platform.write_hostname_file(render_hostname_file(TUNNEL, wan.address)) is True
    platform.restart_tunnel(wan.address, HE_SERVER)
    platform.reload_firewall()

    assert host.calls == [
        ("ifconfig", "em0"),
        ("sh", "/etc/netstart", "em0"),
        ("ifconfig", "em0"),
        ("sh", "/etc/netstart", "gif0"),
        ("ifconfig", "gif0"),
        PF_RELOAD,
    ]
    assert platform.hostname_file.read_text() == (
        "# Written by reconciler for the Hurricane Electric tunnel; edits here are replaced.\n"
        "tunnel 198.51.100.77 203.0.113.1\n"
        "tunnelttl 255\n"
        "mtu 1480\n"
        "!ifconfig $if inet6 alias 2001:db8:1f06:abc::2 2001:db8:1f06:abc::1 prefixlen 128\n"
        "up\n"
        "!route -n add -inet6 default 2001:db8:1f06:abc::1\n"
    )
    assert platform.backup_file.read_text() == render_hostname_file(TUNNEL, OLD_ADDRESS)
    tunnel = platform.observe_tunnel()
    assert (tunnel.up, tunnel.local, tunnel.remote) == (True, NEW_ADDRESS, HE_SERVER)
    assert host.applied[-6:] == [
        "ifconfig gif0 tunnel 198.51.100.77 203.0.113.1",
        "ifconfig gif0 tunnelttl 255",
        "ifconfig gif0 mtu 1480",
        "ifconfig gif0 inet6 alias 2001:db8:1f06:abc::2 2001:db8:1f06:abc::1 prefixlen 128",
        "ifconfig gif0 up",
        "route -n add -inet6 default 2001:db8:1f06:abc::1",
    ]


# -- observing ----------------------------------------------------------------------------------


def scripted(tmp_path: Path, **answers: str) -> tuple[OpenBSDPlatform, RecordingRunner]:
    runner = RecordingRunner()
    for name, fixture in answers.items():
        runner.script(["ifconfig", name], stdout=(FIXTURES / fixture).read_text())
    return OpenBSDPlatform(make_config(tmp_path), runner, tmp_path), runner


def test_observe_wan_lists_every_address_first_one_first(tmp_path: Path) -> None:
    """Several inet lines: all addresses in the kernel's order, the first one is the address."""
    platform, _ = scripted(tmp_path, em0="ifconfig_em0_two_inet.txt")
    wan = platform.observe_wan()
    assert wan.addresses == ("203.0.113.7", "198.51.100.20")
    assert wan.address == "203.0.113.7"


def test_observe_wan_without_carrier_is_link_down(tmp_path: Path) -> None:
    """A WAN without carrier exists, is not link-up, and has no address."""
    platform, _ = scripted(tmp_path, em0="ifconfig_em0_no_carrier.txt")
    wan = platform.observe_wan()
    assert (wan.exists, wan.link_up, wan.address) == (True, False, None)


def test_observe_tunnel_with_the_older_arrow(tmp_path: Path) -> None:
    """A gif0 printed with `->` reports its ends and mode gif."""
    platform, runner = scripted(tmp_path, gif0="ifconfig_gif0_arrow.txt")
    tunnel = platform.observe_tunnel()
    assert (tunnel.exists, tunnel.up, tunnel.mode) == (True, True, "gif")
    assert (tunnel.local, tunnel.remote) == ("95.163.182.60", "209.51.161.14")
    assert runner.calls == [("ifconfig", "gif0")]
    assert all(0 < t <= 30 for t in runner.timeouts)


def test_missing_tunnel_interface_is_reported(tmp_path: Path) -> None:
    """`ifconfig gif0` saying "no such interface" means the tunnel does not exist."""
    runner = RecordingRunner()
    runner.script(["ifconfig", "gif0"], returncode=1, stderr="ifconfig: gif0: no such interface")
    tunnel = OpenBSDPlatform(make_config(tmp_path), runner, tmp_path).observe_tunnel()
    assert (tunnel.exists, tunnel.up, tunnel.local) == (False, False, None)


def test_other_ifconfig_failures_raise_temporary_error(tmp_path: Path) -> None:
    """Any other ifconfig failure is a TemporaryError carrying its status and message."""
    runner = RecordingRunner()
    runner.script(["ifconfig", "em0"], returncode=1, stderr="ifconfig: SIOCGIFFLAGS: Bad file")
    platform = OpenBSDPlatform(make_config(tmp_path), runner, tmp_path)
    with pytest.raises(TemporaryError, match=r"status 1: ifconfig: SIOCGIFFLAGS: Bad file$"):
        platform.observe_wan()


# -- the hostname file ------------------------------------------------------------------------


def test_hostname_file_is_written_0640_with_a_hidden_backup(
    platform: OpenBSDPlatform, host: OpenBSDHost
) -> None:
    """The file gets mode 0640 whatever the umask; the previous one is kept as a hidden .bak."""
    old_umask = os.umask(0)
    try:
        assert platform.write_hostname_file("first\n")
        assert not platform.backup_file.exists()
        assert platform.write_hostname_file("second\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(platform.hostname_file.stat().st_mode) == 0o640
    assert platform.backup_file.read_text() == "first\n"
    assert platform.backup_file.name == ".hostname.gif0.bak"
    assert sorted(p.name for p in platform.hostname_file.parent.iterdir()) == [
        ".hostname.gif0.bak",
        "hostname.gif0",
        "pf.conf",
    ]


def test_an_unchanged_hostname_file_is_not_touched(platform: OpenBSDPlatform) -> None:
    """Writing the same content leaves the file (inode and mtime) and the backup alone."""
    platform.write_hostname_file("same\n")
    before = platform.hostname_file.stat()
    assert platform.write_hostname_file("same\n") is False
    after = platform.hostname_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not platform.backup_file.exists()


def test_hostname_file_write_failure_is_one_line(tmp_path: Path) -> None:
    """A write into a missing directory raises TemporaryError naming the file."""
    platform = OpenBSDPlatform(make_config(tmp_path), RecordingRunner(), tmp_path / "nowhere")
    with pytest.raises(TemporaryError, match=r"cannot write \S*/etc/hostname\.gif0: No such file"):
        platform.write_hostname_file("up\n")


def test_configured_hostname_file_path_is_used(tmp_path: Path, host: OpenBSDHost) -> None:
    """tunnel.hostname_file chooses the file, below the platform's root."""
    config = attrs.evolve(
        make_config(tmp_path),
        tunnel=attrs.evolve(TUNNEL, hostname_file=Path("/etc/hostname.gif1")),
    )
    platform = OpenBSDPlatform(config, host, host.root)
    platform.write_hostname_file("up\n")
    assert (host.root / "etc" / "hostname.gif1").read_text() == "up\n"


# -- acting -----------------------------------------------------------------------------------


def test_restart_tunnel_with_a_stale_file_says_so(
    platform: OpenBSDPlatform, host: OpenBSDHost
) -> None:
    """When netstart brings up other ends than asked, restart_tunnel raises and says which."""
    platform.write_hostname_file(render_hostname_file(TUNNEL, OLD_ADDRESS))
    with pytest.raises(TemporaryError) as caught:
        platform.restart_tunnel(NEW_ADDRESS, HE_SERVER)
    message = str(caught.value)
    assert f"gif0 is up with {OLD_ADDRESS} --> {HE_SERVER}, not {NEW_ADDRESS} --> " in message
    assert "\n" not in message


def test_restart_tunnel_without_a_hostname_file(platform: OpenBSDPlatform) -> None:
    """Without a hostname file netstart does nothing and restart_tunnel reports netstart's words."""
    with pytest.raises(TemporaryError, match=r"hostname\.gif0: No such file or directory"):
        platform.restart_tunnel(OLD_ADDRESS, HE_SERVER)


def test_netstart_does_not_have_to_fix_our_permissions(
    platform: OpenBSDPlatform, host: OpenBSDHost
) -> None:
    """A file the platform wrote passes netstart's permission check unchanged."""
    platform.write_hostname_file(render_hostname_file(TUNNEL, OLD_ADDRESS))
    done = host.run(["sh", "/etc/netstart", "gif0"], timeout=5)
    assert "insecure" not in done.stderr
    platform.hostname_file.chmod(0o644)
    assert "insecure" in host.run(["sh", "/etc/netstart", "gif0"], timeout=5).stderr


def test_restart_wan_uses_the_configured_command(tmp_path: Path) -> None:
    """wan.restart_command replaces `sh /etc/netstart em0`."""
    runner = RecordingRunner()
    runner.script(["/usr/local/sbin/wan-up", "em0"])
    config = make_config(tmp_path, restart_command=("/usr/local/sbin/wan-up", "em0"))
    OpenBSDPlatform(config, runner, tmp_path).restart_wan()
    assert runner.calls == [("/usr/local/sbin/wan-up", "em0")]


def test_failed_firewall_reload_raises_with_pfctls_last_line(
    platform: OpenBSDPlatform, host: OpenBSDHost
) -> None:
    """A pf.conf syntax error becomes a TemporaryError with exit status and pfctl's last line."""
    host.pf_error = "/etc/pf.conf:3: syntax error"
    with pytest.raises(TemporaryError) as caught:
        platform.reload_firewall()
    assert str(caught.value) == (
        "`pfctl -f /etc/pf.conf` exited with status 1: "
        "pfctl: Syntax error in config file: pf rules not loaded"
    )
    assert host.pf_loads == 0


def test_timed_out_restart_is_a_temporary_error(tmp_path: Path) -> None:
    """A netstart that overran its timeout is reported as timed out."""
    runner = RecordingRunner()
    runner.script(["ifconfig", "em0"], stdout=(FIXTURES / "ifconfig_em0.txt").read_text())
    runner.script(["sh", "/etc/netstart", "em0"], returncode=-9, timed_out=True, duration=120)
    platform = OpenBSDPlatform(make_config(tmp_path), runner, tmp_path)
    with pytest.raises(TemporaryError, match=r"timed out after 120\.0s"):
        platform.restart_wan()
    assert runner.calls[-1] == ("sh", "/etc/netstart", "em0")
    assert runner.timeouts[-1] == 120.0


def test_no_firewall_command_runs_nothing(tmp_path: Path) -> None:
    """An empty firewall.reload_command skips the reload without running anything."""
    runner = RecordingRunner()
    OpenBSDPlatform(make_config(tmp_path, reload_command=()), runner, tmp_path).reload_firewall()
    assert runner.calls == []


# -- watching ---------------------------------------------------------------------------------


def test_watch_reports_link_and_announce_changes(
    platform: OpenBSDPlatform, host: OpenBSDHost
) -> None:
    """A tunnel going down and an interface departing reach the watcher by name."""
    notices = NoticeCollector()
    watch = platform.watch(notices)
    try:
        assert host.wait_for_streams(1)
        host.set_down("em0")
        host.destroy("em0")
        assert notices.wait_for(ChangeNotice("link", "em0"))
        assert notices.wait_for(ChangeNotice("announce", "em0"))
    finally:
        watch.stop()
    assert host.calls == [("route", "-n", "monitor")]


def test_a_dying_monitor_means_desync_and_a_restart(
    platform: OpenBSDPlatform, host: OpenBSDHost
) -> None:
    """When `route -n monitor` dies the watcher says desync and starts a new monitor."""
    notices = NoticeCollector()
    watch = platform.watch(notices)
    try:
        assert host.wait_for_streams(1)
        host.kill_monitors()
        assert notices.wait_for(ChangeNotice("desync"))
        assert host.wait_for_streams(2)
        host.set_address("em0", NEW_ADDRESS)
        assert notices.wait_for(ChangeNotice("address", "em0"))
    finally:
        watch.stop()
    assert host.live_streams() == []


def test_a_monitor_that_cannot_start_is_retried(tmp_path: Path) -> None:
    """A monitor that fails to start gives desync notices and is tried again after a delay."""
    runner = RecordingRunner()
    runner.fail_stream(["route", "-n", "monitor"], "cannot run: No such file or directory")
    platform = OpenBSDPlatform(make_config(tmp_path), runner, tmp_path, monitor_restart_delay=0.01)
    notices = NoticeCollector()
    watch = platform.watch(notices)
    try:
        with notices.cond:
            assert notices.cond.wait_for(lambda: len(notices.items) >= 3, 5.0)
    finally:
        watch.stop()
    assert set(notices.items) == {ChangeNotice("desync")}
    assert len(runner.calls) >= 3


def test_a_failing_callback_does_not_end_the_watch(
    platform: OpenBSDPlatform, host: OpenBSDHost
) -> None:
    """An exception in the callback is logged, and later notices still arrive."""
    notices = NoticeCollector()

    def flaky(notice: ChangeNotice) -> None:
        notices(notice)
        if len(notices.items) == 1:
            raise RuntimeError("callback broke")

    watch = platform.watch(flaky)
    try:
        assert host.wait_for_streams(1)
        host.set_down("em0")
        host.set_address("em0", NEW_ADDRESS)
        assert notices.wait_for(ChangeNotice("address", "em0"))
    finally:
        watch.stop()


# -- what OpenBSD prints, as the scripted host prints it ---------------------------------------


def test_host_prints_a_missing_interface_as_ifconfig_does(host: OpenBSDHost) -> None:
    """`ifconfig gif0` for a missing gif0: `gif0: no such interface` on stderr, status 1."""
    completed = host.run(("ifconfig", "gif0"), timeout=5)
    assert (completed.returncode, completed.stdout) == (1, "")
    assert completed.stderr == (FIXTURES / "ifconfig_gif0_missing.stderr").read_text()


def test_host_monitor_prints_ifinfo_with_routes_flag_names(
    platform: OpenBSDPlatform, host: OpenBSDHost
) -> None:
    """RTM_IFINFO as route.c prints it: PTP (not POINTOPOINT), no blank line after."""
    bring_tunnel_up(platform, host)
    stream = host.stream(("route", "-n", "monitor"))
    host.set_down("gif0")
    host.kill_monitors()
    lines = list(stream)
    assert lines[1].startswith("RTM_IFINFO: iface status change: len 168, if# 2, name gif0, ")
    assert lines[1].endswith("link: down, mtu: 1480, flags:<PTP,MULTICAST>")
    assert len(lines) == 2 and lines[0].startswith("got message of size ")


def test_host_prints_autoconf4_and_an_alias(tmp_path: Path) -> None:
    """A DHCP WAN shows AUTOCONF4 (flags=808843); an alias is one more inet line, and the
    whole matches the fixture taken from OpenBSD's format."""
    host = OpenBSDHost(make_root(tmp_path), wan_address=None, autoconf=True)
    host.add_alias("em0", "192.168.1.2")
    text = host.run(("ifconfig", "em0"), timeout=5).stdout
    assert text.splitlines()[0] == (
        "em0: flags=808843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,AUTOCONF4> mtu 1500"
    )
    assert "\tinet 192.168.1.2 netmask 0xffffff00 broadcast 192.168.1.255" in text.splitlines()


# -- tunnelttl -------------------------------------------------------------------------------------


def test_tunnel_ttl_is_applied_and_observed(platform: OpenBSDPlatform, host: OpenBSDHost) -> None:
    """hostname.gif0's `tunnelttl 255` reaches gif0; observing gif0 reads it back."""
    assert platform.observe_tunnel().ttl is None  # no gif0 yet
    bring_tunnel_up(platform, host)
    assert "ifconfig gif0 tunnelttl 255" in host.applied
    assert platform.observe_tunnel().ttl == 255


def test_restart_tunnel_checks_the_ttl(platform: OpenBSDPlatform, host: OpenBSDHost) -> None:
    """A hostname file without our TTL line leaves gif(4)'s 64: the restart says so."""
    content = render_hostname_file(TUNNEL, OLD_ADDRESS).replace("tunnelttl 255\n", "")
    platform.hostname_file.write_text(content)
    with pytest.raises(TemporaryError, match=r"up with .* ttl 64, not .* ttl 255"):
        platform.restart_tunnel(OLD_ADDRESS, HE_SERVER)


# -- a DHCP WAN: dhcpleased, several addresses -------------------------------------------------


def scripted_wan(
    tmp_path: Path, ifconfig: str, config: Config | None = None
) -> tuple[OpenBSDPlatform, RecordingRunner]:
    runner = RecordingRunner()
    runner.script(["ifconfig", "em0"], stdout=(FIXTURES / ifconfig).read_text())
    runner.script(
        ["dhcpleasectl", "-l", "em0"], stdout=(FIXTURES / "dhcpleasectl_em0.txt").read_text()
    )
    return OpenBSDPlatform(config or make_config(tmp_path), runner, tmp_path), runner


def test_the_dhcp_lease_comes_before_a_static_alias(tmp_path: Path) -> None:
    """An alias listed before dhcpleased's lease: the lease (`dhcpleasectl -l`) is the
    tunnel's address, the alias follows; the WAN is reported autoconf."""
    platform, runner = scripted_wan(tmp_path, "ifconfig_em0_autoconf_alias.txt")
    wan = platform.observe_wan()
    assert wan.addresses == ("95.163.182.60", "192.168.1.2")
    assert wan.autoconf
    assert runner.calls == [("ifconfig", "em0"), ("dhcpleasectl", "-l", "em0")]


def test_the_wan_selector_picks_the_address_in_its_network(tmp_path: Path) -> None:
    """`wan.address_in` wins over the lease and over the kernel's order."""
    config = make_config(tmp_path)
    config = attrs.evolve(config, wan=attrs.evolve(config.wan, address_in="192.168.1.0/24"))
    platform, runner = scripted_wan(tmp_path, "ifconfig_em0_autoconf_alias.txt", config)
    assert platform.observe_wan().address == "192.168.1.2"
    config = attrs.evolve(config, wan=attrs.evolve(config.wan, address_in="198.51.100.20/32"))
    platform, runner = scripted_wan(tmp_path, "ifconfig_em0_two_inet.txt", config)
    assert platform.observe_wan().addresses == ("198.51.100.20", "203.0.113.7")
    assert ("dhcpleasectl", "-l", "em0") not in runner.calls  # a static WAN has no lease


def test_a_single_address_or_a_silent_dhcpleased_keeps_the_kernels_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One address: nothing to ask. dhcpleasectl failing: the first listed, and a warning."""
    platform, runner = scripted_wan(tmp_path, "ifconfig_em0_autoconf.txt")
    assert platform.observe_wan().addresses == ("95.163.182.60",)
    assert runner.calls == [("ifconfig", "em0")]
    runner = RecordingRunner()
    runner.script(
        ["ifconfig", "em0"],
        stdout=(FIXTURES / "ifconfig_em0_autoconf_alias.txt").read_text(),
    )
    runner.script(
        ["dhcpleasectl", "-l", "em0"],
        returncode=1,
        stderr="dhcpleasectl: connect: /dev/dhcpleased.sock: No such file or directory\n",
    )
    platform = OpenBSDPlatform(make_config(tmp_path), runner, tmp_path)
    assert platform.observe_wan().address == "192.168.1.2"
    assert "dhcpleased.sock" in caplog.text


def test_restart_wan_asks_dhcpleased_on_a_dhcp_wan(tmp_path: Path) -> None:
    """On an autoconf WAN the default restart is `dhcpleasectl -w 30 em0`, which waits for
    the lease; on a static one it stays netstart; a configured command wins over both."""
    host = OpenBSDHost(make_root(tmp_path), autoconf=True, dhcp_delay=0.05)
    platform = OpenBSDPlatform(make_config(tmp_path), host, host.root)
    host.remove_addresses("em0")
    host.lease = NEW_ADDRESS
    assert platform.observe_wan().autoconf
    platform.restart_wan()
    assert host.calls[-1] == ("dhcpleasectl", "-w", "30", "em0")
    assert platform.observe_wan().address == NEW_ADDRESS  # waited for the lease
    static = OpenBSDHost(make_root(tmp_path / "static"))
    platform = OpenBSDPlatform(make_config(tmp_path), static, static.root)
    platform.observe_wan()
    platform.restart_wan()
    assert static.calls[-1] == ("sh", "/etc/netstart", "em0")
    mine = ("sh", "/etc/netstart", "em0")
    platform = OpenBSDPlatform(make_config(tmp_path, restart_command=mine), host, host.root)
    platform.restart_wan()
    assert host.calls[-1] == mine


def test_dhcpleased_renumbers_asynchronously(tmp_path: Path) -> None:
    """The scripted dhcpleased keeps its address through a link loss; when the link returns
    with another lease on offer, the old address goes at once and the new one arrives
    dhcp_delay seconds later, from another thread; netstart em0 changes nothing meanwhile."""
    host = OpenBSDHost(make_root(tmp_path), wan_address=OLD_ADDRESS, autoconf=True)
    host.dhcp_delay = 0.3
    platform = OpenBSDPlatform(make_config(tmp_path), host, host.root)
    host.unplug("em0")
    down = platform.observe_wan()
    assert (down.link_up, down.address) == (False, OLD_ADDRESS)
    host.lease = NEW_ADDRESS
    host.plug("em0")
    between = platform.observe_wan()
    assert (between.link_up, between.address) == (True, None)
    host.run(("sh", "/etc/netstart", "em0"), timeout=5)
    assert platform.observe_wan().address is None  # `inet autoconf` again: nothing changes
    deadline = time.monotonic() + 5
    while platform.observe_wan().address is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert platform.observe_wan().addresses == (NEW_ADDRESS,)
    listing = host.run(("dhcpleasectl", "-l", "em0"), timeout=5).stdout
    assert listing.startswith("em0 [Bound]\n\tinet 198.51.100.77 netmask 255.255.255.0\n")


def test_reload_command_with_e_fails_on_every_run(tmp_path: Path, host: OpenBSDHost) -> None:
    """The original's `pfctl -e -v -f /etc/pf.conf`: pf is already enabled, so pfctl loads
    the rules and exits 1 ("pf already enabled"): every reload would count as failed. The
    shipped example reloads with `pfctl -f /etc/pf.conf` alone, which succeeds."""
    original = ("pfctl", "-e", "-v", "-f", "/etc/pf.conf")
    platform = OpenBSDPlatform(make_config(tmp_path, reload_command=original), host, host.root)
    with pytest.raises(TemporaryError, match=r"pfctl: pf already enabled$"):
        platform.reload_firewall()
    example = tomllib.loads((REPO / "etc" / "reconciler.conf").read_text())
    shipped = tuple(example["firewall"]["reload_command"])
    assert shipped == PF_RELOAD
    OpenBSDPlatform(
        make_config(tmp_path, reload_command=shipped), host, host.root
    ).reload_firewall()
    assert host.pf_loads == 2


@pytest.mark.parametrize(
    ("address_in", "lease", "first"),
    [
        (None, None, "203.0.113.7"),
        (None, "198.51.100.20", "198.51.100.20"),
        (None, "192.0.2.1", "203.0.113.7"),  # a lease not on the interface: the kernel's first
        ("198.51.100.0/24", "203.0.113.7", "198.51.100.20"),
        ("192.0.2.0/24", "198.51.100.20", "198.51.100.20"),  # nothing inside: the lease
    ],
)
def test_tunnel_address_first(address_in: str | None, lease: str | None, first: str) -> None:
    """The selector, then the lease, then the kernel's order; the rest keep their order."""
    addresses = ("203.0.113.7", "198.51.100.20", "192.168.1.2")
    ordered = tunnel_address_first(addresses, address_in, lease)
    assert ordered[0] == first
    assert sorted(ordered) == sorted(addresses)
    assert [a for a in ordered if a != first] == [a for a in addresses if a != first]


# -- never touching what is not a gif ---------------------------------------------------------


@pytest.mark.parametrize("name", ["em0", "vlan5"])
def test_an_interface_that_is_not_a_gif_is_left_alone(
    tmp_path: Path, host: OpenBSDHost, name: str
) -> None:
    """tunnel.interface naming the WAN (em0) or another interface: neither its hostname file
    is written nor netstart run for it; both fail permanently in one line."""
    host.calls.clear()
    config = make_config(tmp_path)
    config = attrs.evolve(config, tunnel=attrs.evolve(TUNNEL, interface=name))
    platform = OpenBSDPlatform(config, host, host.root)
    wan_before = host.interfaces["em0"].render()
    expected = (
        f"{name} is not a gif interface: reconciler configures only gif tunnels "
        "(set tunnel.interface to gif0, gif1...)"
    )
    with pytest.raises(PermanentError) as refused:
        platform.write_hostname_file(render_hostname_file(TUNNEL, OLD_ADDRESS))
    assert str(refused.value) == expected
    with pytest.raises(PermanentError) as refused:
        platform.restart_tunnel(OLD_ADDRESS, HE_SERVER)
    assert str(refused.value) == expected
    assert not host.hostname_path(name).exists()
    assert not any(call[:2] == ("sh", "/etc/netstart") for call in host.calls)
    assert host.interfaces["em0"].render() == wan_before
