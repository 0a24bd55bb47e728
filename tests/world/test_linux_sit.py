"""LinuxPlatform in sit (6in4) mode, on real sit links: the contract suite and what only sit has.

Same world as test_linux.py (a router and a far namespace joined by a veth). These need a
kernel with sit: where the host's has none they are left out, and `make test-sit` runs them
in a user-mode Linux guest (tests/conftest.py, reconciler/testing/uml.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from reconciler.model.config import Config
from reconciler.testing.networkd import Networkd
from reconciler.world.linux import LinuxPlatform
from reconciler.world.probe import ping
from tests.world.platform_contract import PlatformContract, World
from tests.world.test_linux import (
    CLIENT_V6,
    SERVER_V4,
    SERVER_V6,
    TUNNEL,
    LinuxControls,
    ip,
    link_details,
    make_config,
    namespaces,
    reload_command,
)
from tests.world.test_linux_owners import runner_in

__all__ = ["namespaces"]  # the fixture, shared with test_linux.py

pytestmark = pytest.mark.sit

LOCAL = "198.51.100.7"
NEW_LOCAL = "198.51.100.9"


def sit_config(tmp_path: Path, *, ttl: int = 255, mtu: int = 1480, **kwargs: Any) -> Config:
    config = make_config(tmp_path, mode="sit", vxlan_id=None, **kwargs)
    return attrs.evolve(config, tunnel=attrs.evolve(config.tunnel, ttl=ttl, mtu=mtu))


def sit_data(netns: str) -> dict[str, Any]:
    details = link_details(netns, TUNNEL)
    assert details is not None, f"no {TUNNEL} in {netns}"
    assert details["linkinfo"]["info_kind"] == "sit"
    data: dict[str, Any] = details["linkinfo"]["info_data"]
    return {**data, "mtu": details["mtu"], "ifindex": details["ifindex"]}


class TestLinuxSitContract(PlatformContract):
    """The shared platform contract, on a real sit link."""

    HAS_HOSTNAME_FILE = False

    @pytest.fixture
    def world(self, namespaces: tuple[str, str], tmp_path: Path) -> Iterator[World]:
        router, far = namespaces
        count_file = tmp_path / "reloads"
        config = sit_config(tmp_path, firewall=reload_command(count_file))
        yield World(LinuxPlatform(config, netns=router), LinuxControls(router, far, count_file))


def test_restart_tunnel_builds_sit_with_its_parameters_address_and_route(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """A sit link from the WAN to HE with the configured TTL and MTU, path MTU discovery on,
    the client address, and the IPv6 default route through it (no gateway: point to point)."""
    router, _far = namespaces
    platform = LinuxPlatform(sit_config(tmp_path, ttl=200), netns=router)
    platform.restart_tunnel(LOCAL, SERVER_V4)
    data = sit_data(router)
    assert (data["local"], data["remote"], data["ttl"], data["pmtudisc"], data["mtu"]) == (
        LOCAL, SERVER_V4, 200, True, 1480,
    )  # fmt: skip
    addresses = json.loads(ip(router, "-6", "-j", "addr", "show", "dev", TUNNEL).stdout)
    global_v6 = [a for a in addresses[0]["addr_info"] if a["scope"] == "global"]
    assert [(a["local"], a["prefixlen"]) for a in global_v6] == [(CLIENT_V6, 64)]
    default = json.loads(ip(router, "-6", "-j", "route", "show", "default").stdout)
    assert [(r["dev"], r.get("gateway")) for r in default] == [(TUNNEL, None)]
    assert platform.observe_tunnel().mode == "sit"


def test_local_end_change_in_place_keeps_every_tunnel_parameter(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """Moving the local end keeps the link (same ifindex) and its TTL, path MTU discovery,
    MTU and TOS: the kernel resets whatever a sit change request leaves out (TTL to 64)."""
    router, _far = namespaces
    platform = LinuxPlatform(sit_config(tmp_path, ttl=200, mtu=1400), netns=router)
    platform.restart_tunnel(LOCAL, SERVER_V4)
    ip(router, "link", "set", TUNNEL, "type", "sit", "tos", "0x10")  # set by an admin
    before = sit_data(router)
    platform.restart_tunnel(NEW_LOCAL, SERVER_V4)
    after = sit_data(router)
    assert after["ifindex"] == before["ifindex"], "the link was recreated, not changed in place"
    assert (after["local"], after["remote"]) == (NEW_LOCAL, SERVER_V4)
    kept = ("ttl", "pmtudisc", "mtu", "tos")
    assert {k: after.get(k) for k in kept} == {"ttl": 200, "pmtudisc": True, "mtu": 1400,
                                                "tos": "0x10"}  # fmt: skip
    assert {k: after.get(k) for k in kept} == {k: before.get(k) for k in kept}


def test_an_owners_ttl_is_kept_and_ttl_0_warned_about_once(
    namespaces: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sit link made by its owner with TTL 0 (inherit: networkd's and NetworkManager's
    default) and no path MTU discovery is repaired in place: same ifindex, new local end,
    the owner's TTL and pmtudisc kept (it used to be deleted and rebuilt with TTL 255). The
    TTL 0 is warned about once, with the reason."""
    router, _far = namespaces
    ip(router, "link", "add", TUNNEL, "type", "sit", "local", LOCAL, "remote", SERVER_V4,
       "ttl", "inherit", "nopmtudisc")  # fmt: skip
    before = sit_data(router)
    assert (before["ttl"], before["pmtudisc"]) == (0, False)
    platform = LinuxPlatform(sit_config(tmp_path), netns=router)
    with caplog.at_level("WARNING", logger="reconciler.world.linux"):
        platform.restart_tunnel(NEW_LOCAL, SERVER_V4)
        platform.restart_tunnel(NEW_LOCAL, SERVER_V4)
    after = sit_data(router)
    assert after["ifindex"] == before["ifindex"], "the owner's link was recreated"
    assert (after["local"], after["ttl"], after["pmtudisc"]) == (NEW_LOCAL, 0, False)
    warnings = [r.getMessage() for r in caplog.records if "TTL 0" in r.getMessage()]
    assert len(warnings) == 1
    assert "hop limit" in warnings[0] and "TTL=255" in warnings[0]


