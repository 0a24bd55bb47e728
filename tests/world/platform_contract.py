"""The contract every Platform implementation keeps (OpenBSD, Linux, ...).

Subclass `PlatformContract` in tests/world/test_<platform>.py and provide the `world` fixture:

    class TestOpenBSD(PlatformContract):
        @pytest.fixture
        def world(self, tmp_path) -> Iterator[World]:
            ...
            yield World(platform, controls)
            ...  # tear down (namespaces, links) here, also when the test failed

`world` yields a `World(platform, controls)`. At the start of every test the WAN interface
exists, is up and holds `WAN_ADDRESS`; the tunnel interface may or may not exist yet.
`controls` lets the test change the world behind the platform's back, as an ISP or an
administrator would. Its interface is deliberately small (see `WorldControls`):

    wan_interface          the WAN interface's name (the one the platform observes)
    tunnel_remote          an IPv4 address usable as the tunnel's far end (HE's server)
    set_wan_address(a)     the WAN holds exactly the IPv4 address `a` (replacing others)
    remove_wan_address()   the WAN keeps existing but holds no IPv4 address
    remove_wan_interface() the WAN interface disappears
    take_tunnel_down()     the tunnel interface goes down (or away), as when it dropped
    firewall_reloads()     how many times the firewall has been reloaded so far

Two hooks a subclass may override:
    HAS_HOSTNAME_FILE      False where the platform has no hostname file (Linux): then
                           read_hostname_file() is None and write_hostname_file() is False
    prepare_restart_tunnel what the planner does before restart_tunnel(local, remote) on
                           this platform (OpenBSD: rewrite /etc/hostname.gif0); default none
"""

from __future__ import annotations

import threading
import time
from typing import ClassVar, NamedTuple, Protocol

import pytest

from reconciler.world.platform import ChangeNotice, Platform

__all__ = ["PlatformContract", "World", "WorldControls"]


class WorldControls(Protocol):
    wan_interface: str
    tunnel_remote: str

    def set_wan_address(self, address: str) -> None: ...

    def remove_wan_address(self) -> None: ...

    def remove_wan_interface(self) -> None: ...

    def take_tunnel_down(self) -> None: ...

    def firewall_reloads(self) -> int: ...


class World(NamedTuple):
    platform: Platform
    controls: WorldControls


class NoticeCollector:
    """Collects notices delivered from a platform's watch thread; tests wait on it."""

    def __init__(self) -> None:
        self.items: list[ChangeNotice] = []
        self.cond = threading.Condition()

    def __call__(self, notice: ChangeNotice) -> None:
        with self.cond:
            self.items.append(notice)
            self.cond.notify_all()

    def wait_for(self, notice: ChangeNotice, timeout: float = 10.0) -> bool:
        """Whether `notice` arrives (or has arrived) within `timeout` seconds."""
        with self.cond:
            return self.cond.wait_for(lambda: notice in self.items, timeout)

    def has_address_notice(self, interface: str) -> bool:
        with self.cond:
            return any(n.kind == "address" and n.interface in (interface, None) for n in self.items)

    def wait_briefly(self, seconds: float) -> None:
        with self.cond:
            self.cond.wait(seconds)


