"""LinuxPlatform working with the tunnel's owner: systemd-networkd run in the test's
namespace (reconciler.testing.networkd) makes the tunnel from a .netdev, and the platform
repairs it without taking it over (issue 21).

The host kernel has no sit, so networkd's link is the vxlan stand-in here; the sit
behaviours run in the UML guest (tests/world/test_linux_sit.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from reconciler.errors import PermanentError
from reconciler.testing.networkd import Networkd
from reconciler.world.linux import LinuxPlatform
from reconciler.world.runner import SubprocessRunner
from tests.world.test_linux import (
    CLIENT_V6,
    SERVER_V4,
    TUNNEL,
    VXLAN_ID,
    VXLAN_PORT,
    ip,
    link_details,
    make_config,
    namespaces,
)

__all__ = ["namespaces"]  # the fixture, shared with test_linux.py


OLD_LOCAL = "198.51.100.7"
NEW_LOCAL = "198.51.100.9"

NETDEV = f"""[NetDev]
Name={TUNNEL}
Kind=vxlan
MTUBytes=1400

[VXLAN]
VNI={VXLAN_ID}
Local={OLD_LOCAL}
Remote={SERVER_V4}
DestinationPort={VXLAN_PORT}
MacLearning=yes
"""
TUNNEL_NETWORK = f"""[Match]
Name={TUNNEL}

[Network]
Address={CLIENT_V6}/64
LinkLocalAddressing=no
IPv6AcceptRA=no
"""
WAN_NETWORK = """[Match]
Name=wan0