def test_a_sit_link_with_local_any_is_kept_any(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """`Local=any` (networkd), `local any` (ifupdown): a repair keeps the sit link's local
    end any (the sit change request carries 0.0.0.0 and the owner's TTL), and its observed
    local end is the WAN address the kernel sends from."""
    router, _far = namespaces
    ip(router, "link", "add", TUNNEL, "type", "sit", "remote", "203.0.113.99", "ttl", "255")
    before = sit_data(router)
    assert before.get("local", "any") == "any"
    platform = LinuxPlatform(sit_config(tmp_path), netns=router)
    platform.restart_tunnel(LOCAL, SERVER_V4)
    after = sit_data(router)
    assert after["ifindex"] == before["ifindex"]
    assert (after.get("local", "any"), after["remote"]) == ("any", SERVER_V4)
    assert platform.observe_tunnel().local == LOCAL


def test_ipv6_crosses_the_sit_tunnel(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """With HE's end built as a sit link to the WAN, the server's IPv6 address answers."""
    router, far = namespaces
    ip(far, "link", "add", "he6", "type", "sit", "local", SERVER_V4, "remote", LOCAL, "ttl", "255")
    ip(far, "link", "set", "he6", "mtu", "1480", "up")
    ip(far, "addr", "add", f"{SERVER_V6}/64", "dev", "he6", "nodad")
    platform = LinuxPlatform(sit_config(tmp_path), netns=router)
    platform.restart_tunnel(LOCAL, SERVER_V4)
    result = ping("ipv6", SERVER_V6, timeout=2.0, source=CLIENT_V6, netns=router)
    assert result.ok, result.detail


SIT_NETDEV = f"""[NetDev]
Name={TUNNEL}
Kind=sit
MTUBytes=1480

[Tunnel]
Local={LOCAL}
Remote={SERVER_V4}
Independent=yes
"""
SIT_NETWORK = f"""[Match]
Name={TUNNEL}

[Network]
Address={CLIENT_V6}/64
LinkLocalAddressing=no
IPv6AcceptRA=no
"""


def test_networkd_sit_link_keeps_its_ttl_and_comes_back_after_a_reboot_with_the_new_end(
    namespaces: tuple[str, str], tmp_path: Path, networkd_available: None
) -> None:
    """networkd makes the sit link (its default TTL 0): the repair moves it in place, keeps
    the TTL, and tells networkd through a `[Tunnel] Local=` drop-in, so that a reboot (link
    deleted, networkd restarted) brings it back with the new local end."""
    router, _far = namespaces
    with Networkd(router) as networkd:
        networkd.write("he-ipv6.netdev", SIT_NETDEV)
        networkd.write("he-ipv6.network", SIT_NETWORK)
        networkd.start()
        networkd.wait_setup(TUNNEL, "configured", timeout=20)
        before = sit_data(router)
        assert (before["local"], before["ttl"]) == (LOCAL, 0)
        config = sit_config(tmp_path)
        tunnel = attrs.evolve(config.tunnel, owner="networkd", networkd_dir=networkd.config_dir)
        runner = runner_in(router, networkd, tmp_path)
        platform = LinuxPlatform(attrs.evolve(config, tunnel=tunnel), netns=router, runner=runner)
        platform.restart_tunnel(NEW_LOCAL, SERVER_V4)
        after = sit_data(router)
        assert (after["ifindex"], after["local"], after["ttl"]) == (before["ifindex"], NEW_LOCAL, 0)
        drop_in = networkd.config_dir / "he-ipv6.netdev.d" / "reconciler.conf"
        assert drop_in.read_text().endswith(f"[Tunnel]\nLocal={NEW_LOCAL}\n")
        networkd.stop()
        ip(router, "link", "del", TUNNEL)
        networkd.start()
        networkd.wait_setup(TUNNEL, "configured", timeout=20)
        assert sit_data(router)["local"] == NEW_LOCAL