class PlatformContract:
    """Behaviour every platform shows; subclasses supply the `world` fixture."""

    WAN_ADDRESS: ClassVar[str] = "198.51.100.7"
    NEW_WAN_ADDRESS: ClassVar[str] = "198.51.100.9"
    HAS_HOSTNAME_FILE: ClassVar[bool] = True
    WATCH_DEADLINE: ClassVar[float] = 10.0

    @pytest.fixture
    def world(self) -> World:
        raise NotImplementedError("subclasses provide the world fixture")

    def prepare_restart_tunnel(self, platform: Platform, local: str, remote: str) -> None:
        """What the planner does before asking for restart_tunnel (nothing by default)."""

    def _restart_tunnel(self, world: World, local: str) -> None:
        platform, controls = world
        self.prepare_restart_tunnel(platform, local, controls.tunnel_remote)
        platform.restart_tunnel(local, controls.tunnel_remote)

    # -- the WAN --------------------------------------------------------------------------

    def test_observe_wan_reports_the_address(self, world: World) -> None:
        """observe_wan reports the WAN interface, up, with its configured address."""
        platform, controls = world
        state = platform.observe_wan()
        assert state.interface == controls.wan_interface
        assert state.exists
        assert state.link_up
        assert state.address == self.WAN_ADDRESS
        assert self.WAN_ADDRESS in state.addresses

    def test_observe_wan_follows_an_address_change(self, world: World) -> None:
        """After the ISP hands out a new address, observe_wan reports the new one only."""
        platform, controls = world
        controls.set_wan_address(self.NEW_WAN_ADDRESS)
        state = platform.observe_wan()
        assert state.address == self.NEW_WAN_ADDRESS
        assert self.WAN_ADDRESS not in state.addresses

    def test_observe_wan_without_an_address(self, world: World) -> None:
        """A WAN interface without an IPv4 address exists and reports address None."""
        platform, controls = world
        controls.remove_wan_address()
        state = platform.observe_wan()
        assert state.exists
        assert state.address is None
        assert state.addresses == ()

    def test_observe_wan_of_a_missing_interface(self, world: World) -> None:
        """A missing WAN interface is reported as exists False, not raised."""
        platform, controls = world
        controls.remove_wan_interface()
        state = platform.observe_wan()
        assert state.interface == controls.wan_interface
        assert not state.exists
        assert state.address is None

    # -- the tunnel -----------------------------------------------------------------------

    def test_restart_tunnel_sets_both_ends_and_brings_it_up(self, world: World) -> None:
        """restart_tunnel(local, remote) leaves the tunnel up with exactly those ends."""
        platform, controls = world
        self._restart_tunnel(world, self.WAN_ADDRESS)
        state = platform.observe_tunnel()
        assert state.exists
        assert state.up
        assert state.local == self.WAN_ADDRESS
        assert state.remote == controls.tunnel_remote

    def test_restart_tunnel_twice_is_harmless(self, world: World) -> None:
        """Restarting a tunnel that is already right raises nothing and changes nothing."""
        platform, _ = world
        self._restart_tunnel(world, self.WAN_ADDRESS)
        first = platform.observe_tunnel()
        self._restart_tunnel(world, self.WAN_ADDRESS)
        assert platform.observe_tunnel() == first
        assert first.up

    def test_restart_tunnel_moves_the_local_end(self, world: World) -> None:
        """After a WAN address change, restart_tunnel moves the local end to the new address."""
        platform, controls = world
        self._restart_tunnel(world, self.WAN_ADDRESS)
        controls.set_wan_address(self.NEW_WAN_ADDRESS)
        self._restart_tunnel(world, self.NEW_WAN_ADDRESS)
        state = platform.observe_tunnel()
        assert state.up
        assert state.local == self.NEW_WAN_ADDRESS
        assert state.remote == controls.tunnel_remote

    def test_restart_tunnel_brings_a_dropped_tunnel_back(self, world: World) -> None:
        """A tunnel that went down is observed as not up, and restart_tunnel brings it back."""
        platform, _ = world
        self._restart_tunnel(world, self.WAN_ADDRESS)
        world.controls.take_tunnel_down()
        assert not platform.observe_tunnel().up
        self._restart_tunnel(world, self.WAN_ADDRESS)
        assert platform.observe_tunnel().up

    # -- the hostname file ----------------------------------------------------------------

    def test_write_hostname_file_skips_an_unchanged_file(self, world: World) -> None:
        """Writing new content returns True, the same content again returns False."""
        platform, _ = world
        if not self.HAS_HOSTNAME_FILE:
            assert platform.read_hostname_file() is None
            assert platform.write_hostname_file("up\n") is False
            return
        assert platform.write_hostname_file("# first\nup\n") is True
        assert platform.read_hostname_file() == b"# first\nup\n"
        assert platform.write_hostname_file("# first\nup\n") is False
        assert platform.write_hostname_file("# second\nup\n") is True
        assert platform.read_hostname_file() == b"# second\nup\n"

    # -- the firewall ---------------------------------------------------------------------

    def test_reload_firewall_runs(self, world: World) -> None:
        """reload_firewall reloads the firewall once per call."""
        platform, controls = world
        before = controls.firewall_reloads()
        platform.reload_firewall()
        assert controls.firewall_reloads() == before + 1
        platform.reload_firewall()
        assert controls.firewall_reloads() == before + 2

    # -- change notifications -------------------------------------------------------------

    def test_watch_delivers_a_notice_after_an_address_change(self, world: World) -> None:
        """A WAN address change reaches the watcher as an "address" notice; stop() ends it."""
        platform, controls = world
        collector = NoticeCollector()
        watch = platform.watch(collector)
        try:
            # The watcher may need a moment to subscribe: keep changing the address until a
            # notice arrives (a watcher that never delivers still fails at the deadline).
            deadline = time.monotonic() + self.WATCH_DEADLINE
            addresses = [self.NEW_WAN_ADDRESS, self.WAN_ADDRESS]
            turn = 0
            while not collector.has_address_notice(controls.wan_interface):
                assert time.monotonic() < deadline, f"no address notice: {collector.items}"
                controls.set_wan_address(addresses[turn % 2])
                turn += 1
                collector.wait_briefly(0.2)
        finally:
            watch.stop()
        delivered = len(collector.items)
        controls.set_wan_address(self.NEW_WAN_ADDRESS)
        controls.set_wan_address(self.WAN_ADDRESS)
        time.sleep(0.3)
        assert len(collector.items) == delivered, "notices after stop()"
