"""LinuxPlatform working with the tunnel's owner: systemd-networkd run in the test's
namespace (reconciler.testing.networkd) makes the tunnel from a .netdev, and the platform
repairs it without taking it over (issue 21).

The host kernel has no sit, so networkd's link is the vxlan stand-in here; the sit
behaviours run in the UML guest (tests/world/test_linux_sit.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.testing.networkd import Networkd
from reconciler.world.linux import LinuxPlatform
from tests.world.test_linux import (
    CLIENT_V6,
    SERVER_V4,
    TUNNEL,
    VXLAN_ID,
    VXLAN_PORT,
    link_details,
    make_config,
    namespaces,
)

__all__ = ["namespaces"]  # the fixture, shared with test_linux.py

pytestmark = pytest.mark.usefixtures("networkd_available")

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
def networkd(namespaces: tuple[str, str]) -> Iterator[Networkd]:
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
    """networkd's vxlan has MAC learning on and TTL 0, where we would choose off and 255:
    moving its local end keeps the link (same ifindex) and both of its owner's choices (it
    used to be deleted and built again as ours)."""
    router, _far = namespaces
    before = _vxlan(router)
    assert (before["local"], before["learning"], before.get("ttl", 0)) == (OLD_LOCAL, True, 0)
    platform = LinuxPlatform(make_config(tmp_path), netns=router)
    platform.restart_tunnel(NEW_LOCAL, SERVER_V4)
    after = _vxlan(router)
    assert after["ifindex"] == before["ifindex"], "the owner's link was recreated"
    assert (after["local"], after["learning"], after.get("ttl", 0)) == (NEW_LOCAL, True, 0)
    assert networkd.setup_state(TUNNEL) == "configured"
