"""Tests for the OpenBSD platform: the contract suite, its own details, and the original's
two stories, run against the scripted OpenBSD host over a temporary root."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from reconciler.errors import TemporaryError
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
from reconciler.world.platform import ChangeNotice, Platform
from tests.world.platform_contract import NoticeCollector, PlatformContract, World

FIXTURES = Path(__file__).parent / "fixtures" / "openbsd"
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
        "mtu 1480\n"
        "!ifconfig $if inet6 alias 2001:db8:1f06:abc::2 2001:db8:1f06:abc::1 prefixlen 128\n"
        "up\n"
        "!route -n add -inet6 default 2001:db8:1f06:abc::1\n"
    )
    assert platform.backup_file.read_text() == render_hostname_file(TUNNEL, OLD_ADDRESS)
    tunnel = platform.observe_tunnel()
    assert (tunnel.up, tunnel.local, tunnel.remote) == (True, NEW_ADDRESS, HE_SERVER)
    assert host.applied[-5:] == [
        "ifconfig gif0 tunnel 198.51.100.77 203.0.113.1",
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
    runner.script(["sh", "/etc/netstart", "em0"], returncode=-9, timed_out=True, duration=120)
    platform = OpenBSDPlatform(make_config(tmp_path), runner, tmp_path)
    with pytest.raises(TemporaryError, match=r"timed out after 120\.0s"):
        platform.restart_wan()
    assert runner.timeouts == [120.0]


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
