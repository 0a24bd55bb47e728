"""Telling the tunnel's owner the new local end (reconciler.world.tunnel_owner): the
ifupdown stanza rewrite on real interfaces(5) files, networkd's .netdev found by name, and
NetworkManager's argv (no NetworkManager runs here: the command it would get is checked)."""

from __future__ import annotations

import shutil
from pathlib import Path

import attrs
import pytest

from reconciler.errors import PermanentError
from reconciler.model.config import TunnelConfig
from reconciler.testing.runner import RecordingRunner
from reconciler.world.runner import SubprocessRunner
from reconciler.world.tunnel_owner import (
    OwnerConfigMissing,
    find_netdev,
    ifupdown_with_local,
    owner_config_problem,
    persist_local,
)

INTERFACES = Path("/etc/network/interfaces")

# Debian's interfaces(5) with HE's own ifupdown example (tunnelbroker.net's "Example
# Configurations": Debian/Ubuntu) and the file's usual neighbours.
DEBIAN_HE = """\
# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug eth0
iface eth0 inet dhcp

auto he-ipv6
iface he-ipv6 inet6 v4tunnel
        address 2001:db8:1f06:abc::2
        netmask 64
        endpoint 216.66.80.26
        local 203.0.113.10
        ttl 255
        gateway 2001:db8:1f06:abc::1

iface eth1 inet static
    address 192.0.2.1/24
"""


def tunnel(**changes: object) -> TunnelConfig:
    base = TunnelConfig("he-ipv6", "sit", "216.66.80.26", "2001:db8:1f06:abc::2",
                        "2001:db8:1f06:abc::1")  # fmt: skip
    return attrs.evolve(base, **changes)


def test_ifupdown_local_line_is_replaced_and_nothing_else() -> None:
    updated = ifupdown_with_local(DEBIAN_HE, "he-ipv6", "203.0.113.77", INTERFACES)
    assert updated == DEBIAN_HE.replace("local 203.0.113.10", "local 203.0.113.77")


def test_ifupdown_local_line_is_added_to_a_stanza_without_one() -> None:
    """A stanza without `local` (the kernel picks the source) gets one after its iface
    line, indented as its other lines are."""
    text = DEBIAN_HE.replace("        local 203.0.113.10\n", "")
    updated = ifupdown_with_local(text, "he-ipv6", "203.0.113.77", INTERFACES)
    assert updated == text.replace(
        "iface he-ipv6 inet6 v4tunnel\n",
        "iface he-ipv6 inet6 v4tunnel\n        local 203.0.113.77\n",
    )


def test_ifupdown_only_the_tunnels_stanza_is_touched() -> None:
    """A `local` word in another stanza (or in a comment) is not the tunnel's."""
    text = DEBIAN_HE + "\niface other inet6 v4tunnel\n    local 198.51.100.1\n"
    updated = ifupdown_with_local(text, "he-ipv6", "203.0.113.77", INTERFACES)
    assert "    local 198.51.100.1\n" in updated
    assert "local 203.0.113.77" in updated and "local 203.0.113.10" not in updated


def test_ifupdown_without_the_stanza_is_refused_in_one_line() -> None:
    text = DEBIAN_HE.replace("iface he-ipv6 inet6 v4tunnel", "iface he-ipv6 inet6 6to4")
    with pytest.raises(OwnerConfigMissing) as refused:
        ifupdown_with_local(text, "he-ipv6", "203.0.113.77", INTERFACES)
    assert str(refused.value) == (
        "tunnel.owner = ifupdown: /etc/network/interfaces has no 'iface he-ipv6 inet6 "
        "v4tunnel' stanza (a stanza in a sourced file is not rewritten)"
    )


def test_ifupdown_file_is_rewritten_atomically_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "interfaces"
    path.write_text(DEBIAN_HE)
    path.chmod(0o640)
    config = tunnel(owner="ifupdown", ifupdown_file=path)
    done = persist_local(config, "203.0.113.77", RecordingRunner())
    assert done == f"{path}: local 203.0.113.77 for he-ipv6"
    assert path.read_text() == DEBIAN_HE.replace("203.0.113.10", "203.0.113.77")
    assert path.stat().st_mode & 0o777 == 0o640
    assert persist_local(config, "203.0.113.77", RecordingRunner()) is None  # unchanged


