"""OpenWrt's netifd as a second HE updater: a real /etc/config/network (as OpenWrt writes
it, with a 6in4 interface from HE's own OpenWrt example) in a temporary root, read by
reconciler.world.netifd, and what check-config and init say about it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from reconciler.cli import Environment, main
from reconciler.world.netifd import netifd_tunnels, parse_uci
from tests.daemon_helpers import linux_config_text

FIXTURES = Path(__file__).parents[1] / "init" / "fixtures"

# OpenWrt 23.05's /etc/config/network after `uci` set up HE's tunnel (tunnelbroker.net's
# "Example Configurations", OpenWrt), values of the documentation ranges.
NETWORK = """\

config interface 'loopback'
\toption device 'lo'
\toption proto 'static'
\toption ipaddr '127.0.0.1'
\toption netmask '255.0.0.0'

config globals 'globals'
\toption ula_prefix 'fd12:3456:789a::/48'

config device
\toption name 'br-lan'
\toption type 'bridge'
\tlist ports 'lan1'
\tlist ports 'lan2'

config interface 'lan'
\toption device 'br-lan'
\toption proto 'static'
\toption ipaddr '192.168.1.1'
\toption netmask '255.255.255.0'
\toption ip6assign '60'

config interface 'wan'
\toption device 'eth0'
\toption proto 'dhcp'

config interface 'henet'
\toption proto '6in4'
\toption peeraddr '216.66.22.2'
\toption ip6addr '2001:db8:1f06:abc::2/64'
\toption ip6prefix '2001:db8:1f07:abc::/64'
\toption tunnelid '123456'
\toption username 'example'
\toption updatekey 'Upd4teKey-of-netifd'   # the update key, as OpenWrt keeps it
\toption mtu '1480'
\toption ttl '255'

config interface 'other6'
\toption proto '6in4'
\toption peeraddr '198.51.100.77'
\toption disabled '1'
"""


@pytest.fixture
def openwrt(tmp_path: Path) -> Path:
    root = tmp_path / "openwrt"
    (root / "etc" / "config").mkdir(parents=True)
    (root / "etc" / "config" / "network").write_text(NETWORK)
    return root


def test_the_uci_file_is_read_as_netifd_reads_it(openwrt: Path) -> None:
    """Sections with their type and name, options quoted or not, comments left out; the
    6in4 interfaces with the link netifd makes and whether netifd updates HE."""
    sections = parse_uci(NETWORK)
    assert [(s.type, s.name) for s in sections] == [
        ("interface", "loopback"),
        ("globals", "globals"),
        ("device", None),
        ("interface", "lan"),
        ("interface", "wan"),
        ("interface", "henet"),
        ("interface", "other6"),
    ]
    assert sections[5].options["updatekey"] == "Upd4teKey-of-netifd"
    henet, other = netifd_tunnels(openwrt)
    assert (henet.link, henet.server_ipv4, henet.tunnel_id) == (
        "6in4-henet",
        "216.66.22.2",
        "123456",
    )
    assert henet.updates_he and not henet.disabled
    assert (other.link, other.updates_he, other.disabled) == ("6in4-other6", False, True)


def test_no_openwrt_no_tunnels(tmp_path: Path) -> None:
    assert netifd_tunnels(tmp_path) == []


def check_config(tmp_path: Path, root: Path, interface: str) -> tuple[int, str, str]:
    text = linux_config_text(tmp_path, wan="wan0", update_url="https://127.0.0.1:1/nic/update")
    text = text.replace('interface = "rctun0"', f'interface = "{interface}"')
    text = text.replace('server_ipv4 = "203.0.113.1"', 'server_ipv4 = "216.66.22.2"')
    config = tmp_path / "reconciler.conf"
    config.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    environ = {"PATH": "/usr/bin:/bin", "RECONCILER_SYSTEM_ROOT": str(root)}
    code = main(
        ["check-config", "-c", str(config)], Environment(stdout=out, stderr=err, environ=environ)
    )
    return code, out.getvalue(), err.getvalue()


def test_check_config_says_netifd_updates_he_too_and_how_to_stop_it(
    tmp_path: Path, openwrt: Path
) -> None:
    """Our tunnel is netifd's 6in4-henet, whose tunnelid/username/updatekey make netifd
    send the update on every ifup: the summary names both updaters and one warning says
    which should update and the command that turns netifd's off. The key is never shown."""
    code, out, err = check_config(tmp_path, openwrt, "6in4-henet")
    assert code == 0
    assert (
        "  tunnel owner: netifd owns this tunnel 6in4-henet (proto 6in4, interface 'henet')\n"
        in out
    )
    assert "  HE updates: reconciler and netifd's 6in4 interface 'henet': two updaters\n" in out
    [warning] = err.splitlines()
    assert (
        "warning: netifd's 6in4 interface 'henet' (/etc/config/network) sends the HE update"
        in warning
    )
    assert "uci delete network.henet.tunnelid; uci commit network" in warning
    assert "Upd4teKey" not in out + err


def test_with_netifds_update_turned_off_reconciler_is_the_one_updater(
    tmp_path: Path, openwrt: Path
) -> None:
    """After `uci delete network.henet.tunnelid`: netifd still owns the link, sends HE
    nothing, and check-config says so without a warning."""
    network = openwrt / "etc" / "config" / "network"
    network.write_text(network.read_text().replace("\toption tunnelid '123456'\n", ""))
    code, out, err = check_config(tmp_path, openwrt, "6in4-henet")
    assert (code, err) == (0, "")
    assert "  HE updates: reconciler alone (netifd's 6in4 interface 'henet' sends HE nothing" in out


def test_the_same_he_tunnel_on_another_link_is_named_too(tmp_path: Path, openwrt: Path) -> None:
    """reconciler's own he-ipv6 to the server netifd's henet also points at: two tunnels and
    two updaters for one HE tunnel, said the same way."""
    code, out, err = check_config(tmp_path, openwrt, "he-ipv6")
    assert code == 0
    assert "  tunnel owner: netifd has the same HE tunnel as 6in4-henet" in out
    assert "uci delete network.henet.tunnelid" in err


def test_init_says_which_updates_he(tmp_path: Path, openwrt: Path) -> None:
    """`init --platform linux` for that tunnel: the same two lines, the warning on stderr,
    and the JSON names netifd's interface."""
    key = tmp_path / "he.key"
    key.write_text("0123456789abcdef\n")
    key.chmod(0o600)
    argv = [
        "init", "--platform", "linux", "--key-file", str(key), "--tunnel-id", "123456",
        "--username", "example", "--wan", "eth0", "--tunnel-interface", "6in4-henet",
        "--from-hostname-file", str(FIXTURES / "plain" / "hostname.gif0"),
    ]  # fmt: skip
    environ = {"RECONCILER_SYSTEM_ROOT": str(openwrt)}
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ=environ, cwd=tmp_path)
    assert main([*argv, "-o", str(tmp_path / "a.conf")], env) == 0, err.getvalue()
    assert (
        "HE updates: reconciler and netifd's 6in4 interface 'henet': two updaters" in out.getvalue()
    )
    assert "uci delete network.henet.tunnelid" in err.getvalue()
    out = io.StringIO()
    env = Environment(stdout=out, stderr=io.StringIO(), environ=environ, cwd=tmp_path)
    assert main([*argv, "-o", str(tmp_path / "b.conf"), "--json"], env) == 0
    document = json.loads(out.getvalue())
    assert document["netifd"] == [{"interface": "henet", "link": "6in4-henet", "updates_he": True}]