[Network]
VXLAN=he-ipv6
LinkLocalAddressing=no
IPv6AcceptRA=no
KeepConfiguration=yes
"""


@pytest.fixture
def networkd(namespaces: tuple[str, str], networkd_available: None) -> Iterator[Networkd]:
    """networkd in the router namespace owning the tunnel (a .netdev bound to the WAN)."""
    router, _far = namespaces
    with Networkd(router) as networkd:
        networkd.write("he-ipv6.netdev", NETDEV)
        networkd.write("he-ipv6.network", TUNNEL_NETWORK)
        networkd.write("wan0.network", WAN_NETWORK)
        networkd.start()
        networkd.wait_setup(TUNNEL, "configured", timeout=10)
        yield networkd


def _vxlan(router: str) -> dict[str, object]:
    details = link_details(router, TUNNEL)
    assert details is not None
    return {**details["linkinfo"]["info_data"], "ifindex": details["ifindex"]}


def test_an_owners_link_is_changed_in_place_never_recreated_for_a_preference(
    networkd: Networkd, namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """networkd's vxlan has MAC learning on, TTL 0 and MTU 1380, where we would choose off,
    255 and 1400: moving its local end keeps the link (same ifindex) and its owner's choices
    (it used to be deleted and built again as ours, and its MTU set to ours)."""
    router, _far = namespaces
    ip(router, "link", "set", TUNNEL, "mtu", "1380")  # the owner's choice too
    before = _vxlan(router)
    assert (before["local"], before["learning"], before.get("ttl", 0)) == (OLD_LOCAL, True, 0)
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    platform.restart_tunnel(NEW_LOCAL, SERVER_V4)
    after = _vxlan(router)
    assert after["ifindex"] == before["ifindex"], "the owner's link was recreated"
    assert (after["local"], after["learning"], after.get("ttl", 0)) == (NEW_LOCAL, True, 0)
    assert link_details(router, TUNNEL)["mtu"] == 1380  # type: ignore[index]
    assert networkd.setup_state(TUNNEL) == "configured"


def _owned_by_networkd(tmp_path: Path, networkd: Networkd) -> Any:
    config = make_config(tmp_path)
    tunnel = attrs.evolve(config.tunnel, owner="networkd", networkd_dir=networkd.config_dir)
    return attrs.evolve(config, tunnel=tunnel)


def test_networkd_keeps_the_new_local_end_through_reload_reconfigure_restart_and_reboot(
    networkd: Networkd, namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """The platform moves networkd's link and tells networkd through a drop-in beside the
    .netdev (then `networkctl reload`): the new end survives reload, reconfigure and a
    networkd restart, and a reboot (link deleted, networkd restarted) brings the link back
    with the new end, from the drop-in (it used to come back with the .netdev's old one)."""
    router, _far = namespaces
    runner = runner_in(router, networkd, tmp_path)
    platform = LinuxPlatform(_owned_by_networkd(tmp_path, networkd), netns=router, runner=runner)
    platform.restart_tunnel(NEW_LOCAL, SERVER_V4)
    drop_in = networkd.config_dir / "he-ipv6.netdev.d" / "reconciler.conf"
    assert drop_in.read_text().endswith(f"[VXLAN]\nLocal={NEW_LOCAL}\n")
    assert (networkd.config_dir / "he-ipv6.netdev").read_text() == NETDEV  # never edited
    assert _vxlan(router)["local"] == NEW_LOCAL
    for again in (networkd.reload, lambda: networkd.reconfigure(TUNNEL), networkd.restart):
        again()
        networkd.wait_setup(TUNNEL, "configured", timeout=10)
        assert _vxlan(router)["local"] == NEW_LOCAL
    # the reboot
    networkd.stop()
    ip(router, "link", "del", TUNNEL)
    networkd.start()
    networkd.wait_setup(TUNNEL, "configured", timeout=10)
    assert _vxlan(router)["local"] == NEW_LOCAL
    # and a repair with nothing new to tell leaves the drop-in as it was
    before = drop_in.stat().st_mtime_ns
    platform.restart_tunnel(NEW_LOCAL, SERVER_V4)
    assert drop_in.stat().st_mtime_ns == before


def runner_in(router: str, networkd: Networkd, tmp_path: Path) -> SubprocessRunner:
    """The platform's runner, its networkctl the real one run in the router namespace
    (networkctl refuses to talk to a networkd in another network namespace; the daemon
    itself runs in that namespace), on networkd's bus."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "networkctl"
    real = shutil.which("networkctl")
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {router} {real} "$@"\n')
    wrapper.chmod(0o755)
    path = f"{bin_dir}:{os.environ['PATH']}"
    return SubprocessRunner(env={"PATH": path, "DBUS_SYSTEM_BUS_ADDRESS": networkd.bus_address})


def test_a_missing_netdev_is_refused_in_one_line(
    networkd: Networkd, namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """owner = networkd but no .netdev names the link: the repair of the live link is done,
    then the call fails saying what is missing; nothing is written."""
    router, _far = namespaces
    (networkd.config_dir / "he-ipv6.netdev").unlink()
    platform = LinuxPlatform(_owned_by_networkd(tmp_path, networkd), netns=router)
    with pytest.raises(PermanentError) as refused:
        platform.restart_tunnel(NEW_LOCAL, SERVER_V4)
    assert str(refused.value) == (
        f"tunnel.owner = networkd: no .netdev in {networkd.config_dir} has [NetDev] "
        f"Name={TUNNEL}, so nothing makes the tunnel at boot to tell its local end to"
    )
    assert not (networkd.config_dir / "he-ipv6.netdev.d").exists()


# -- tunnel.local = "any" (issue 21 item 2) -------------------------------------------------


def test_an_existing_local_any_is_kept_not_pinned(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """A link whose local end is any (0.0.0.0) follows the WAN by itself: a repair keeps it
    any (it used to pin it to the WAN address); its observed local end is the address the
    kernel sends from."""
    router, _far = namespaces
    ip(router, "link", "add", TUNNEL, "type", "vxlan", "id", str(VXLAN_ID),
       "dstport", str(VXLAN_PORT), "remote", SERVER_V4, "nolearning")  # fmt: skip
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    platform.restart_tunnel(OLD_LOCAL, SERVER_V4)
    assert "local" not in _vxlan(router)
    assert platform.observe_tunnel().local == OLD_LOCAL


def test_local_any_makes_an_any_link_and_leaves_an_owners_local_alone(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """tunnel.local = "any": a link we make has local any; an owner's link pinned to an old
    address keeps it (the mode leaves the link's ends alone); the remote is still put
    right."""
    router, _far = namespaces
    config = make_config(tmp_path)
    config = attrs.evolve(config, tunnel=attrs.evolve(config.tunnel, local="any"))
    platform = LinuxPlatform(config, netns=router)
    platform.restart_tunnel(OLD_LOCAL, SERVER_V4)
    assert "local" not in _vxlan(router)
    assert platform.observe_tunnel().default_route == "tunnel"
    ip(router, "link", "del", TUNNEL)
    ip(router, "link", "add", TUNNEL, "type", "vxlan", "id", str(VXLAN_ID),
       "dstport", str(VXLAN_PORT), "local", "198.51.100.8", "remote", "203.0.113.99")  # fmt: skip
    platform.restart_tunnel(OLD_LOCAL, SERVER_V4)
    data = _vxlan(router)
    assert (data["local"], data["remote"]) == ("198.51.100.8", SERVER_V4)