def test_networkd_netdev_is_found_by_its_name_not_its_file_name(tmp_path: Path) -> None:
    (tmp_path / "10-wan.network").write_text("[Match]\nName=eth0\n")
    (tmp_path / "20-other.netdev").write_text("[NetDev]\nName=wg0\nKind=wireguard\n")
    tunnel_file = tmp_path / "30-6in4.netdev"
    tunnel_file.write_text("# HE\n[NetDev]\nName = he-ipv6\nKind=sit\n\n[Tunnel]\nLocal=any\n")
    assert find_netdev(tmp_path, "he-ipv6") == tunnel_file
    with pytest.raises(OwnerConfigMissing, match=r"no \.netdev in .* has \[NetDev\] Name=gif0"):
        find_netdev(tmp_path, "gif0")


def test_networkd_drop_in_for_sit_is_a_tunnel_section(tmp_path: Path) -> None:
    (tmp_path / "he.netdev").write_text("[NetDev]\nName=he-ipv6\nKind=sit\n")
    runner = RecordingRunner()
    runner.script(["networkctl", "reload"])
    persist_local(tunnel(owner="networkd", networkd_dir=tmp_path), "203.0.113.77", runner)
    drop_in = tmp_path / "he.netdev.d" / "reconciler.conf"
    assert drop_in.read_text().endswith("[Tunnel]\nLocal=203.0.113.77\n")
    assert drop_in.stat().st_mode & 0o777 == 0o644
    assert runner.calls == [("networkctl", "reload")]


def test_networkmanager_gets_nmcli_connection_modify() -> None:
    """NetworkManager's documented way (nmcli(1), nm-settings-nmcli(5): ip-tunnel.local)."""
    runner = RecordingRunner()
    argv = ["nmcli", "connection", "modify", "HE tunnel", "ip-tunnel.local", "203.0.113.77"]
    runner.script(argv)
    done = persist_local(
        tunnel(owner="networkmanager", nm_connection="HE tunnel"), "203.0.113.77", runner
    )
    assert runner.calls == [tuple(argv)]
    assert done == "NetworkManager connection HE tunnel: ip-tunnel.local 203.0.113.77"


def test_networkmanager_without_the_connection_is_refused_in_one_line() -> None:
    """nmcli's exit status 10 (no such connection): permanent, naming the key to set."""
    runner = RecordingRunner()
    argv = ["nmcli", "connection", "modify", "he-ipv6", "ip-tunnel.local", "203.0.113.77"]
    runner.script(argv, returncode=10, stderr="Error: unknown connection 'he-ipv6'.")
    with pytest.raises(OwnerConfigMissing) as refused:
        persist_local(tunnel(owner="networkmanager"), "203.0.113.77", runner)
    assert str(refused.value) == (
        "tunnel.owner = networkmanager: NetworkManager has no connection 'he-ipv6' "
        "(set tunnel.nm_connection to the tunnel's connection name)"
    )


@pytest.mark.skipif(shutil.which("nmcli") is not None, reason="nmcli is installed here")
def test_a_missing_nmcli_fails_permanently_in_one_line() -> None:
    """Through the real runner: no nmcli on this machine, a permanent one-line failure."""
    with pytest.raises(PermanentError, match=r"^nmcli connection modify: [^\n]*$"):
        persist_local(tunnel(owner="networkmanager"), "203.0.113.77", SubprocessRunner())


def test_owner_config_problem_names_what_is_missing(tmp_path: Path) -> None:
    assert owner_config_problem(tunnel()) is None  # ours: nothing to find
    problem = owner_config_problem(tunnel(owner="ifupdown", ifupdown_file=tmp_path / "none"))
    assert problem == f"{tmp_path / 'none'} does not exist"
    assert "no .netdev" in str(
        owner_config_problem(tunnel(owner="networkd", networkd_dir=tmp_path))
    )
